"""The paired comparisons of the result tables (inception_jax/sweeps/stats.py, report.py):
by seed for trained rows, by test example for crop and ensemble rows."""

import dataclasses
import importlib
import math
import pathlib
import subprocess
import sys

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import PIL.Image
import pytest
from helpers.sweeps import SimulatedTrainer
from helpers.training import subprocess_env
from matplotlib.container import BarContainer

from inception_jax import data, sweeps
from inception_jax.evaluation import evaluate
from inception_jax.sweeps import figures, publish, stats, summary
from inception_jax.sweeps.metrics import predictions_path
from inception_jax.training import parallel

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_seed_paired_difference_is_a_student_t_interval_of_the_error_differences():
  base = {0: 0.80, 1: 0.78, 2: 0.82}
  row = {0: 0.79, 1: 0.76, 2: 0.79, 7: 0.5}  # seed 7 has no partner: left out
  d = stats.seed_paired(row, base)
  diffs = [1.0, 2.0, 3.0]  # error differences in points: row errs more
  mean, sd = 2.0, 1.0
  half = 4.302652729911275 * sd / math.sqrt(3)  # t(0.975, 2 degrees of freedom)
  assert (d.n, d.over) == (3, "seeds") and d.mean == pytest.approx(np.mean(diffs))
  assert (d.low, d.high) == (pytest.approx(mean - half), pytest.approx(mean + half))
  assert stats.seed_paired({0: 0.5}, {1: 0.5}) is None
  one = stats.seed_paired({0: 0.7}, {0: 0.8})
  assert one.mean == pytest.approx(10.0) and one.low is None  # one pair: no interval


def test_example_paired_test_agrees_with_mcnemar_on_binary_outcomes():
  rng = np.random.default_rng(0)
  base = (rng.random(10_000) < 0.80).astype(float)
  row = base.copy()
  flip = rng.random(10_000)
  row[(base == 0) & (flip < 0.12)] = 1  # the row gets some of the base's errors right
  row[(base == 1) & (flip < 0.02)] = 0
  d = stats.example_paired(row, base)
  b, c = int(np.sum((base == 1) & (row == 0))), int(np.sum((base == 0) & (row == 1)))
  assert d.mean == pytest.approx(100 * (b - c) / 10_000) and d.mean < 0
  mcnemar_p = math.erfc(abs(b - c) / math.sqrt(b + c) / math.sqrt(2))
  assert d.p_value == pytest.approx(mcnemar_p, rel=0.05, abs=1e-12)
  assert d.high < 0 and stats.reading(d, "lower") == "appears"
  assert stats.reading(d, "higher") == "goes the other way"
  same = stats.example_paired(base, base)
  assert same.mean == 0 and same.p_value == 1.0
  noisy = stats.example_paired(base[::-1].copy(), base)
  assert noisy.low < 0 < noisy.high and stats.reading(noisy, "lower") == "within the noise"
  with pytest.raises(ValueError, match="must match"):
    stats.example_paired(base[:5], base)


def test_scores_and_ensembles_of_saved_predictions():
  probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]], np.float32)
  labels = np.array([1, 1, 0])
  assert stats.scores(probs, labels) == {"top1": pytest.approx(1 / 3), "top5": 1.0, "count": 3}
  other = np.array([[0.1, 0.1, 0.8], [0.1, 0.8, 0.1], [0.6, 0.2, 0.2]], np.float32)
  mean, y = stats.ensemble([(probs, labels), (other, labels)])
  np.testing.assert_allclose(mean, (probs + other) / 2)
  assert stats.scores(mean, y)["top1"] == pytest.approx(2 / 3)
  with pytest.raises(ValueError, match="different examples"):
    stats.ensemble([(probs, labels), (other, labels[::-1])])


