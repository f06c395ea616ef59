"""The figures of a sweep's results (matplotlib; the notebooks and `experiments.figures` draw them).

Each function takes the rows of results.csv (`read_csv`; strings, as csv writes them) or the lines
of curves.csv and returns a matplotlib Figure:
  effects             each row's paired difference to its base with its 95% interval
                      (the README's figure)
  beside_paper        per-row error with the seeds' interval beside the paper's figure
                      (a cost row, as the module ablation's base, with its error)
  cost_vs_accuracy    test-time multiply-adds per image against top-1 error
  learning_curves     training top-1 error per variant (mean over seeds), each seed's final error
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from scipy import stats as scipy_stats

Row = Mapping[str, str]
COLOURS = {"appears": "#2a7", "within the noise": "#888", "goes the other way": "#c33", "": "#36c"}


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def number(value: Any) -> float | None:
  """A csv cell as a float; None for blanks."""
  if value in (None, ""):
    return None
  x = float(value)
  return None if math.isnan(x) else x


def effects(sweeps: Mapping[str, Sequence[Row]], title: str = "") -> Figure:
  """{sweep name: rows} -> one line per row with a paired difference: the mean difference of top-1
  error to its base (points; left of 0 = fewer errors) and its 95% interval, coloured by the
  reading (appears / within the noise / goes the other way / no paper direction)."""
  lines = [
    (name, r) for name, rows in sweeps.items() for r in rows if number(r.get("diff")) is not None
  ]
  fig, ax = plt.subplots(figsize=(8, 0.32 * max(len(lines), 1) + 1.4))
  for i, (_, r) in enumerate(reversed(lines)):
    mean, low, high = number(r["diff"]), number(r["diff_low"]), number(r["diff_high"])
    colour = COLOURS.get(r.get("reading", ""), COLOURS[""])
    if low is not None:
      ax.plot([low, high], [i, i], color=colour, lw=2)
    ax.plot([mean], [i], "o", color=colour, ms=5)
  labels = [f"{name.split('_')[0]} {r['ablation']}: {r['variant']}" for name, r in reversed(lines)]
  ax.set_yticks(range(len(lines)), labels, fontsize=7)
  ax.axvline(0, color="k", lw=0.8)
  ax.set_xlabel("Δ top-1 error vs the row's base (points), 95% interval")
  handles = [
    plt.Line2D([], [], color=c, marker="o", lw=2, label=k or "no paper direction")
    for k, c in COLOURS.items()
  ]
  ax.legend(handles=handles, fontsize=7, loc="lower right")
  ax.set_title(title or "Each ablation's effect, paired against its base", fontsize=10)
  fig.tight_layout()
  return fig


def _seed_interval(row: Row) -> float:
  """Half-width of the 95% Student-t interval of the mean over seeds (0 for one seed)."""
  std, seeds = number(row.get("ours_std")), len(str(row.get("seeds", "")).split())
  if std is None or seeds < 2:
    return 0.0
  return float(scipy_stats.t.ppf(0.975, seeds - 1)) * std / math.sqrt(seeds)


def _in_metric(row: Row, metric: str) -> bool:
  return row["paper_metric"] == metric or (row["paper_metric"] == "" and metric == "top-1 err")


def _panel_value(row: Row, metric: str) -> float | None:
  """Our figure in the panel's metric: the `ours` column where the row's paper figure is in that
  metric (or none: `ours` is then top-1 error); else our error in it (a cost row such as Figure
  2b's base: its accuracy, without an interval)."""
  if _in_metric(row, metric):
    return number(row["ours"])
  return number(row.get("top5_err" if metric == "top-5 err" else "top1_err"))


def beside_paper(rows: Sequence[Row]) -> Figure:
  """One panel per ablation with an error figure: the paper's figure and ours (mean over seeds
  with its 95% interval) in the paper's metric; the top-1 error where the paper gives none (a
  cost row, such as the module ablation's base, is drawn with its error, no paper bar). Below full
  scale the two are not like-for-like (the `comparable` column): read the ordering in a panel."""
  errors = ("top-1 err", "top-5 err")
  ablations = list(dict.fromkeys(r["ablation"] for r in rows if r["paper_metric"] in (*errors, "")))
  fig, axes = plt.subplots(
    1, max(len(ablations), 1), figsize=(4.2 * max(len(ablations), 1), 3.8), squeeze=False
  )
  for ax, name in zip(axes[0], ablations, strict=False):
    panel = [r for r in rows if r["ablation"] == name]
    metric = next((r["paper_metric"] for r in panel if r["paper_metric"] in errors), "top-1 err")
    x = range(len(panel))
    nan = float("nan")  # no bar where there is no figure
    paper = [
      v if r["paper_metric"] == metric and (v := number(r["paper_value"])) is not None else nan
      for r in panel
    ]
    ours = [v if (v := _panel_value(r, metric)) is not None else nan for r in panel]
    ax.bar([i - 0.2 for i in x], paper, 0.4, label="paper (ImageNet)", color="#999")
    ax.bar(
      [i + 0.2 for i in x],
      ours,
      0.4,
      yerr=[_seed_interval(r) if _in_metric(r, metric) else 0.0 for r in panel],
      capsize=3,
      label=f"ours ({panel[0]['dataset'].rstrip('/').split('/')[-1]}, 95% interval)",
      color="C0",
    )
    ax.set_xticks(list(x), [r["variant"] for r in panel], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(name)
  axes[0][0].legend(fontsize=7)
  fig.tight_layout()
  return fig


def cost_vs_accuracy(rows: Sequence[Row]) -> Figure:
  """Multiply-adds per test image (crops x models included) against our top-1 error."""
  seen, points = set(), []
  for r in rows:
    if r["variant"] in seen or number(r.get("top1_err")) is None:
      continue
    seen.add(r["variant"])
    points.append((number(r["macs"]) / 1e6, number(r["top1_err"]), r["variant"]))
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  for macs, err, name in points:
    ax.scatter([macs], [err], c="C0")
    ax.annotate(name, (macs, err), fontsize=7, xytext=(3, 3), textcoords="offset points")
  ax.set_xscale("log")
  ax.set_xlabel("multiply-adds per test image (M, as trained; crops x models)")
  ax.set_ylabel("our top-1 error (%)")
  ax.set_title("cost vs accuracy")
  fig.tight_layout()
  return fig


def learning_curves(curves: Sequence[Row]) -> Figure:
  """Training top-1 error per variant (mean over seeds, per logged step; on the augmented training
  batches) and each seed's final top-1 error with the averaged parameters. The training error, not
  the loss: the loss carries the auxiliary and label-smoothing terms, which differ between rows.
  The sweeps evaluate once, at the end, so there is no test curve."""
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
  train: dict[str, dict[float, list[float]]] = {}
  final: dict[str, dict[str, tuple[float, float]]] = {}
  for c in curves:
    if number(c.get("train/top1")) is not None:
      train.setdefault(c["variant"], {}).setdefault(number(c["step"]), []).append(
        100 * (1 - number(c["train/top1"]))
      )
    if number(c.get("eval_ema/top1")) is not None:
      step, seeds = number(c["step"]), final.setdefault(c["variant"], {})
      if c["seed"] not in seeds or step >= seeds[c["seed"]][0]:
        seeds[c["seed"]] = (step, 100 * (1 - number(c["eval_ema/top1"])))
  for variant, by_step in train.items():
    steps = sorted(by_step)
    ax1.plot(steps, [statistics.mean(by_step[s]) for s in steps], label=variant, lw=1)
  ax1.set_xlabel("step")
  ax1.set_ylabel("training top-1 error (%), mean over seeds")
  ax1.set_title("training error (augmented batches)")
  if train:
    ax1.legend(fontsize=6, ncol=2)
  names = sorted(final)
  for i, name in enumerate(names):
    errors = [e for _, e in final[name].values()]
    ax2.scatter([i] * len(errors), errors, c="C1", s=14)
  ax2.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
  ax2.set_ylabel("final top-1 error (%), averaged params")
  ax2.set_title("final evaluation, each seed")
  fig.tight_layout()
  return fig


def save(fig: Figure, path: str | os.PathLike, source: str = "") -> Path:
  """Writes a PNG; `source` (e.g. `results_digest` of the tables it was drawn from) goes into its
  metadata, so a test can tell a stale figure from a fresh one."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=110, metadata={"Source": source} if source else None)
  plt.close(fig)
  return path


def results_digest(paths: Sequence[str | os.PathLike]) -> str:
  """A short digest of result tables' bytes: what a figure or notebook was drawn from."""
  h = hashlib.sha256()
  for p in paths:
    h.update(Path(p).read_bytes())
  return h.hexdigest()[:16]
