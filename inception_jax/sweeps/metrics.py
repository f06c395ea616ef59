"""What a run leaves in its scratch workdir: the lines of metrics.jsonl, its final evaluation, and
its saved per-example predictions (records.py keeps what outlives the workdir)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


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


def predictions_path(workdir: str | os.PathLike, name: str, seed: int, crops: int) -> Path:
  """Where the sweep runner keeps one run's per-example predictions with `crops` crops."""
  return Path(workdir) / name / f"seed{seed}" / f"predictions_c{crops}.npz"


def load_predictions(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """(probabilities [N, K], labels [N]) saved by the runner."""
  with np.load(path) as f:
    return f["probabilities"], f["labels"]
