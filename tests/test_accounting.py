"""Parameter and multiply-add accounting, and the architecture tables built on it.

Everything here is traced with jax.eval_shape (shapes only), so full-size networks take seconds.
"""

import functools
import json
import pathlib
import subprocess
import sys

import pytest

from inception_jax import accounting, models, tables
from inception_jax.blocks import InceptionModule, NaiveInceptionModule
from inception_jax.layers import ConvBN

ROOT = pathlib.Path(__file__).resolve().parents[1]


# ---- The published figures ---------------------------------------------------------------------


def test_inception_v3_matches_the_published_figures():
  assert accounting.model_params("inception_v3", exclude_aux=True) == 23_834_568
  assert accounting.model_params("inception_v3") == 27_161_264
  macs = accounting.total_macs("inception_v3")
  assert macs == 5_713_216_096 and round(macs / 1e9, 3) == 5.713


def test_googlenet_bn_matches_the_published_figures():
  assert accounting.model_params("googlenet_bn", exclude_aux=True) == 6_624_904
  assert accounting.model_params("googlenet_bn") == 13_004_888
  macs = accounting.total_macs("googlenet_bn")
  assert macs == 1_498_376_192 and round(macs / 1e9, 3) == 1.498


def test_paper_googlenet_recomputes_to_the_figures_papers_md_gives():
  # "Recomputed from the layer shapes: about 7.0M weights, 1.58G multiply-adds."
  assert round(accounting.model_params("googlenet", exclude_aux=True) / 1e6, 1) == 7.0
  assert round(accounting.total_macs("googlenet") / 1e9, 2) == 1.58


def test_excluding_aux_equals_a_model_without_heads():
  no_heads = models.create("googlenet_bn", aux_logits=False)
  assert accounting.model_params(no_heads, 224) == accounting.model_params(
    "googlenet_bn", exclude_aux=True
  )
  assert accounting.total_macs(no_heads, 224) == accounting.total_macs("googlenet_bn")


def test_aux_heads_are_excluded_from_macs_by_default():
  with_aux = accounting.total_macs("inception_v3", include_aux=True)
  aux = sum(layer.macs for layer in accounting.layer_costs("inception_v3") if layer.is_aux)
  assert aux > 0 and with_aux == accounting.total_macs("inception_v3") + aux
  assert all(
    layer.end_point == "AuxLogits"
    for layer in accounting.layer_costs("inception_v3")
    if layer.is_aux
  )


# ---- Per-layer costs ---------------------------------------------------------------------------


def test_layer_costs_by_hand():
  layers = {layer.path: layer for layer in accounting.layer_costs("inception_v3")}
  first = layers["Conv2d_1a_3x3/conv"]
  assert (first.kind, first.input_shape, first.output_shape, first.kernel_shape) == (
    "conv",
    (1, 299, 299, 3),
    (1, 149, 149, 32),
    (3, 3, 3, 32),
  )
  assert first.params == 3 * 3 * 3 * 32  # no bias: BatchNorm follows
  assert first.macs == 149 * 149 * 32 * 3 * 3 * 3
  asym = layers["Mixed_6b/branch7x7_2/conv"]  # 1x7, 128 -> 128 on 17x17
  assert asym.kernel_shape == (1, 7, 128, 128) and asym.macs == 17 * 17 * 128 * 7 * 128
  logits = layers["Logits"]
  assert (logits.kind, logits.params, logits.macs) == ("dense", 2048 * 1000 + 1000, 2048 * 1000)


def test_layer_params_add_up_without_batchnorm():
  # The paper GoogLeNet has no BatchNorm: every parameter belongs to a conv or dense layer.
  t = accounting.trace_model("googlenet")
  assert sum(layer.params for layer in t.layers) == accounting.count_params(t.variables)


def test_costs_follow_the_input_size():
  small = accounting.layer_costs(models.create("inception_v3"), 75)
  first = small[0]
  assert first.output_shape == (1, 37, 37, 32) and first.macs == 37 * 37 * 32 * 27
  assert len(small) == len(accounting.layer_costs("inception_v3"))
  # Parameters do not depend on the input size (the aux head's kernels adapt, so not counted).
  assert accounting.model_params(models.create("inception_v3"), 75, exclude_aux=True) == 23_834_568


def test_summarize_by_end_point():
  rows = accounting.summarize("inception_v3")
  names = [r["end_point"] for r in rows]
  assert names[:3] == ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"]
  assert names[-3:] == ["Mixed_7c", "PreLogits", "Logits"]
  assert "AuxLogits" not in names
  assert sum(r["macs"] for r in rows) == accounting.total_macs("inception_v3")
  assert sum(r["params"] for r in rows) == 23_834_568
  by_name = {r["end_point"]: r for r in rows}
  assert by_name["Mixed_6a"]["output_shape"] == (17, 17, 768)
  assert by_name["MaxPool_5a_3x3"]["params"] == by_name["MaxPool_5a_3x3"]["macs"] == 0
  with_aux = accounting.summarize("inception_v3", include_aux=True)
  assert (
    with_aux[-1]["end_point"] == "AuxLogits" and with_aux[-1]["params"] == 27_161_264 - 23_834_568
  )


