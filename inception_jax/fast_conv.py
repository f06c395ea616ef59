"""The XLA:CPU fast path of `ConvBN`'s convolution and of pooling (measurements: docs/PERFORMANCE.md).

On XLA:CPU a convolution's kernel gradient (the transpose of `lax.conv_general_dilated` with
respect to the kernel) runs as a "convolution" whose window is the whole image, far from the
matrix-product speed the same machine reaches: measured here it is 3-10x slower than the forward
pass of the same layer, and it dominated the Inception training step. A 1x1 convolution is exactly
a matrix product over [batch * height * width, channels], and the kernel gradient of any
convolution is a matrix product of image patches (im2col) with the output gradient. So on CPU:

  - 1x1, stride 1, no padding: `dot_general` on [B*H*W, C] x [C, F]; autodiff gives matrix
    products for both gradients.
  - any other kernel: `jax.custom_vjp` with the standard convolution forward, the standard input
    gradient (both run well on XLA:CPU), and the kernel gradient as patches^T @ grad: for large
    images one [C, F] product per kernel tap in a `lax.scan` over image pairs (the working set
    stays in cache), for small ones one im2col product over the batch.
  - unpadded ("VALID") convolutions get one zero column on the right that no kept output reads:
    XLA:CPU runs a convolution without any padding 1.3-4.5x slower than the same convolution with
    some (the Inception-v3 stem is full of them).

`conv_general_dilated` has the signature of `lax.conv_general_dilated`, so it plugs into
`flax.linen.Conv(conv_general_dilated=...)`: the parameters (`kernel` [kh, kw, in, out], `bias`)
are created by `nn.Conv` exactly as before, and only the arithmetic changes (the same products,
summed in another order: results agree to float rounding).

Pooling has the same problem: `reduce_window` and its gradient (select-and-scatter for the
maximum) are slow on XLA:CPU. `max_pool` and `avg_pool` below are separable reductions of strided
slices with custom gradients written as gathers over slices (the same values and gradients as
`flax.linen`'s, ties included), and `layers.max_pool` / `layers.avg_pool` use them under the same
switch.

The train and eval steps are compiled with two XLA:CPU options (`compiler_options`):
  - the memory-optimised (depth-first) scheduler instead of the concurrency-optimised
    (breadth-first) one: on a few cores each convolution already uses every thread, so running an
    Inception module's branches side by side gains nothing, while running one branch to its end
    keeps its activations in cache;
  - XLA's default set of YNNPACK fusions without its convolutions (matrix products and reductions
    stay in YNNPACK): the convolutions then run as XLA:CPU's Eigen convolutions, faster here for
    every convolution shape of these networks, forward and input gradient alike.

One switch: `enabled()`. The module attribute `MODE` (None by default) or else the environment
variable INCEPTION_JAX_FAST_CONV: "auto" (default: on when JAX's default backend is the CPU, so
GPU and TPU keep the standard lowering), "on" (everywhere; for tests and A/B runs) or "off". It is
read when a function is traced: after changing it, re-jit (or `jax.clear_caches()`).
"""
from __future__ import annotations

import functools
import os
import warnings
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

ENV_VAR = "INCEPTION_JAX_FAST_CONV"
MODE: str | None = None  # overrides the environment variable when set: "auto", "on" or "off"
_ON, _OFF, _AUTO = ("1", "on", "true", "yes", "force"), ("0", "off", "false", "no"), ("", "auto")

# NHWC input, HWIO kernel, NHWC output: what flax.linen.Conv passes for 2-D convolutions.
_NHWC = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))


def mode() -> str:
    """The fast-path setting in force: "auto", "on" or "off"."""
    value = MODE if MODE is not None else os.environ.get(ENV_VAR, "auto")
    value = str(value).strip().lower()
    if value in _ON:
        return "on"
    if value in _OFF:
        return "off"
    if value in _AUTO:
        return "auto"
    raise ValueError(f"{ENV_VAR} (or fast_conv.MODE) must be auto, on or off; got {value!r}")


def enabled() -> bool:
    """Whether `ConvBN` routes its convolution through `conv_general_dilated` below."""
    m = mode()
    return m == "on" or (m == "auto" and jax.default_backend() == "cpu")