def test_tables_pair_each_row_with_its_base_and_recompute_from_the_saved_predictions(tmp_path):
  v1 = importlib.import_module("experiments.v1_ablations")
  s = v1.make_sweep("tiny")
  rows = sweeps.run_sweep(s, tmp_path, trainer=SimulatedTrainer(), log=lambda m: None)
  by = {(r["ablation"], r["variant"]): r for r in rows}
  # Trained rows against the ablation's base, by seed (tiny: seed 0 in common).
  lrn = by[("norm", "googlenet_lrn")]
  assert lrn["base"] == "googlenet" and lrn["paired_over"] == "1 seed"
  assert by[("norm", "googlenet")]["diff"] is None  # the base itself

  # Crop and ensemble rows against 1 crop of the same models, by test example, recomputed here
  # from the prediction files.
  def correct(seed, crops):
    p, y = sweeps.load_predictions(predictions_path(tmp_path, "googlenet", seed, crops))
    return p, y, (p.argmax(1) == y).astype(float)

  single = np.mean([correct(s_, 1)[2] for s_ in (0, 1)], axis=0)
  ten = np.mean([correct(s_, 10)[2] for s_ in (0, 1)], axis=0)
  row = by[("crops", "crops_10")]
  assert row["diff"] == pytest.approx(100 * np.mean(single - ten))
  assert row["paired_over"] == "16 examples" and row["p_value"] is not None
  (p0, y, _), (p1, _, _) = correct(0, 144), correct(1, 144)
  ens = ((p0 + p1).argmax(1) == y).astype(float)
  assert by[("crops", "ensemble_144")]["diff"] == pytest.approx(100 * np.mean(single - ens))
  assert by[("crops", "crops_1")]["diff"] is None
  markdown = (tmp_path / "results.md").read_text()
  assert "vs googlenet, 1 crop, single models (16 examples, p=" in markdown
  # Predictions of other examples, or in another order, are refused rather than paired.
  path = predictions_path(tmp_path, "googlenet", 0, 10)
  with np.load(path) as f:
    saved = dict(f)
  np.savez(path, **{**saved, "labels": saved["labels"][::-1].copy()})
  sweeps.records.eval_path(tmp_path, "crops_10").unlink()  # evaluate the row again
  with pytest.raises(ValueError, match="different examples|same test examples"):
    sweeps.run_sweep(s, tmp_path, only=["crops_10"], trainer=SimulatedTrainer(), log=print)


def test_a_crop_row_on_fewer_seeds_evaluates_and_pairs_only_those_models(tmp_path):
  v1 = importlib.import_module("experiments.v1_ablations")
  s = dataclasses.replace(v1.make_sweep("tiny"), seeds={"googlenet": (0, 1), "crops_10": (1,)})
  assert s.members(s.variants()["crops_10"]) == [("googlenet", 1)]
  assert s.members(s.variants()["crops_1"]) == [("googlenet", 0), ("googlenet", 1)]
  rows = sweeps.run_sweep(
    s, tmp_path, only=["crops_1", "crops_10"], trainer=SimulatedTrainer(), log=lambda m: None
  )
  assert not predictions_path(tmp_path, "googlenet", 0, 10).exists()  # seed 0: no 10 crops
  row = next(r for r in rows if r["variant"] == "crops_10")

  def correct(crops):
    p, y = sweeps.load_predictions(predictions_path(tmp_path, "googlenet", 1, crops))
    return (p.argmax(1) == y).astype(float)

  assert row["seeds"] == "1" and row["diff"] == pytest.approx(
    100 * np.mean(correct(1) - correct(10))
  )
  assert "seed1 --crops=10" in row["command"] and "seed0" not in row["command"]
  wrong = dataclasses.replace(s, seeds={"googlenet": (0, 1), "crops_10": (5,)})
  with pytest.raises(ValueError, match="not all trained seeds"):
    wrong.members(wrong.variants()["crops_10"])


def test_trained_rows_with_several_seeds_get_an_interval_and_a_reading(tmp_path):
  v1 = importlib.import_module("experiments.v1_ablations")
  s = dataclasses.replace(
    v1.make_sweep("tiny"), seeds={"googlenet": (0, 1, 2), "googlenet_lrn": (0, 1, 2)}
  )
  rows = sweeps.run_sweep(
    s, tmp_path, only=["googlenet", "googlenet_lrn"], trainer=SimulatedTrainer(), log=print
  )
  lrn = next(r for r in rows if r["variant"] == "googlenet_lrn")
  top1 = {
    k: [sweeps.read_metrics(tmp_path / k / f"seed{i}")[-1]["eval_ema/top1"] for i in range(3)]
    for k in ("googlenet", "googlenet_lrn")
  }
  d = 100 * (np.array(top1["googlenet"]) - np.array(top1["googlenet_lrn"]))
  assert lrn["paired_over"] == "3 seeds" and lrn["diff"] == pytest.approx(d.mean())
  assert lrn["diff_low"] < lrn["diff"] < lrn["diff_high"]
  # The paper has LRN worse than BatchNorm (29.0 vs 26.8%): the reading follows the interval.
  expected = {True: "appears", False: "within the noise"}[lrn["diff_low"] > 0]
  assert lrn["reading"] == (expected if lrn["diff_high"] > 0 else "goes the other way")