def test_summarize_by_layer_and_bad_grouping():
  rows = accounting.summarize("googlenet_bn", by="layer")
  assert rows[0]["path"] == "Conv2d_1a_7x7/conv" and rows[0]["output_shape"] == (112, 112, 64)
  assert sum(r["macs"] for r in rows) == accounting.total_macs("googlenet_bn")
  with pytest.raises(ValueError, match="by must be"):
    accounting.summarize("googlenet_bn", by="branch")
  with pytest.raises(ValueError, match="image_size is required"):
    accounting.layer_costs(models.create("googlenet_bn"))


def test_count_params_on_a_bare_params_tree():
  t = accounting.trace_model("googlenet_bn")
  assert accounting.count_params(t.variables["params"]) == 13_004_888
  assert accounting.count_params(t.variables) == 13_004_888  # batch_stats are not parameters


# ---- Ablations change the cost as their papers say ---------------------------------------------


def test_naive_module_cost():
  # Figure 2a has no reductions: inception (3a) on 28x28x192 is 1x1 64 + 3x3 128 + 5x5 32 on all
  # 192 channels, and its pool branch passes all 192 channels on, so every later module widens.
  rows = {
    r["end_point"]: r for r in accounting.summarize(models.create("googlenet", module="naive"), 224)
  }
  assert rows["Mixed_3b"]["macs"] == 28 * 28 * 192 * (64 + 9 * 128 + 25 * 32)
  assert rows["Mixed_3b"]["output_shape"] == (28, 28, 64 + 128 + 32 + 192)
  reduced = {r["end_point"]: r for r in accounting.summarize("googlenet")}
  assert rows["Mixed_3b"]["macs"] > 2 * reduced["Mixed_3b"]["macs"]
  naive_total = sum(r["macs"] for r in rows.values())
  assert naive_total > 5 * accounting.total_macs("googlenet")


def test_receptive_field_variants_cost_the_same():
  # Rethinking Table 2: 299 (stride 2 + pool), 151 (stride 1 + pool), 79 (stride 1, no pool,
  # wider stem). tests/test_models.py checks the grids and the reduced scales.
  base = accounting.total_macs("inception_v3")
  for rf in (151, 79):
    model = models.create("inception_v3", receptive_field=rf)
    macs = accounting.total_macs(model, rf)
    assert abs(macs / base - 1) < 0.01, (rf, macs / base)  # 151: 0%, 79: +0.03%
    params = accounting.model_params(model, rf, exclude_aux=True)
    # 151: the same layers; 79: the wider stem adds parameters (cost, not size, is held).
    assert (params == 23_834_568) == (rf == 151) and params >= 23_834_568


# ---- The tables --------------------------------------------------------------------------------


@functools.cache
def _tables():
  return tables.compute()


def test_module_cost_example_is_the_worked_example():
  rows = {r["what"]: r["macs"] for r in _tables()["module_cost_example"]}
  assert rows["naive: 5x5 conv 128 -> 64"] == 160_563_200
  assert rows["reduced: 1x1 conv 128 -> 32"] == 3_211_264
  assert rows["reduced: 5x5 conv 32 -> 64"] == 40_140_800
  assert rows["reduced: 1x1 + 5x5 total"] == 3_211_264 + 40_140_800


def test_module_cost_example_comes_from_the_modules():
  conv = functools.partial(ConvBN, norm=None)
  layers = {
    layer.path: layer
    for layer in accounting.trace(
      NaiveInceptionModule(64, 128, 64, conv=conv), (1, 28, 28, 128)
    ).layers
  }
  assert layers["branch3/conv"].kernel_shape == (5, 5, 128, 64)
  assert layers["branch3/conv"].macs == 28 * 28 * 64 * 5 * 5 * 128
  layers = {
    layer.path: layer
    for layer in accounting.trace(
      InceptionModule(64, 96, 128, 32, 64, 32, conv=conv), (1, 28, 28, 128)
    ).layers
  }
  assert layers["branch3_reduce/conv"].macs == 28 * 28 * 32 * 128


def test_factorization_savings():
  rows = {r["factorization"]: r for r in _tables()["factorization_savings"]}
  assert rows["5x5 -> two 3x3"]["saving"] == pytest.approx(1 - 18 / 25, abs=1e-4)  # 28%
  assert rows["3x3 -> 3x1 + 1x3"]["saving"] == pytest.approx(1 - 6 / 9, abs=1e-4)  # 33%
  assert rows["3x3 -> two 2x2"]["saving"] == pytest.approx(1 - 8 / 9, abs=1e-4)  # 11%
  for row in rows.values():
    assert round(row["saving"], 2) == row["paper_saving"]