# XLA:CPU options of the fast path, per compilation (measured: docs/PERFORMANCE.md).
CPU_COMPILER_OPTIONS = {
    # = XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=false; that flag's own name is
    # accepted as a per-compilation option but ignored, this one is honoured.
    "xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED",
    # XLA's default YNNPACK set (individual dots, reductions, individual convolutions) less the
    # convolutions = XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution
    # (a per-compilation option takes the full list of enum names, no +/- form).
    "xla_cpu_experimental_ynn_fusion_type":
        "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE",
}


def compiler_options() -> dict[str, Any]:
    """XLA options for `jax.jit(..., compiler_options=...)` of the train and eval steps: on the CPU
    fast path those of CPU_COMPILER_OPTIONS that this XLA knows, elsewhere none."""
    if enabled() and jax.default_backend() == "cpu":
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
            warnings.warn(f"this XLA rejects the compiler option {name}={value!r}, running without "
                          f"it (slower, same results): {str(e).splitlines()[0][:200]}")
            continue
        known.append((name, value))
    return tuple(known)


def _dimension_numbers(dimension_numbers: Any) -> Any:
    """Any 4-D spec (None, strings or ConvDimensionNumbers) as ConvDimensionNumbers."""
    if dimension_numbers is None:
        return dimension_numbers
    return lax.conv_dimension_numbers((1,) * 4, (1,) * 4, dimension_numbers)


def _routable(lhs, rhs, window_strides, lhs_dilation, rhs_dilation, dimension_numbers,
              feature_group_count, batch_group_count) -> bool:
    ones = lambda d: d is None or all(v == 1 for v in d)  # noqa: E731
    return (lhs.ndim == 4 and rhs.ndim == 4 and feature_group_count == 1 and batch_group_count == 1
            and ones(lhs_dilation) and ones(rhs_dilation)
            and _dimension_numbers(dimension_numbers) == _NHWC
            and len(window_strides) == 2 and lhs.shape[-1] == rhs.shape[2])


def _pads(x, window, strides, padding) -> tuple[tuple[int, int], ...]:
    """Padding of H and W as ((lo, hi), (lo, hi)) ints, from a string ("SAME", "VALID") or pairs."""
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(x.shape[1:3], window, strides, padding)
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def _pad_hw(x, pads, value=0):
    return jnp.pad(x, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)), constant_values=value)


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                         padding: str | Sequence[tuple[int, int]], lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision=None,
                         preferred_element_type=None) -> jax.Array:
    """`lax.conv_general_dilated` with the CPU fast path for NHWC/HWIO 2-D convolutions.

    Anything else (dilation, groups, other layouts) goes to `lax.conv_general_dilated` unchanged.
    """
    if not _routable(lhs, rhs, window_strides, lhs_dilation, rhs_dilation, dimension_numbers,
                     feature_group_count, batch_group_count):
        return lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count, batch_group_count=batch_group_count,
            precision=precision, preferred_element_type=preferred_element_type)
    kh, kw = rhs.shape[:2]
    strides = tuple(int(s) for s in window_strides)
    pads = _pads(lhs, (kh, kw), strides, padding)
    if (kh, kw) == (1, 1) and strides == (1, 1) and pads == ((0, 0), (0, 0)):
        return conv1x1(lhs, rhs, precision, preferred_element_type)
    return _conv_patch_grad(lhs, rhs, strides, pads, precision, preferred_element_type)


def conv1x1(x: jax.Array, kernel: jax.Array, precision=None,
            preferred_element_type=None) -> jax.Array:
    """A 1x1 stride-1 convolution as one matrix product: [B*H*W, C] @ [C, F]."""
    b, h, w, c = x.shape
    y = lax.dot_general(x.reshape(b * h * w, c), kernel.reshape(c, kernel.shape[-1]),
                        (((1,), (0,)), ((), ())), precision=precision,
                        preferred_element_type=preferred_element_type)
    return y.reshape(b, h, w, kernel.shape[-1])


def _standard(x, kernel, strides, pads, precision, preferred_element_type):
    conv = functools.partial(lax.conv_general_dilated, dimension_numbers=_NHWC,
                             precision=precision, preferred_element_type=preferred_element_type)
    if any(lo or hi for lo, hi in pads):
        return conv(x, kernel, strides, pads)
    # Unpadded ("VALID") convolutions run 1.3-4.5x slower on XLA:CPU than the same convolution
    # with any padding (docs/PERFORMANCE.md). One zero column on the right, which no kept output
    # reads, moves it to the fast kernel; the extra output column (if any) is cropped.
    wo = (x.shape[2] - kernel.shape[1]) // strides[1] + 1
    return conv(x, kernel, strides, (pads[0], (0, 1)))[:, :, :wo]


