"""Ablation sweeps: named config variants at a scale, trained in turn, tabled beside the papers.

An experiment file (experiments/v1_ablations.py, v3_ablations.py) lists `Ablation`s: a paper table
or figure, and its rows as `Variant`s (a name, the paper's figure with its metric and unit, and the
config fields that differ from the scale's base config). `run_sweep` trains every variant that has
no final result yet (so an interrupted sweep continues where it stopped; a variant interrupted
mid-training resumes from its own checkpoints), evaluates the evaluation-only rows (multi-crop,
ensembles), and writes

  WORKDIR/<variant>/seed<k>/          the trainer's workdir (metrics.jsonl, checkpoints)
  WORKDIR/<variant>/seed<k>/result.json   the final evaluation, written once training finished
  WORKDIR/<variant>/eval.json         an evaluation-only row (crops, ensemble)
  WORKDIR/results.csv, results.md     one row per (ablation, variant)

Each experiment file is also a config file: `--config=experiments/v1_ablations.py:SCALE,VARIANT,SEED`
returns the exact config a row was trained with, so the `command` column is a command that
reproduces the row (`python -m experiments.run --config=... --workdir=...`).

Like with like: the papers report ImageNet error rates. At `small` and `tiny` scale our figure is
the same metric on CIFAR-10 / digits, so the difference column is not a like-for-like comparison
(the `comparable` column says so); cost rows (multiply-adds, parameters) are computed for the
full-size network and are comparable at every scale.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
import statistics
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections

SCALES = ("full", "small", "tiny")
REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR10 = REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
IMAGENET_TRAIN_EXAMPLES = 1_281_167
# Metrics a paper figure can be given in. Error rates are in percent; costs for the full-size network.
ERROR_METRICS = {"top-1 err": "top1", "top-5 err": "top5"}
COST_METRICS = {"G multiply-adds": ("macs", 1e9), "M params": ("params", 1e6)}
CSV_COLUMNS = (
  "ablation",
  "variant",
  "paper",
  "paper_metric",
  "paper_value",
  "ours",
  "ours_std",
  "seeds",
  "difference",
  "comparable",
  "top1_err",
  "top5_err",
  "raw_top1_err",
  "macs",
  "params",
  "full_macs",
  "full_params",
  "steps",
  "wall_s",
  "scale",
  "dataset",
  "command",
)


# ------------------------------------------------------------------------------------------------
# What an experiment file declares.
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Paper:
  """A figure printed in a paper: `Paper(23.4, "top-1 err", "Rethinking Table 3")`."""

  value: float
  metric: str  # a key of ERROR_METRICS or COST_METRICS
  source: str

  def __post_init__(self):
    if self.metric not in ERROR_METRICS and self.metric not in COST_METRICS:
      raise ValueError(f"unknown metric {self.metric!r}")

  @property
  def unit(self) -> str:
    return "%" if self.metric in ERROR_METRICS else ""

  def __str__(self) -> str:
    if self.metric in ERROR_METRICS:
      return f"{self.metric} {self.value:g}%"
    return f"{self.value:g} {self.metric}"


@dataclasses.dataclass(frozen=True)
class Variant:
  """One row. A trained row has `overrides` (dotted config fields -> values, applied to the scale's
  base config). An evaluation-only row names the trained variant(s) it evaluates: `evaluates`
  (one variant, each seed evaluated on its own, mean and spread) or `ensemble` (all seeds of the
  listed variants averaged into one prediction), with `crops` 1, 10 or 144."""

  name: str
  paper: Paper | None = None
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  evaluates: str | None = None
  ensemble: tuple[str, ...] = ()
  crops: int = 1
  note: str = ""

  @property
  def trained(self) -> bool:
    return self.evaluates is None and not self.ensemble


@dataclasses.dataclass(frozen=True)
class Ablation:
  name: str
  title: str  # the paper's table or figure
  variants: tuple[Variant, ...]


@dataclasses.dataclass
class Sweep:
  """An experiment file at one scale: the base config, its ablations and the seeds to run."""

  name: str  # "v1_ablations"
  config_file: str  # "experiments/v1_ablations.py" (a config file too)
  scale: str
  base_config: Callable[[], ml_collections.ConfigDict]
  ablations: tuple[Ablation, ...]
  seeds: Mapping[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)  # variant -> seeds
  default_seeds: tuple[int, ...] = (0,)
  eval_examples: int = -1  # examples for evaluation-only rows; -1 = whole split
  crops_eval_split: str | None = None  # split for evaluation-only rows (default: eval_split)

  def variants(self) -> dict[str, Variant]:
    """Every distinct variant by name (a variant may appear in several ablations)."""
    out: dict[str, Variant] = {}
    for ablation in self.ablations:
      for v in ablation.variants:
        if v.name in out and out[v.name] != dataclasses.replace(
          v, paper=out[v.name].paper, note=out[v.name].note
        ):
          raise ValueError(f"variant {v.name!r} is defined twice with different settings")
        out.setdefault(v.name, v)
    return out

  def seeds_of(self, variant: str) -> tuple[int, ...]:
    return tuple(self.seeds.get(variant, self.default_seeds))

  def config(self, variant: str, seed: int = 0) -> ml_collections.ConfigDict:
    """The exact config variant `variant` trains with at this scale and seed."""
    v = self.variants()[variant]
    if not v.trained:
      v = self.variants()[v.evaluates or v.ensemble[0]]
    config = self.base_config()
    apply_overrides(config, v.overrides)
    config.seed = seed
    return config

  def eval_config(self, variant: str) -> ml_collections.ConfigDict:
    config = self.config(variant)
    if self.crops_eval_split:
      config.eval_split = self.crops_eval_split
    return config

  def config_arg(self, variant: str, seed: int = 0) -> str:
    return f"{self.config_file}:{self.scale},{variant},{seed}"


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> None:
  """Sets dotted fields ("model_overrides.module"), creating leaves that are not declared yet."""
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      if p not in node:
        node[p] = ml_collections.ConfigDict()
      node = node[p]
    if (
      leaf in node
      and isinstance(node[leaf], ml_collections.ConfigDict)
      and isinstance(value, Mapping)
    ):
      node[leaf] = ml_collections.ConfigDict(dict(value))
    else:
      node[leaf] = value


def parse_config_arg(arg: str | None) -> tuple[str, str | None, int]:
  """'small,naive,1' -> ('small', 'naive', 1); 'small' -> ('small', None, 0)."""
  parts = [p.strip() for p in (arg or "full").split(",")]
  scale = parts[0] or "full"
  if scale not in SCALES:
    raise ValueError(f"unknown scale {scale!r}; expected one of {SCALES}")
  variant = parts[1] if len(parts) > 1 and parts[1] else None
  seed = int(parts[2]) if len(parts) > 2 and parts[2] else 0
  return scale, variant, seed


def config_from_arg(
  make_sweep: Callable[[str], Sweep], arg: str | None
) -> ml_collections.ConfigDict:
  """An experiment file's `get_config`: 'SCALE[,VARIANT[,SEED]]' -> that run's config (the
  scale's base config without a variant), so every row's command is `experiments.run` on it."""
  scale, variant, seed = parse_config_arg(arg)
  s = make_sweep(scale)
  return s.config(variant, seed) if variant else s.base_config()


# ------------------------------------------------------------------------------------------------
# Data for the small scale.
# ------------------------------------------------------------------------------------------------
def scale_run_length(config: ml_collections.ConfigDict, scale: str, small_steps: int) -> None:
  """The data and run length of the reduced scales, shared by every experiment file.

  small: CIFAR-10 (`cifar10_dataset`), `small_steps` steps of 32, evaluated on the whole
  class-balanced `test` split; tiny: 4 steps of 16 on the config's own dataset (`digits`).
  """
  if scale == "small":
    config.dataset = cifar10_dataset()
    config.eval_split = "test"
    config.batch_size = 32
    config.eval_batch_size = 250
    config.num_train_steps = small_steps
    config.num_eval_steps = -1  # the whole `test` split: 200 images per class
    config.log_every_steps = 25
    config.checkpoint_every_steps = 50
  elif scale == "tiny":
    config.batch_size = 16
    config.eval_batch_size = 32
    config.num_train_steps = 4
    config.num_eval_steps = 1
    config.log_every_steps = 2
    config.checkpoint_every_steps = 4
  else:
    raise ValueError(f"scale_run_length is for the reduced scales small and tiny, got {scale!r}")


def cifar10_dataset(
  root: str | os.PathLike | None = None, test_per_class: int = 200, crops_per_class: int = 10
) -> str:
  """`folder:` dataset for the small scale, built once under REPO_ROOT/workdirs/data (or `root`)
  from the shared CIFAR-10 JPEG copy (TFDS `cifar10` is not downloaded: no network).

  Splits: `train` (all 50,000 images), `test` (the first `test_per_class` test images of each
  class: a class-balanced subset, since a folder split is ordered by class and a truncated eval
  would see only the first classes) and `test_crops` (`crops_per_class` per class, for the
  multi-crop rows, whose 144 crops cost 144 forward passes per image). Files are symlinks.
  """
  root = Path(root or REPO_ROOT / "workdirs" / "data")
  full = root / "cifar10"
  if not (full / "test").is_dir():
    if not SHARED_CIFAR10.exists():
      raise FileNotFoundError(f"{SHARED_CIFAR10} (the shared CIFAR-10 JPEG copy) is missing")
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".extract-{os.getpid()}"
    with tarfile.open(SHARED_CIFAR10) as tar:
      tar.extractall(tmp, filter="data")
    (tmp / "cifar10").rename(full)
    tmp.rmdir()
  name = f"cifar10_t{test_per_class}_c{crops_per_class}"
  target = root / name
  if not (target / "done").exists():
    tmp = root / f".{name}-{os.getpid()}"
    (tmp).mkdir(parents=True)
    (tmp / "train").symlink_to(full / "train", target_is_directory=True)
    for split, per_class in (("test", test_per_class), ("test_crops", crops_per_class)):
      for class_dir in sorted(p for p in (full / "test").iterdir() if p.is_dir()):
        out = tmp / split / class_dir.name
        out.mkdir(parents=True)
        for f in sorted(class_dir.iterdir())[:per_class]:
          (out / f.name).symlink_to(f)
    (tmp / "done").write_text("")
    if target.exists():
      import shutil

      shutil.rmtree(target)
    tmp.rename(target)
  return f"folder:{target}"


# ------------------------------------------------------------------------------------------------
# Training and evaluation backends (the real ones; tests may pass their own).
# ------------------------------------------------------------------------------------------------
class Trainer:
  """Trains with `train.train_and_evaluate`; evaluates checkpoints with `inception_jax.evaluate`."""

  def train(self, config: ml_collections.ConfigDict, workdir: str) -> None:
    _enable_compilation_cache(config)
    from inception_jax import train

    train.train_and_evaluate(config, workdir)

  def num_steps(self, config: ml_collections.ConfigDict) -> int:
    if config.num_train_steps > 0:  # what train.train_length returns, without listing the data
      return int(config.num_train_steps)
    from inception_jax import data, train

    info = data.get_info(config.dataset, config.data_dir)
    return train.train_length(config, info.splits[config.train_split])[1]

  def evaluate(
    self, config: ml_collections.ConfigDict, workdirs: Sequence[str], crops: int, num_examples: int
  ) -> dict[str, float]:
    """Softmax averaged over crops and over workdirs' models; top1 / top5 on the first
    `num_examples` eval examples (-1: all), with the averaged parameters."""
    _enable_compilation_cache(config)
    from inception_jax import evaluate, parallel

    mesh = parallel.make_mesh()
    model, variables = evaluate.load_workdirs(config, workdirs, mesh)
    batch_size = config.eval_batch_size
    if num_examples > 0:
      batch_size = min(batch_size, num_examples)
    num_steps = -1 if num_examples <= 0 else math.ceil(num_examples / batch_size)
    batches = evaluate.eval_batches(config, batch_size, crops)
    r = evaluate.Evaluator(model, mesh).evaluate({"m": variables}, batches, num_steps)["m"]
    return {"top1": r["top1"], "top5": r["top5"], "count": r["count"]}


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
    digest = sum(map(ord, json.dumps(config.to_dict(), sort_keys=True, default=str)))
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

  def evaluate(self, config, workdirs, crops, num_examples):
    self.evaluated.append((tuple(workdirs), crops))
    bonus = 0.01 * {1: 0, 10: 1, 144: 2}[crops] + 0.02 * (len(workdirs) - 1)
    return {"top1": min(self._skill(config) + bonus, 1.0), "top5": 0.995, "count": 16}


def _enable_compilation_cache(config: ml_collections.ConfigDict) -> None:
  from inception_jax import parallel

  parallel.enable_compilation_cache(config.get("compilation_cache_dir") or "none")


def read_metrics(workdir: str | os.PathLike) -> list[dict[str, float]]:
  """The lines of WORKDIR/metrics.jsonl ([] when there is none); a torn last line is ignored."""
  path = Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  rows = []
  for line in path.read_text().splitlines():
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError:
      continue
  return rows


def final_eval(metrics: Sequence[Mapping[str, float]], num_steps: int) -> dict[str, float] | None:
  """The evaluation at the last training step, or None when training did not reach it."""
  evals = [m for m in metrics if "eval/top1" in m and m["step"] >= num_steps]
  return dict(evals[-1]) if evals else None


# ------------------------------------------------------------------------------------------------
# The runner.
# ------------------------------------------------------------------------------------------------
class SweepInterrupted(RuntimeError):
  """A variant's training stopped before its last step (e.g. SIGTERM); rerun to resume."""


def run_sweep(
  sweep: Sweep,
  workdir: str | os.PathLike,
  only: Sequence[str] = (),
  trainer: Any = None,
  log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
  """Trains what is missing, evaluates evaluation-only rows, writes results.csv and results.md.

  `only`: variant names to run (evaluation-only rows pull in the variants they evaluate); the
  tables always cover every row, with blanks where results are missing.
  """
  trainer = trainer or Trainer()
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  variants = sweep.variants()
  unknown = sorted(set(only) - set(variants))
  if unknown:
    raise ValueError(f"unknown variant(s) {unknown}; known: {', '.join(variants)}")
  selected = [variants[n] for n in (only or variants)]
  to_train: list[str] = []
  for v in selected:
    for name in [v.name] if v.trained else ([v.evaluates] if v.evaluates else list(v.ensemble)):
      if name not in to_train:
        to_train.append(name)

  for name in to_train:
    for seed in sweep.seeds_of(name):
      _train_one(sweep, name, seed, workdir, trainer, log)
  for v in selected:
    if not v.trained:
      _evaluate_one(sweep, v, workdir, trainer, log)
  rows = collect(sweep, workdir)
  write_tables(sweep, rows, workdir)
  log(f"wrote {workdir / 'results.csv'} and {workdir / 'results.md'}")
  return rows


def _train_one(sweep: Sweep, name: str, seed: int, workdir: Path, trainer, log) -> None:
  run_dir = workdir / name / f"seed{seed}"
  result_path = run_dir / "result.json"
  if result_path.exists():
    log(f"[{sweep.name}] {name} seed {seed}: done, skipped")
    return
  config = sweep.config(name, seed)
  num_steps = trainer.num_steps(config)
  log(f"[{sweep.name}] {name} seed {seed}: training {num_steps} steps in {run_dir}")
  wall_path = run_dir / "wall.json"  # wall time summed over interrupted and resumed attempts
  previous = json.loads(wall_path.read_text())["wall_s"] if wall_path.exists() else 0.0
  start = time.time()
  try:
    trainer.train(config, str(run_dir))
  except FloatingPointError as e:  # the trainer's NonFiniteLossError: a result, not a crash
    log(f"[{sweep.name}] {name} seed {seed}: diverged ({e})")
    _write_json(
      result_path,
      {
        "variant": name,
        "seed": seed,
        "steps": num_steps,
        "diverged": str(e),
        "wall_s": previous + time.time() - start,
      },
    )
    return
  finally:
    wall = previous + time.time() - start
    _write_json(wall_path, {"wall_s": wall})
  final = final_eval(read_metrics(run_dir), num_steps)
  if final is None:
    raise SweepInterrupted(f"{name} seed {seed} stopped before step {num_steps}; rerun to resume")
  result = {"variant": name, "seed": seed, "steps": num_steps, "wall_s": wall, **final}
  _write_json(result_path, result)
  log(f"[{sweep.name}] {name} seed {seed}: top-1 {_top1(result):.4f} in {wall:.0f}s")


def _evaluate_one(sweep: Sweep, v: Variant, workdir: Path, trainer, log) -> None:
  path = workdir / v.name / "eval.json"
  if path.exists():
    log(f"[{sweep.name}] {v.name}: done, skipped")
    return
  start = time.time()
  if v.evaluates:
    config = sweep.eval_config(v.evaluates)
    runs = [
      trainer.evaluate(
        config, [str(workdir / v.evaluates / f"seed{s}")], v.crops, sweep.eval_examples
      )
      | {"seed": s}
      for s in sweep.seeds_of(v.evaluates)
    ]
  else:
    config = sweep.eval_config(v.ensemble[0])
    dirs = [str(workdir / n / f"seed{s}") for n in v.ensemble for s in sweep.seeds_of(n)]
    runs = [trainer.evaluate(config, dirs, v.crops, sweep.eval_examples) | {"models": len(dirs)}]
  result = {"variant": v.name, "crops": v.crops, "runs": runs, "wall_s": time.time() - start}
  _write_json(path, result)
  log(
    f"[{sweep.name}] {v.name}: top-1 {statistics.mean(r['top1'] for r in runs):.4f} "
    f"({v.crops} crops) in {result['wall_s']:.0f}s"
  )


def _write_json(path: Path, value: Any) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(".tmp")
  tmp.write_text(json.dumps(value, indent=1))
  tmp.replace(path)  # atomic: a result file is either complete or absent


def _top1(result: Mapping[str, float]) -> float:
  """The paper's protocol: averaged parameters when kept, else the raw ones."""
  return result.get("eval_ema/top1", result.get("eval/top1", result.get("top1")))


def _top5(result: Mapping[str, float]) -> float:
  return result.get("eval_ema/top5", result.get("eval/top5", result.get("top5")))


# ------------------------------------------------------------------------------------------------
# Tables.
# ------------------------------------------------------------------------------------------------
def model_cost(
  config: ml_collections.ConfigDict, num_classes: int, full_size: bool = False
) -> tuple[int, int]:
  """(multiply-adds per image, parameters) of the inference network (aux heads excluded), as
  configured, or with `full_size` the same architecture at the paper's width, input and 1000
  classes."""
  from inception_jax import accounting, models

  overrides = dict(config.model_overrides.to_dict())
  size = config.image_size
  if full_size:
    overrides.pop("width_multiplier", None)
    overrides.pop("dtype", None)
    num_classes = 1000
    size = models.default_image_size(config.model, **overrides)
  model = models.create(config.model, num_classes=num_classes, **overrides)
  return (
    accounting.total_macs(model, size),
    accounting.model_params(model, size, exclude_aux=True),
  )


def _num_classes(config: ml_collections.ConfigDict) -> int:
  if config.dataset in ("imagenet2012", "imagenet2012_subset"):
    return 1000
  if config.dataset in ("cifar10", "digits") or config.dataset.startswith("folder:"):
    if (
      config.dataset.startswith("folder:") and Path(config.dataset[7:], config.train_split).is_dir()
    ):
      return len([p for p in Path(config.dataset[7:], config.train_split).iterdir() if p.is_dir()])
    return 10
  from inception_jax import data

  return data.get_info(config.dataset, config.data_dir).num_classes


def _command(sweep: Sweep, v: Variant, workdir: Path) -> str:
  run_dir = lambda n, s: workdir / n / f"seed{s}"  # noqa: E731
  if v.trained:
    seeds = sweep.seeds_of(v.name)
    return "; ".join(
      f"python -m experiments.run --config={sweep.config_arg(v.name, s)} "
      f"--workdir={run_dir(v.name, s)}"
      for s in seeds
    )
  names = [v.evaluates] if v.evaluates else list(v.ensemble)
  config_arg = sweep.config_arg(names[0])
  if sweep.crops_eval_split:
    config_arg += f" --config.eval_split={sweep.crops_eval_split}"
  if v.evaluates:
    return "; ".join(
      f"python -m experiments.evaluate --config={config_arg} "
      f"--workdir={run_dir(v.evaluates, s)} --crops={v.crops}"
      for s in sweep.seeds_of(v.evaluates)
    )
  dirs = " ".join(f"--workdir={run_dir(n, s)}" for n in names for s in sweep.seeds_of(n))
  return f"python -m experiments.evaluate --config={config_arg} {dirs} --crops={v.crops}"


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
  values = [x for x in values if x is not None]
  if not values:
    return None, None
  return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


def collect(sweep: Sweep, workdir: str | os.PathLike) -> list[dict[str, Any]]:
  """One row per (ablation, variant) from the result files; blanks where results are missing."""
  workdir = Path(workdir)
  rows = []
  for ablation in sweep.ablations:
    for v in ablation.variants:
      trained_name = v.name if v.trained else (v.evaluates or v.ensemble[0])
      config = sweep.config(trained_name)
      num_classes = _num_classes(config)
      macs, params = model_cost(config, num_classes)
      full_macs, full_params = model_cost(config, num_classes, full_size=True)
      note = v.note
      models_per_prediction = 1
      if v.ensemble:
        models_per_prediction = sum(len(sweep.seeds_of(n)) for n in v.ensemble)
      if v.trained:
        results = []
        for s in sweep.seeds_of(v.name):
          p = workdir / v.name / f"seed{s}" / "result.json"
          if p.exists():
            results.append(json.loads(p.read_text()))
        seeds = [r["seed"] for r in results]
        top1 = [_top1(r) for r in results if "diverged" not in r]
        top5 = [_top5(r) for r in results if "diverged" not in r]
        if any("diverged" in r for r in results):
          note = "; ".join(
            filter(
              None,
              [
                note,
                "diverged: seed(s) " + " ".join(str(r["seed"]) for r in results if "diverged" in r),
              ],
            )
          )
        raw1 = [r.get("eval/top1") for r in results]
        steps = results[0]["steps"] if results else None
        wall = sum(r["wall_s"] for r in results) if results else None
      else:
        p = workdir / v.name / "eval.json"
        evaluation = json.loads(p.read_text()) if p.exists() else {}
        runs = evaluation.get("runs", [])
        seeds = [r.get("seed", "ens") for r in runs]
        if v.ensemble and runs:
          seeds = list(sweep.seeds_of(v.ensemble[0]))
        top1 = [r["top1"] for r in runs]
        top5 = [r["top5"] for r in runs]
        raw1 = [None]
        steps = None
        wall = evaluation.get("wall_s")
      err1, err1_std = _mean_std([100 * (1 - x) for x in top1])
      err5, err5_std = _mean_std([100 * (1 - x) for x in top5])
      raw_err1, _ = _mean_std([100 * (1 - x) for x in raw1 if x is not None])
      test_macs = macs * v.crops * models_per_prediction
      row = {
        "ablation": ablation.name,
        "variant": v.name,
        "paper": str(v.paper) if v.paper else "",
        "paper_metric": v.paper.metric if v.paper else "",
        "paper_value": v.paper.value if v.paper else None,
        "ours": None,
        "ours_std": None,
        "seeds": " ".join(map(str, seeds)),
        "difference": None,
        "comparable": "",
        "top1_err": err1,
        "top5_err": err5,
        "raw_top1_err": raw_err1,
        "macs": test_macs,
        "params": params,
        "full_macs": full_macs * v.crops * models_per_prediction,
        "full_params": full_params,
        "steps": steps,
        "wall_s": wall,
        "scale": sweep.scale,
        "dataset": config.dataset,
        "command": _command(sweep, v, workdir),
        "title": ablation.title,
        "note": note,
        "source": v.paper.source if v.paper else "",
      }
      if v.paper and v.paper.metric in ERROR_METRICS:
        key = ERROR_METRICS[v.paper.metric]
        row["ours"], row["ours_std"] = (err1, err1_std) if key == "top1" else (err5, err5_std)
        row["comparable"] = "yes" if sweep.scale == "full" else "no: scale"
      elif v.paper:
        field, unit = COST_METRICS[v.paper.metric]
        row["ours"] = row[f"full_{field}"] / unit
        row["comparable"] = "yes"
      else:  # no paper figure: report top-1 error
        row["ours"], row["ours_std"] = err1, err1_std
      if row["ours"] is not None and v.paper:
        row["difference"] = row["ours"] - v.paper.value
      rows.append(row)
  return rows


def _fmt(x: Any, digits: int = 2) -> str:
  if x is None or (isinstance(x, float) and math.isnan(x)):
    return ""
  if isinstance(x, float):
    return f"{x:.{digits}f}"
  return str(x)


def _si(x: float | None) -> str:
  if x is None:
    return ""
  for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
    if abs(x) >= scale:
      return f"{x / scale:.3g}{unit}"
  return f"{x:g}"


def format_markdown(sweep: Sweep, rows: Sequence[Mapping[str, Any]]) -> str:
  """One markdown table per ablation: paper figure, ours (mean ± spread over seeds), difference,
  cost, seeds, wall time and the command."""
  out = [f"# {sweep.name} at scale `{sweep.scale}`", ""]
  if sweep.scale != "full":
    out += [
      "Our figures are on `%s`, not ImageNet: the difference to the paper is **not "
      "like-for-like** for error rates (column `comparable`). Cost rows (`G multiply-adds`, "
      "`M params`) are computed for the full-size network and are comparable."
      % (rows[0]["dataset"].replace(f"{REPO_ROOT}/", "") if rows else "?"),
      "",
    ]
  unique = {r["variant"]: r for r in rows}.values()
  done = [r for r in unique if r["wall_s"]]
  if done:
    out += [
      f"Wall time: {sum(r['wall_s'] for r in done) / 60:.0f} min for the {len(done)} rows "
      f"that ran (training with compilation and evaluation; evaluation-only rows: "
      f"evaluation); {sum(1 for r in unique if not r['wall_s'])} rows not run.",
      "",
    ]
  for ablation in sweep.ablations:
    out += [
      f"## {ablation.title}",
      "",
      "| row | paper | ours | ours − paper | comparable | top-1 err | top-5 err | "
      "MACs/image | params | seeds | steps | wall | command |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
      if r["ablation"] != ablation.name:
        continue
      metric = r["paper_metric"]
      unit = "%" if (metric in ERROR_METRICS or not metric) else ""
      ours = _fmt(r["ours"])
      if ours and r["ours_std"] is not None:
        ours += f" ± {r['ours_std']:.2f}"
      if ours:
        ours += unit
      diff = "" if r["difference"] is None else f"{r['difference']:+.2f}{unit}"
      paper = f"{r['paper']} ({r['source']})" if r["paper"] else "—"
      out.append(
        f"| {r['variant']} | {paper} | {ours} | {diff} | {r['comparable']} | "
        f"{_fmt(r['top1_err'])} | {_fmt(r['top5_err'])} | {_si(r['macs'])} | {_si(r['params'])} "
        f"| {r['seeds']} | {_fmt(r['steps'])} | {_fmt(r['wall_s'], 0) + 's' if r['wall_s'] else ''} "
        f"| `{r['command']}` |"
      )
    notes = [
      f"- {r['variant']}: {r['note']}"
      for r in rows
      if r["ablation"] == ablation.name and r.get("note")
    ]
    out += [""] + notes + ([""] if notes else [])
  return "\n".join(out)


def write_tables(
  sweep: Sweep, rows: Sequence[Mapping[str, Any]], workdir: str | os.PathLike
) -> None:
  workdir = Path(workdir)
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
  writer.writeheader()
  for r in rows:
    writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_COLUMNS})
  (workdir / "results.csv").write_text(buf.getvalue())
  (workdir / "results.md").write_text(format_markdown(sweep, rows) + "\n")
  write_curves(workdir)


CURVE_COLUMNS = (
  "variant",
  "seed",
  "step",
  "train/loss",
  "train/top1",
  "eval/top1",
  "eval_ema/top1",
  "train/images_per_sec",
)


def write_curves(workdir: str | os.PathLike) -> None:
  """WORKDIR/curves.csv: every run's metrics.jsonl lines in one long table (for the notebooks,
  and small enough to commit beside results.csv)."""
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=CURVE_COLUMNS, extrasaction="ignore")
  writer.writeheader()
  for variant, seeds in learning_curves(workdir).items():
    for seed, lines in seeds.items():
      for m in lines:
        writer.writerow({"variant": variant, "seed": seed, **m})
  (Path(workdir) / "curves.csv").write_text(buf.getvalue())


