"""The four networks: end point shapes, outputs, every override, and clear errors on bad input.

Shapes, parameter trees and module attributes come from jax.eval_shape (nothing is compiled); the
one numeric check runs a single small block eagerly on variables filled with numpy.
"""

import functools
import re
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inception_jax import accounting, models
from inception_jax.blocks import Factorized5x5Module
from inception_jax.layers import ConvBN
from inception_jax.models import googlenet as googlenet_module
from inception_jax.models import inception_v3 as inception_v3_module

GOOGLENET_END_POINTS = {
  "Conv2d_1a_7x7": (112, 112, 64),
  "MaxPool_2a_3x3": (56, 56, 64),
  "Conv2d_2b_1x1": (56, 56, 64),
  "Conv2d_2c_3x3": (56, 56, 192),
  "MaxPool_3a_3x3": (28, 28, 192),
  "Mixed_3b": (28, 28, 256),
  "Mixed_3c": (28, 28, 480),
  "MaxPool_4a_3x3": (14, 14, 480),
  "Mixed_4b": (14, 14, 512),
  "Mixed_4c": (14, 14, 512),
  "Mixed_4d": (14, 14, 512),
  "Mixed_4e": (14, 14, 528),
  "Mixed_4f": (14, 14, 832),
  "MaxPool_5a_3x3": (7, 7, 832),
  "Mixed_5b": (7, 7, 832),
  "Mixed_5c": (7, 7, 1024),
  "PreLogits": (1024,),
  "Logits": (1000,),
}
V3_BODY = {
  "Conv2d_3b_1x1": (73, 73, 80),
  "Conv2d_4a_3x3": (71, 71, 192),
  "MaxPool_5a_3x3": (35, 35, 192),
  "Mixed_5b": (35, 35, 256),
  "Mixed_5c": (35, 35, 288),
  "Mixed_5d": (35, 35, 288),
  "Mixed_6a": (17, 17, 768),
  "Mixed_6b": (17, 17, 768),
  "Mixed_6c": (17, 17, 768),
  "Mixed_6d": (17, 17, 768),
  "Mixed_6e": (17, 17, 768),
  "Mixed_7a": (8, 8, 1280),
  "Mixed_7b": (8, 8, 2048),
  "Mixed_7c": (8, 8, 2048),
  "PreLogits": (2048,),
  "Logits": (1000,),
}
END_POINTS = {
  "googlenet": GOOGLENET_END_POINTS,
  "googlenet_bn": {
    ("MaxPool_5a_2x2" if k == "MaxPool_5a_3x3" else k): v for k, v in GOOGLENET_END_POINTS.items()
  },
  "inception_v2": {"Conv2d_1a_7x7": (147, 147, 64), "MaxPool_3a_3x3": (73, 73, 64), **V3_BODY},
  "inception_v3": {
    "Conv2d_1a_3x3": (149, 149, 32),
    "Conv2d_2a_3x3": (147, 147, 32),
    "Conv2d_2b_3x3": (147, 147, 64),
    "MaxPool_3a_3x3": (73, 73, 64),
    **V3_BODY,
  },
}
# BN-Inception: the shapes tf-slim's inception_v2 (tf-slim 1.1.0) prints for its end points at 224.
BN_INCEPTION_END_POINTS = {
  "Conv2d_1a_7x7": (112, 112, 64),
  "MaxPool_2a_3x3": (56, 56, 64),
  "Conv2d_2b_1x1": (56, 56, 64),
  "Conv2d_2c_3x3": (56, 56, 192),
  "MaxPool_3a_3x3": (28, 28, 192),
  "Mixed_3b": (28, 28, 256),
  "Mixed_3c": (28, 28, 320),
  "Mixed_4a": (14, 14, 576),
  "Mixed_4b": (14, 14, 576),
  "Mixed_4c": (14, 14, 576),
  "Mixed_4d": (14, 14, 576),
  "Mixed_4e": (14, 14, 576),
  "Mixed_5a": (7, 7, 1024),
  "Mixed_5b": (7, 7, 1024),
  "Mixed_5c": (7, 7, 1024),
  "PreLogits": (1024,),
  "Logits": (1000,),
}
END_POINTS["bn_inception"] = BN_INCEPTION_END_POINTS
AUX_HEADS = {
  "googlenet": 2,
  "googlenet_bn": 2,
  "bn_inception": 0,
  "inception_v2": 1,
  "inception_v3": 1,
  "inception_v3_fid": 0,
}
END_POINTS["inception_v3_fid"] = {**END_POINTS["inception_v3"], "Logits": (1008,)}