def test_cumulative_table_compares_each_row_with_the_row_above():
  v3 = importlib.import_module("experiments.v3_ablations")
  table3 = next(a for a in v3.make_sweep("tiny").ablations if a.name == "table3")
  names = [v.name for v in table3.variants]
  assert [table3.base_of(n) for n in names] == [None, *names[:-1]]
  table2 = next(a for a in v3.make_sweep("tiny").ablations if a.name == "table2")
  assert [table2.base_of(v.name) for v in table2.variants] == [None, "v3", "v3"]
  with pytest.raises(ValueError, match="base 'nope'"):
    sweeps.Ablation("x", "X", table2.variants, base="nope")


def test_readme_figure_is_drawn_from_both_result_tables(tmp_path):
  for name in ("v1_ablations", "v3_ablations"):
    module = importlib.import_module(f"experiments.{name}")
    sweeps.run_sweep(
      module.make_sweep("tiny"),
      tmp_path / f"{name}_small",
      trainer=SimulatedTrainer(),
      log=lambda m: None,
    )
  out = tmp_path / "effects.png"
  env = subprocess_env()
  readme = tmp_path / "README.md"  # the README's table is rewritten between its markers
  readme.write_text("# x\n\n<!-- effects:begin -->\n| old |\n<!-- effects:end -->\n\nafter\n")
  printed = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.figures",
      f"--results={tmp_path}",
      f"--out={out}",
      f"--readme={readme}",
    ],
    cwd=ROOT,
    env=env,
    check=True,
    capture_output=True,
    text=True,
  ).stdout
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
  # The effects table: every effect whose row exists at tiny scale, with its paired difference.
  table = [line for line in printed.splitlines() if line.startswith("| ")][1:]
  tiny_rows = {(sweep, a, v) for _, sweep, a, v in summary.EFFECTS if v != "naive_narrow"}
  assert len(table) == len(tiny_rows)
  crops = next(line for line in table if line.startswith("| multi-crop: 10 vs 1 crop |"))
  assert "9.15 vs 10.07% top-5 err" in crops and "(16 examples)" in crops
  body = readme.read_text()
  assert "| old |" not in body and body.endswith("<!-- effects:end -->\n\nafter\n")
  assert "\n".join(table) in body and f"{readme}: effects table updated" in printed
  readme.write_text("no markers\n")
  with pytest.raises(ValueError, match="effects:begin"):
    publish.update_readme(readme, "| t |")
  missing = subprocess.run(
    [sys.executable, "-m", "experiments.figures", f"--results={tmp_path / 'none'}"],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
  )
  assert missing.returncode != 0 and "run the sweeps first" in missing.stderr


def _row(ablation, variant, metric="", paper="", ours="", **kw):
  row = dict.fromkeys(
    ["ours_std", "seeds", "top1_err", "top5_err", "macs", "full_macs", "base", "steps", "dataset"],
    "",
  )
  row.update(ablation=ablation, variant=variant, paper_metric=metric, paper_value=paper)
  row.update(paper="x" if paper else "", ours=ours, dataset="folder:data/cifar10", **kw)
  return row


def test_module_panel_shows_the_cost_row_with_its_error_and_the_paper_pairs_are_stated():
  base = _row("module", "googlenet_narrow", "G multiply-adds", "1.5", "1.58", top1_err="36.0")
  base.update(macs="14.6e6", full_macs="1.58e9")
  naive = _row(
    "module", "naive_narrow", ours="35.0", ours_std="1.0", seeds="0 1 2", top1_err="35.0"
  )
  naive.update(macs="58.4e6", full_macs="12.5e9", base="googlenet_narrow", diff="-1.0")
  naive.update(diff_low="-2.4", diff_high="0.3", paired_over="3 seeds", reading="appears")
  fig = figures.beside_paper([base, naive])
  ax = fig.axes[0]
  assert [t.get_text() for t in ax.get_xticklabels()] == ["googlenet_narrow", "naive_narrow"]
  bars = [c for c in ax.containers if isinstance(c, BarContainer)]
  ours = [p.get_height() for p in bars[1]]
  assert ours == pytest.approx([36.0, 35.0])  # the cost row is drawn with its top-1 error
  table = summary.effects_markdown({"v1_ablations": [base, naive]})
  assert "7.9x the base's multiply-adds at full size, 4.0x as trained (our count)" in table
  t4 = _row("table4", "bn_inception_144", "top-5 err", "5.82", "2.67", diff="-2.25")
  t4.update(diff_low="-2.91", diff_high="-1.59", paired_over="10000 examples", reading="appears")
  row = summary.effects_markdown({"v3_ablations": [t4]}).splitlines()[-1]
  assert "| 22 vs 25.2% top-1 err (Rethinking Table 4, 144 crops, vs Table 3, 1 crop) |" in row


