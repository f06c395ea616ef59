"""GoogLeNet (Inception v1), "Going Deeper with Convolutions", Table 1 and Figure 3.

One class builds both networks users compare:
  - `googlenet`: the paper. conv + ReLU (with bias), LocalRespNorm after pool1 and conv2, true 5x5
    in the third branch, 3x3/2 max pool before inception (5a), 40% dropout, auxiliary heads on (4a)
    and (4d) as Section 5 specifies them.
  - `googlenet_bn`: the released layout (tf-slim inception_v1, torchvision googlenet). BatchNorm
    after every conv and no LRN, a 3x3 where the paper has the 5x5 (a bug kept for checkpoint
    compatibility), 2x2/2 max pool before (5a), 20% dropout, torchvision's auxiliary heads.

Max pools round up (ceil mode) as in Caffe and torchvision; conv1 pads 3 on both sides
(`padding="torchvision"`). `padding="same"` is tf-slim's inception_v1 instead: TF 'SAME' for conv1
(2 before, 3 after at 224) and every stride-2 max pool (the extra pixel at the end), which
`conversion.from_slim` needs; at even grid sizes the pools agree with ceil mode, conv1 does not.
End points carry tf-slim names; docs/NAMES.md maps them to Table 1's rows.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from inception_jax import initializers
from inception_jax.blocks import GoogLeNetAuxHead, InceptionModule, NaiveInceptionModule
from inception_jax.layers import (
  STANDARD_KERNELS,
  Kernels,
  LocalResponseNorm,
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

# Table 1: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj), by tf-slim end point name.
TABLE1 = {
  "Mixed_3b": (64, 96, 128, 16, 32, 32),  # inception (3a)
  "Mixed_3c": (128, 128, 192, 32, 96, 64),  # inception (3b)
  "Mixed_4b": (192, 96, 208, 16, 48, 64),  # inception (4a)
  "Mixed_4c": (160, 112, 224, 24, 64, 64),  # inception (4b)
  "Mixed_4d": (128, 128, 256, 24, 64, 64),  # inception (4c)
  "Mixed_4e": (112, 144, 288, 32, 64, 64),  # inception (4d)
  "Mixed_4f": (256, 160, 320, 32, 128, 128),  # inception (4e)
  "Mixed_5b": (256, 160, 320, 32, 128, 128),  # inception (5a)
  "Mixed_5c": (384, 192, 384, 48, 128, 128),  # inception (5b)
}
AUX_HEADS = {"Mixed_4b": "AuxLogits_Mixed_4b", "Mixed_4e": "AuxLogits_Mixed_4e"}


class GoogLeNet(nn.Module):
  """GoogLeNet: images [batch, height, width, 3] in [-1, 1] -> logits [batch, num_classes].

  Attributes:
    norm: "lrn" (paper: conv + bias, LocalRespNorm) or "bn" (released: BatchNorm after every conv).
    module: "reduced" (Figure 2b) or "naive" (Figure 2a: no 1x1 reductions, no pool projection).
    branch3_kernel: 5 (paper) or 3 (released code).
    pool5_window: 3 (paper: 3x3/2 max pool before 5a) or 2 (released: 2x2/2).
    aux_logits: build the two auxiliary heads (returned only with train=True).
    aux_pooling: "paper" (5x5/3 average pool) or "adaptive" (torchvision).
    dropout_rate: before the classifier (paper 0.4, released 0.2).
    transform_input: map torchvision's ImageNet mean/std input to [-1, 1] first, as torchvision's
      `transform_input=True` does (for converted weights).
    bn_scale: learn BN's gamma (torchvision) or not (tf-slim).
    padding: "torchvision" (conv1 pads 3, ceil-mode pools, as Caffe) or "same" (tf-slim: TF 'SAME').
    bn_axis_name: mesh axis to synchronise BN statistics over, if any.
    width_multiplier: tf-slim's depth multiplier for every conv (minimum 16 channels).
    initializer: initial weights as "bvlc" (the paper's network as BVLC trained it: xavier, bias
      0.2), "slim" (tf-slim inception_v1, the `googlenet_bn` default), "torchvision" or "flax"
      (`inception_jax.initializers`, docs/FIDELITY.md).
    dtype: compute dtype (parameters stay float32, logits are returned in float32).
    return_features: return a dict of end points instead of logits.
  """

  num_classes: int = 1000
  norm: Literal["lrn", "bn"] = "lrn"
  module: Literal["reduced", "naive"] = "reduced"
  branch3_kernel: Literal[3, 5] = 5
  pool5_window: Literal[2, 3] = 3
  aux_logits: bool = True
  aux_pooling: Literal["paper", "adaptive"] = "paper"
  dropout_rate: float = 0.4
  aux_dropout_rate: float = 0.7
  transform_input: bool = False
  bn_scale: bool = True
  padding: Literal["torchvision", "same"] = "torchvision"
  bn_momentum: float = 0.9  # torchvision's BatchNorm2d default (released GoogLeNet-BN)
  bn_axis_name: str | None = None
  width_multiplier: float = 1.0
  initializer: Literal[initializers.INITIALIZERS] = "bvlc"
  dtype: Any = jnp.float32
  kernels: Kernels = STANDARD_KERNELS  # convolution and pooling implementations (models.create)
  return_features: bool = False

  def __post_init__(self):
    check_options(self)  # before anything is traced
    super().__post_init__()

  def init_scheme(self) -> initializers.Scheme:
    """The initialisers of each kind of layer; raises ValueError for an unknown name."""
    return initializers.scheme(self.initializer, "googlenet")

  @property
  def min_image_size(self) -> int:
    # Five stride-2 stages with ceil-mode pools (a window may overhang the input, as in Caffe and
    # torchvision): 31 -> 16 -> 8 -> 4 -> 2 -> 1 with the paper's 3x3/2 pool before 5a; the
    # released 2x2/2 pool also maps a 1x1 grid to 1x1, so 15 -> 8 -> 4 -> 2 -> 1 -> 1. One pixel
    # less leaves an empty grid (tests/test_models.py checks both sides). TF 'SAME' maps any
    # grid n to ceil(n / 2) >= 1.
    if self.padding == "same":
      return 1
    return 31 if self.pool5_window == 3 else 15

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False):
    check_images(images, self.min_image_size, type(self).__name__)
    init = self.init_scheme()
    if self.padding == "same":
      conv1_pad, pool = "SAME", functools.partial(max_pool, padding="SAME", kernels=self.kernels)
    else:
      conv1_pad, pool = (
        3,
        functools.partial(max_pool, padding=0, ceil_mode=True, kernels=self.kernels),
      )
    conv = conv_layer(self, init.conv, norm="bn" if self.norm == "bn" else None)
    d = lambda c: depth(c, self.width_multiplier)  # noqa: E731
    lrn = LocalResponseNorm() if self.norm == "lrn" else (lambda x: x)
    end_points: dict[str, Any] = {}

    x = torchvision_to_inception_range(images) if self.transform_input else images
    x = x.astype(self.dtype)
    x = end_points["Conv2d_1a_7x7"] = conv(
      d(64), 7, strides=2, padding=conv1_pad, name="Conv2d_1a_7x7"
    )(x, train)
    x = end_points["MaxPool_2a_3x3"] = lrn(pool(x, 3, 2))
    x = end_points["Conv2d_2b_1x1"] = conv(d(64), 1, name="Conv2d_2b_1x1")(x, train)
    x = end_points["Conv2d_2c_3x3"] = lrn(
      conv(d(192), 3, padding=1, name="Conv2d_2c_3x3")(x, train)
    )
    x = end_points["MaxPool_3a_3x3"] = pool(x, 3, 2)

    aux = []
    for name, widths in TABLE1.items():
      if name == "Mixed_4b":
        x = end_points["MaxPool_4a_3x3"] = pool(x, 3, 2)
      if name == "Mixed_5b":
        w = self.pool5_window
        x = end_points[f"MaxPool_5a_{w}x{w}"] = pool(x, w, 2)
      if self.module == "naive":
        block = NaiveInceptionModule(
          widths[0],
          widths[2],
          widths[4],
          conv=conv,
          kernels=self.kernels,
          branch3_kernel=self.branch3_kernel,
          width_multiplier=self.width_multiplier,
          name=name,
        )
      else:
        block = InceptionModule(
          *widths,
          conv=conv,
          kernels=self.kernels,
          branch3_kernel=self.branch3_kernel,
          width_multiplier=self.width_multiplier,
          name=name,
        )
      x = end_points[name] = block(x, train)
      if self.aux_logits and name in AUX_HEADS and (train or self.is_initializing()):
        head = GoogLeNetAuxHead(
          self.num_classes,
          conv=conv,
          kernels=self.kernels,
          pooling=self.aux_pooling,
          dropout_rate=self.aux_dropout_rate,
          width_multiplier=self.width_multiplier,
          scheme=init,
          dtype=self.dtype,
          name=AUX_HEADS[name],
        )
        aux.append(head(x, train).astype(jnp.float32))

    x = end_points["PreLogits"] = global_avg_pool(x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    logits = dense(self.num_classes, init.logits, x.shape[-1], self.dtype, name="Logits")(x)
    logits = logits.astype(jnp.float32)
    return outputs(logits, tuple(aux), end_points, train, self.return_features)