def test_googlenet_table1_flags_exactly_the_rows_that_do_not_recompute():
  rows = _tables()["googlenet_table1"]
  assert [r["row"] for r in rows] == [
    "conv1",
    "conv2",
    "inception_3a",
    "inception_3b",
    "inception_4a",
    "inception_4b",
    "inception_4c",
    "inception_4d",
    "inception_4e",
    "inception_5a",
    "inception_5b",
    "linear",
  ]
  flagged = {r["row"]: r["reason"] for r in rows if r["flagged"]}
  assert set(flagged) == {"conv1", "inception_4c", "inception_5a"}
  assert "9,408" in flagged["conv1"] and "118M" in flagged["conv1"]
  by_row = {r["row"]: r for r in rows}
  assert by_row["conv1"]["params"] == 7 * 7 * 3 * 64 + 64
  assert by_row["conv1"]["macs"] == 112 * 112 * 64 * 7 * 7 * 3
  assert by_row["conv2"]["output_shape"] == "56x56x192"
  assert by_row["inception_3a"]["macs"] == 128_049_152  # the paper's "128M"
  assert by_row["inception_5b"]["output_shape"] == "7x7x1024"
  assert by_row["linear"]["paper_params"] == 1000 * 1024


def test_models_table():
  rows = {r["model"]: r for r in _tables()["models"]}
  assert list(rows) == list(models.NAMES)
  assert (rows["inception_v3"]["params"], rows["inception_v3"]["params_with_aux"]) == (
    23_834_568,
    27_161_264,
  )
  assert (rows["googlenet_bn"]["params"], rows["googlenet_bn"]["params_with_aux"]) == (
    6_624_904,
    13_004_888,
  )
  assert round(rows["inception_v3"]["macs"] / 1e9, 3) == 5.713
  assert round(rows["googlenet_bn"]["macs"] / 1e9, 3) == 1.498
  assert rows["inception_v2"]["image_size"] == 299 and rows["googlenet"]["image_size"] == 224


def test_rethinking_table3_cost():
  rows = {r["row"]: r for r in _tables()["rethinking_table3_cost"]}
  bn = rows["BN-Inception"]  # the paper's dense 7x7 stem: 2.02G against Table 3's 2.0
  assert bn["model"] == "bn_inception stem='7x7'" and bn["image_size"] == 224
  assert (bn["gmacs"], bn["paper_gops"]) == (2.019, 2.0) and abs(bn["diff"]) < 0.01
  assert rows["(not in Table 3) BN-Inception as slim released it"]["gmacs"] == 1.935
  assert rows["GoogLeNet"]["gmacs"] == 1.583 and rows["BN-GoogLeNet"]["gmacs"] == 1.498
  v3 = rows["Inception-v2 + BN-auxiliary (Inception-v3)"]
  assert (v3["gmacs"], v3["paper_gops"]) == (5.713, 4.8) and v3["diff"] > 0.15  # shown, not hidden
  assert rows["Inception-v2 + Factorized 7x7"]["gmacs"] == v3["gmacs"]  # aux head not counted
  assert rows["Inception-v2"]["gmacs"] < v3["gmacs"]  # the factorized stem costs more
  assert rows["Inception-v2 + RMSProp"]["gmacs"] == rows["Inception-v2"]["gmacs"]
  paper_layout = rows["(not in Table 3) Inception-v3 as Rethinking Table 1 prints it"]
  assert paper_layout["gmacs"] > v3["gmacs"] and paper_layout["paper_gops"] is None


def test_output_formats():
  result = _tables()
  decoded = json.loads(tables.to_json(result))
  assert set(decoded) == {
    "googlenet_table1",
    "models",
    "module_cost_example",
    "factorization_savings",
    "rethinking_table3_cost",
  }
  assert all(isinstance(rows, list) and isinstance(rows[0], dict) for rows in decoded.values())
  text = tables.to_markdown(result)
  assert "## googlenet_table1" in text and "| row | end_points | output_shape |" in text
  assert "160,563,200" in text and "23,834,568" in text and "bn_inception stem='7x7'" in text
  with pytest.raises(ValueError, match="valid tables"):
    tables.compute(["table9"])


def test_cli_prints_json():
  out = subprocess.run(
    [sys.executable, "-m", "experiments.tables", "--format=json", "--tables=factorization_savings"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=True,
  ).stdout
  rows = json.loads(out)["factorization_savings"]
  assert [r["factorization"] for r in rows] == [
    "5x5 -> two 3x3",
    "3x3 -> 3x1 + 1x3",
    "3x3 -> two 2x2",
  ]
