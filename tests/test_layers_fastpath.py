"""The CPU convolution fast path (inception_jax/fast_conv.py) computes what the standard
`lax.conv_general_dilated` computes, forward and backward, and leaves ConvBN's parameters as they
are. Numbers only: nothing here is timed (docs/PERFORMANCE.md has the timings).

The kernels are a field of every layer, chosen when a model is created: each test builds what it
compares explicitly (`kernels=STANDARD_KERNELS` / `CPU_KERNELS`), so nothing global is switched
and no trace cache needs clearing. Tests of XLA:CPU's compiler options are marked `cpu_only`."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inception_jax import fast_conv, layers, models
from inception_jax.fast_conv import CPU_KERNELS
from inception_jax.layers import STANDARD_KERNELS, ConvBN

DN = ("NHWC", "HWIO", "NHWC")


def _standard(x, k, strides, padding):
  return jax.lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=DN)


def _fast(x, k, strides, padding):
  dn = jax.lax.conv_dimension_numbers(x.shape, k.shape, DN)
  return fast_conv.conv_general_dilated(x, k, strides, padding, dimension_numbers=dn)


def _check_forward_backward(x_shape, k_shape, strides, padding, rtol=1e-4):
  kx, kk, kg = jax.random.split(jax.random.key(sum(x_shape) + sum(k_shape)), 3)
  x = jax.random.normal(kx, x_shape, jnp.float32)
  k = jax.random.normal(kk, k_shape, jnp.float32) / np.sqrt(np.prod(k_shape[:3]))
  y_std = _standard(x, k, strides, padding)
  y_fast = jax.jit(lambda x, k: _fast(x, k, strides, padding))(x, k)
  assert y_fast.shape == y_std.shape and y_fast.dtype == y_std.dtype
  scale = float(jnp.max(jnp.abs(y_std)))
  np.testing.assert_allclose(y_fast, y_std, rtol=rtol, atol=rtol * scale)
  g = jax.random.normal(kg, y_std.shape, jnp.float32)

  def vjp(f):
    return jax.jit(
      lambda x, k, g: jax.vjp(  # noqa: E731
        lambda x, k: f(x, k, strides, padding), x, k
      )[1](g)
    )

  dx_std, dk_std = vjp(_standard)(x, k, g)
  dx_fast, dk_fast = vjp(_fast)(x, k, g)
  for fast, std in ((dx_fast, dx_std), (dk_fast, dk_std)):
    assert fast.shape == std.shape and fast.dtype == std.dtype
    np.testing.assert_allclose(fast, std, rtol=rtol, atol=rtol * float(jnp.max(jnp.abs(std))))


@pytest.mark.parametrize(
  "x_shape,k_shape",
  [
    ((2, 7, 7, 16), (1, 1, 16, 8)),
    ((3, 5, 6, 24), (1, 1, 24, 40)),
    ((1, 1, 1, 5), (1, 1, 5, 3)),
  ],
)
def test_1x1_stride1_equals_standard(x_shape, k_shape):
  _check_forward_backward(x_shape, k_shape, (1, 1), "VALID")
  _check_forward_backward(x_shape, k_shape, (1, 1), [(0, 0), (0, 0)])


@pytest.mark.parametrize(
  "x_shape,k_shape,strides,padding",
  [
    ((2, 9, 9, 4), (3, 3, 4, 6), (1, 1), [(1, 1), (1, 1)]),  # 3x3, padded
    ((2, 9, 9, 4), (3, 3, 4, 6), (1, 1), "VALID"),
    ((2, 11, 11, 3), (3, 3, 3, 8), (2, 2), "VALID"),  # stem 3x3/2
    ((2, 10, 10, 3), (7, 7, 3, 8), (2, 2), [(3, 3), (3, 3)]),  # GoogLeNet conv1 7x7/2
    ((2, 8, 8, 6), (5, 5, 6, 4), (1, 1), [(2, 2), (2, 2)]),  # 5x5
    ((2, 7, 7, 6), (1, 7, 6, 5), (1, 1), [(0, 0), (3, 3)]),  # 1x7
    ((2, 7, 7, 6), (7, 1, 6, 5), (1, 1), [(3, 3), (0, 0)]),  # 7x1
    ((2, 6, 6, 6), (1, 3, 6, 5), (1, 1), [(0, 1), (1, 0)]),  # asymmetric padding
    ((2, 9, 9, 5), (3, 3, 5, 4), (2, 2), "SAME"),  # SAME, stride 2
    ((2, 8, 8, 5), (1, 1, 5, 4), (2, 2), "VALID"),  # 1x1 stride 2
    ((2, 5, 5, 6), (5, 5, 6, 7), (1, 1), "VALID"),  # aux head "fc" conv
  ],
)
def test_other_kernels_are_the_standard_convolution(x_shape, k_shape, strides, padding):
  """Every convolution but the 1x1 stride-1 ones stays `lax.conv_general_dilated` (its speed on
  the CPU comes from the compiler options): the same program, so the same numbers, bit for bit."""
  x, k = jnp.ones(x_shape), jnp.ones(k_shape)

  def step(f):
    return jax.make_jaxpr(
      jax.grad(  # noqa: E731
        lambda x, k: jnp.sum(f(x, k, strides, padding) ** 2), argnums=(0, 1)
      )
    )(x, k)

  jaxpr = str(step(_fast))
  assert "conv_general_dilated" in jaxpr and "dot_general" not in jaxpr
  assert "custom" not in jaxpr and jaxpr == str(step(_standard))


def test_unroutable_convolutions_fall_back_to_standard():
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 6))
  k = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))  # grouped: 6 inputs in 2 groups
  dn = jax.lax.conv_dimension_numbers(x.shape, k.shape, DN)
  y = fast_conv.conv_general_dilated(
    x, k, (1, 1), "SAME", dimension_numbers=dn, feature_group_count=2
  )
  np.testing.assert_array_equal(
    y,
    jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=dn, feature_group_count=2),
  )
  k = jax.random.normal(jax.random.key(2), (3, 3, 6, 4))  # dilated
  jaxpr = jax.make_jaxpr(
    lambda x, k: fast_conv.conv_general_dilated(
      x, k, (1, 1), "SAME", rhs_dilation=(2, 2), dimension_numbers=dn
    )
  )(x, k)
  assert "conv_general_dilated" in str(jaxpr) and "custom_vjp" not in str(jaxpr)


def test_bfloat16_matches_standard():
  x = jax.random.normal(jax.random.key(0), (2, 6, 6, 8), jnp.bfloat16)
  for k_shape, pad in (((1, 1, 8, 4), "VALID"), ((3, 3, 8, 4), "SAME")):
    k = (jax.random.normal(jax.random.key(1), k_shape) * 0.2).astype(jnp.bfloat16)
    y_std, y_fast = _standard(x, k, (1, 1), pad), _fast(x, k, (1, 1), pad)
    assert y_fast.dtype == jnp.bfloat16
    np.testing.assert_allclose(
      y_fast.astype(jnp.float32), y_std.astype(jnp.float32), rtol=2e-2, atol=2e-2
    )
    dk = jax.grad(lambda k, pad=pad: jnp.sum(_fast(x, k, (1, 1), pad).astype(jnp.float32)))(k)
    dk_std = jax.grad(lambda k, pad=pad: jnp.sum(_standard(x, k, (1, 1), pad).astype(jnp.float32)))(
      k
    )
    assert dk.dtype == jnp.bfloat16
    np.testing.assert_allclose(
      dk.astype(jnp.float32), dk_std.astype(jnp.float32), rtol=2e-2, atol=5e-2
    )


def test_kernels_are_chosen_once_when_the_model_is_created():
  assert models.create("googlenet_bn", backend="cpu").kernels == CPU_KERNELS
  for backend in ("gpu", "tpu"):
    assert models.create("googlenet_bn", backend=backend).kernels == STANDARD_KERNELS
  default = models.create("inception_v3").kernels
  assert default == (CPU_KERNELS if jax.default_backend() == "cpu" else STANDARD_KERNELS)
  assert models.create("googlenet", kernels="standard", backend="cpu").kernels == STANDARD_KERNELS
  assert models.create("bn_inception", kernels="xla_cpu", backend="gpu").kernels == CPU_KERNELS
  assert models.create("googlenet", kernels=CPU_KERNELS).kernels == CPU_KERNELS
  with pytest.raises(ValueError, match="kernels must be 'auto', one of"):
    models.create("googlenet", kernels="sideways")


def test_model_kernels_reach_every_layer():
  """A network created with the CPU kernels has no reduce_window (pools) and only the non-1x1
  convolutions left in its program, and computes what the standard kernels compute."""
  size = models.min_image_size("googlenet_bn")
  x = jax.random.normal(jax.random.key(0), (1, size, size, 3))
  fast = models.create("googlenet_bn", num_classes=7, width_multiplier=0.1, kernels="xla_cpu")
  standard = fast.clone(kernels=STANDARD_KERNELS)
  variables = standard.init(jax.random.key(1), x)
  jaxprs = {
    k: str(jax.make_jaxpr(m.apply)(variables, x)) for k, m in [("f", fast), ("s", standard)]
  }
  assert "reduce_window" in jaxprs["s"] and "reduce_window" not in jaxprs["f"]
  assert jaxprs["f"].count("conv_general_dilated") < jaxprs["s"].count("conv_general_dilated")
  np.testing.assert_allclose(
    fast.apply(variables, x), standard.apply(variables, x), rtol=1e-4, atol=1e-4
  )


@pytest.mark.parametrize(
  "kernel_size,strides,padding,norm",
  [
    (1, 1, "VALID", "bn"),
    (3, 2, "VALID", "bn"),
    ((1, 7), 1, (0, 3), "bn"),
    (5, 1, 2, None),
  ],
)
def test_convbn_same_parameters_and_outputs(kernel_size, strides, padding, norm):
  x = jax.random.normal(jax.random.key(0), (2, 9, 9, 5))
  results = {}
  for mode, kernels in (("off", STANDARD_KERNELS), ("on", CPU_KERNELS)):
    layer = ConvBN(6, kernel_size, strides=strides, padding=padding, norm=norm, kernels=kernels)
    variables = layer.init(jax.random.key(1), x)

    def loss(params, x, layer=layer, variables=variables):
      y, _ = layer.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
      return jnp.sum(jnp.sin(y))

    results[mode] = (
      variables,
      layer.apply(variables, x),
      jax.grad(loss, argnums=(0, 1))(variables["params"], x),
    )
  (v_off, y_off, g_off), (v_on, y_on, g_on) = results["off"], results["on"]
  # Identical parameter tree: same paths, shapes and (same-seed) initial values.
  assert jax.tree.structure(v_on) == jax.tree.structure(v_off)
  jax.tree.map(np.testing.assert_array_equal, v_on, v_off)
  kernel = v_on["params"]["conv"]["kernel"]
  ks = (kernel_size,) * 2 if isinstance(kernel_size, int) else kernel_size
  assert kernel.shape == (*ks, 5, 6)
  assert set(v_on["params"]) == ({"conv", "bn"} if norm else {"conv"})
  np.testing.assert_allclose(y_on, y_off, rtol=1e-4, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), g_on, g_off)


def test_convbn_routes_through_dot_on_1x1():
  """With the CPU kernels a 1x1 ConvBN has no convolution left in its program; without, it does."""
  x = jnp.ones((1, 3, 3, 2))
  fast, standard = ConvBN(4, 1, kernels=CPU_KERNELS), ConvBN(4, 1)
  variables = standard.init(jax.random.key(0), x)
  assert "conv_general_dilated" not in str(jax.make_jaxpr(fast.apply)(variables, x))
  assert "conv_general_dilated" in str(jax.make_jaxpr(standard.apply)(variables, x))


def test_nn_conv_hook_is_the_only_change():
  """The fast path is passed to flax's own nn.Conv, so parameter creation is nn.Conv's."""
  conv = nn.Conv(3, (3, 3), conv_general_dilated=fast_conv.conv_general_dilated)
  x = jnp.ones((1, 5, 5, 2))
  v_fast = conv.init(jax.random.key(0), x)
  v_std = nn.Conv(3, (3, 3)).init(jax.random.key(0), x)
  jax.tree.map(np.testing.assert_array_equal, v_fast, v_std)


def _check_pool(std, fast, x, exact=True):
  """fast(x) against std(x) (flax.linen's reduce_window pools), values and input gradients."""
  y_std, y_fast = std(x), jax.jit(fast)(x)
  assert y_fast.shape == y_std.shape and y_fast.dtype == y_std.dtype
  if exact:
    np.testing.assert_array_equal(y_fast, y_std)
  else:
    np.testing.assert_allclose(y_fast, y_std, rtol=1e-6, atol=1e-6)
  g = jax.random.normal(jax.random.key(1), y_std.shape)
  dx_std = jax.vjp(std, x)[1](g)[0]
  dx_fast = jax.jit(lambda x, g: jax.vjp(fast, x)[1](g)[0])(x, g)
  np.testing.assert_allclose(dx_fast, dx_std, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
  "shape,window,strides,padding",
  [
    ((2, 9, 9, 4), (3, 3), (1, 1), [(1, 1), (1, 1)]),  # the Inception modules' pool branch
    ((2, 11, 11, 3), (3, 3), (2, 2), "VALID"),  # grid reductions, v3 stem
    ((2, 10, 10, 3), (3, 3), (2, 2), [(0, 1), (0, 1)]),  # GoogLeNet's ceil-mode pools
    ((2, 7, 7, 5), (2, 2), (2, 2), [(0, 1), (0, 1)]),  # googlenet_bn's 2x2 pool before 5a
    ((1, 6, 5, 2), (3, 3), (2, 2), "SAME"),
  ],
)
def test_max_pool_equals_reduce_window(shape, window, strides, padding):
  x = jax.random.normal(jax.random.key(sum(shape)), shape)  # continuous values: no ties
  _check_pool(
    lambda x: nn.max_pool(x, window, strides, padding=padding),
    lambda x: fast_conv.max_pool(x, window, strides, padding),
    x,
  )


@pytest.mark.parametrize(
  "strides,padding", [((1, 1), [(1, 1), (1, 1)]), ((2, 2), "VALID"), ((2, 2), [(0, 1), (0, 1)])]
)
def test_max_pool_ties_go_to_the_first_maximum(strides, padding):
  """Tied windows (ReLU zeros, repeated values): the gradient goes where reduce_window sends it."""
  x = jnp.round(jax.random.normal(jax.random.key(3), (2, 9, 9, 3)))
  x = x.at[:, :4].set(0.0)  # whole windows of zeros
  _check_pool(
    lambda x: nn.max_pool(x, (3, 3), strides, padding=padding),
    lambda x: fast_conv.max_pool(x, (3, 3), strides, padding),
    x,
  )


@pytest.mark.parametrize(
  "shape,window,strides,padding,count_include_pad",
  [
    ((2, 9, 9, 4), (3, 3), (1, 1), [(1, 1), (1, 1)], False),  # v3 pool branch (tf-slim)
    ((2, 9, 9, 4), (3, 3), (1, 1), [(1, 1), (1, 1)], True),  # v3 pool branch (torchvision)
    ((2, 17, 17, 3), (5, 5), (3, 3), "VALID", False),  # aux heads' 5x5/3
    ((2, 10, 11, 3), (3, 3), (2, 2), [(0, 1), (1, 0)], False),  # asymmetric, stride 2
    ((1, 6, 5, 2), (3, 3), (2, 2), "SAME", True),
  ],
)
def test_avg_pool_equals_reduce_window(shape, window, strides, padding, count_include_pad):
  x = jax.random.normal(jax.random.key(sum(shape)), shape)
  _check_pool(
    lambda x: nn.avg_pool(x, window, strides, padding=padding, count_include_pad=count_include_pad),
    lambda x: fast_conv.avg_pool(x, window, strides, padding, count_include_pad),
    x,
    exact=False,
  )


@pytest.mark.parametrize(
  "pool,args",
  [
    ("max_pool", dict(window=3, stride=2, padding=0, ceil_mode=True)),
    ("avg_pool", dict(window=3, stride=1, padding=1)),
  ],
)
def test_layers_pools_use_the_kernels_given(pool, args):
  pool = getattr(layers, pool)
  x = jax.random.normal(jax.random.key(0), (1, 9, 9, 2))
  fast = jax.make_jaxpr(lambda x: pool(x, **args, kernels=CPU_KERNELS))(x)
  assert "reduce_window" not in str(fast)
  assert "reduce_window" in str(jax.make_jaxpr(lambda x: pool(x, **args))(x))
  y_on = pool(x, **args, kernels=CPU_KERNELS)
  np.testing.assert_allclose(y_on, pool(x, **args), rtol=1e-6, atol=1e-6)


def _ynn_opcodes(compiled_text):
  """The HLO opcodes inside the fusions that XLA:CPU handed to YNNPACK in a compiled program."""
  bodies = dict(re.findall(r"\n(%[\w.\-]+) \([^\n]*\{\n(.*?)\n\}", compiled_text, re.S))
  called = re.findall(r"kind=kCustom, calls=(%[\w.\-]+)[^\n]*__ynn_fusion", compiled_text)
  return {op for c in called for op in re.findall(r"= \S+ ([a-z\-]+)\(", bodies[c])}


@pytest.mark.cpu_only
def test_step_compiler_options(monkeypatch):
  """On the CPU fast path the train and eval steps ask XLA:CPU for its memory-optimised scheduler
  and for Eigen convolutions, options XLA honours per compilation: the scheduler reorders a
  program with parallel branches, and convolutions leave YNNPACK while matrix products and
  reductions stay there. Off the fast path there are none."""
  from inception_jax import models, speed
  from inception_jax.evaluation import evaluate
  from inception_jax.training import parallel

  model = models.create("googlenet_bn", kernels="xla_cpu")
  opts = fast_conv.compiler_options(model)
  assert opts == fast_conv.CPU_COMPILER_OPTIONS  # this jaxlib knows both
  scheduler = {"xla_cpu_scheduler_type": opts["xla_cpu_scheduler_type"]}
  libraries = {"xla_cpu_experimental_ynn_fusion_type": opts["xla_cpu_experimental_ynn_fusion_type"]}

  def branches(x):
    return sum(jnp.sum(jnp.tanh(jnp.sin(x * i) @ x) @ x) for i in range(1, 5))

  x = jnp.ones((32, 32))
  default = jax.jit(branches).lower(x).compile().as_text()
  assert jax.jit(branches, compiler_options=scheduler).lower(x).compile().as_text() != default

  def conv_dot_reduce(x, k, a):
    y = jax.lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=DN)
    return y, jnp.sum(a * a, axis=0), a @ a

  args = (
    jnp.ones((8, 35, 35, 96)),
    jnp.ones((3, 3, 96, 96)),
    jnp.ones((256, 256)),
  )  # big enough for YNNPACK
  lowered = jax.jit(conv_dot_reduce).lower(*args)
  as_default = _ynn_opcodes(lowered.compile().as_text())
  as_fast = _ynn_opcodes(lowered.compile(compiler_options=libraries).as_text())
  assert {"convolution", "dot", "reduce"} <= as_default
  assert "convolution" not in as_fast and {"dot", "reduce"} <= as_fast

  seen, real_jit = [], jax.jit
  monkeypatch.setattr(
    jax, "jit", lambda fn, **kwargs: seen.append(kwargs) or real_jit(fn, **kwargs)
  )
  speed.make_train_step(model, "googlenet_bn")
  speed.make_eval_step(model)
  evaluate.Evaluator(model, parallel.make_mesh())
  assert sum(kw.get("compiler_options") == opts for kw in seen) == 3
  assert fast_conv.compiler_options(model.clone(kernels=STANDARD_KERNELS)) == {}


