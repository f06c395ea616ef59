"""Rethinking the Inception Architecture, Figure 10: grid-size reduction without a representational
bottleneck. A stride-2 convolution branch and a stride-2 pooling branch run in parallel and are
concatenated, instead of pooling first (a bottleneck) or convolving at full resolution first (3x the
cost), Section 4 / Figure 9.

`GridReduction35to17` is tf-slim's Mixed_6a (35x35x288 -> 17x17x768);
`GridReduction17to8` is Mixed_7a (17x17x768 -> 8x8x1280).
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from inception_jax.layers import STANDARD_KERNELS, ConvBN, Kernels, depth, max_pool

ModuleDef = Callable[..., nn.Module]


class GridReduction35to17(nn.Module):
  """Mixed_6a: 3x3/2 384 | 1x1 64 -> 3x3 96 -> 3x3/2 96 | 3x3/2 max pool."""

  conv: ModuleDef = ConvBN
  kernels: Kernels = STANDARD_KERNELS  # convolution and pooling implementations (the model's)
  factorized_activation: bool = True
  width_multiplier: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    d = lambda c: depth(c, self.width_multiplier)  # noqa: E731
    b3 = self.conv(d(384), 3, strides=2, name="branch3x3")(x, train)
    bd = self.conv(d(64), 1, name="branch3x3dbl_1")(x, train)
    bd = self.conv(
      d(96), 3, padding=1, activation=self.factorized_activation, name="branch3x3dbl_2"
    )(bd, train)
    bd = self.conv(d(96), 3, strides=2, name="branch3x3dbl_3")(bd, train)
    bp = max_pool(x, 3, 2, kernels=self.kernels)
    return jnp.concatenate([b3, bd, bp], axis=-1)


class GridReduction17to8(nn.Module):
  """Mixed_7a: 1x1 192 -> 3x3/2 320 | 1x1 192 -> 1x7 192 -> 7x1 192 -> 3x3/2 192 | 3x3/2 pool."""

  conv: ModuleDef = ConvBN
  kernels: Kernels = STANDARD_KERNELS  # convolution and pooling implementations (the model's)
  factorized_activation: bool = True
  width_multiplier: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    d = lambda c: depth(c, self.width_multiplier)  # noqa: E731
    b3 = self.conv(d(192), 1, name="branch3x3_1")(x, train)
    b3 = self.conv(d(320), 3, strides=2, name="branch3x3_2")(b3, train)
    b7 = self.conv(d(192), 1, name="branch7x7x3_1")(x, train)
    b7 = self.conv(
      d(192), (1, 7), padding=(0, 3), activation=self.factorized_activation, name="branch7x7x3_2"
    )(b7, train)
    b7 = self.conv(d(192), (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7, train)
    b7 = self.conv(d(192), 3, strides=2, name="branch7x7x3_4")(b7, train)
    bp = max_pool(x, 3, 2, kernels=self.kernels)
    return jnp.concatenate([b3, b7, bp], axis=-1)
