"""The layers every Inception network is built from.

`ConvBN` is the one convolution layer used everywhere: conv -> BatchNorm -> ReLU as in the released
code (tf-slim, torchvision, Keras: no conv bias, BN epsilon 0.001), or conv(+bias) -> ReLU as in the
GoogLeNet paper (`norm=None`). Pooling helpers cover the conventions that matter for exact parity
with other implementations (docs/PAPERS.md, "Conventions"): ceil-mode max pooling (Caffe,
torchvision GoogLeNet) and average pooling that does or does not count padded pixels (torchvision
vs TF/Keras).

The arithmetic of convolutions and pooling comes from a `Kernels` value that every network, block
and `ConvBN` takes as a field: XLA's standard lowering (`STANDARD_KERNELS`, the default), or
another implementation of the same functions chosen once when the model is created for a backend
(`models.create`; the XLA:CPU kernels live in `inception_jax.fast_conv`). Parameters and results
are the same whichever is used.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from inception_jax.initializers import LayerInit

Dtype = Any
Padding = str | int | tuple[int, int] | Sequence[tuple[int, int]]

BN_EPSILON = (
  1e-3  # tf-slim, Keras and torchvision Inception all use 0.001 (Flax's default is 1e-5).
)
BN_MOMENTUM = 0.9997  # released Inception-v3 code: batch_norm_decay 0.9997.


def _flax_max_pool(x: jax.Array, window, strides, padding) -> jax.Array:
  return nn.max_pool(x, window, strides, padding=padding)


def _flax_avg_pool(x: jax.Array, window, strides, padding, count_include_pad: bool) -> jax.Array:
  return nn.avg_pool(x, window, strides, padding=padding, count_include_pad=count_include_pad)


@dataclasses.dataclass(frozen=True)
class Kernels:
  """The implementations of convolution and pooling a network computes with.

  conv_general_dilated: `lax.conv_general_dilated`'s signature, passed to `nn.Conv` (None: nn.Conv's
    own, `lax.conv_general_dilated`).
  max_pool: (x, window, strides, padding) -> x, as `nn.max_pool`.
  avg_pool: (x, window, strides, padding, count_include_pad) -> x, as `nn.avg_pool`.
  name: how results and logs name them.
  """

  conv_general_dilated: Callable | None = None
  max_pool: Callable = _flax_max_pool
  avg_pool: Callable = _flax_avg_pool
  name: str = "standard"


STANDARD_KERNELS = Kernels()  # XLA's standard lowering, on every backend


def _pairs(padding: Padding, kernel_size: tuple[int, int]) -> str | list[tuple[int, int]]:
  """Explicit symmetric padding from an int/tuple, or a padding string as is."""
  if isinstance(padding, str):
    return padding
  if isinstance(padding, int):
    return [(padding, padding), (padding, padding)]
  if len(padding) == 2 and all(isinstance(p, int) for p in padding):
    return [(padding[0], padding[0]), (padding[1], padding[1])]
  return [tuple(p) for p in padding]


class ConvBN(nn.Module):
  """Convolution -> normalisation -> ReLU: the one conv layer of every network here.

  Attributes:
    features: output channels.
    kernel_size: (height, width) of the kernel; an int means square.
    strides: stride; an int means the same in both directions.
    padding: "SAME" / "VALID" (TF semantics: the extra pixel goes at the end), or explicit symmetric
      padding as torchvision writes it (int, or (pad_h, pad_w)).
    norm: "bn" for BatchNorm (no conv bias) or None for the paper's conv + bias.
    bn_scale: learn a BN scale (gamma). torchvision has one; tf-slim and Keras do not (gamma = 1).
    activation: False for a linear layer (Rethinking Figure 2's "linear" factorization).
    bn_momentum: running-average decay of the BN statistics.
    layer_init: kernel and bias initialisers (`inception_jax.initializers`); None: Flax's
      defaults.
    feature_group_count: groups of the convolution (the input channels for a depthwise conv).
    use_bias: a conv bias; None (default) means exactly when there is no BatchNorm.
    dtype: compute dtype; parameters stay float32.
    kernels: the convolution's implementation (the same parameters and function whichever).
  """

  features: int
  kernel_size: int | tuple[int, int] = 1
  strides: int | tuple[int, int] = 1
  padding: Padding = "VALID"
  norm: str | None = "bn"
  bn_scale: bool = True
  activation: bool = True
  bn_momentum: float = BN_MOMENTUM
  bn_axis_name: str | None = None
  layer_init: LayerInit | None = None
  feature_group_count: int = 1
  use_bias: bool | None = None
  dtype: Dtype = jnp.float32
  kernels: Kernels = STANDARD_KERNELS

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """x: [batch, height, width, in_channels] -> [batch, height', width', features]."""
    ks = (self.kernel_size,) * 2 if isinstance(self.kernel_size, int) else tuple(self.kernel_size)
    st = (self.strides,) * 2 if isinstance(self.strides, int) else tuple(self.strides)
    x = nn.Conv(
      self.features,
      ks,
      strides=st,
      padding=_pairs(self.padding, ks),
      use_bias=self.norm is None if self.use_bias is None else self.use_bias,
      feature_group_count=self.feature_group_count,
      dtype=self.dtype,
      conv_general_dilated=self.kernels.conv_general_dilated,
      name="conv",
      **_init_kwargs(self.layer_init, ks[0] * ks[1] * x.shape[-1] // self.feature_group_count),
    )(x)
    if self.norm == "bn":
      # use_running_average is a call argument so that transfer.frozen_batch_norm can
      # make a frozen layer use its running averages in training.
      x = nn.BatchNorm(
        momentum=self.bn_momentum,
        epsilon=BN_EPSILON,
        use_scale=self.bn_scale,
        dtype=self.dtype,
        axis_name=self.bn_axis_name,
        name="bn",
      )(x, use_running_average=not train)
    elif self.norm is not None:
      raise ValueError(f"ConvBN norm must be 'bn' or None, got {self.norm!r}")
    return nn.relu(x) if self.activation else x


def _init_kwargs(init: LayerInit | None, fan: int) -> dict:
  if init is None:
    return {}
  return {"kernel_init": init.kernel, "bias_init": init.bias_init(fan)}


def init_override(init: LayerInit | None) -> dict:
  """Keyword arguments that give one conv of a block its own initialisers (none: the partial's)."""
  return {} if init is None else {"layer_init": init}


def dense(
  features: int,
  init: LayerInit | None,
  in_features: int,
  dtype: Dtype = jnp.float32,
  name: str | None = None,
) -> nn.Dense:
  """The one fully connected layer: nn.Dense with the scheme's initialisers (fan-in given, as
  PyTorch's bias initialiser needs it). Call inside a compact method: `dense(...)(x)`."""
  return nn.Dense(features, dtype=dtype, name=name, **_init_kwargs(init, in_features))


class LocalResponseNorm(nn.Module):
  """Local response normalisation across channels (GoogLeNet Figure 3, after pool1 and conv2).

  b_c = a_c / (k + alpha / size * sum_{c' in window(c)} a_c'^2) ** beta, the Caffe/PyTorch form
  used by the released BVLC GoogLeNet: size 5, alpha 1e-4, beta 0.75, k 1.
  """

  size: int = 5
  alpha: float = 1e-4
  beta: float = 0.75
  k: float = 1.0

  def divisor(self, x: jax.Array) -> jax.Array:
    """(k + alpha / size * sum of squares over the channel window) ** beta, float32, x's shape.

    About 1 unless the activations are large: the constants were chosen for Caffe's input
    scale (0..255 minus the mean), docs/FIDELITY.md."""
    sq = jnp.square(x.astype(jnp.float32))
    half = self.size // 2
    # Sum of squares over a window of `size` neighbouring channels, zero-padded at the ends.
    window = jax.lax.reduce_window(
      sq,
      0.0,
      jax.lax.add,
      (1, 1, 1, self.size),
      (1, 1, 1, 1),
      [(0, 0), (0, 0), (0, 0), (half, self.size - 1 - half)],
    )
    return (self.k + self.alpha / self.size * window) ** self.beta

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return (x / self.divisor(x)).astype(x.dtype)


def max_pool(
  x: jax.Array,
  window: int,
  stride: int,
  padding: Padding = "VALID",
  ceil_mode: bool = False,
  kernels: Kernels = STANDARD_KERNELS,
) -> jax.Array:
  """Max pooling over [batch, height, width, channels].

  ceil_mode=True rounds the output size up as Caffe and torchvision's GoogLeNet do: the missing
  pixels at the end are padding that never wins the max.
  """
  pads = _pairs(padding, (window, window))
  if ceil_mode:
    if isinstance(pads, str):
      raise ValueError("ceil_mode needs explicit (numeric) padding")
    new = []
    for (lo, hi), size in zip(pads, x.shape[1:3], strict=False):
      out = math.ceil((size + lo + hi - window) / stride) + 1
      if (out - 1) * stride >= size + lo:  # PyTorch: the last window must start inside the input.
        out -= 1
      new.append((lo, max((out - 1) * stride + window - size - lo, hi)))
    pads = new
  return kernels.max_pool(x, (window, window), (stride, stride), pads)


def avg_pool(
  x: jax.Array,
  window: int,
  stride: int,
  padding: Padding = "VALID",
  count_include_pad: bool = False,
  kernels: Kernels = STANDARD_KERNELS,
) -> jax.Array:
  """Average pooling over [batch, height, width, channels].

  count_include_pad=False divides by the number of valid pixels (TF/Keras 'SAME');
  True divides by the full window (torchvision's avg_pool2d default).
  """
  pads = _pairs(padding, (window, window))
  return kernels.avg_pool(x, (window, window), (stride, stride), pads, count_include_pad)


def depth(channels: int, multiplier: float, min_depth: int = 16) -> int:
  """tf-slim's depth multiplier: scale a channel count, never below min_depth."""
  if multiplier == 1.0:
    return channels
  return max(int(channels * multiplier), min_depth)


def adaptive_avg_pool(x: jax.Array, output_size: int) -> jax.Array:
  """torchvision's adaptive_avg_pool2d: bin i spans [floor(i*n/out), ceil((i+1)*n/out))."""

  def pool_axis(x, axis):
    n = x.shape[axis]
    bins = [
      jnp.mean(
        jax.lax.slice_in_dim(
          x, (i * n) // output_size, -((-(i + 1) * n) // output_size), axis=axis
        ),
        axis=axis,
        keepdims=True,
      )
      for i in range(output_size)
    ]
    return jnp.concatenate(bins, axis=axis)

  return pool_axis(pool_axis(x, 1), 2)


def global_avg_pool(x: jax.Array) -> jax.Array:
  """[batch, height, width, channels] -> [batch, channels], averaging in float32."""
  return jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(x.dtype)


def check_images(images: jax.Array, min_size: int, model: str) -> None:
  """Raises a ValueError naming the problem before anything is traced further."""
  if images.ndim != 4:
    raise ValueError(
      f"{model} expects images of shape [batch, height, width, 3], got shape {tuple(images.shape)}"
    )
  if images.shape[-1] != 3:
    raise ValueError(
      f"{model} expects 3 colour channels (RGB, NHWC layout), got "
      f"{images.shape[-1]} in shape {tuple(images.shape)}; convert grayscale "
      "to RGB, or transpose NCHW to NHWC"
    )
  if min(images.shape[1:3]) < min_size:
    raise ValueError(
      f"{model} needs images of at least {min_size}x{min_size} pixels with these "
      f"settings, got {images.shape[1]}x{images.shape[2]}; resize the input or "
      "use a larger image_size"
    )
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise ValueError(f"{model} expects float images (scaled to [-1, 1]), got dtype {images.dtype}")
