"""Rethinking the Inception Architecture, Figure 6 with n=7: the 17x17 module (Mixed_6b..6e).

Branches, concatenated on channels:
    1x1 192 | 1x1 c7 -> 1x7 c7 -> 7x1 192 | 1x1 c7 -> 7x1 c7 -> 1x7 c7 -> 7x1 c7 -> 1x7 192 |
    3x3/1 avg pool -> 1x1 192.
Each n x n convolution is factorized into 1 x n followed by n x 1 (Section 3.2), which works well on
12..20 grids. The released code uses c7 = 128, 160, 160, 192 for Mixed_6b..6e.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from inception_jax.layers import STANDARD_KERNELS, ConvBN, Kernels, avg_pool, depth

ModuleDef = Callable[..., nn.Module]


class Asymmetric7x7Module(nn.Module):
  """[batch, 17, 17, 768] -> [batch, 17, 17, 768] (at width multiplier 1)."""

  channels_7x7: int
  conv: ModuleDef = ConvBN
  kernels: Kernels = STANDARD_KERNELS  # convolution and pooling implementations (the model's)
  factorized_activation: bool = True  # False: the first layer of each 1xn / nx1 pair is linear.
  pool_count_include_pad: bool = False
  width_multiplier: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    d = lambda c: depth(c, self.width_multiplier)  # noqa: E731
    c7, act = d(self.channels_7x7), self.factorized_activation
    b1 = self.conv(d(192), 1, name="branch1x1")(x, train)
    b7 = self.conv(c7, 1, name="branch7x7_1")(x, train)
    b7 = self.conv(c7, (1, 7), padding=(0, 3), activation=act, name="branch7x7_2")(b7, train)
    b7 = self.conv(d(192), (7, 1), padding=(3, 0), name="branch7x7_3")(b7, train)
    bd = self.conv(c7, 1, name="branch7x7dbl_1")(x, train)
    bd = self.conv(c7, (7, 1), padding=(3, 0), activation=act, name="branch7x7dbl_2")(bd, train)
    bd = self.conv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd, train)
    bd = self.conv(c7, (7, 1), padding=(3, 0), activation=act, name="branch7x7dbl_4")(bd, train)
    bd = self.conv(d(192), (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd, train)
    bp = avg_pool(
      x, 3, 1, padding=1, count_include_pad=self.pool_count_include_pad, kernels=self.kernels
    )
    bp = self.conv(d(192), 1, name="branch_pool")(bp, train)
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)