@pytest.mark.cpu_only
def test_eigen_convolutions_match_ynnpack():
  """The convolution library the fast path picks changes only the rounding: forward and input
  gradient of a strided and an unstrided layer agree with XLA's default to float32 precision."""
  libraries = {
    "xla_cpu_experimental_ynn_fusion_type": fast_conv.CPU_COMPILER_OPTIONS[
      "xla_cpu_experimental_ynn_fusion_type"
    ]
  }
  for stride, x_shape, k_shape in [
    (1, (2, 17, 17, 32), (3, 3, 32, 48)),
    (2, (2, 35, 35, 24), (3, 3, 24, 40)),
  ]:
    kx, kk, kg = jax.random.split(jax.random.key(stride), 3)
    x, k = jax.random.normal(kx, x_shape), jax.random.normal(kk, k_shape)

    def f(x, k, stride=stride):
      y = _standard(x, k, (stride, stride), "SAME")
      return y, jax.grad(lambda x: jnp.sum(_standard(x, k, (stride, stride), "SAME") ** 2))(x)

    lowered = jax.jit(f).lower(x, k)
    for a, b in zip(
      lowered.compile()(x, k), lowered.compile(compiler_options=libraries)(x, k), strict=False
    ):
      np.testing.assert_allclose(b, a, rtol=2e-5, atol=2e-5 * float(jnp.max(jnp.abs(a))))


@pytest.mark.cpu_only
def test_unknown_compiler_option_is_dropped_with_a_warning(monkeypatch):
  """An XLA that rejects one of the options (an older jaxlib) runs without it and says so."""
  model = models.create("googlenet", kernels="xla_cpu")
  monkeypatch.setattr(
    fast_conv,
    "CPU_COMPILER_OPTIONS",
    {**fast_conv.CPU_COMPILER_OPTIONS, "xla_cpu_no_such_option": "1"},
  )
  fast_conv._known_cpu_options.cache_clear()
  try:
    with pytest.warns(UserWarning, match="xla_cpu_no_such_option"):
      opts = fast_conv.compiler_options(model)
    assert "xla_cpu_no_such_option" not in opts and "xla_cpu_scheduler_type" in opts
  finally:
    fast_conv._known_cpu_options.cache_clear()
