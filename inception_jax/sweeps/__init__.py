"""Ablation sweeps: named config variants at a scale, trained in turn, tabled beside the papers.

spec      what an experiment file declares (Paper, Variant, Ablation, Sweep) and the reduced
          scales' run length
datasets  the data of the small scale, a config field (TFDS cifar10, folder:PATH or a tarball)
runner    trains what has no record and evaluates the evaluation-only rows (Trainer, run_sweep)
records   the committed record of each finished run and evaluation (RESULTS/runs/)
report    results.csv, results.md and curves.csv, from the records
stats     scores of saved predictions; paired differences (by seed, by test example)
publish   the README's effects table and the executed notebooks, after a chunk
plan      full scale: commands and device-hours
cli       the command line of experiments/v1_ablations.py and v3_ablations.py
"""

from inception_jax.sweeps import records
from inception_jax.sweeps.cli import main, run
from inception_jax.sweeps.metrics import final_eval, load_predictions, read_metrics
from inception_jax.sweeps.runner import SweepInterrupted, Trainer, run_sweep
from inception_jax.sweeps.spec import (
  COST_METRICS,
  ERROR_METRICS,
  SCALES,
  Ablation,
  Paper,
  Sweep,
  Variant,
  apply_overrides,
  config_from_arg,
  parse_config_arg,
  scale_run_length,
)

__all__ = [
  "COST_METRICS",
  "ERROR_METRICS",
  "SCALES",
  "Ablation",
  "Paper",
  "Sweep",
  "SweepInterrupted",
  "Trainer",
  "Variant",
  "apply_overrides",
  "config_from_arg",
  "final_eval",
  "load_predictions",
  "main",
  "parse_config_arg",
  "read_metrics",
  "records",
  "run",
  "run_sweep",
  "scale_run_length",
]
