"""Runs a sweep: trains every run that has no record yet (an interrupted sweep continues where it
stopped; a run interrupted mid-training resumes from its own checkpoints), evaluates the
evaluation-only rows (multi-crop, ensembles), and writes

  RESULTS/runs/<variant>/seed<k>.json   the record of a finished run (records.py)
  RESULTS/runs/<variant>/eval.json      the record of an evaluation-only row, with its paired test
  RESULTS/results.csv, results.md, curves.csv   the tables (report.py), from the records alone

and, in the scratch WORKDIR (RESULTS by default):

  WORKDIR/<variant>/seed<k>/          the trainer's workdir (metrics.jsonl, checkpoints)
  WORKDIR/<variant>/seed<k>/result.json   the final evaluation, written once training finished
  WORKDIR/<variant>/seed<k>/predictions_c<crops>.npz   per-example softmax and labels of the test
                                      split with 1 crop (every trained run), 10 or 144 crops

Ensembles average the members' saved predictions: no image goes through a network twice. The
paired test of an evaluation-only row (stats.py) is computed from the per-example predictions when
the row is evaluated, and recorded.

`Trainer` is the real back-end (training.loop.train_and_evaluate, evaluate.Evaluator); tests
pass a double (tests/helpers/sweeps.py) with the same three methods.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from inception_jax import data
from inception_jax.errors import ConfigError, SweepInterrupted
from inception_jax.evaluation import evaluate
from inception_jax.sweeps import datasets, records, report, stats
from inception_jax.sweeps.metrics import final_eval, predictions_path, read_metrics
from inception_jax.sweeps.spec import Sweep, Variant
from inception_jax.training import loop, parallel, recipe


# ------------------------------------------------------------------------------------------------
# Training and evaluation backends (the real ones; tests may pass their own).
# ------------------------------------------------------------------------------------------------
class Trainer:
  """Trains with `training.loop.train_and_evaluate`; evaluates with `evaluation.evaluate`."""

  def train(self, config: ml_collections.ConfigDict, workdir: str) -> None:
    _enable_compilation_cache(config)
    loop.train_and_evaluate(config, workdir)

  def num_steps(self, config: ml_collections.ConfigDict) -> int:
    if config.num_train_steps > 0:  # what recipe.train_length returns, without listing the data
      return int(config.num_train_steps)
    info = data.get_info(config.dataset, config.data_dir)
    return recipe.train_length(config, info.splits[config.train_split])[1]

  def predict(
    self, config: ml_collections.ConfigDict, workdir: str, crops: int, num_examples: int
  ) -> tuple[np.ndarray, np.ndarray]:
    """(softmax averaged over `crops` crops [N, K], labels [N]) of the first `num_examples` eval
    examples (-1: all), with the averaged parameters of `workdir`'s last checkpoint."""
    _enable_compilation_cache(config)
    mesh = parallel.make_mesh()
    model, variables = evaluate.load_workdirs(config, [workdir], mesh)
    # A batch holds every crop of its images (144 x 96 x 96 x 3 floats is 16 MB an image), so
    # multi-crop batches are smaller.
    batch_size = config.eval_batch_size if crops == 1 else min(config.eval_batch_size, 100)
    devices = jax.device_count()
    batch_size = max(devices, batch_size // devices * devices)  # whole batches per device
    if num_examples > 0:
      batch_size = min(batch_size, num_examples)
    num_steps = -1 if num_examples <= 0 else math.ceil(num_examples / batch_size)
    batches = evaluate.eval_batches(config, batch_size, crops)
    r = evaluate.Evaluator(model, mesh).evaluate(
      {"m": variables}, batches, num_steps, keep_probabilities=True
    )["m"]
    keep = num_examples if num_examples > 0 else len(r["labels"])
    return r["probabilities"][:keep], r["labels"][:keep]


def _enable_compilation_cache(config: ml_collections.ConfigDict) -> None:
  parallel.enable_compilation_cache(config.get("compilation_cache_dir") or "none")


# ------------------------------------------------------------------------------------------------
# The runner.
# ------------------------------------------------------------------------------------------------
def run_sweep(
  sweep: Sweep,
  workdir: str | os.PathLike,
  only: Sequence[str] = (),
  trainer: Any = None,
  log: Callable[[str], None] = print,
  results: str | os.PathLike | None = None,
) -> list[dict[str, Any]]:
  """Trains what has no record, evaluates evaluation-only rows, writes the records and the tables
  (results.csv, results.md, curves.csv) in `results` (default: `workdir`).

  `only`: variant names to run (evaluation-only rows pull in the variants they evaluate); the
  tables always cover every row, with blanks where results are missing.
  """
  variants = sweep.variants()
  unknown = sorted(set(only) - set(variants))
  if unknown:  # before anything is written or the data prepared (minutes for a tarball)
    raise ConfigError(f"unknown variant(s) {unknown} in --only; known: {', '.join(variants)}")
  trainer = trainer or Trainer()
  workdir = Path(workdir)
  results = Path(results) if results is not None else workdir
  workdir.mkdir(parents=True, exist_ok=True)
  results.mkdir(parents=True, exist_ok=True)
  if sweep.dataset:
    log(f"[{sweep.name}] data: {datasets.prepare(sweep.dataset)}")
  selected = [variants[n] for n in (only or variants)]
  to_train: list[str] = []
  for v in selected:
    for name in [v.name] if v.trained else ([v.evaluates] if v.evaluates else list(v.ensemble)):
      if name not in to_train:
        to_train.append(name)

  for name in to_train:
    for seed in sweep.seeds_of(name):
      _train_one(sweep, name, seed, workdir, results, trainer, log)
  for v in selected:
    if not v.trained:
      _evaluate_one(sweep, v, workdir, results, trainer, log)
  rows = report.collect(sweep, results, workdir)
  report.write_tables(sweep, rows, results)
  log(f"wrote {results / 'results.csv'} and {results / 'results.md'}")
  return rows


def check_run_config(run_dir: Path, config: ml_collections.ConfigDict) -> None:
  """A run directory started with another config (the recipe or the data changed since) is
  refused, not silently reused or resumed: its results would sit in the table under this one."""
  record = run_dir / "config.0.json"
  if not record.exists():
    return
  started, now = json.loads(record.read_text()), json.loads(config.to_json_best_effort())
  differing = sorted(records.differences(started, now))
  if differing:
    raise ValueError(
      f"{run_dir} was started with another config ({', '.join(differing[:5])} differ); move it "
      "away to train this row again, or pass another --workdir"
    )


def _train_one(
  sweep: Sweep, name: str, seed: int, workdir: Path, results: Path, trainer, log
) -> None:
  config = sweep.config(name, seed)
  if records.read_run(results, name, seed, config) is not None:
    log(f"[{sweep.name}] {name} seed {seed}: recorded, skipped")
    return
  run_dir = workdir / name / f"seed{seed}"
  result_path = run_dir / "result.json"
  check_run_config(run_dir, config)
  if result_path.exists():  # finished here but not recorded yet (stopped in between)
    result = json.loads(result_path.read_text())
    if "diverged" not in result:
      _, labels = predictions(sweep, name, seed, 1, workdir, trainer)
      result.setdefault("test_examples", len(labels))
    records.write_run(results, config, result, read_metrics(run_dir))
    log(f"[{sweep.name}] {name} seed {seed}: done, recorded")
    return
  num_steps = trainer.num_steps(config)
  log(f"[{sweep.name}] {name} seed {seed}: training {num_steps} steps in {run_dir}")
  wall_path = run_dir / "wall.json"  # wall time summed over interrupted and resumed attempts
  previous = json.loads(wall_path.read_text())["wall_s"] if wall_path.exists() else 0.0
  start = time.time()
  try:
    trainer.train(config, str(run_dir))
  except FloatingPointError as e:  # the trainer's NonFiniteLossError: a result, not a crash
    log(f"[{sweep.name}] {name} seed {seed}: diverged ({e})")
    result = {
      "variant": name,
      "seed": seed,
      "steps": num_steps,
      "diverged": str(e),
      "wall_s": previous + time.time() - start,
    }
    _finish(run_dir, results, config, result)
    return
  finally:
    wall = previous + time.time() - start
    records.write(wall_path, {"wall_s": wall})
  final = final_eval(read_metrics(run_dir), num_steps)
  if final is None:
    raise SweepInterrupted(f"{name} seed {seed} stopped before step {num_steps}; rerun to resume")
  start = time.time()
  _, labels = predictions(sweep, name, seed, 1, workdir, trainer)
  wall += time.time() - start  # the saved 1-crop predictions belong to the run's cost
  result = {
    "variant": name,
    "seed": seed,
    "steps": num_steps,
    "wall_s": wall,
    "test_examples": len(labels),
    **final,
  }
  _finish(run_dir, results, config, result)
  log(f"[{sweep.name}] {name} seed {seed}: top-1 {report.result_top1(result):.4f} in {wall:.0f}s")


def _finish(
  run_dir: Path, results: Path, config: ml_collections.ConfigDict, result: dict[str, Any]
) -> None:
  """A run's end: result.json in its workdir (what a rerun records if it stops in between), then
  its record."""
  records.write(run_dir / "result.json", result)
  records.write_run(results, config, result, read_metrics(run_dir))


def predictions(
  sweep: Sweep, name: str, seed: int, crops: int, workdir: Path, trainer
) -> tuple[np.ndarray, np.ndarray]:
  """The per-example predictions of one trained run with `crops` crops: computed once, saved."""
  path = predictions_path(workdir, name, seed, crops)
  config = sweep.config(name, seed)
  fingerprint = prediction_fingerprint(config, crops, sweep.eval_examples)
  if path.exists():
    with np.load(path) as f:
      # Files without a fingerprint predate it (2026-12-01's first chunk); the run's config.0.json
      # is checked against the config before any of its files is used (check_run_config).
      if "fingerprint" not in f or str(f["fingerprint"]) == fingerprint:
        return f["probabilities"], f["labels"]
  run_dir = workdir / name / f"seed{seed}"
  if not run_dir.is_dir():
    raise FileNotFoundError(
      f"{name} seed {seed} has a record but no run directory in {workdir} (its checkpoints are "
      f"gone), and its {crops}-crop predictions were never saved. Evaluate rows in the same "
      f"--workdir as the runs they evaluate, or delete "
      f"{records.RUNS}/{name}/seed{seed}.json in the results directory to train it again."
    )
  probs, labels = trainer.predict(config, str(run_dir), crops, sweep.eval_examples)
  probs, labels = np.asarray(probs, np.float32), np.asarray(labels, np.int32)
  tmp = path.with_suffix(".tmp")
  with open(tmp, "wb") as f:
    np.savez(f, probabilities=probs, labels=labels, fingerprint=np.array(fingerprint))
  tmp.replace(path)  # atomic: complete or absent
  return probs, labels


def prediction_fingerprint(config: ml_collections.ConfigDict, crops: int, examples: int) -> str:
  """What a predictions file was computed from: the run's config, the crops, the examples."""
  text = f"{config.to_json_best_effort(sort_keys=True)}|crops={crops}|examples={examples}"
  return hashlib.sha256(text.encode()).hexdigest()


def _evaluate_one(sweep: Sweep, v: Variant, workdir: Path, results: Path, trainer, log) -> None:
  # The trained runs this row evaluates that finished without diverging (lists, as in JSON).
  members = [[n, s] for n, s in records.finished_members(sweep, results, sweep.members(v))]
  recorded = records.read_eval(results, v.name)
  if recorded is not None and recorded.get("members") == members:
    log(f"[{sweep.name}] {v.name}: recorded, skipped")
    return
  start = time.time()
  outputs = [predictions(sweep, n, s, v.crops, workdir, trainer) for n, s in members]
  if v.evaluates:
    runs = [stats.scores(*o) | {"seed": s} for o, (_, s) in zip(outputs, members, strict=True)]
  else:
    runs = [stats.scores(*stats.ensemble(outputs)) | {"models": len(outputs)}]
  difference = None
  if members and (v.ensemble or v.crops > 1):  # paired by test example against 1 crop
    single = [predictions(sweep, n, s, 1, workdir, trainer) for n, s in members]
    difference = _paired_against_one_crop(v, outputs, single)
  result = {
    "variant": v.name,
    "crops": v.crops,
    "members": members,
    "runs": runs,
    "difference": dataclasses.asdict(difference) if difference else None,
    "wall_s": time.time() - start,
  }
  records.write(records.eval_path(results, v.name), result)
  log(
    f"[{sweep.name}] {v.name}: top-1 {statistics.mean(r['top1'] for r in runs):.4f} "
    f"({v.crops} crops) in {result['wall_s']:.0f}s"
  )


def _paired_against_one_crop(
  v: Variant,
  outputs: Sequence[tuple[np.ndarray, np.ndarray]],
  single: Sequence[tuple[np.ndarray, np.ndarray]],
) -> stats.Difference:
  """Row `v`'s per-example top-1 correctness (its ensemble's, or its models' mean) against the
  same models' mean with 1 crop."""
  probs, labels = stats.ensemble(outputs)  # checks that the members' labels agree
  _, reference_labels = stats.ensemble(single)
  if not np.array_equal(labels, reference_labels):
    raise ValueError(
      f"{v.name}: its predictions and the 1-crop ones are not of the same test examples in "
      "the same order; delete the predictions_c*.npz files of its runs and rerun"
    )
  if v.ensemble:
    ours = stats.correct(probs, labels)
  else:
    ours = np.mean([stats.correct(p, labels) for p, _ in outputs], axis=0)
  reference = np.mean([stats.correct(p, labels) for p, _ in single], axis=0)
  return stats.example_paired(ours, reference)