def learning_curves(workdir: str | os.PathLike) -> dict[str, dict[int, list[dict[str, float]]]]:
  """{variant: {seed: metrics.jsonl lines}} for every trained run under a sweep's workdir."""
  curves: dict[str, dict[int, list]] = {}
  for path in sorted(Path(workdir).glob("*/seed*/metrics.jsonl")):
    seed = int(path.parent.name[4:])
    curves.setdefault(path.parent.parent.name, {})[seed] = read_metrics(path.parent)
  return curves


# ------------------------------------------------------------------------------------------------
# Full scale: commands and device-hours.
# ------------------------------------------------------------------------------------------------
# Assumed sustained training throughput of one accelerator, in multiply-adds per second: no
# measured full-size figure exists in this repository yet (docs/PERFORMANCE.md; this session had
# no GPU). 5e13 MAC/s = 100 TFLOP/s, about 10% of an H100's dense bfloat16 peak, a usual
# utilisation for Inception's many small convolutions. Training costs about 3x the forward
# multiply-adds (forward + backward). Pass --images_per_sec with a measured figure to replace it.
DEFAULT_DEVICE_MACS_PER_SEC = 5.0e13


def images_per_sec(
  macs_per_image: int, device_macs_per_sec: float = DEFAULT_DEVICE_MACS_PER_SEC
) -> float:
  return device_macs_per_sec / (3 * macs_per_image)


