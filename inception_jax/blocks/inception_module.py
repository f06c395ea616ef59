"""The Inception module of GoogLeNet ("Going Deeper with Convolutions", Figure 2).

Figure 2b (`InceptionModule`): four parallel branches concatenated on channels,
    1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3/1 max pool -> 1x1 (pool projection),
with the 1x1 convolutions in front of the 3x3 and 5x5 acting as dimension reductions.
Figure 2a (`NaiveInceptionModule`): the same without the reductions and the pool projection, so the
pooling branch passes every input channel through and the output widens from module to module.
The released code (tf-slim, torchvision) uses a 3x3 where the paper has the 5x5
(`branch3_kernel=3`).
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from inception_jax.layers import STANDARD_KERNELS, ConvBN, Kernels, depth, max_pool

ModuleDef = Callable[..., nn.Module]


class InceptionModule(nn.Module):
  """GoogLeNet Figure 2b; widths are the columns of Table 1 (#1x1, #3x3 reduce, #3x3, ...).

  [batch, h, w, c] -> [batch, h, w, ch1x1 + ch3x3 + ch5x5 + pool_proj]
  """

  ch1x1: int
  ch3x3red: int
  ch3x3: int
  ch5x5red: int
  ch5x5: int
  pool_proj: int
  conv: ModuleDef = ConvBN
  kernels: Kernels = STANDARD_KERNELS  # convolution and pooling implementations (the model's)
  branch3_kernel: int = 5
  width_multiplier: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    d = lambda c: depth(c, self.width_multiplier)  # noqa: E731
    k = self.branch3_kernel
    b1 = self.conv(d(self.ch1x1), 1, name="branch1")(x, train)
    b2 = self.conv(d(self.ch3x3red), 1, name="branch2_reduce")(x, train)
    b2 = self.conv(d(self.ch3x3), 3, padding=1, name="branch2")(b2, train)
    b3 = self.conv(d(self.ch5x5red), 1, name="branch3_reduce")(x, train)
    b3 = self.conv(d(self.ch5x5), k, padding=k // 2, name="branch3")(b3, train)
    b4 = max_pool(x, 3, 1, padding=1, kernels=self.kernels)
    b4 = self.conv(d(self.pool_proj), 1, name="branch4_proj")(b4, train)
    return jnp.concatenate([b1, b2, b3, b4], axis=-1)


class NaiveInceptionModule(nn.Module):
  """GoogLeNet Figure 2a: 1x1 | 3x3 | 5x5 | 3x3/1 max pool, no reductions, no pool projection.

  [batch, h, w, c] -> [batch, h, w, ch1x1 + ch3x3 + ch5x5 + c]
  """

  ch1x1: int
  ch3x3: int
  ch5x5: int
  conv: ModuleDef = ConvBN
  kernels: Kernels = STANDARD_KERNELS  # convolution and pooling implementations (the model's)
  branch3_kernel: int = 5
  width_multiplier: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    d = lambda c: depth(c, self.width_multiplier)  # noqa: E731
    k = self.branch3_kernel
    b1 = self.conv(d(self.ch1x1), 1, name="branch1")(x, train)
    b2 = self.conv(d(self.ch3x3), 3, padding=1, name="branch2")(x, train)
    b3 = self.conv(d(self.ch5x5), k, padding=k // 2, name="branch3")(x, train)
    b4 = max_pool(x, 3, 1, padding=1, kernels=self.kernels)
    return jnp.concatenate([b1, b2, b3, b4], axis=-1)
