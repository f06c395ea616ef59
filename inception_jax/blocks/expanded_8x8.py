"""Rethinking the Inception Architecture, Figure 7: the 8x8 module with an expanded filter bank
(Mixed_7b, 7c).

Branches, concatenated on channels:
    1x1 320 | 1x1 384 -> (1x3 384 ; 3x1 384) | 1x1 448 -> 3x3 384 -> (1x3 384 ; 3x1 384) |
    3x3/1 avg pool -> 1x1 192.
The 1x3 and 3x1 run in parallel on the same input and are concatenated, widening the output to
promote high-dimensional representations on the coarsest grid (Section 6).

`pool="max"` puts a 3x3/1 max pool (padding 1) in the pool branch instead: the 2015-12-05
TensorFlow graph that FID uses has one in its last module (pytorch-fid's FIDInceptionE_2).
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from inception_jax.layers import STANDARD_KERNELS, ConvBN, Kernels, avg_pool, depth, max_pool

ModuleDef = Callable[..., nn.Module]


class ExpandedFilterBankModule(nn.Module):
  """[batch, 8, 8, c] -> [batch, 8, 8, 2048] (at width multiplier 1)."""

  conv: ModuleDef = ConvBN
  kernels: Kernels = STANDARD_KERNELS  # convolution and pooling implementations (the model's)
  pool_count_include_pad: bool = False
  width_multiplier: float = 1.0
  pool: str = "avg"  # "avg" or "max" (the FID network's Mixed_7c)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    d = lambda c: depth(c, self.width_multiplier)  # noqa: E731
    b1 = self.conv(d(320), 1, name="branch1x1")(x, train)
    b3 = self.conv(d(384), 1, name="branch3x3_1")(x, train)
    b3 = jnp.concatenate(
      [
        self.conv(d(384), (1, 3), padding=(0, 1), name="branch3x3_2a")(b3, train),
        self.conv(d(384), (3, 1), padding=(1, 0), name="branch3x3_2b")(b3, train),
      ],
      axis=-1,
    )
    bd = self.conv(d(448), 1, name="branch3x3dbl_1")(x, train)
    bd = self.conv(d(384), 3, padding=1, name="branch3x3dbl_2")(bd, train)
    bd = jnp.concatenate(
      [
        self.conv(d(384), (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd, train),
        self.conv(d(384), (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd, train),
      ],
      axis=-1,
    )
    if self.pool == "max":
      bp = max_pool(x, 3, 1, padding=1, kernels=self.kernels)
    elif self.pool == "avg":
      bp = avg_pool(
        x, 3, 1, padding=1, count_include_pad=self.pool_count_include_pad, kernels=self.kernels
      )
    else:
      raise ValueError(f"pool must be 'avg' or 'max', got {self.pool!r}")
    bp = self.conv(d(192), 1, name="branch_pool")(bp, train)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)
