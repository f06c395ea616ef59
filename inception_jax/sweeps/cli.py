"""The command line of the experiment files (experiments/v1_ablations.py, v3_ablations.py):

  python -m experiments.v1_ablations --scale=full|small|tiny [--workdir=W] [--results=R]
      [--only=a,b] [--dataset=cifar10|folder:PATH|TARBALL] [--launch] [--images_per_sec=N]
      [--list] [--tables]

`full` prints the commands and device-hours of every row (`--launch` runs them here instead);
`small` and `tiny` run the sweep (what has no record in R) and write the records and R/results.csv,
R/results.md, R/curves.csv. W holds the scratch run directories (checkpoints, predictions).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from absl import flags

from inception_jax import cli
from inception_jax.sweeps import datasets, plan, report, runner
from inception_jax.sweeps.spec import SCALES, Sweep


def define_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_enum("scale", "tiny", SCALES, "The scale to run (or plan: full).", flag_values=fv)
  flags.DEFINE_string(
    "workdir", None, "Scratch run directories. Default: workdirs/<sweep>_<scale>.", flag_values=fv
  )
  flags.DEFINE_string(
    "results",
    None,
    "Records of finished runs and the tables. Default: results/<sweep>_<scale> (committed) at "
    "small and full scale, the workdir at tiny scale.",
    flag_values=fv,
  )
  flags.DEFINE_list("only", [], "Variant names to run (default: all).", flag_values=fv)
  flags.DEFINE_string(
    "dataset",
    "",
    "small scale: TFDS name (default cifar10), folder:PATH (train/ and test/ class folders) or "
    "a tarball of such folders or CIFAR-10's python tarball (inception_jax/sweeps/datasets.py).",
    flag_values=fv,
  )
  flags.DEFINE_bool("launch", False, "full scale: run, not just print.", flag_values=fv)
  flags.DEFINE_float(
    "images_per_sec",
    None,
    "Measured training throughput per device (full-scale estimate).",
    flag_values=fv,
  )
  flags.DEFINE_bool("list", False, "List the variants and exit.", flag_values=fv)
  flags.DEFINE_bool(
    "tables", False, "Only rewrite the tables from the results present.", flag_values=fv
  )
  flags.DEFINE_bool("verbose", False, "The trainer's INFO logs.", flag_values=fv)


def main(make_sweep: Callable[[str], Sweep], argv: Sequence[str]) -> list | str:
  """argv: [program, --flag=value, ...]. Returns the rows run, or the text printed."""
  f, rest = cli.parse(define_flags, argv, __doc__)
  if rest:
    raise SystemExit(f"error: unexpected arguments {rest}; every input is a --flag")
  sweep = make_sweep(f.scale)
  if f.dataset:
    if f.scale != "small":
      raise SystemExit(f"error: --dataset is for --scale=small, not {f.scale}")
    sweep = dataclasses.replace(sweep, dataset=f.dataset)
  workdir = f.workdir or str(datasets.REPO_ROOT / "workdirs" / f"{sweep.name}_{f.scale}")
  results = f.results or (
    workdir
    if f.scale == "tiny"
    else str(datasets.REPO_ROOT / "results" / f"{sweep.name}_{f.scale}")
  )
  if f.list:
    text = "\n".join(f"{a.name}: " + ", ".join(v.name for v in a.variants) for a in sweep.ablations)
    print(text)
    return text
  if f.scale == "full" and not f.launch:
    text = plan.full_scale_plan(sweep, workdir, f.images_per_sec)
    print(text)
    return text
  logging.basicConfig(
    level=logging.INFO if f.verbose else logging.WARNING, format="%(asctime)s %(message)s"
  )
  if f.tables:
    Path(results).mkdir(parents=True, exist_ok=True)
    rows = report.collect(sweep, results, workdir)
    report.write_tables(sweep, rows, results)
    print(report.format_markdown(sweep, rows))
    return rows
  with cli.user_errors():  # a misspelt --only row: one line, nothing written
    rows = runner.run_sweep(
      sweep,
      workdir,
      only=f.only,
      log=lambda m: print(time.strftime("%H:%M:%S"), m, flush=True),
      results=results,
    )
  print(report.format_markdown(sweep, rows))
  return rows


def run(make_sweep: Callable[[str], Sweep]) -> None:
  """An experiment file's `__main__`: `main` under absl's app.run."""

  def app_main(argv: Sequence[str]) -> int:
    main(make_sweep, argv)
    return 0

  cli.run(app_main)
