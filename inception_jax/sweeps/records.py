"""The durable record of every finished run and evaluation, kept beside the tables in the results
directory (committed: `results/<sweep>_<scale>/runs/`):

  RESULTS/runs/<variant>/seed<k>.json   a trained run: its final evaluation (or its divergence),
                                        steps, wall time, test examples, the recipe it ran with
                                        and its metrics.jsonl lines (the learning curve)
  RESULTS/runs/<variant>/eval.json      an evaluation-only row (crops, ensemble): its scores, the
                                        runs it evaluated and its paired test against 1 crop

The tables (report.py) are written from these records alone, and the runner never trains a run
or evaluates a row that has one. Checkpoints and per-example predictions stay in the scratch
workdir: a clone or a machine without it keeps every finished row, and only an evaluation-only
row not recorded yet needs its runs' checkpoints.

A record made with another recipe (the experiment file or the data changed since) is refused,
naming the fields that differ, rather than put in the table under this one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections

from inception_jax.sweeps import datasets

RUNS = "runs"
# Config fields that do not change what a run computes.
_NOT_RECIPE = ("compilation_cache_dir",)


def recipe(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config as a record keeps it: data paths relative to the repository, without the fields
  that do not change results (so a record is valid in any clone)."""
  out = json.loads(config.to_json_best_effort(sort_keys=True))
  for key in _NOT_RECIPE:
    out.pop(key, None)
  out["dataset"] = datasets.display(config.dataset)
  return out


def differences(a: Any, b: Any, prefix: str = "") -> set[str]:
  """The dotted fields in which two JSON values differ."""
  if isinstance(a, dict) and isinstance(b, dict):
    out: set[str] = set()
    for k in a.keys() | b.keys():
      out |= differences(a.get(k), b.get(k), f"{prefix}{k}.")
    return out
  return set() if a == b else {prefix.rstrip(".")}


def run_path(results: str | os.PathLike, name: str, seed: int) -> Path:
  return Path(results) / RUNS / name / f"seed{seed}.json"


def eval_path(results: str | os.PathLike, name: str) -> Path:
  return Path(results) / RUNS / name / "eval.json"


def write(path: Path, value: Mapping[str, Any]) -> None:
  """Writes a JSON file atomically: complete or absent."""
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(".tmp")
  tmp.write_text(json.dumps(value, indent=1))
  tmp.replace(path)


def write_run(
  results: str | os.PathLike,
  config: ml_collections.ConfigDict,
  result: Mapping[str, Any],
  metrics: Sequence[Mapping[str, float]],
) -> Path:
  """Records one finished (or diverged) trained run; `result` has `variant` and `seed`."""
  path = run_path(results, result["variant"], result["seed"])
  write(path, {**result, "recipe": recipe(config), "metrics": list(metrics)})
  return path


def read_run(
  results: str | os.PathLike, name: str, seed: int, config: ml_collections.ConfigDict
) -> dict[str, Any] | None:
  """The record of run (`name`, `seed`), None when there is none; a ValueError when it was made
  with a recipe other than `config`."""
  path = run_path(results, name, seed)
  if not path.exists():
    return None
  record = json.loads(path.read_text())
  recorded, now = record.get("recipe") or {}, recipe(config)
  differing = sorted(differences(recorded, now))
  if differing:
    values = "; ".join(
      f"{k}: recorded {_field(recorded, k)!r}, now {_field(now, k)!r}" for k in differing[:3]
    )
    raise ValueError(
      f"{path} was recorded with another recipe ({', '.join(differing[:5])} differ). {values}. "
      "Pass the --dataset it ran on, or delete the file to train this run again."
    )
  return record


def _field(value: Any, dotted: str) -> Any:
  for key in dotted.split("."):
    value = value.get(key) if isinstance(value, dict) else None
  return value


def is_finished(record: Mapping[str, Any] | None) -> bool:
  """Trained to the end without diverging."""
  return record is not None and "diverged" not in record


def finished_members(
  sweep: Any, results: str | os.PathLike, members: Sequence[tuple[str, int]]
) -> list[tuple[str, int]]:
  """The (variant, seed) runs of `members` recorded as trained to the end without diverging."""
  return [(n, s) for n, s in members if is_finished(read_run(results, n, s, sweep.config(n, s)))]


def read_eval(results: str | os.PathLike, name: str) -> dict[str, Any] | None:
  path = eval_path(results, name)
  return json.loads(path.read_text()) if path.exists() else None
