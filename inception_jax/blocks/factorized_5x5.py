"""Rethinking the Inception Architecture, Figure 5: the 35x35 module (tf-slim Mixed_5b, 5c, 5d).

Branches, concatenated on channels:
    1x1 64 | 1x1 48 -> 5x5 64 | 1x1 64 -> 3x3 96 -> 3x3 96 | 3x3/1 avg pool -> 1x1 pool_features.
The third branch is the paper's factorization of a 5x5 into two 3x3 (Section 3.1: (9+9)/25 of the
cost). The released code (tf-slim, torchvision, Keras) keeps a true 5x5 in the second branch, while
Figure 5 as printed has a 3x3 there: `branch5x5_kernel=3` builds the figure.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from inception_jax.layers import STANDARD_KERNELS, ConvBN, Kernels, avg_pool, depth

ModuleDef = Callable[..., nn.Module]


class Factorized5x5Module(nn.Module):
  """[batch, 35, 35, c] -> [batch, 35, 35, 224 + pool_features] (at width multiplier 1)."""

  pool_features: int
  conv: ModuleDef = ConvBN
  kernels: Kernels = STANDARD_KERNELS  # convolution and pooling implementations (the model's)
  branch5x5_kernel: int = 5
  factorized_activation: bool = True  # False: linear first layer of the 3x3 -> 3x3 pair (Figure 2).
  pool_count_include_pad: bool = False
  width_multiplier: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    d = lambda c: depth(c, self.width_multiplier)  # noqa: E731
    k = self.branch5x5_kernel
    b1 = self.conv(d(64), 1, name="branch1x1")(x, train)
    b5 = self.conv(d(48), 1, name="branch5x5_1")(x, train)
    b5 = self.conv(d(64), k, padding=k // 2, name="branch5x5_2")(b5, train)
    b3 = self.conv(d(64), 1, name="branch3x3dbl_1")(x, train)
    b3 = self.conv(
      d(96), 3, padding=1, activation=self.factorized_activation, name="branch3x3dbl_2"
    )(b3, train)
    b3 = self.conv(d(96), 3, padding=1, name="branch3x3dbl_3")(b3, train)
    bp = avg_pool(
      x, 3, 1, padding=1, count_include_pad=self.pool_count_include_pad, kernels=self.kernels
    )
    bp = self.conv(d(self.pool_features), 1, name="branch_pool")(bp, train)
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)
