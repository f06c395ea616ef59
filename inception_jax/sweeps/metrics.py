"""What a run left in its workdir: the lines of metrics.jsonl, and its final evaluation."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path


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
