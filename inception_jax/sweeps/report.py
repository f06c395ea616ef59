"""The result tables of a sweep, written from its records (records.py) alone: one row per
(ablation, variant) beside the paper's figure, as RESULTS/results.csv and results.md, and every
run's learning curve as RESULTS/curves.csv.

Like with like: the papers report ImageNet error rates. At `small` and `tiny` scale our figure is
the same metric on CIFAR-10 / digits, so the difference column is not a like-for-like comparison
(the `comparable` column says so); cost rows (multiply-adds, parameters) are computed for the
full-size network and are comparable at every scale. Paths in the tables are relative to the
repository where they lie inside it.
"""

from __future__ import annotations

import csv
import io
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections

from inception_jax import accounting, data, models
from inception_jax.sweeps import datasets, records, stats
from inception_jax.sweeps.spec import COST_METRICS, ERROR_METRICS, Ablation, Sweep, Variant

CSV_COLUMNS = (
  "ablation",
  "variant",
  "paper",
  "paper_metric",
  "paper_value",
  "ours",
  "ours_std",
  "seeds",
  "test_examples",
  "base",
  "diff",
  "diff_low",
  "diff_high",
  "paired_over",
  "p_value",
  "reading",
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


def result_top1(result: Mapping[str, float]) -> float:
  """The paper's protocol: averaged parameters when kept, else the raw ones."""
  return result.get("eval_ema/top1", result.get("eval/top1", result.get("top1")))


def result_top5(result: Mapping[str, float]) -> float:
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


def num_classes(config: ml_collections.ConfigDict) -> int:
  if config.dataset in ("imagenet2012", "imagenet2012_subset"):
    return 1000
  if config.dataset in ("cifar10", "digits") or config.dataset.startswith("folder:"):
    if (
      config.dataset.startswith("folder:") and Path(config.dataset[7:], config.train_split).is_dir()
    ):
      return len([p for p in Path(config.dataset[7:], config.train_split).iterdir() if p.is_dir()])
    return 10
  return data.get_info(config.dataset, config.data_dir).num_classes


def command(sweep: Sweep, v: Variant, workdir: Path) -> str:
  """The commands that reproduce a row, with paths relative to the repository where they lie
  inside it."""

  def run_dir(name: str, seed: int) -> str:
    return datasets.relative(workdir / name / f"seed{seed}")

  if v.trained:
    seeds = sweep.seeds_of(v.name)
    return "; ".join(
      f"python -m experiments.run --config={sweep.config_arg(v.name, s)} "
      f"--workdir={run_dir(v.name, s)}"
      for s in seeds
    )
  members = sweep.members(v)
  if v.evaluates:  # each model with the recipe (and seed) it was trained with
    return "; ".join(
      f"python -m experiments.evaluate --config={sweep.config_arg(n, s)} "
      f"--workdir={run_dir(n, s)} --crops={v.crops}"
      for n, s in members
    )
  dirs = " ".join(f"--workdir={run_dir(n, s)}" for n, s in members)
  config_arg = sweep.config_arg(members[0][0], members[0][1])
  return f"python -m experiments.evaluate --config={config_arg} {dirs} --crops={v.crops}"


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
  values = [x for x in values if x is not None]
  if not values:
    return None, None
  return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


def collect(
  sweep: Sweep, results: str | os.PathLike, workdir: str | os.PathLike | None = None
) -> list[dict[str, Any]]:
  """One row per (ablation, variant) from the records in `results` (records.py); blanks where
  results are missing. `workdir` (default `results`): where the commands put the run directories."""
  results = Path(results)
  workdir = Path(workdir) if workdir is not None else results
  rows = []
  for ablation in sweep.ablations:
    for v in ablation.variants:
      trained_name = v.name if v.trained else (v.evaluates or v.ensemble[0])
      config = sweep.config(trained_name)
      classes = num_classes(config)
      macs, params = model_cost(config, classes)
      full_macs, full_params = model_cost(config, classes, full_size=True)
      note = v.note
      models_per_prediction = 1
      if v.ensemble:
        models_per_prediction = len(sweep.members(v))
      if v.trained:
        runs = [
          records.read_run(results, v.name, s, sweep.config(v.name, s))
          for s in sweep.seeds_of(v.name)
        ]
        runs = [r for r in runs if r is not None]
        seeds = [r["seed"] for r in runs]
        top1 = [result_top1(r) for r in runs if "diverged" not in r]
        top5 = [result_top5(r) for r in runs if "diverged" not in r]
        if any("diverged" in r for r in runs):
          note = "; ".join(
            filter(
              None,
              [
                note,
                "diverged: seed(s) " + " ".join(str(r["seed"]) for r in runs if "diverged" in r),
              ],
            )
          )
        raw1 = [r.get("eval/top1") for r in runs]
        steps = runs[0]["steps"] if runs else None
        wall = sum(r["wall_s"] for r in runs) if runs else None
        seed_top1 = {r["seed"]: result_top1(r) for r in runs if "diverged" not in r}
        diverged_seeds = [r["seed"] for r in runs if "diverged" in r]
        examples = {r["test_examples"] for r in runs if r["seed"] in seed_top1}
      else:
        evaluation = records.read_eval(results, v.name) or {}
        runs = evaluation.get("runs", [])
        seeds = [r.get("seed", "ens") for r in runs]
        if v.ensemble and runs:
          seeds = sorted({s for _, s in sweep.members(v)})
        top1 = [r["top1"] for r in runs]
        top5 = [r["top5"] for r in runs]
        raw1 = [None]
        steps = None
        wall = evaluation.get("wall_s")
        seed_top1, diverged_seeds = {}, []
        examples = {r["count"] for r in runs if "count" in r}
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
        "test_examples": " ".join(str(n) for n in sorted(examples)) or None,
        "base": None,
        "diff": None,
        "diff_low": None,
        "diff_high": None,
        "paired_over": "",
        "p_value": None,
        "reading": "",
        "_seed_top1": seed_top1,
        "_diverged": diverged_seeds,
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
        "dataset": datasets.display(config.dataset),
        "command": command(sweep, v, workdir),
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
    _add_differences(sweep, ablation, rows, results)
  return rows


def _expected(v: Variant, base: Variant | None) -> str | None:
  if v.expect or not v.trained:
    return v.expect or ("lower" if (v.crops > 1 or v.ensemble) else None)
  if v.paper and base and base.paper and v.paper.metric == base.paper.metric:
    if v.paper.value != base.paper.value:
      return "lower" if v.paper.value < base.paper.value else "higher"
  return None


def _add_differences(
  sweep: Sweep, ablation: Ablation, rows: list[dict[str, Any]], results: Path
) -> None:
  """Each row of `ablation` against its base (stats.py): trained rows paired by seed,
  evaluation-only rows by test example against 1 crop of the same models (recorded when the row
  was evaluated)."""
  by_name = {r["variant"]: r for r in rows if r["ablation"] == ablation.name}
  variants = {v.name: v for v in ablation.variants}
  for v in ablation.variants:
    row = by_name[v.name]
    difference, diverged = None, ""
    if v.trained:
      base_name = ablation.base_of(v.name)
      if base_name is None:
        continue
      row["base"] = base_name
      difference = stats.seed_paired(row["_seed_top1"], by_name[base_name]["_seed_top1"])
      base = variants[base_name]
      lost = sorted(set(row["_diverged"]) | set(by_name[base_name]["_diverged"]))
      if lost:  # a diverged run is a result too: the pairs left say nothing about it
        diverged = f"; seed(s) {' '.join(map(str, lost))} diverged, left out"
    else:
      names = [v.evaluates] if v.evaluates else list(v.ensemble)
      if v.evaluates and v.crops == 1:
        continue
      row["base"] = f"{'+'.join(names)}, 1 crop, single models"
      recorded = (records.read_eval(results, v.name) or {}).get("difference")
      difference = stats.Difference(**recorded) if recorded else None
      base = None
    if difference is not None:
      over = difference.over[:-1] if difference.n == 1 else difference.over  # "1 seed"
      row.update(
        diff=difference.mean,
        diff_low=difference.low,
        diff_high=difference.high,
        paired_over=f"{difference.n} {over}{diverged}",
        p_value=difference.p_value,
        reading="" if diverged else stats.reading(difference, _expected(v, base)),
      )


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


def format_difference(r: Mapping[str, Any]) -> str:
  """'−1.23 [−2.01, −0.45] vs base (3 seeds)' for a row with a paired difference, else ''."""
  if r.get("diff") is None:
    return ""
  text = f"{r['diff']:+.2f}"
  if r.get("diff_low") is not None:
    text += f" [{r['diff_low']:+.2f}, {r['diff_high']:+.2f}]"
  text += f" vs {r['base']} ({r['paired_over']}"
  if r.get("p_value") is not None:
    text += f", p={r['p_value']:.2g}"
  return text + ")"


def format_markdown(sweep: Sweep, rows: Sequence[Mapping[str, Any]]) -> str:
  """One markdown table per ablation: paper figure, ours (mean ± spread over seeds), difference,
  cost, seeds, wall time and the command."""
  out = [f"# {sweep.name} at scale `{sweep.scale}`", ""]
  if sweep.scale != "full":
    out += [
      "Our figures are on `%s`, not ImageNet: the difference to the paper is **not "
      "like-for-like** for error rates (column `comparable`). Cost rows (`G multiply-adds`, "
      "`M params`) are computed for the full-size network and are comparable."
      % (rows[0]["dataset"] if rows else "?"),
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
      "| row | paper | ours | ours − paper | comparable | top-1 err | vs base: Δ top-1 err "
      "[95% interval] | reading | top-5 err | MACs/image | params | seeds | test_examples | "
      "steps | wall | command |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
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
      wall = _fmt(r["wall_s"], 0) + "s" if r["wall_s"] else ""
      out.append(
        f"| {r['variant']} | {paper} | {ours} | {diff} | {r['comparable']} | "
        f"{_fmt(r['top1_err'])} | {format_difference(r)} | {r['reading']} | "
        f"{_fmt(r['top5_err'])} | {_si(r['macs'])} | {_si(r['params'])} | {r['seeds']} | "
        f"{r['test_examples'] or ''} | {_fmt(r['steps'])} | {wall} | `{r['command']}` |"
      )
    notes = [
      f"- {r['variant']}: {r['note']}"
      for r in rows
      if r["ablation"] == ablation.name and r.get("note")
    ]
    out += [""] + notes + ([""] if notes else [])
  return "\n".join(out)


def write_tables(
  sweep: Sweep, rows: Sequence[Mapping[str, Any]], results: str | os.PathLike
) -> None:
  """RESULTS/results.csv, results.md and curves.csv."""
  results = Path(results)
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
  writer.writeheader()
  for r in rows:
    writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_COLUMNS})
  (results / "results.csv").write_text(buf.getvalue())
  (results / "results.md").write_text(format_markdown(sweep, rows) + "\n")
  write_curves(sweep, results)


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


def write_curves(sweep: Sweep, results: str | os.PathLike) -> None:
  """RESULTS/curves.csv: every recorded run's metrics.jsonl lines in one long table (for the
  notebooks, and small enough to commit beside results.csv)."""
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=CURVE_COLUMNS, extrasaction="ignore")
  writer.writeheader()
  for variant, v in sweep.variants().items():
    if not v.trained:
      continue
    for seed in sweep.seeds_of(variant):
      record = records.read_run(results, variant, seed, sweep.config(variant, seed))
      for m in record["metrics"] if record else []:
        writer.writerow({"variant": variant, "seed": seed, **m})
  (Path(results) / "curves.csv").write_text(buf.getvalue())
