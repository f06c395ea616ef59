"""BN-Inception's first layer as tf-slim's released checkpoint has it: a depthwise-separable 7x7/2.

Ioffe and Szegedy 2015 (Figure 5, first row) give a dense 7x7/2 convolution to 64 channels.
tf-slim's `nets/inception_v2.py`, whose checkpoint `inception_v2_2016_08_28` is Google's released
BN-Inception, builds `Conv2d_1a_7x7` with `separable_conv2d` instead: a depthwise 7x7/2 with depth
multiplier min(64 // 3, 8) = 8 (3 -> 24 channels, no bias), then a 1x1 pointwise convolution to 64
channels with a bias and a ReLU. slim's arg scope attaches BatchNorm to `conv2d` only, so this layer
has no BatchNorm (tensorflow/models issue 4843: the checkpoint holds `depthwise_weights`,
`pointwise_weights` and `biases` for it, and BatchNorm from `Conv2d_2b_1x1` on).

Depthwise channel order is TF's: output channel c * multiplier + m comes from input channel c.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax

from inception_jax.layers import STANDARD_KERNELS, ConvBN, Kernels, Padding

ModuleDef = Callable[..., nn.Module]


class SeparableConv(nn.Module):
  """[batch, h, w, c] -> [batch, h / stride, w / stride, features] (TF 'SAME' by default).

  depthwise: `kernel_size` conv per input channel, `depth_multiplier` outputs each, linear, no bias;
  pointwise: 1x1 conv to `features`, + bias, ReLU (`norm=None`), or BatchNorm with `norm="bn"`.
  """

  features: int
  kernel_size: int = 7
  strides: int = 2
  depth_multiplier: int = 8
  padding: Padding = "SAME"
  norm: str | None = None
  conv: ModuleDef = ConvBN
  kernels: Kernels = STANDARD_KERNELS  # convolution and pooling implementations (the model's)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    channels = x.shape[-1]
    x = self.conv(
      channels * self.depth_multiplier,
      self.kernel_size,
      strides=self.strides,
      padding=self.padding,
      norm=None,
      activation=False,
      use_bias=False,
      feature_group_count=channels,
      name="depthwise",
    )(x, train)
    return self.conv(self.features, 1, norm=self.norm, name="pointwise")(x, train)