class Net(NamedTuple):
  """What one eval_shape trace of `init` (return_features=True) shows of a network."""

  features: dict  # end point -> shape without the batch dimension, in the network's order
  aux: tuple  # the aux logits' shapes (train=True)
  dtypes: dict  # end point -> dtype
  variables: Any  # the variables tree of jax.ShapeDtypeStruct
  convs: dict  # ConvBN path -> its `activation` attribute as the network set it
  dropouts: dict  # Dropout path -> (rate, deterministic)


@functools.cache
def _network(name, size, train, overrides):
  model = models.create(name, return_features=True, **dict(overrides))
  size = size or models.default_image_size(name, **dict(overrides))
  convs, dropouts, order = {}, {}, []

  def record(next_fun, args, kwargs, context):
    path = "/".join(context.module.path)
    if context.method_name == "__call__" and isinstance(context.module, ConvBN):
      convs[path] = context.module.activation
    if context.method_name == "__call__" and isinstance(context.module, nn.Dropout):
      dropouts[path] = (context.module.rate, context.module.deterministic)
    return next_fun(*args, **kwargs)

  def init():
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    with nn.intercept_methods(record):
      out = model.init_with_output(rngs, jnp.zeros((1, size, size, 3)), train=train)
    order.extend(out[0])
    return out

  features, variables = jax.eval_shape(init)
  aux = tuple(a.shape[1:] for a in features.get("AuxLogits", ()))
  shapes = {k: tuple(features[k].shape[1:]) for k in order if k != "AuxLogits"}
  dtypes = {k: features[k].dtype for k in order if k != "AuxLogits"}
  return Net(shapes, aux, dtypes, variables, convs, dropouts)


def network(name, size=None, train=True, **overrides):
  """The traced network (cached: tests share traces), at `size` or its default image size."""
  return _network(name, size, train, tuple(sorted(overrides.items())))


# What XLA's shape checks say when a layer meets an empty grid (a window larger than its input).
EMPTY_GRID_ERROR = re.compile(
  r"limit_indices must be greater than or equal to start_indices|negative (dimension|size)", re.I
)


def has_empty_grid(name, size, **overrides):
  """Traces the network at `size`: True if an end point is empty or a layer fails on an empty
  grid. Any other error (the input check's "at least NxN" included) propagates, so a caller that
  meant to trace without the input check learns that the check was still in place."""
  try:
    net = network(name, size, **overrides)
  except (TypeError, ValueError) as e:
    if not EMPTY_GRID_ERROR.search(str(e)):
      raise
    return True
  return any(0 in shape for shape in [*net.features.values(), *net.aux])


