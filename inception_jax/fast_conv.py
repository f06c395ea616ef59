"""The XLA:CPU fast path of `ConvBN`'s convolution and of pooling (measurements:
docs/PERFORMANCE.md).

Most of it is two per-compilation XLA:CPU options (`compiler_options`), which
`training.step.compile_step` passes to `jax.jit` for every step that applies a model built with
`CPU_KERNELS` (the train step, the eval steps, feature extraction):
  - convolutions as XLA:CPU's Eigen convolutions instead of YNNPACK (XLA's default set of YNNPACK
    fusions less its convolutions; matrix products and reductions stay in YNNPACK). Eigen runs
    every convolution shape of these networks faster here, forward, input gradient and kernel
    gradient (under YNNPACK the kernel gradient was 3-10x slower than the forward pass);
  - the memory-optimised (depth-first) scheduler instead of the concurrency-optimised
    (breadth-first) one: on a few cores each convolution already uses every thread, so running an
    Inception module's branches side by side gains nothing, while running one branch to its end
    keeps its activations in cache.
A `jax.jit` of your own around `model.apply` on the CPU should be
`training.step.compile_step(fn, model)`; without the options convolutions stay in YNNPACK.

In the traced program:
  - 1x1, stride 1, unpadded convolutions are `dot_general` on [B*H*W, C] x [C, F] (matrix
    products in YNNPACK, for the forward pass and both gradients); every other convolution is
    `lax.conv_general_dilated` unchanged. `conv_general_dilated` has the signature of
    `lax.conv_general_dilated`, so it plugs into `flax.linen.Conv(conv_general_dilated=...)`: the
    parameters (`kernel` [kh, kw, in, out], `bias`) are created by `nn.Conv` exactly as before,
    and only the arithmetic changes (the same products, summed in another order).
  - `reduce_window` and its gradient (select-and-scatter for the maximum) are slow on XLA:CPU.
    `max_pool` and `avg_pool` below are separable reductions of strided slices with custom
    gradients written as gathers over slices (the same values and gradients as `flax.linen`'s,
    ties included).

These three are `CPU_KERNELS`, a `layers.Kernels` value. Nothing here is global: `models.create`
chooses the kernels once, when the model is created for a backend (`kernels_for`: these on the
CPU, XLA's standard lowering elsewhere; `kernels="standard"` or `"xla_cpu"` chooses explicitly),
and the model passes them to each layer as a field.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from inception_jax import layers

# NHWC input, HWIO kernel, NHWC output: what flax.linen.Conv passes for 2-D convolutions.
_NHWC = lax.ConvDimensionNumbers(
  lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2)
)


# XLA:CPU options of the fast path, per compilation (measured: docs/PERFORMANCE.md).
CPU_COMPILER_OPTIONS = {
  # = XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=false; that flag's own name is
  # accepted as a per-compilation option but ignored, this one is honoured.
  "xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED",
  # XLA's default YNNPACK set (individual dots, reductions, individual convolutions) less the
  # convolutions = XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution
  # (a per-compilation option takes the full list of enum names, no +/- form).
  "xla_cpu_experimental_ynn_fusion_type": (
    "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"
  ),
}


def compiler_options(model: Any) -> dict[str, Any]:
  """XLA options for `jax.jit(..., compiler_options=...)` of a step that applies `model`: for a
  model built with CPU_KERNELS, on the CPU, those of CPU_COMPILER_OPTIONS that this XLA knows;
  otherwise none. (`training.step.compile_step` is the one caller.)"""
  if getattr(model, "kernels", None) == CPU_KERNELS and jax.default_backend() == "cpu":
    return dict(_known_cpu_options())
  return {}


@functools.cache
def _known_cpu_options() -> tuple[tuple[str, str], ...]:
  """CPU_COMPILER_OPTIONS less any this jaxlib rejects (an unknown option or value fails the
  compilation; the options only change speed, so an older XLA runs without them)."""
  known = []
  for name, value in CPU_COMPILER_OPTIONS.items():
    try:
      jax.jit(jnp.negative, compiler_options={name: value}).lower(jnp.zeros(1)).compile()
    except Exception as e:  # noqa: BLE001 - XLA reports either as a runtime or value error
      warnings.warn(
        f"this XLA rejects the compiler option {name}={value!r}, running without "
        f"it (slower, same results): {str(e).splitlines()[0][:200]}",
        stacklevel=2,
      )
      continue
    known.append((name, value))
  return tuple(known)


def _dimension_numbers(dimension_numbers: Any) -> Any:
  """Any 4-D spec (None, strings or ConvDimensionNumbers) as ConvDimensionNumbers."""
  if dimension_numbers is None:
    return dimension_numbers
  return lax.conv_dimension_numbers((1,) * 4, (1,) * 4, dimension_numbers)


def _routable(
  lhs,
  rhs,
  window_strides,
  lhs_dilation,
  rhs_dilation,
  dimension_numbers,
  feature_group_count,
  batch_group_count,
) -> bool:
  ones = lambda d: d is None or all(v == 1 for v in d)  # noqa: E731
  return (
    lhs.ndim == 4
    and rhs.ndim == 4
    and feature_group_count == 1
    and batch_group_count == 1
    and ones(lhs_dilation)
    and ones(rhs_dilation)
    and _dimension_numbers(dimension_numbers) == _NHWC
    and len(window_strides) == 2
    and lhs.shape[-1] == rhs.shape[2]
  )


def _pads(x, window, strides, padding) -> tuple[tuple[int, int], ...]:
  """Padding of H and W as ((lo, hi), (lo, hi)) ints, from a string ("SAME", "VALID") or pairs."""
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(x.shape[1:3], window, strides, padding)
  return tuple((int(lo), int(hi)) for lo, hi in padding)


def _pad_hw(x, pads, value=0):
  return jnp.pad(x, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)), constant_values=value)


def conv_general_dilated(
  lhs: jax.Array,
  rhs: jax.Array,
  window_strides: Sequence[int],
  padding: str | Sequence[tuple[int, int]],
  lhs_dilation=None,
  rhs_dilation=None,
  dimension_numbers=None,
  feature_group_count: int = 1,
  batch_group_count: int = 1,
  precision=None,
  preferred_element_type=None,
) -> jax.Array:
  """`lax.conv_general_dilated`, with NHWC/HWIO 1x1 stride-1 unpadded convolutions as matrix
  products. Anything else goes to `lax.conv_general_dilated` unchanged."""
  if (
    _routable(
      lhs,
      rhs,
      window_strides,
      lhs_dilation,
      rhs_dilation,
      dimension_numbers,
      feature_group_count,
      batch_group_count,
    )
    and rhs.shape[:2] == (1, 1)
    and tuple(window_strides) == (1, 1)
    and _pads(lhs, (1, 1), (1, 1), padding) == ((0, 0), (0, 0))
  ):
    return conv1x1(lhs, rhs, precision, preferred_element_type)
  return lax.conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=lhs_dilation,
    rhs_dilation=rhs_dilation,
    dimension_numbers=dimension_numbers,
    feature_group_count=feature_group_count,
    batch_group_count=batch_group_count,
    precision=precision,
    preferred_element_type=preferred_element_type,
  )


def conv1x1(
  x: jax.Array, kernel: jax.Array, precision=None, preferred_element_type=None
) -> jax.Array:
  """A 1x1 stride-1 convolution as one matrix product: [B*H*W, C] @ [C, F]."""
  b, h, w, c = x.shape
  y = lax.dot_general(
    x.reshape(b * h * w, c),
    kernel.reshape(c, kernel.shape[-1]),
    (((1,), (0,)), ((), ())),
    precision=precision,
    preferred_element_type=preferred_element_type,
  )
  return y.reshape(b, h, w, kernel.shape[-1])


def taps(
  x: jax.Array,
  kernel_hw: tuple[int, int],
  strides: tuple[int, int],
  pads: Sequence[tuple[int, int]],
  pad_value: float = 0,
) -> list[jax.Array]:
  """The window taps of [B, H, W, C]: for each window position (i, j), row-major, the strided
  view [B, H', W', C] of the padded input that it pools at every output.

  pad_value: what the padding holds (-inf for max pooling).
  """
  kh, kw = kernel_hw
  x = _pad_hw(x, pads, pad_value)
  ho = (x.shape[1] - kh) // strides[0] + 1
  wo = (x.shape[2] - kw) // strides[1] + 1
  return [
    lax.slice(
      x,
      (0, i, j, 0),
      (x.shape[0], i + (ho - 1) * strides[0] + 1, j + (wo - 1) * strides[1] + 1, x.shape[3]),
      (1, strides[0], strides[1], 1),
    )
    for i in range(kh)
    for j in range(kw)
  ]


def max_pool(
  x: jax.Array,
  window: tuple[int, int],
  strides: tuple[int, int],
  padding: str | Sequence[tuple[int, int]],
) -> jax.Array:
  """Max pooling over [B, H, W, C]: a separable maximum of strided slices, with its own gradient.

  The same values as `flax.linen.max_pool` (padding never wins: it is -inf), and the same
  gradient: each output's gradient goes to the first input of its window that attains the
  maximum, as `reduce_window`'s select-and-scatter does. That gradient is computed with
  elementwise selects and slices that XLA fuses, where select-and-scatter is slow on XLA:CPU and
  autodiff of the maxima (ties split with divisions) costs several full-size passes (measured in
  docs/PERFORMANCE.md).
  """
  return _max_pool(x, tuple(window), tuple(strides), _pads(x, window, strides, padding))


def avg_pool(
  x: jax.Array,
  window: tuple[int, int],
  strides: tuple[int, int],
  padding: str | Sequence[tuple[int, int]],
  count_include_pad: bool,
) -> jax.Array:
  """Average pooling over [B, H, W, C] as a separable sum of strided slices, with its own gradient.

  The same values as `flax.linen.avg_pool` to float rounding. count_include_pad=False divides by
  the number of unpadded inputs in each window (a constant from the static shapes). The gradient
  is the same kind of window sum over the spread cotangent, where `reduce_window` and its
  transpose are separate, slower passes on XLA:CPU.
  """
  return _avg_pool(
    x, tuple(window), tuple(strides), _pads(x, window, strides, padding), count_include_pad
  )


def _window_reduce(v, op, window, strides):
  """op over each window of [B, H, W, C]: rows then columns, each a reduction of strided slices."""
  for axis, k, s in ((1, window[0], strides[0]), (2, window[1], strides[1])):
    n = (v.shape[axis] - k) // s + 1
    if isinstance(v, np.ndarray):  # a constant (window counts): stays numpy
      views = [v[(slice(None),) * axis + (slice(i, i + (n - 1) * s + 1, s),)] for i in range(k)]
    else:
      views = [lax.slice_in_dim(v, i, i + (n - 1) * s + 1, s, axis) for i in range(k)]
    v = functools.reduce(op, views)
  return v


def _spread(v, fill, window, strides, pads, hw):
  """v (one entry per window) spread over the padded input of height and width hw: window o's
  entry at o * stride + (kh - 1, kw - 1), `fill` between. The transpose of window tap (i, j) is
  then the slice at offset (kh - 1 - i, kw - 1 - j): the pools' gradients are gathers over these
  slices."""
  config = [(0, 0, 0)] + [
    (k - 1, n + lo + hi - (m - 1) * s - 1, s - 1)
    for k, n, (lo, hi), m, s in zip(window, hw, pads, v.shape[1:3], strides, strict=False)
  ]
  return lax.pad(v, jnp.asarray(fill, v.dtype), config + [(0, 0, 0)])


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, window, strides, pads):
  return _window_reduce(_pad_hw(x, pads, -jnp.inf), jnp.maximum, window, strides)


def _max_pool_fwd(x, window, strides, pads):
  y = _max_pool(x, window, strides, pads)
  return y, (x, y)


def _max_pool_bwd(window, strides, pads, res, g):
  x, y = res
  views = taps(x, window, strides, pads, pad_value=-jnp.inf)
  index = jnp.int8 if len(views) < 128 else jnp.int32
  first = jnp.full(y.shape, len(views) - 1, index)  # the first tap attaining the maximum
  for t in reversed(range(len(views) - 1)):
    first = jnp.where(views[t] == y, t, first)
  (kh, kw), ((top, _), (left, _)) = window, pads
  b, h, w, c = x.shape
  first = _spread(first, -1, window, strides, pads, (h, w))
  g = _spread(g, 0, window, strides, pads, (h, w))
  dx = 0
  for t in range(kh * kw):  # one elementwise pass over x
    i, j = divmod(t, kw)
    at = (0, kh - 1 - i + top, kw - 1 - j + left, 0)
    end = (b, at[1] + h, at[2] + w, c)
    dx = dx + jnp.where(lax.slice(first, at, end) == t, lax.slice(g, at, end), 0)
  return (dx.astype(x.dtype),)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def _window_counts(hw, window, strides, pads, count_include_pad) -> np.ndarray:
  """Inputs counted by each window, [1, H', W', 1] (numpy: a constant)."""
  ones = np.pad(
    np.ones((1, *hw, 1), np.float32),
    ((0, 0), pads[0], pads[1], (0, 0)),
    constant_values=float(count_include_pad),
  )
  return _window_reduce(ones, np.add, window, strides)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def _avg_pool(x, window, strides, pads, count_include_pad):
  y = _window_reduce(_pad_hw(x, pads), jnp.add, window, strides)
  counts = _window_counts(x.shape[1:3], window, strides, pads, count_include_pad)
  return (y / counts.astype(y.dtype)).astype(x.dtype)


def _avg_pool_fwd(x, window, strides, pads, count_include_pad):
  return _avg_pool(x, window, strides, pads, count_include_pad), x.shape


def _avg_pool_bwd(window, strides, pads, count_include_pad, shape, g):
  counts = _window_counts(shape[1:3], window, strides, pads, count_include_pad)
  g = _spread(g / counts.astype(g.dtype), 0, window, strides, pads, shape[1:3])
  (top, _), (left, _) = pads
  g = g[:, top : top + shape[1] + window[0] - 1, left : left + shape[2] + window[1] - 1]
  return (_window_reduce(g, jnp.add, window, (1, 1)),)


_avg_pool.defvjp(_avg_pool_fwd, _avg_pool_bwd)


CPU_KERNELS = layers.Kernels(
  conv_general_dilated=conv_general_dilated, max_pool=max_pool, avg_pool=avg_pool, name="xla_cpu"
)
# The names `models.create(..., kernels=NAME)` accepts ("auto": `kernels_for` the backend).
KERNELS = {"standard": layers.STANDARD_KERNELS, "xla_cpu": CPU_KERNELS}


def kernels_for(backend: str) -> layers.Kernels:
  """The kernels a model created for `backend` computes with: CPU_KERNELS on "cpu", XLA's
  standard lowering on GPU and TPU (whose compilers do well with it)."""
  return CPU_KERNELS if backend == "cpu" else layers.STANDARD_KERNELS
