"""BN-Inception (Ioffe & Szegedy 2015, Figure 5; tf-slim inception_v2.py): both stems, the block
types, its cost, and GoogLeNet's slim padding. Parity with slim's own graph is in
tests/test_convert_slim.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inception_jax import accounting, models, tables
from inception_jax.blocks import BNInceptionModule, BNInceptionReduction
from inception_jax.models.bn_inception import FIGURE5


def _variables(name="bn_inception", size=224, **overrides):
  model = models.create(name, **overrides)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))


def _shapes(tree):
  return jax.tree.map(lambda x: tuple(x.shape), tree)


def test_separable_stem_is_slims():
  """Depthwise 7x7/2, multiplier 8 (3 -> 24, no bias), pointwise 1x1 24 -> 64 + bias, no BN."""
  v = _variables()
  stem = _shapes(v["params"]["Conv2d_1a_7x7"])
  assert stem == {
    "depthwise": {"conv": {"kernel": (7, 7, 1, 24)}},
    "pointwise": {"conv": {"kernel": (1, 1, 24, 64), "bias": (64,)}},
  }
  assert "Conv2d_1a_7x7" not in v["batch_stats"]
  assert models.create("bn_inception").stem == "separable"  # the released checkpoint's


def test_dense_stem_is_the_papers():
  v = _variables(stem="7x7")
  assert _shapes(v["params"]["Conv2d_1a_7x7"]) == {
    "conv": {"kernel": (7, 7, 3, 64)},
    "bn": {"bias": (64,), "scale": (64,)},
  }
  assert "Conv2d_1a_7x7" in v["batch_stats"]


def test_stem_depth_multiplier_follows_the_width():
  """slim: depthwise_multiplier = min(int(depth(64) / 3), 8); at width 0.25 depth(64) = 16 -> 5."""
  v = _variables(width_multiplier=0.25)
  assert _shapes(v["params"]["Conv2d_1a_7x7"])["depthwise"]["conv"]["kernel"] == (7, 7, 1, 15)


def test_figure5_widths_give_the_printed_outputs():
  """Each module's output width is the sum of its branches, as Figure 5 prints it."""
  widths = {}
  c = 192
  for name, (_, c1, _, c3, _, cd, _, proj) in FIGURE5.items():
    c = c3 + cd + (c if proj is None else c1 + proj)
    widths[name] = c
  assert widths == {
    "Mixed_3b": 256,
    "Mixed_3c": 320,
    "Mixed_4a": 576,
    "Mixed_4b": 576,
    "Mixed_4c": 576,
    "Mixed_4d": 576,
    "Mixed_4e": 576,
    "Mixed_5a": 1024,
    "Mixed_5b": 1024,
    "Mixed_5c": 1024,
  }


def test_blocks_pool_kinds_differ():
  """Max-pool branch (5b / slim Mixed_5c) and average-pool branch are different functions."""
  x = jax.random.normal(jax.random.key(0), (1, 7, 7, 16))
  outs = {}
  for pool in ("avg", "max"):
    block = BNInceptionModule(8, 8, 8, 8, 8, 8, pool=pool)
    v = block.init(jax.random.key(1), x)
    outs[pool] = block.apply(v, x)
  assert outs["avg"].shape == (1, 7, 7, 32)
  assert not np.allclose(outs["avg"][..., 24:], outs["max"][..., 24:])
  np.testing.assert_array_equal(outs["avg"][..., :24], outs["max"][..., :24])
  with pytest.raises(ValueError, match="pool must be 'avg' or 'max'"):
    BNInceptionModule(8, 8, 8, 8, 8, 8, pool="sum").init(jax.random.key(1), x)


def test_reduction_passes_the_input_through_its_pool():
  x = jnp.zeros((1, 28, 28, 320))
  block = BNInceptionReduction(128, 160, 64, 96)
  out = jax.eval_shape(lambda: block.init_with_output(jax.random.key(0), x)[0])
  assert out.shape == (1, 14, 14, 160 + 96 + 320)


@pytest.mark.parametrize("size", [1, 33, 224, 225])
def test_any_input_size_works(size):
  """TF 'SAME' padding: every grid n becomes ceil(n / 2), never empty."""
  model = models.create("bn_inception", return_features=True)
  out = jax.eval_shape(
    lambda: model.init_with_output(jax.random.key(0), jnp.zeros((1, size, size, 3)))[0]
  )
  grid = -(-size // 32)
  assert out["Mixed_5c"].shape == (1, grid, grid, 1024) and out["Logits"].shape == (1, 1000)


def test_bad_overrides_are_refused_before_tracing():
  with pytest.raises(ValueError, match=r"stem must be one of \('separable', '7x7'\)"):
    models.create("bn_inception", stem="factorized")
  with pytest.raises(ValueError, match=r"stem must be one of \('factorized', '7x7'\)"):
    models.create("inception_v3", stem="separable")
  with pytest.raises(ValueError, match=r"padding must be one of \('torchvision', 'same'\)"):
    models.create("googlenet_bn", padding="valid")
  assert models.default_image_size("bn_inception") == 224


def test_parameters_and_multiply_adds():
  """Computed from the module; the stems' differences recompute by hand."""
  sep = tables.model_figures("bn_inception")
  dense = tables.model_figures("bn_inception", stem="7x7")
  assert sep["params"] == sep["params_with_aux"]  # no aux heads
  # dense 7x7x3x64 + BN offset and scale  vs  depthwise 7x7x3x8 + pointwise 24x64 + bias
  assert dense["params"] - sep["params"] == (7 * 7 * 3 * 64 + 2 * 64) - (
    7 * 7 * 3 * 8 + 24 * 64 + 64
  )
  assert dense["macs"] - sep["macs"] == 112 * 112 * (7 * 7 * 3 * 64 - 7 * 7 * 24 - 24 * 64)
  # Rethinking Table 3: "2.0" billion ops
  assert abs(dense["macs"] / 2.0e9 - 1) < 0.02 and abs(sep["macs"] / 2.0e9 - 1) < 0.04
  # slim's count with 1001 classes and no BN scale (tf-slim 1.1.0; docs/PAPERS.md): 11,179,361
  slim = models.create("bn_inception", num_classes=1001, bn_scale=False)
  assert accounting.model_params(slim, 224) == 11_179_361


def test_googlenet_same_padding_is_slims():
  """padding="same": conv1 and the stride-2 pools use TF 'SAME' (tf-slim inception_v1)."""
  model = models.create("googlenet_bn", padding="same", return_features=True)
  for size, grid in ((224, 7), (225, 8), (15, 1), (1, 1)):
    out = jax.eval_shape(
      lambda s=size: model.init_with_output(jax.random.key(0), jnp.zeros((1, s, s, 3)))[0]
    )
    assert out["Mixed_5c"].shape[1] == grid, size
  assert models.min_image_size("googlenet_bn", padding="same") == 1
  # At 224 the end points are the torchvision layout's (only the padding differs).
  same = accounting.summarize(models.create("googlenet_bn", padding="same"), 224)
  tv = accounting.summarize(models.create("googlenet_bn"), 224)
  assert [(r["end_point"], r["output_shape"]) for r in same] == [
    (r["end_point"], r["output_shape"]) for r in tv
  ]
