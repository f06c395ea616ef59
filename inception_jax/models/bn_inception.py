"""BN-Inception: Ioffe and Szegedy 2015, "Batch Normalization", Section 4.1 and Figure 5 (the table
of the modified Inception), as tf-slim's `nets/inception_v2.py` releases it.

GoogLeNet with BatchNorm after every convolution, each 5x5 replaced by two consecutive 3x3, average
pooling in most modules, and two stride-2 modules (3c, 4e) whose max-pool branch passes its input
through. A row of Rethinking Table 3 (25.2% / 7.8% error, 2.0 G ops) and Table 4 (144 crops:
22% / 5.82%). tf-slim calls it `inception_v2`; it is NOT Rethinking's Inception-v2 (`inception_v2`
here). End points carry slim's names: slim's `Mixed_3b` is the paper's inception (3a), its
`Mixed_4a` the paper's (3c), `Mixed_5a` the paper's (4e) (docs/NAMES.md).

  - `stem="separable"` (default): `Conv2d_1a_7x7` as the released checkpoint
    (`inception_v2_2016_08_28`) was trained: a depthwise 7x7/2 with depth multiplier 8, then a 1x1
    to 64 with a bias and a ReLU, without BatchNorm (blocks/separable_conv.py).
  - `stem="7x7"`: the paper's dense 7x7/2 conv to 64, with BatchNorm (slim's
    `use_separable_conv=False`).

Padding is TF 'SAME' everywhere (slim's arg scope), so any input size works; 224 is the default.
Widths are slim's, which are the paper's table except where the table contradicts its own output
sizes (docs/FIDELITY.md). The classifier is global average pooling (slim's 7x7 VALID average pool
at 224), dropout (slim: keep 0.8) and a linear layer. No auxiliary heads (slim builds none).
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from inception_jax import initializers
from inception_jax.blocks import BNInceptionModule, BNInceptionReduction, SeparableConv
from inception_jax.layers import (
  BN_MOMENTUM,
  STANDARD_KERNELS,
  Kernels,
  check_images,
  dense,
  depth,
  global_avg_pool,
  max_pool,
)
from inception_jax.models.common import (
  check_options,
  conv_layer,
  outputs,
  torchvision_to_inception_range,
)

# The table of Figure 5, by slim end point: (paper row, #1x1, #3x3 reduce, #3x3, double #3x3
# reduce, double #3x3, pool, pool projection). Stride-2 rows have no 1x1 and pass the pool through.
FIGURE5 = {
  "Mixed_3b": ("3a", 64, 64, 64, 64, 96, "avg", 32),
  "Mixed_3c": ("3b", 64, 64, 96, 64, 96, "avg", 64),
  "Mixed_4a": ("3c", 0, 128, 160, 64, 96, "max", None),
  "Mixed_4b": ("4a", 224, 64, 96, 96, 128, "avg", 128),
  "Mixed_4c": ("4b", 192, 96, 128, 96, 128, "avg", 128),
  "Mixed_4d": ("4c", 160, 128, 160, 128, 160, "avg", 96),
  "Mixed_4e": ("4d", 96, 128, 192, 160, 192, "avg", 96),
  "Mixed_5a": ("4e", 0, 128, 192, 192, 256, "max", None),
  "Mixed_5b": ("5a", 352, 192, 320, 160, 224, "avg", 128),
  "Mixed_5c": ("5b", 352, 192, 320, 192, 224, "max", 128),
}
STEMS = ("separable", "7x7")


class BNInception(nn.Module):
  """BN-Inception: images [batch, height, width, 3] in [-1, 1] -> logits [batch, num_classes].

  Attributes:
    stem: "separable" (slim's released checkpoint) or "7x7" (the paper's dense conv).
    dropout_rate: before the classifier (slim: keep 0.8, so 0.2; the BN paper removes dropout
      in its accelerated network, Section 4.2.1).
    transform_input, bn_scale, bn_momentum, bn_axis_name, width_multiplier, dtype,
    initializer: "slim" (tf-slim inception_v2.py's initial weights, the default) or "flax"
      (`inception_jax.initializers`, docs/FIDELITY.md).
    return_features: as in `GoogLeNet`. BN momentum 0.9997 and epsilon 0.001 are slim's.
  """

  num_classes: int = 1000
  stem: Literal[STEMS] = "separable"
  dropout_rate: float = 0.2
  transform_input: bool = False
  bn_scale: bool = True
  bn_momentum: float = BN_MOMENTUM
  bn_axis_name: str | None = None
  width_multiplier: float = 1.0
  initializer: Literal[initializers.INITIALIZERS] = "slim"
  dtype: Any = jnp.float32
  kernels: Kernels = STANDARD_KERNELS  # convolution and pooling implementations (models.create)
  return_features: bool = False

  def __post_init__(self):
    check_options(self)  # before anything is traced
    super().__post_init__()

  @property
  def min_image_size(self) -> int:
    # TF 'SAME' padding maps every grid n to ceil(n / stride) >= 1: no input is too small.
    return 1

  def init_scheme(self) -> initializers.Scheme:
    """The initialisers of each kind of layer; raises ValueError for an unknown name."""
    return initializers.scheme(self.initializer, "bn_inception")

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False):
    check_images(images, self.min_image_size, type(self).__name__)
    init = self.init_scheme()
    conv = conv_layer(self, init.conv)
    d = lambda c: depth(c, self.width_multiplier)  # noqa: E731
    blocks = dict(
      conv=conv,
      kernels=self.kernels,
      width_multiplier=self.width_multiplier,
      reduce_init=init.reduce,
      proj_init=init.proj,
    )
    end_points: dict[str, Any] = {}

    x = torchvision_to_inception_range(images) if self.transform_input else images
    x = x.astype(self.dtype)
    if self.stem == "separable":
      # slim: depthwise_multiplier = min(int(depth(64) / 3), 8), so that 3 * it <= depth(64).
      stem = SeparableConv(
        d(64),
        7,
        strides=2,
        depth_multiplier=min(d(64) // 3, 8),
        conv=functools.partial(conv, layer_init=init.stem or init.conv),
        name="Conv2d_1a_7x7",
      )
    else:
      stem = conv(d(64), 7, strides=2, padding="SAME", name="Conv2d_1a_7x7")
    x = end_points["Conv2d_1a_7x7"] = stem(x, train)
    x = end_points["MaxPool_2a_3x3"] = max_pool(x, 3, 2, padding="SAME", kernels=self.kernels)
    x = end_points["Conv2d_2b_1x1"] = conv(
      d(64), 1, layer_init=init.proj or init.conv, name="Conv2d_2b_1x1"
    )(x, train)
    x = end_points["Conv2d_2c_3x3"] = conv(d(192), 3, padding="SAME", name="Conv2d_2c_3x3")(
      x, train
    )
    x = end_points["MaxPool_3a_3x3"] = max_pool(x, 3, 2, padding="SAME", kernels=self.kernels)
    for name, (_, c1, c3r, c3, cdr, cd, pool, proj) in FIGURE5.items():
      if proj is None:
        block = BNInceptionReduction(c3r, c3, cdr, cd, name=name, **blocks)
      else:
        block = BNInceptionModule(c1, c3r, c3, cdr, cd, proj, pool=pool, name=name, **blocks)
      x = end_points[name] = block(x, train)

    x = end_points["PreLogits"] = global_avg_pool(x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    logits = dense(self.num_classes, init.logits, x.shape[-1], dtype=self.dtype, name="Logits")(
      x
    ).astype(jnp.float32)
    return outputs(logits, (), end_points, train, self.return_features)
