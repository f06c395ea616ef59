"""GoogLeNet's auxiliary classifier ("Going Deeper with Convolutions", Section 5), on Mixed_4b / 4e.

As the paper specifies it (`pooling="paper"`): 5x5/3 average pool (14x14 -> 4x4 at 224), 1x1 conv
128 + ReLU, fully connected 1024 + ReLU, 70% dropout, linear classifier. Used only in training; the
loss weights each head 0.3 (see `inception_jax.training.losses`).
As torchvision implements it (`pooling="adaptive"`): adaptive average pooling to 4x4 (other bins
than 5x5/3), the 1x1 conv with BatchNorm, then the same layers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from inception_jax.initializers import Scheme
from inception_jax.layers import (
  STANDARD_KERNELS,
  ConvBN,
  Kernels,
  adaptive_avg_pool,
  avg_pool,
  dense,
  depth,
)

ModuleDef = Callable[..., nn.Module]


class GoogLeNetAuxHead(nn.Module):
  """[batch, 14, 14, c] -> [batch, num_classes] logits."""

  num_classes: int
  conv: ModuleDef = ConvBN
  kernels: Kernels = STANDARD_KERNELS  # convolution and pooling implementations (the model's)
  pooling: str = "paper"  # "paper": 5x5/3 avg pool; "adaptive": torchvision's 4x4 adaptive pool.
  dropout_rate: float = 0.7
  width_multiplier: float = 1.0
  scheme: Scheme | None = None  # initialisers per layer kind; None: Flax's defaults
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.pooling == "paper":
      x = avg_pool(
        x, min(5, *x.shape[1:3]), 3, kernels=self.kernels
      )  # tf-slim shrinks the window on small grids.
    elif self.pooling == "adaptive":
      x = adaptive_avg_pool(x, 4)
    else:
      raise ValueError(f"aux head pooling must be 'paper' or 'adaptive', got {self.pooling!r}")
    kinds = self.scheme or Scheme(*(None,) * 5)
    x = self.conv(depth(128, self.width_multiplier), 1, layer_init=kinds.aux_conv, name="conv")(
      x, train
    )
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(
      dense(depth(1024, self.width_multiplier), kinds.hidden, x.shape[-1], self.dtype, name="fc1")(
        x
      )
    )
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return dense(self.num_classes, kinds.aux_logits, x.shape[-1], self.dtype, name="fc2")(x)
