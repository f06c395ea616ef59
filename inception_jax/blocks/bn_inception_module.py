"""The modified Inception module of BN-Inception (Ioffe and Szegedy 2015, Section 4.1 and the table
of Figure 5: rows 3a, 3b, 4a-4d, 5a, 5b; tf-slim `inception_v2.py` Mixed_3b, 3c, 4b-4e, 5b, 5c).

Branches, concatenated on channels:
    1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3 | 3x3/1 pool -> 1x1 projection.
Against GoogLeNet's module (Figure 2b) the 5x5 branch becomes two consecutive 3x3 ("double #3x3"),
and the pool branch averages (max in the last module, 5b). Every conv is conv -> BN -> ReLU.
Padding is TF 'SAME' throughout, as in slim (average pools divide by the valid pixels).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from inception_jax.layers import (
  STANDARD_KERNELS,
  ConvBN,
  Kernels,
  avg_pool,
  depth,
  init_override,
  max_pool,
)

ModuleDef = Callable[..., nn.Module]


class BNInceptionModule(nn.Module):
  """Widths are Figure 5's columns: #1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3,
  pool projection; `pool` is "avg" or "max".

  [batch, h, w, c] -> [batch, h, w, ch1x1 + ch3x3 + ch3x3dbl + pool_proj]
  """

  ch1x1: int
  ch3x3red: int
  ch3x3: int
  ch3x3dblred: int
  ch3x3dbl: int
  pool_proj: int
  pool: str = "avg"
  conv: ModuleDef = ConvBN
  kernels: Kernels = STANDARD_KERNELS  # convolution and pooling implementations (the model's)
  reduce_init: Any = None  # initialisers of the 1x1 reductions / pool projection (None: conv's)
  proj_init: Any = None
  width_multiplier: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.pool not in ("avg", "max"):
      raise ValueError(f"BNInceptionModule pool must be 'avg' or 'max', got {self.pool!r}")
    d = lambda c: depth(c, self.width_multiplier)  # noqa: E731
    b1 = self.conv(d(self.ch1x1), 1, name="branch1x1")(x, train)
    b3 = self.conv(d(self.ch3x3red), 1, name="branch3x3_1", **init_override(self.reduce_init))(
      x, train
    )
    b3 = self.conv(d(self.ch3x3), 3, padding="SAME", name="branch3x3_2")(b3, train)
    bd = self.conv(
      d(self.ch3x3dblred), 1, name="branch3x3dbl_1", **init_override(self.reduce_init)
    )(x, train)
    bd = self.conv(d(self.ch3x3dbl), 3, padding="SAME", name="branch3x3dbl_2")(bd, train)
    bd = self.conv(d(self.ch3x3dbl), 3, padding="SAME", name="branch3x3dbl_3")(bd, train)
    if self.pool == "avg":
      bp = avg_pool(x, 3, 1, padding="SAME", count_include_pad=False, kernels=self.kernels)
    else:
      bp = max_pool(x, 3, 1, padding="SAME", kernels=self.kernels)
    bp = self.conv(d(self.pool_proj), 1, name="branch_pool", **init_override(self.proj_init))(
      bp, train
    )
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)