def numpy_variables(model, images, seed=0):
  """Variables with the shapes `model.init` gives, filled fast with numpy: He-scaled kernels,
  zero biases, unit BN scales, BN statistics (0, 1)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), images))

  def fill(path, leaf):
    name = path[-1].key
    if name == "kernel":
      fan_in = int(np.prod(leaf.shape[:-1]))
      return jnp.asarray(rng.normal(size=leaf.shape) * np.sqrt(2 / fan_in), leaf.dtype)
    if name in ("scale", "var"):
      return jnp.ones(leaf.shape, leaf.dtype)
    return jnp.zeros(leaf.shape, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


# ---- End points and outputs --------------------------------------------------------------------


@pytest.mark.parametrize("name", models.NAMES)
def test_end_point_shapes_at_the_default_size(name):
  got = network(name).features
  assert list(got) == list(END_POINTS[name])  # the network's order, nothing more, nothing less
  assert got == END_POINTS[name]


@pytest.mark.parametrize("name", models.NAMES)
def test_one_aux_output_per_head_in_training(name):
  net = network(name)
  assert net.aux == ((1000,),) * AUX_HEADS[name]
  assert ("batch_stats" in net.variables) == (name != "googlenet")  # no BN in the paper network


def test_train_returns_logits_and_the_aux_tuple():
  model = models.create("googlenet_bn", num_classes=10, dropout_rate=0.5)
  images = jnp.zeros((2, 224, 224, 3))
  rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
  variables = jax.eval_shape(lambda: model.init(rngs, images))
  (logits, aux), updates = jax.eval_shape(
    lambda v: model.apply(
      v, images, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(2)}
    ),
    variables,
  )
  assert logits.shape == (2, 10) and logits.dtype == jnp.float32
  assert isinstance(aux, tuple) and [a.shape for a in aux] == [(2, 10), (2, 10)]
  assert all(a.dtype == jnp.float32 for a in aux) and set(updates) == {"batch_stats"}
  logits = jax.eval_shape(lambda v: model.apply(v, images), variables)
  assert logits.shape == (2, 10)  # inference: logits only


def test_no_aux_heads():
  net = network("inception_v3", aux_logits=False)
  assert net.aux == () and "AuxLogits" not in net.variables["params"]
  assert net.features == END_POINTS["inception_v3"]


# ---- Overrides change the network as their papers say ------------------------------------------


def test_module_naive_has_no_reductions_and_no_pool_projection():
  naive = network("googlenet", module="naive")
  assert naive.features["Mixed_3b"] == (28, 28, 64 + 128 + 32 + 192)  # pool branch passes 192 on
  assert naive.features["Mixed_3c"] == (28, 28, 128 + 192 + 96 + 416)  # outputs widen
  params = naive.variables["params"]
  assert set(params["Mixed_3b"]) == {"branch1", "branch2", "branch3"}
  assert set(network("googlenet").variables["params"]["Mixed_3b"]) == {
    "branch1",
    "branch2_reduce",
    "branch2",
    "branch3_reduce",
    "branch3",
    "branch4_proj",
  }
  assert params["Mixed_3b"]["branch3"]["conv"]["kernel"].shape == (5, 5, 192, 32)


def test_norm_lrn_vs_bn():
  lrn = network("googlenet").variables
  assert "batch_stats" not in lrn
  assert set(lrn["params"]["Conv2d_1a_7x7"]["conv"]) == {"kernel", "bias"}
  bn = network("googlenet", norm="bn").variables
  assert "batch_stats" in bn and "Conv2d_1a_7x7" in bn["batch_stats"]
  assert set(bn["params"]["Conv2d_1a_7x7"]["conv"]) == {"kernel"}  # BN replaces the bias
  assert set(bn["params"]["Conv2d_1a_7x7"]["bn"]) == {"scale", "bias"}
  # Only the norm changed: still the paper's 5x5 third branch.
  assert bn["params"]["Mixed_3b"]["branch3"]["conv"]["kernel"].shape == (5, 5, 16, 32)


def test_stem_7x7_vs_factorized():
  v2 = network("inception_v2").variables["params"]
  assert v2["Conv2d_1a_7x7"]["conv"]["kernel"].shape == (7, 7, 3, 64)
  assert not any(k in v2 for k in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"))
  v3 = network("inception_v3").variables["params"]
  assert [
    v3[k]["conv"]["kernel"].shape for k in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3")
  ] == [(3, 3, 3, 32), (3, 3, 32, 32), (3, 3, 32, 64)]
  assert network("inception_v2", stem="factorized").features == END_POINTS["inception_v3"]


def test_aux_bn_normalizes_the_aux_heads_fully_connected_layer():
  with_bn, without = network("inception_v3").variables, network("inception_v2").variables
  fc, fc_plain = with_bn["params"]["AuxLogits"]["conv1"], without["params"]["AuxLogits"]["conv1"]
  assert set(fc) == {"conv", "bn"} and "conv1" in with_bn["batch_stats"]["AuxLogits"]
  assert set(fc_plain) == {"conv"} and set(fc_plain["conv"]) == {"kernel", "bias"}
  assert "conv1" not in without["batch_stats"]["AuxLogits"]
  assert fc["conv"]["kernel"].shape == fc_plain["conv"]["kernel"].shape == (5, 5, 128, 768)
  # inception_v2 is the aux_bn=False preset; the override alone flips it.
  assert models.create("inception_v3", aux_bn=False) == models.create(
    "inception_v2", stem="factorized"
  )


def test_factorization_activation_linear_same_params_different_outputs():
  # Rethinking Figure 2: the first layer of each factorized pair is linear instead of ReLU.
  linear = network("inception_v3", factorization_activation="linear")
  assert {path for path, act in linear.convs.items() if not act} == {
    *(f"Mixed_5{c}/branch3x3dbl_2" for c in "bcd"),
    "Mixed_6a/branch3x3dbl_2",
    *(
      f"Mixed_6{c}/{b}" for c in "bcde" for b in ("branch7x7_2", "branch7x7dbl_2", "branch7x7dbl_4")
    ),
    "Mixed_7a/branch7x7x3_2",
  }
  assert all(network("inception_v3").convs.values())
  shapes = lambda tree: jax.tree.map(lambda a: a.shape, tree)  # noqa: E731
  assert shapes(linear.variables) == shapes(network("inception_v3").variables)
  # Same parameters, different function: one Figure-5 module both ways.
  x = jnp.asarray(np.random.default_rng(1).normal(size=(1, 5, 5, 8)), jnp.float32)
  relu_block = Factorized5x5Module(4, width_multiplier=0.1)
  params = numpy_variables(relu_block, x)
  linear_block = Factorized5x5Module(4, width_multiplier=0.1, factorized_activation=False)
  out_relu, out_linear = relu_block.apply(params, x), linear_block.apply(params, x)
  assert out_relu.shape == out_linear.shape and not np.allclose(out_relu, out_linear, atol=1e-4)


@pytest.mark.parametrize("rf", [151, 79])
def test_receptive_field_variants(rf):
  # Rethinking Table 2: stride 1 in the first conv; 79 also drops MaxPool_3a and widens the stem.
  assert models.default_image_size("inception_v3", receptive_field=rf) == rf
  got = network("inception_v3", rf, receptive_field=rf).features
  assert got["Mixed_6a"] == (17, 17, 768) and got["Mixed_7c"] == (8, 8, 2048)
  assert ("MaxPool_3a_3x3" in got) == (rf == 151)  # 79: stride 1 and no pool
  assert got["Conv2d_1a_3x3"] == ((149, 149, 32) if rf == 151 else (77, 77, 63))  # stride 1
  assert got["Conv2d_2b_3x3"] == ((147, 147, 64) if rf == 151 else (73, 73, 126))  # 79: VALID


@pytest.mark.parametrize("name", ["inception_v3", "inception_v2"])
@pytest.mark.parametrize("scale", ["full", "small", "tiny"])
def test_table2_equal_grids_and_equal_cost(name, scale):
  # Table 2's caption: "the computational cost is constant". At every scale of v3_ablations, the
  # three networks reach Mixed_5b (and every later end point) on the same grid and cost within 1%
  # of each other.
  from experiments import v3_ablations

  assert set(v3_ablations.IMAGE_SIZES) == {"full", "small", "tiny"}
  sizes = v3_ablations.IMAGE_SIZES[scale]
  width = v3_ablations.base_config(scale).model_overrides.get("width_multiplier", 1.0)
  grids, costs = {}, {}
  for rf, size in sizes.items():
    model = models.create(name, receptive_field=rf, width_multiplier=width, num_classes=10)
    t = accounting.trace_model(model, size)
    grids[rf] = {
      k: t.output[k].shape[1:3] for k in ("Conv2d_3b_1x1", "Mixed_5b", "Mixed_6a", "Mixed_7c")
    }
    costs[rf] = sum(layer.macs for layer in t.layers if not layer.is_aux)
  assert grids[151] == grids[299] == grids[79], grids
  if scale == "full":
    assert grids[299]["Mixed_5b"] == (35, 35)
  spread = (max(costs.values()) - min(costs.values())) / max(costs.values())
  assert spread < 0.01, (costs, spread)
  assert costs[151] == costs[299]  # the same layers on the same grids after the first conv


def test_table2_stem_widths_balance_the_cost():
  # The rule, not only its result: a wider stem is chosen because the narrow one is cheaper.
  narrow = models.create("inception_v3", receptive_field=79)
  layers_79 = accounting.trace_model(narrow, 79).layers
  widths = [layer.output_shape[-1] for layer in layers_79[:3]]
  assert widths == [63, 63, 126]
  assert inception_v3_module.table2_stem_widths("7x7", (64,), 79, 1, 80) == (191,)


def test_layout_paper():
  net = network("inception_v3", layout="paper")
  assert net.features["Conv2d_4b_3x3"] == (35, 35, 288)  # Table 1: 35x35x288 into Figure 5
  # Section 6: "3 traditional inception modules at the 35x35 with 288 filters each".
  assert net.features["Mixed_5b"] == net.features["Mixed_5c"] == (35, 35, 288)
  assert network("inception_v3").features["Mixed_5b"] == (35, 35, 256)  # released
  assert [k for k in net.features if k.startswith("Mixed_6")] == [
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
    "Mixed_6f",
  ]  # 5 x Figure 6
  assert net.features["Mixed_6f"] == (17, 17, 768)
  params = net.variables["params"]
  assert params["Mixed_5b"]["branch5x5_2"]["conv"]["kernel"].shape == (3, 3, 48, 64)  # Figure 5


def test_width_multiplier():
  net = network("inception_v3", width_multiplier=0.5)
  assert net.features["Conv2d_1a_3x3"] == (149, 149, 16)
  assert net.features["Mixed_5b"] == (35, 35, 128) and net.features["Mixed_7c"] == (8, 8, 1024)
  assert net.features["Logits"] == (1000,) and net.aux == ((1000,),)
  small = accounting.count_params(net.variables, exclude_aux=True)
  assert 0.2 < small / 23_834_568 < 0.35  # about a quarter: widths halve on both sides


def test_dropout_rate():
  # The rate reaches the dropout before the classifier (active in training only); the aux heads
  # keep theirs (GoogLeNet Section 5: 70%).
  train = network("googlenet_bn", dropout_rate=0.5).dropouts
  assert train["Dropout_0"] == (0.5, False)
  assert (
    train["AuxLogits_Mixed_4b/Dropout_0"] == train["AuxLogits_Mixed_4e/Dropout_0"] == (0.7, False)
  )
  assert network("googlenet_bn").dropouts["Dropout_0"] == (0.2, False)  # released default
  assert network("googlenet").dropouts["Dropout_0"] == (0.4, False)  # the paper's 40%
  for bad in (1.0, -0.1):
    with pytest.raises(ValueError, match="dropout_rate must be in"):
      models.create("googlenet", dropout_rate=bad)


def test_dtype_bfloat16():
  net = network("googlenet_bn", dtype="bfloat16")
  assert {leaf.dtype for leaf in jax.tree.leaves(net.variables)} == {jnp.dtype(jnp.float32)}
  assert net.dtypes["Conv2d_1a_7x7"] == net.dtypes["Mixed_5c"] == jnp.bfloat16
  assert net.dtypes["Logits"] == jnp.float32
  with pytest.raises(ValueError, match="dtype must be one of"):
    models.create("googlenet", dtype="int8")


# ---- Bad input raises a clear ValueError -------------------------------------------------------


def test_unknown_model_lists_the_valid_ones():
  with pytest.raises(ValueError, match="unknown model 'inception_v4'") as info:
    models.create("inception_v4")
  assert all(name in str(info.value) for name in models.NAMES)


def test_unknown_override_lists_the_valid_ones():
  with pytest.raises(ValueError, match=r"unknown override\(s\) \['stem'\]") as info:
    models.create("googlenet", stem="7x7")
  assert "pool5_window" in str(info.value) and "branch3_kernel" in str(info.value)


@pytest.mark.parametrize(
  "name,field,value",
  [
    ("googlenet", "norm", "layer"),
    ("googlenet", "module", "tiny"),
    ("googlenet", "branch3_kernel", 7),
    ("googlenet", "pool5_window", 4),
    ("googlenet_bn", "aux_pooling", "max"),
    ("inception_v3", "stem", "5x5"),
    ("inception_v3", "factorization_activation", "tanh"),
    ("inception_v3", "receptive_field", 224),
    ("inception_v2", "layout", "keras"),
  ],
)
def test_invalid_choice_value(name, field, value):
  with pytest.raises(ValueError, match=f"{field} must be one of"):
    models.create(name, **{field: value})


def test_other_invalid_values():
  with pytest.raises(ValueError, match="width_multiplier must be > 0"):
    models.create("inception_v3", width_multiplier=0)
  with pytest.raises(ValueError, match="num_classes must be a positive int"):
    models.create("inception_v3", num_classes=0)


def _init_shapes(model, shape, dtype=jnp.float32):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape, dtype)))


def test_wrong_channel_count():
  with pytest.raises(ValueError, match="3 colour channels"):
    _init_shapes(models.create("googlenet"), (1, 224, 224, 1))


def test_nchw_by_mistake():
  with pytest.raises(ValueError, match="NCHW") as info:
    _init_shapes(models.create("inception_v3"), (1, 3, 299, 299))
  assert "(1, 3, 299, 299)" in str(info.value)


def test_not_a_batch_of_images():
  with pytest.raises(ValueError, match=r"\[batch, height, width, 3\]"):
    _init_shapes(models.create("googlenet"), (224, 224, 3))
  with pytest.raises(ValueError, match="float images"):
    _init_shapes(models.create("googlenet"), (1, 224, 224, 3), jnp.uint8)


# The minimum sizes, for every combination that changes them.
MIN_SIZE_CASES = [
  ("googlenet", {}, 31),
  ("googlenet_bn", {}, 15),
  ("inception_v3", {}, 75),
  ("inception_v2", {}, 75),
  ("inception_v3", dict(receptive_field=151), 39),
  ("inception_v2", dict(receptive_field=151), 39),
  ("inception_v3", dict(receptive_field=79), 23),
  ("inception_v2", dict(receptive_field=79), 23),
]


@pytest.mark.parametrize("name,overrides,size", MIN_SIZE_CASES)
def test_min_image_size_is_the_minimum(name, overrides, size, monkeypatch):
  assert models.min_image_size(name, **overrides) == size
  # The minimum works, aux heads included, with no empty grid anywhere...
  assert not has_empty_grid(name, size, **overrides)
  # ...one pixel less is refused with a clear message...
  with pytest.raises(ValueError, match=f"at least {size}x{size}"):
    network(name, size - 1, **overrides)
  # (has_empty_grid does not mistake that refusal for an empty grid...)
  with pytest.raises(ValueError, match=f"at least {size}x{size}"):
    has_empty_grid(name, size - 1, **overrides)
  # ...and rightly: without the check, the network would fail or produce an empty grid.
  monkeypatch.setattr(googlenet_module, "check_images", lambda *args: None)
  monkeypatch.setattr(inception_v3_module, "check_images", lambda *args: None)
  assert has_empty_grid(name, size - 1, **overrides)