def taps(x: jax.Array, kernel_hw: tuple[int, int], strides: tuple[int, int],
         pads: Sequence[tuple[int, int]], rows: slice | None = None,
         pad_value: float = 0) -> list[jax.Array]:
    """The window taps of [B, H, W, C]: for each kernel position (i, j), row-major, the strided
    view [B, H', W', C] of the padded input that it multiplies (or pools) at every output.

    rows: only these kernel rows. pad_value: what the padding holds (-inf for max pooling).
    """
    kh, kw = kernel_hw
    x = _pad_hw(x, pads, pad_value)
    ho = (x.shape[1] - kh) // strides[0] + 1
    wo = (x.shape[2] - kw) // strides[1] + 1
    return [lax.slice(x, (0, i, j, 0),
                      (x.shape[0], i + (ho - 1) * strides[0] + 1, j + (wo - 1) * strides[1] + 1,
                       x.shape[3]), (1, strides[0], strides[1], 1))
            for i in range(kh)[rows or slice(None)] for j in range(kw)]


def patches(x: jax.Array, kernel_hw: tuple[int, int], strides: tuple[int, int],
            pads: Sequence[tuple[int, int]], rows: slice | None = None) -> jax.Array:
    """im2col: [B, H, W, C] -> [B, H', W', kh * kw * C], taps in the kernel's (kh, kw, C) order.

    rows: only these kernel rows (then kh is the length of the slice).
    """
    views = taps(x, kernel_hw, strides, pads, rows)
    return views[0] if len(views) == 1 else jnp.concatenate(views, axis=-1)


# Above this many bytes of im2col patches, the kernel gradient is computed one kernel row at a time.
PATCH_BYTES_LIMIT = 256 * 2**20
# From this many output positions per image (28x28), the kernel gradient loops over the batch.
SCAN_MIN_POSITIONS = 28 * 28


