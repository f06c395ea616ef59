"""The papers' effects in one table, from both sweeps' results (the README's short table).

`effects_markdown({sweep name: results.csv rows})` lists each effect the issue names (BN over LRN,
1x1 reductions, aux heads, label smoothing, RMSProp, factorized 7x7, BN-auxiliary, receptive field
at equal cost, ReLU vs linear factorization, multi-crop, ensembles) with the paper's figures, our
paired difference with its 95% interval, and the reading. `python -m experiments.figures` prints
it; tests/test_sweep_stats.py checks that the README carries the table of the committed results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from inception_jax.sweeps.figures import number

# (effect, sweep, ablation, row); the row's base is the one its table names.
EFFECTS = (
  ("BatchNorm over LRN (LRN row vs BN)", "v1_ablations", "norm", "googlenet_lrn"),
  ("1x1 reductions (Figure 2a naive vs 2b)", "v1_ablations", "module", "naive_narrow"),
  ("aux heads (off vs on at 0.3)", "v1_ablations", "aux", "no_aux"),
  ("aux heads (weight 1.0 vs 0.3)", "v1_ablations", "aux", "aux_weight_1"),
  ("multi-crop: 10 vs 1 crop", "v1_ablations", "crops", "crops_10"),
  ("multi-crop: 144 vs 1 crop", "v1_ablations", "crops", "crops_144"),
  ("ensemble of the seeds, 1 crop, vs 1 model", "v1_ablations", "crops", "ensemble_1"),
  ("ensemble of the seeds, 144 crops, vs 1 model 1 crop", "v1_ablations", "crops", "ensemble_144"),
  ("Inception-v2 vs BN-Inception", "v3_ablations", "table3", "v2"),
  ("RMSProp (vs SGD)", "v3_ablations", "table3", "v2_rmsprop"),
  ("label smoothing", "v3_ablations", "table3", "v2_rmsprop_ls"),
  ("factorized 7x7", "v3_ablations", "table3", "v2_rmsprop_ls_f7x7"),
  ("BN-auxiliary", "v3_ablations", "table3", "v3"),
  ("144 crops on BN-Inception", "v3_ablations", "table4", "bn_inception_144"),
  ("receptive field 151 vs 299 at equal cost", "v3_ablations", "table2", "rf151"),
  ("receptive field 79 vs 299 at equal cost", "v3_ablations", "table2", "rf79"),
  ("linear vs ReLU in the factorization", "v3_ablations", "figure2", "linear"),
)
# The paper's pair where the row's own table has no base: Table 4's BN-Inception with 144 crops
# against Table 3's (1 crop), in the metric of our difference.
PAPER_PAIRS = {
  "bn_inception_144": "22 vs 25.2% top-1 err (Rethinking Table 4, 144 crops, vs Table 3, 1 crop)"
}


def _row(rows: Sequence[Mapping[str, str]], ablation: str, variant: str) -> Mapping[str, str]:
  for r in rows:
    if r["ablation"] == ablation and r["variant"] == variant:
      return r
  raise KeyError(f"no row {variant!r} in ablation {ablation!r}")


def _paper(rows: Sequence[Mapping[str, str]], r: Mapping[str, str]) -> str:
  same_table = [b for b in rows if b["ablation"] == r["ablation"] and b is not r]
  # A crop or ensemble row's base is 1 crop of the same models: the table's first row.
  base = next((b for b in same_table if b["variant"] == r["base"]), None) or next(
    (b for b in same_table if b["paper_metric"] == r["paper_metric"] and not b["steps"]), None
  )
  if r["variant"] in PAPER_PAIRS:
    return PAPER_PAIRS[r["variant"]]
  if not r["paper"] or r["paper_metric"] not in ("top-1 err", "top-5 err"):
    if base is not None and number(base.get("full_macs")) and number(r.get("full_macs")):
      ratio = number(r["full_macs"]) / number(base["full_macs"])
      if abs(ratio - 1) > 0.05:  # a cost ablation: say what the row costs (our count)
        text = f"no accuracy figure; {ratio:.1f}x the base's multiply-adds at full size"
        if number(base.get("macs")) and number(r.get("macs")):
          text += f", {number(r['macs']) / number(base['macs']):.1f}x as trained"
        return text + " (our count)"
    return "no accuracy figure"
  if base is None or base["paper_metric"] != r["paper_metric"]:
    return f"{r['paper_value']}% {r['paper_metric']}"
  return f"{r['paper_value']} vs {base['paper_value']}% {r['paper_metric']}"


def effects_markdown(sweeps: Mapping[str, Sequence[Mapping[str, str]]]) -> str:
  """The markdown table (header included) of EFFECTS; rows not run yet say so."""
  lines = [
    "| effect | paper (row vs base) | ours: Δ top-1 err, points [95% interval] | reading |",
    "|---|---|---|---|",
  ]
  for effect, sweep, ablation, variant in EFFECTS:
    rows = sweeps.get(sweep, [])
    try:
      r = _row(rows, ablation, variant)
    except KeyError:
      continue
    mean, low, high = number(r["diff"]), number(r["diff_low"]), number(r["diff_high"])
    if mean is None:
      ours, reading = "not run yet", ""
    else:
      ours = f"{mean:+.2f}" + (f" [{low:+.2f}, {high:+.2f}]" if low is not None else "")
      ours += f" ({r['paired_over']})"
      if r["reading"]:
        reading = r["reading"]
      elif low is None:  # one pair: no interval, no reading
        reading = "too few seeds to read"
      else:
        reading = "no paper direction"
    lines.append(f"| {effect} | {_paper(rows, r)} | {ours} | {reading} |")
  return "\n".join(lines)