def full_scale_plan(
  sweep: Sweep,
  workdir: str,
  images_per_second: float | None = None,
  device_macs_per_sec: float = DEFAULT_DEVICE_MACS_PER_SEC,
) -> str:
  """The commands of every row and the device-hours each trained row needs."""
  lines = [
    f"# {sweep.name} at scale {sweep.scale}: commands and device-hours",
    "",
    "| row | epochs | images/s/device | device-hours | command |",
    "|---|---|---|---|---|",
  ]
  total = 0.0
  for name, v in sweep.variants().items():
    cmd = _command(sweep, v, Path(workdir))
    if not v.trained:
      lines.append(f"| {name} | eval | | | `{cmd}` |")
      continue
    config = sweep.config(name)
    macs, _ = model_cost(config, _num_classes(config))
    ips = images_per_second or images_per_sec(macs, device_macs_per_sec)
    examples = IMAGENET_TRAIN_EXAMPLES if config.dataset == "imagenet2012" else 50_000
    steps = config.num_train_steps if config.num_train_steps > 0 else None
    images = steps * config.batch_size if steps else config.num_epochs * examples
    hours = images / ips / 3600 * len(sweep.seeds_of(name))
    total += hours
    lines.append(f"| {name} | {images / examples:.0f} | {ips:.0f} | {hours:.0f} | `{cmd}` |")
  lines += [
    "",
    f"Total: {total:.0f} device-hours (training only; "
    + (
      "measured throughput"
      if images_per_second
      else f"throughput assumed from {device_macs_per_sec:.2g} multiply-adds/s per device, "
      "3x forward cost per training image; pass --images_per_sec to use a measured figure"
    )
    + ").",
  ]
  return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Command line (experiments/v1_ablations.py, v3_ablations.py call `main`).
