"""The auxiliary classifier of Inception v2/v3 on the 17x17 grid (Rethinking, Section 4, Table 3).

5x5/3 average pool (17x17 -> 5x5), 1x1 conv 128, 5x5 conv 768 (the "fully connected" layer: on a 5x5
input it sees the whole grid), linear classifier. The paper finds these heads act as regularizers;
batch-normalizing the fully connected layer ("BN-auxiliary", `bn_fc=True`, Inception-v3) gives 0.4%
absolute top-1. With `bn_fc=False` (Inception-v2 of Table 3) that layer is conv + bias + ReLU.
Smaller inputs shrink both 5x5 kernels to the grid, as tf-slim's
`_reduced_kernel_size_for_small_input` does; at 299x299 this is exactly torchvision's
`InceptionAux`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from inception_jax.initializers import Scheme
from inception_jax.layers import STANDARD_KERNELS, ConvBN, Kernels, avg_pool, dense, depth

ModuleDef = Callable[..., nn.Module]


class InceptionV3AuxHead(nn.Module):
  """[batch, 17, 17, 768] -> [batch, num_classes] logits."""

  num_classes: int
  conv: ModuleDef = ConvBN
  kernels: Kernels = STANDARD_KERNELS  # convolution and pooling implementations (the model's)
  bn_fc: bool = True
  width_multiplier: float = 1.0
  scheme: Scheme | None = None  # None: Flax's defaults (`conv` carries the trunk's own)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = avg_pool(x, min(5, *x.shape[1:3]), 3, kernels=self.kernels)
    x = self.conv(depth(128, self.width_multiplier), 1, name="conv0")(x, train)
    k = min(5, *x.shape[1:3])
    kinds = self.scheme or Scheme(*(None,) * 5)
    fc_norm = {} if self.bn_fc else {"norm": None}
    x = self.conv(
      depth(768, self.width_multiplier), k, layer_init=kinds.aux_conv, name="conv1", **fc_norm
    )(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return dense(self.num_classes, kinds.aux_logits, x.shape[-1], self.dtype, name="fc")(x)