def test_learning_curves_plot_the_training_error_not_the_loss():
  curves = [
    {
      "variant": v,
      "seed": str(seed),
      "step": str(step),
      "train/loss": str(loss),
      "train/top1": str(top1),
      "eval_ema/top1": "",
    }
    for v, loss in (("with_aux", 3.0), ("no_aux", 1.0))  # the loss differs by the aux term
    for seed, top1 in ((0, 0.6), (1, 0.8))
    for step in (50, 100)
  ]
  ax = figures.learning_curves(curves).axes[0]
  for line in ax.get_lines():
    assert list(line.get_ydata()) == pytest.approx([30.0, 30.0])  # 100 * (1 - mean top-1)


def test_readme_shows_the_effects_table_and_figure_of_the_committed_results():
  """The README's short table is the one `python -m experiments.figures` prints from results/,
  so it cannot drift from the committed tables."""
  rows = {
    name: figures.read_csv(ROOT / "results" / f"{name}_small" / "results.csv")
    for name in ("v1_ablations", "v3_ablations")
  }
  readme = (ROOT / "README.md").read_text()
  assert summary.effects_markdown(rows) in readme
  assert "docs/figures/ablation_effects.png" in readme
  png = PIL.Image.open(ROOT / "docs" / "figures" / "ablation_effects.png")
  paths = [ROOT / "results" / f"{n}_small" / "results.csv" for n in rows]
  assert png.info.get("Source") == f"results {figures.results_digest(paths)}", (
    "the figure was drawn from other tables: python -m experiments.figures"
  )


class _Scale(nn.Module):
  """Logits = per-channel means of the image, scaled: 3 classes, no training needed."""

  @nn.compact
  def __call__(self, x, train=False):
    w = self.param("w", nn.initializers.ones, (3,))
    return jnp.mean(x, axis=(1, 2)) * w


def test_kept_probabilities_come_back_in_the_splits_order_without_padding():
  model, mesh = _Scale(), parallel.make_mesh()
  variables = {"params": {"w": jnp.array([1.0, 2.0, 3.0])}}
  rng = np.random.default_rng(0)
  images = rng.random((8, 1, 4, 4, 3)).astype(np.float32)
  labels = rng.integers(0, 3, 8).astype(np.int32)
  # Two batches as two hosts' slices would interleave them: indices out of order, one padding.
  order = [[4, 5, 6, 7], [0, 1, 2, -1]]
  batches = [
    {
      "image": np.stack([images[i] if i >= 0 else np.zeros_like(images[0]) for i in idx]),
      "label": np.array([labels[i] if i >= 0 else 0 for i in idx], np.int32),
      "mask": np.array([i >= 0 for i in idx]),
      "index": np.array(idx),
    }
    for idx in order
  ]
  r = evaluate.Evaluator(model, mesh).evaluate({"m": [variables]}, batches, keep_probabilities=True)
  got = r["m"]
  assert got["index"].tolist() == [0, 1, 2, 4, 5, 6, 7]
  expected = np.asarray(
    evaluate.crop_averaged_probabilities(model, variables, jnp.asarray(images[got["index"]]))
  )
  np.testing.assert_allclose(got["probabilities"], expected, rtol=1e-6)
  assert got["labels"].tolist() == labels[got["index"]].tolist()
  assert stats.scores(got["probabilities"], got["labels"])["top1"] == pytest.approx(got["top1"])


def test_eval_batches_carry_each_examples_index_in_the_split():
  seen = []
  for batch_size in (32, 100):
    it = data.create_eval_iterator(
      "digits", split="test", global_batch_size=batch_size, image_size=8
    )
    batches = list(it)
    index = np.concatenate([b["index"][b["mask"]] for b in batches])
    padding = np.concatenate([b["index"][~b["mask"]] for b in batches])
    seen.append(index)
    assert (padding == -1).all()
  assert seen[0].tolist() == seen[1].tolist() == list(range(len(seen[0])))
