"""A test double for the sweep runner's trainer (inception_jax.sweeps.runner.Trainer)."""

import hashlib
import json
from pathlib import Path

import ml_collections
import numpy as np

from inception_jax.sweeps.metrics import read_metrics


class SimulatedTrainer:
  """Stands in for `Trainer` in tests and dry runs: writes a plausible metrics.jsonl (a falling
  loss, an accuracy that depends on the config) without training anything, and records calls.

  `fail_after`: raise KeyboardInterrupt at the start of that many-th `train` call (a sweep killed
  between variants). `stop_at`: write the curve only up to this step (a run stopped mid-training).
  """

  def __init__(self, fail_after: int | None = None, stop_at: int | None = None):
    self.fail_after, self.stop_at = fail_after, stop_at
    self.trained: list[str] = []
    self.evaluated: list[tuple[tuple[str, ...], int]] = []

  def num_steps(self, config: ml_collections.ConfigDict) -> int:
    return int(config.num_train_steps) if config.num_train_steps > 0 else 100

  def _skill(self, config: ml_collections.ConfigDict) -> float:
    text = json.dumps(config.to_dict(), sort_keys=True, default=str)
    digest = int(hashlib.sha256(text.encode()).hexdigest(), 16)  # differs per config and seed
    return 0.5 + (digest % 97) / 250 + 0.01 * config.seed

  def train(self, config: ml_collections.ConfigDict, workdir: str) -> None:
    if self.fail_after is not None and len(self.trained) >= self.fail_after:
      raise KeyboardInterrupt("simulated interruption")
    self.trained.append(workdir)
    n = self.num_steps(config)
    last = min(n, self.stop_at) if self.stop_at else n
    skill = self._skill(config)
    path = Path(workdir)
    path.mkdir(parents=True, exist_ok=True)
    done = {m["step"] for m in read_metrics(path)}
    with (path / "metrics.jsonl").open("a") as f:
      for step in range(1, last + 1):
        if step in done:
          continue
        frac = step / n
        f.write(
          json.dumps(
            {
              "step": step,
              "train/loss": 2.3 * (1 - 0.6 * frac * skill),
              "train/top1": 0.1 + frac * (skill - 0.1),
            }
          )
          + "\n"
        )
        if step == n:
          f.write(
            json.dumps(
              {
                "step": step,
                "eval/top1": skill - 0.02,
                "eval/top5": 0.99,
                "eval_ema/top1": skill,
                "eval_ema/top5": 0.995,
              }
            )
            + "\n"
          )

  def predict(self, config, workdir, crops, num_examples):
    """Softmax outputs whose top-1 accuracy is about the run's skill (plus a bonus per crop
    count), different per seed and crop count, over `num_examples` (-1: 40) examples."""
    self.evaluated.append((workdir, crops))
    n = 40 if num_examples <= 0 else num_examples
    bonus = 0.01 * {1: 0, 10: 1, 144: 2}[crops]
    rng = np.random.default_rng([config.seed, crops, n])
    labels = np.arange(n) % 10
    right = rng.random(n) < min(self._skill(config) + bonus, 1.0)
    guesses = np.where(right, labels, (labels + 1 + rng.integers(0, 9, n)) % 10)
    probs = np.full((n, 10), 0.5 / 9, np.float32)
    probs[np.arange(n), guesses] = 0.5
    return probs, labels