def kernel_grad(x: jax.Array, g: jax.Array, kernel_shape: tuple[int, int, int, int],
                strides: tuple[int, int], pads: Sequence[tuple[int, int]],
                precision=None) -> jax.Array:
    """d(conv(x, k))/dk contracted with g: patches(x)^T @ g, as [kh, kw, C, F] in float32.

    Large images (at least SCAN_MIN_POSITIONS outputs per image): a `lax.scan` over pairs of
    images, each adding one [C, F] product per kernel tap, so that the working set stays in cache
    (2-6x faster than one im2col product over the batch for the stem layers: docs/PERFORMANCE.md).
    Smaller images: one im2col product for the whole batch.
    """
    kh, kw, c, f = kernel_shape
    b, ho, wo = g.shape[:3]
    if ho * wo >= SCAN_MIN_POSITIONS:
        chunk = 2 if b % 2 == 0 else 1
        if chunk == b:
            return _tap_products(x, g, kernel_shape, strides, pads, precision)
        xs = x.reshape(b // chunk, chunk, *x.shape[1:])
        gs = g.reshape(b // chunk, chunk, *g.shape[1:])
        dk, _ = lax.scan(
            lambda acc, xg: (acc + _tap_products(*xg, kernel_shape, strides, pads, precision), None),
            jnp.zeros(kernel_shape, jnp.float32), (xs, gs))
        return dk
    g2 = g.reshape(-1, f)
    contract = (((0,), (0,)), ((), ()))
    n = g2.shape[0]
    if n * kh * kw * c * x.dtype.itemsize <= PATCH_BYTES_LIMIT or kh == 1:
        p = patches(x, (kh, kw), strides, pads).reshape(n, kh * kw * c)
        dk = lax.dot_general(p, g2, contract, precision=precision,
                             preferred_element_type=jnp.float32)
        return dk.reshape(kh, kw, c, f)
    rows = []
    for i in range(kh):
        p = patches(x, (kh, kw), strides, pads, rows=slice(i, i + 1)).reshape(n, kw * c)
        rows.append(lax.dot_general(p, g2, contract, precision=precision,
                                    preferred_element_type=jnp.float32).reshape(1, kw, c, f))
    return jnp.concatenate(rows, axis=0)


def _tap_products(x, g, kernel_shape, strides, pads, precision):
    """The kernel gradient as one [C, F] product per tap: shifted(x)^T @ g, stacked [kh, kw, C, F]."""
    kh, kw, c, f = kernel_shape
    g2 = g.reshape(-1, f)
    return jnp.stack([lax.dot_general(t.reshape(-1, c), g2, (((0,), (0,)), ((), ())),
                                      precision=precision, preferred_element_type=jnp.float32)
                      for t in taps(x, (kh, kw), strides, pads)]).reshape(kernel_shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _conv_patch_grad(x, kernel, strides, pads, precision, preferred_element_type):
    return _standard(x, kernel, strides, pads, precision, preferred_element_type)


def _conv_patch_grad_fwd(x, kernel, strides, pads, precision, preferred_element_type):
    return _conv_patch_grad(x, kernel, strides, pads, precision, preferred_element_type), (x, kernel)


def _conv_patch_grad_bwd(strides, pads, precision, preferred_element_type, res, g):
    x, kernel = res
    # Input gradient: exactly what autodiff of the standard convolution computes.
    _, vjp_x = jax.vjp(lambda x: _standard(x, kernel, strides, pads, precision,
                                           preferred_element_type), x)
    (dx,) = vjp_x(g)
    dk = kernel_grad(x, g.astype(x.dtype), kernel.shape, strides, pads, precision)
    return dx, dk.astype(kernel.dtype)


_conv_patch_grad.defvjp(_conv_patch_grad_fwd, _conv_patch_grad_bwd)


def max_pool(x: jax.Array, window: tuple[int, int], strides: tuple[int, int],
             padding: str | Sequence[tuple[int, int]]) -> jax.Array:
    """Max pooling over [B, H, W, C]: a separable maximum of strided slices, with its own gradient.

    The same values as `flax.linen.max_pool` (padding never wins: it is -inf), and the same
    gradient: each output's gradient goes to the first input of its window that attains the
    maximum, as `reduce_window`'s select-and-scatter does. That gradient is computed with
    elementwise selects and slices that XLA fuses, where select-and-scatter is slow on XLA:CPU and
    autodiff of the maxima (ties split with divisions) costs several full-size passes (measured in
    docs/PERFORMANCE.md).
    """
    return _max_pool(x, tuple(window), tuple(strides), _pads(x, window, strides, padding))


def avg_pool(x: jax.Array, window: tuple[int, int], strides: tuple[int, int],
             padding: str | Sequence[tuple[int, int]], count_include_pad: bool) -> jax.Array:
    """Average pooling over [B, H, W, C] as a separable sum of strided slices, with its own gradient.

    The same values as `flax.linen.avg_pool` to float rounding. count_include_pad=False divides by
    the number of unpadded inputs in each window (a constant from the static shapes). The gradient
    is the same kind of window sum over the spread cotangent, where `reduce_window` and its
    transpose are separate, slower passes on XLA:CPU.
    """
    return _avg_pool(x, tuple(window), tuple(strides), _pads(x, window, strides, padding),
                     count_include_pad)


def _window_reduce(v, op, window, strides):
    """op over each window of [B, H, W, C]: rows then columns, each a reduction of strided slices."""
    for axis, k, s in ((1, window[0], strides[0]), (2, window[1], strides[1])):
        n = (v.shape[axis] - k) // s + 1
        if isinstance(v, np.ndarray):  # a constant (window counts): stays numpy
            views = [v[(slice(None),) * axis + (slice(i, i + (n - 1) * s + 1, s),)]
                     for i in range(k)]
        else:
            views = [lax.slice_in_dim(v, i, i + (n - 1) * s + 1, s, axis) for i in range(k)]
        v = functools.reduce(op, views)
    return v


def _spread(v, fill, window, strides, pads, hw):
    """v (one entry per window) spread over the padded input of height and width hw: window o's
    entry at o * stride + (kh - 1, kw - 1), `fill` between. The transpose of window tap (i, j) is
    then the slice at offset (kh - 1 - i, kw - 1 - j): the pools' gradients are gathers over these
    slices."""
    config = [(0, 0, 0)] + [(k - 1, n + lo + hi - (m - 1) * s - 1, s - 1)
                            for k, n, (lo, hi), m, s in zip(window, hw, pads, v.shape[1:3],
                                                            strides)]
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
    ones = np.pad(np.ones((1, *hw, 1), np.float32), ((0, 0), pads[0], pads[1], (0, 0)),
                  constant_values=float(count_include_pad))
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
    g = g[:, top:top + shape[1] + window[0] - 1, left:left + shape[2] + window[1] - 1]
    return (_window_reduce(g, jnp.add, window, (1, 1)),)


_avg_pool.defvjp(_avg_pool_fwd, _avg_pool_bwd)