# ------------------------------------------------------------------------------------------------
def main(make_sweep: Callable[[str], Sweep], argv: Sequence[str] | None = None) -> list | str:
  """--scale=full|small|tiny --workdir=W [--only=a,b] [--launch] [--images_per_sec=N] [--list]

  `full` prints the commands and device-hours of every row (`--launch` runs them here instead);
  `small` and `tiny` run the sweep (what is missing) and write W/results.csv and W/results.md.
  """
  import argparse

  parser = argparse.ArgumentParser(description=main.__doc__)
  parser.add_argument("--scale", choices=SCALES, default="tiny")
  parser.add_argument("--workdir", default=None, help="default: workdirs/<sweep>_<scale>")
  parser.add_argument("--only", default="", help="comma-separated variant names")
  parser.add_argument("--launch", action="store_true", help="full scale: run, not just print")
  parser.add_argument(
    "--images_per_sec",
    type=float,
    default=None,
    help="measured training throughput per device (full-scale estimate)",
  )
  parser.add_argument("--list", action="store_true", help="list the variants and exit")
  parser.add_argument(
    "--tables",
    action="store_true",
    help="only rewrite the tables from the results present; train nothing",
  )
  parser.add_argument("-v", "--verbose", action="store_true", help="the trainer's INFO logs")
  args = parser.parse_args(argv)
  sweep = make_sweep(args.scale)
  workdir = args.workdir or str(REPO_ROOT / "workdirs" / f"{sweep.name}_{args.scale}")
  if args.list:
    text = "\n".join(f"{a.name}: " + ", ".join(v.name for v in a.variants) for a in sweep.ablations)
    print(text)
    return text
  if args.scale == "full" and not args.launch:
    text = full_scale_plan(sweep, workdir, args.images_per_sec)
    print(text)
    return text
  logging.basicConfig(
    level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(message)s"
  )
  if args.tables:
    rows = collect(sweep, workdir)
    write_tables(sweep, rows, workdir)
    text = format_markdown(sweep, rows)
    print(text)
    return rows
  only = [n for n in args.only.split(",") if n]
  rows = run_sweep(
    sweep, workdir, only=only, log=lambda m: print(time.strftime("%H:%M:%S"), m, flush=True)
  )
  print(format_markdown(sweep, rows))
  return rows
