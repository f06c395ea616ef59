"""The stride-2 module of BN-Inception (Ioffe and Szegedy 2015, table of Figure 5: rows 3c and 4e,
"stride 2", "max + pass through"; tf-slim `inception_v2.py` Mixed_4a and Mixed_5a).

Branches, concatenated on channels (no 1x1 branch, #1x1 = 0 in the table):
    1x1 -> 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | 3x3/2 max pool passing every input channel through.
Padding is TF 'SAME', as in slim: 28x28 -> 14x14 and 14x14 -> 7x7 (the extra pixel at the end).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from inception_jax.layers import STANDARD_KERNELS, ConvBN, Kernels, depth, init_override, max_pool

ModuleDef = Callable[..., nn.Module]


class BNInceptionReduction(nn.Module):
  """Widths: #3x3 reduce, #3x3, double #3x3 reduce, double #3x3 (Figure 5's columns).

  [batch, h, w, c] -> [batch, ceil(h / 2), ceil(w / 2), ch3x3 + ch3x3dbl + c]
  """

  ch3x3red: int
  ch3x3: int
  ch3x3dblred: int
  ch3x3dbl: int
  conv: ModuleDef = ConvBN
  kernels: Kernels = STANDARD_KERNELS  # convolution and pooling implementations (the model's)
  reduce_init: Any = None  # initialisers of the 1x1 reductions / pool projection (None: conv's)
  proj_init: Any = None
  width_multiplier: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    d = lambda c: depth(c, self.width_multiplier)  # noqa: E731
    b3 = self.conv(d(self.ch3x3red), 1, name="branch3x3_1", **init_override(self.reduce_init))(
      x, train
    )
    b3 = self.conv(d(self.ch3x3), 3, strides=2, padding="SAME", name="branch3x3_2")(b3, train)
    bd = self.conv(
      d(self.ch3x3dblred), 1, name="branch3x3dbl_1", **init_override(self.reduce_init)
    )(x, train)
    bd = self.conv(d(self.ch3x3dbl), 3, padding="SAME", name="branch3x3dbl_2")(bd, train)
    bd = self.conv(d(self.ch3x3dbl), 3, strides=2, padding="SAME", name="branch3x3dbl_3")(bd, train)
    bp = max_pool(x, 3, 2, padding="SAME", kernels=self.kernels)
    return jnp.concatenate([b3, bd, bp], axis=-1)
