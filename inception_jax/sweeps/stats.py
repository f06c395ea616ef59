"""Scores of saved predictions and the paired comparisons the result tables report.

Two kinds of pairing, each against the row's base (report.py decides which row that is):
  - trained rows: by seed. Seed k of a variant and seed k of its base share the initialisation
    seed and the data order; the effect is the mean of the per-seed differences of top-1 error,
    with a Student-t 95% interval over the seeds (n - 1 degrees of freedom). With 3 seeds the
    interval is wide (t = 4.30): that is the honest width of 3 runs.
  - evaluation-only rows (crops, ensembles): by test example. The same models see the same test
    images; the effect is the mean over examples of the difference in top-1 correctness
    (each example's correctness averaged over the seeds where a row has several models), with a
    normal 95% interval and a two-sided p-value of the paired test (for 0/1 correctness of one
    model it is asymptotically McNemar's test: its variance is the sample's, not b + c).
The two intervals answer different questions: over seeds, how much training noise there is on
this one test set; over examples, how much test-set sampling there is for these trained models.
Differences are in percentage points of top-1 error: negative means the row errs less than its
base.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as scipy_stats

CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class Difference:
  """A paired difference of top-1 error (percentage points) and its 95% interval."""

  mean: float
  low: float | None  # None when it cannot be estimated (one pair)
  high: float | None
  n: int  # seeds or test examples
  over: str  # "seeds" | "examples"
  p_value: float | None = None

  def excludes_zero(self) -> bool:
    return self.low is not None and (self.low > 0 or self.high < 0)


def scores(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  """top-1 and top-5 accuracy and the example count of softmax outputs [N, K]."""
  probabilities, labels = np.asarray(probabilities), np.asarray(labels)
  if probabilities.ndim != 2 or probabilities.shape[0] != labels.shape[0]:
    raise ValueError(
      f"expected probabilities [N, K] and labels [N], got {probabilities.shape} and {labels.shape}"
    )
  k = min(5, probabilities.shape[1])
  top5 = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
  return {
    "top1": float(np.mean(correct(probabilities, labels))),
    "top5": float(np.mean(np.any(top5 == labels[:, None], axis=1))),
    "count": int(labels.shape[0]),
  }


def correct(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Per-example top-1 correctness (float 0/1)."""
  return (np.argmax(probabilities, axis=1) == np.asarray(labels)).astype(np.float64)


def ensemble(members: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
  """The softmax averaged over models that predicted the same examples (labels must agree)."""
  if not members:
    raise ValueError("an ensemble needs at least one member")
  labels = members[0][1]
  for _, other in members[1:]:
    if not np.array_equal(other, labels):
      raise ValueError(
        "ensemble members were evaluated on different examples (their labels differ); delete "
        "their predictions_c*.npz files and rerun the sweep to evaluate them on the same split"
      )
  return np.mean([p for p, _ in members], axis=0), labels


def seed_paired(row: dict[int, float], base: dict[int, float]) -> Difference | None:
  """Top-1 accuracies by seed -> the mean difference of top-1 error over the seeds both have."""
  seeds = sorted(set(row) & set(base))
  if not seeds:
    return None
  d = np.array([100.0 * (base[s] - row[s]) for s in seeds])
  mean = float(d.mean())
  if len(d) < 2:
    return Difference(mean, None, None, len(d), "seeds")
  sem = float(d.std(ddof=1)) / math.sqrt(len(d))
  t = float(scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, len(d) - 1))
  p = float(2 * scipy_stats.t.sf(abs(mean) / sem, len(d) - 1)) if sem > 0 else None
  return Difference(mean, mean - t * sem, mean + t * sem, len(d), "seeds", p)


def example_paired(row: np.ndarray, base: np.ndarray) -> Difference:
  """Per-example correctness (in [0, 1], averaged over models where there are several) of a row
  and its base on the same examples -> the mean difference of top-1 error."""
  row, base = np.asarray(row, np.float64), np.asarray(base, np.float64)
  if row.shape != base.shape:
    raise ValueError(f"paired examples must match: {row.shape} vs {base.shape}")
  d = 100.0 * (base - row)
  mean = float(d.mean())
  sem = float(d.std(ddof=1)) / math.sqrt(len(d)) if len(d) > 1 else 0.0
  if sem == 0:
    return Difference(mean, mean, mean, len(d), "examples", 1.0 if mean == 0 else 0.0)
  z = float(scipy_stats.norm.ppf(0.5 + CONFIDENCE / 2))
  p = float(2 * scipy_stats.norm.sf(abs(mean) / sem))
  return Difference(mean, mean - z * sem, mean + z * sem, len(d), "examples", p)


def reading(difference: Difference | None, expect: str | None) -> str:
  """Which way the effect went against the paper's claim (`expect`: the row's error is "lower"
  or "higher" than its base's, or "same": the base loses nothing against the row, as Figure 2b's
  reductions against 2a): appears / within the noise / goes the other way."""
  if difference is None or expect is None or difference.low is None:
    return ""
  if expect == "same":  # only a row significantly better than its base contradicts the claim
    return "goes the other way" if difference.high < 0 else "appears"
  if not difference.excludes_zero():
    return "within the noise"
  lower = difference.high < 0
  return "appears" if lower == (expect == "lower") else "goes the other way"
