"""Inception v2 and v3, "Rethinking the Inception Architecture for Computer Vision".

`InceptionV3` with its defaults is the released Inception-v3 (tf-slim inception_v3, torchvision
Inception3 and Keras InceptionV3 agree): factorized stem, Mixed_5b..5d (Figure 5), Mixed_6a
(Figure 10), Mixed_6b..6e (Figure 6, n=7), Mixed_7a, Mixed_7b..7c (Figure 7), BN-auxiliary head on
Mixed_6e. Every conv is conv -> BN (eps 0.001) -> ReLU without bias. Every ablation of the paper is
an attribute:

  - `stem`: "factorized" (three 3x3 convs, Table 3 "+Factorized 7x7") or "7x7" (one 7x7/2 conv, the
    Inception-v2 row of Table 3).
  - `aux_bn`: batch-normalize the auxiliary head's fully connected layer (Table 3 "BN-auxiliary").
  - `factorization_activation`: "relu" or "linear" first layers of each factorized pair (Figure 2).
  - `receptive_field`: Table 2, three inputs at equal cost on equal grids (docs/FIDELITY.md):
    299: the stem's first conv at stride 2, then MaxPool_3a (the released network);
    151: first conv at stride 1, then MaxPool_3a (the 7x7 stem pads its conv by 1, so that 151
      reaches the grid 299 reaches: 147 after the first conv);
    79: first conv at stride 1 and no MaxPool_3a. The layers before the removed pool run on a grid
      about 4x smaller, so they are widened to keep the cost (`table2_stem_widths`), and the
      factorized stem's padded Conv2d_2b_3x3 is unpadded so that Conv2d_3b sees the grid it sees
      at 299 (73). From Conv2d_3b on the three networks are
      the same layers on the same grids (35 at Mixed_5b at 299 / 151 / 79); the multiply-adds
      differ by less than 1% (tests/test_models.py).
  - `layout`: "released" or "paper" (Table 1 as printed: stem ending 3x3/1 80, 3x3/2 192, 3x3/1 288
    padded, a 3x3 in Figure 5's second branch, 288 filters out of every 35x35 module (Mixed_5b's
    pool projection is 64 wide, as Mixed_5c's), five Figure-6 modules). Widths the paper does not
    print are the released ones.
  - `initializer`: "slim" (tf-slim inception_v3's initial weights, the default), "torchvision" or
    "flax" (`inception_jax.initializers`).
  - `mixed_7c_pool`: "avg" or "max" in Mixed_7c's pool branch ("max": the FID network, below).

`InceptionV3FID` is the network of the Frechet Inception Distance (the 2015-12-05 TensorFlow graph
that pytorch-fid reproduces); see its docstring and `inception_jax.fid`.
"""

from __future__ import annotations

from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from inception_jax import initializers
from inception_jax.blocks import (
  Asymmetric7x7Module,
  ExpandedFilterBankModule,
  Factorized5x5Module,
  GridReduction17to8,
  GridReduction35to17,
  InceptionV3AuxHead,
)
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

# Released code: Figure-6 inner widths for Mixed_6b..6e; the paper prints five such modules.
CHANNELS_7X7 = {"released": (128, 160, 160, 192), "paper": (128, 160, 160, 160, 192)}
MIXED_7C_POOLS = ("avg", "max")
# (stem, receptive_field) -> smallest input: Mixed_7a's 3x3/2 needs a 3x3 grid, so Mixed_6a needs
# 7x7, Conv2d_3b a 17x17 grid, and the stem 35x35 before MaxPool_3a (299, 151) or 17x17 (79: no
# pool). The three receptive fields reach every grid from Conv2d_3b on with the same size, so these
# are also the three inputs of Table 2 at the smallest scale (75 / 39 / 23 for 299 / 151 / 79).
MIN_IMAGE_SIZE = {
  ("factorized", 299): 75,
  ("factorized", 151): 39,
  ("factorized", 79): 23,
  ("7x7", 299): 75,
  ("7x7", 151): 39,
  ("7x7", 79): 23,
}


def table2_stem_widths(
  stem: str, widths: tuple[int, ...], size: int, next_kernel: int, next_features: int
) -> tuple[int, ...]:
  """Table 2's 79 network: the widths of the layers before the (removed) MaxPool_3a.

  Those layers run on a grid about a quarter of the one the 299 network runs them on (77 vs 149
  at full scale), so they are widened by the one factor r (channels round(r * c)) that makes the
  multiply-adds up to and including the next layer (Conv2d_3b, which reads their output) closest
  to the 299 network's on the same later grids; on small inputs, where one channel of every layer
  is a few percent of the total, the last layer's width then closes the remaining gap. The
  factor is computed from the grids rather than fixed because VALID convs take a larger share of
  a small grid: a fixed integer (2 for the factorized stem, 3 for the 7x7) is within 0.4% at full
  scale but 2-9% off at the reduced scales of experiments/v3_ablations.py.

  stem: "factorized" or "7x7"; widths: the 299 network's (after the width multiplier); size: the
  79 network's input; next_kernel: Conv2d_3b's kernel side (1 released, 3 paper layout).
  """
  if stem == "7x7":
    areas, pre_pool = (49,), size - 6  # 7x7 VALID: 79 -> 73
    grids, twin = (pre_pool,), (2 * pre_pool + 1,)
  else:
    areas, pre_pool = (9, 9, 9), size - 6  # 3x3, 3x3, 3x3 unpadded: 79 -> 77, 75, 73
    grids, twin = (size - 2, size - 4, size - 6), (2 * pre_pool + 3,) + (2 * pre_pool + 1,) * 2
  next_grid = pre_pool - (next_kernel - 1)

  def cost(ws, gs):
    ins = (3,) + tuple(ws[:-1])
    convs = sum(g * g * a * i * o for g, a, i, o in zip(gs, areas, ins, ws, strict=False))
    return convs + next_grid**2 * next_kernel**2 * ws[-1] * next_features

  target = cost(widths, twin)

  def gap(ws):
    return abs(cost(ws, grids) - target)

  uniform = [tuple(max(1, round(r / 64 * w)) for w in widths) for r in range(64, 8 * 64)]
  best = min(uniform, key=gap)
  # On small inputs one channel of every layer is a few percent of the total: the last layer's
  # width alone then closes the remaining gap.
  return min((best[:-1] + (w,) for w in range(max(1, best[-1] - 8), best[-1] + 9)), key=gap)


class InceptionV3(nn.Module):
  """Inception v2/v3: images [batch, height, width, 3] in [-1, 1] -> logits [batch, num_classes].

  Other attributes: `aux_logits` (build the head on Mixed_6e, returned only with train=True),
  `dropout_rate` (before the classifier; the released code keeps 0.8), `pool_count_include_pad`
  (average pools divide by the full window as torchvision does, instead of by the valid pixels as
  TF/Keras do), `transform_input`, `bn_scale`, `bn_axis_name`, `width_multiplier`, `dtype`,
  `return_features`: as in `GoogLeNet`.
  """

  num_classes: int = 1000
  stem: Literal["factorized", "7x7"] = "factorized"
  aux_logits: bool = True
  aux_bn: bool = True
  factorization_activation: Literal["relu", "linear"] = "relu"
  receptive_field: Literal[299, 151, 79] = 299
  layout: Literal["released", "paper"] = "released"
  dropout_rate: float = 0.2
  pool_count_include_pad: bool = False
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

  mixed_7c_pool: Literal[MIXED_7C_POOLS] = "avg"

  def init_scheme(self) -> initializers.Scheme:
    """The initialisers of each kind of layer; raises ValueError for an unknown name."""
    return initializers.scheme(self.initializer, "inception_v3")

  @property
  def min_image_size(self) -> int:
    return MIN_IMAGE_SIZE.get((self.stem, self.receptive_field), 75)

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False):
    check_images(images, self.min_image_size, type(self).__name__)
    init = self.init_scheme()
    conv = conv_layer(self, init.conv)
    d = lambda c: depth(c, self.width_multiplier)  # noqa: E731
    factorized_act = self.factorization_activation == "relu"
    blocks = dict(conv=conv, kernels=self.kernels, width_multiplier=self.width_multiplier)
    pools = dict(pool_count_include_pad=self.pool_count_include_pad)
    end_points: dict[str, Any] = {}

    x = torchvision_to_inception_range(images) if self.transform_input else images
    x = x.astype(self.dtype)
    # ---- Stem (Table 1 rows up to the 35x35 grid; Table 2's receptive field variants) ----
    rf = self.receptive_field
    stride1 = 1 if rf in (151, 79) else 2
    widths = (d(64),) if self.stem == "7x7" else (d(32), d(32), d(64))
    if rf == 79:
      widths = table2_stem_widths(
        self.stem, widths, x.shape[1], 3 if self.layout == "paper" else 1, d(80)
      )
    if self.stem == "7x7":
      pad1 = 1 if rf == 151 else 0  # 151 + 2 - 7 + 1 = 147, the grid 299 reaches at stride 2
      x = end_points["Conv2d_1a_7x7"] = conv(
        widths[0], 7, strides=stride1, padding=pad1, name="Conv2d_1a_7x7"
      )(x, train)
    else:
      x = end_points["Conv2d_1a_3x3"] = conv(widths[0], 3, strides=stride1, name="Conv2d_1a_3x3")(
        x, train
      )
      x = end_points["Conv2d_2a_3x3"] = conv(widths[1], 3, name="Conv2d_2a_3x3")(x, train)
      x = end_points["Conv2d_2b_3x3"] = conv(
        widths[2], 3, padding=0 if rf == 79 else 1, name="Conv2d_2b_3x3"
      )(x, train)
    if rf != 79:
      x = end_points["MaxPool_3a_3x3"] = max_pool(x, 3, 2, kernels=self.kernels)
    if self.layout == "paper":
      x = end_points["Conv2d_3b_3x3"] = conv(d(80), 3, name="Conv2d_3b_3x3")(x, train)
      x = end_points["Conv2d_4a_3x3"] = conv(d(192), 3, strides=2, name="Conv2d_4a_3x3")(x, train)
      x = end_points["Conv2d_4b_3x3"] = conv(d(288), 3, padding=1, name="Conv2d_4b_3x3")(x, train)
    else:
      x = end_points["Conv2d_3b_1x1"] = conv(d(80), 1, name="Conv2d_3b_1x1")(x, train)
      x = end_points["Conv2d_4a_3x3"] = conv(d(192), 3, name="Conv2d_4a_3x3")(x, train)
      x = end_points["MaxPool_5a_3x3"] = max_pool(x, 3, 2, kernels=self.kernels)

    # ---- 35x35: Figure 5 ----
    k5 = 3 if self.layout == "paper" else 5
    # Released: Mixed_5b's pool projection is 32 wide (256 out); Table 1: 288 out of all three.
    pool_5b = 64 if self.layout == "paper" else 32
    for name, pool_features in (("Mixed_5b", pool_5b), ("Mixed_5c", 64), ("Mixed_5d", 64)):
      x = end_points[name] = Factorized5x5Module(
        pool_features,
        branch5x5_kernel=k5,
        factorized_activation=factorized_act,
        name=name,
        **blocks,
        **pools,
      )(x, train)
    # ---- 35x35 -> 17x17: Figure 10 ----
    x = end_points["Mixed_6a"] = GridReduction35to17(
      factorized_activation=factorized_act, name="Mixed_6a", **blocks
    )(x, train)
    # ---- 17x17: Figure 6 ----
    for i, c7 in enumerate(CHANNELS_7X7[self.layout]):
      name = f"Mixed_6{'bcdefg'[i]}"
      x = end_points[name] = Asymmetric7x7Module(
        c7, factorized_activation=factorized_act, name=name, **blocks, **pools
      )(x, train)
    aux = ()
    if self.aux_logits and (train or self.is_initializing()):
      head = InceptionV3AuxHead(
        self.num_classes,
        bn_fc=self.aux_bn,
        scheme=init,
        dtype=self.dtype,
        name="AuxLogits",
        **blocks,
      )
      aux = (head(x, train).astype(jnp.float32),)
    # ---- 17x17 -> 8x8: Figure 10 ----
    x = end_points["Mixed_7a"] = GridReduction17to8(
      factorized_activation=factorized_act, name="Mixed_7a", **blocks
    )(x, train)
    # ---- 8x8: Figure 7 ----
    for name in ("Mixed_7b", "Mixed_7c"):
      pool = self.mixed_7c_pool if name == "Mixed_7c" else "avg"
      x = end_points[name] = ExpandedFilterBankModule(pool=pool, name=name, **blocks, **pools)(
        x, train
      )

    x = end_points["PreLogits"] = global_avg_pool(x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    logits = dense(self.num_classes, init.logits, x.shape[-1], self.dtype, name="Logits")(x)
    logits = logits.astype(jnp.float32)
    return outputs(logits, aux, end_points, train, self.return_features)


class InceptionV3FID(InceptionV3):
  """The FID Inception network: pytorch-fid's `fid_inception_v3` (the TensorFlow graph
  inception-2015-12-05 that the FID and Inception Score reference code run).

  The same layers and names as `InceptionV3`; its differences from torchvision's classification
  Inception3, each one of pytorch-fid's patches:
    - 1008 classes (`num_classes=1008`): the graph's softmax has 1008 outputs, 1000 of them
      ImageNet classes; its `Logits/bias` exists but the Inception Score code leaves it out.
    - Mixed_5b..5d (FIDInceptionA), Mixed_6b..6e (FIDInceptionC) and Mixed_7b (FIDInceptionE_1):
      the 3x3/1 average pool of the pool branch divides by the valid pixels only
      (`pool_count_include_pad=False`, TensorFlow's SAME average pool; torchvision counts the
      zero padding).
    - Mixed_7c (FIDInceptionE_2): a 3x3/1 max pool (padding 1) in the pool branch instead of the
      average pool (`mixed_7c_pool="max"`); pytorch-fid notes this is likely a slip of that graph.
    - No auxiliary head (`aux_logits=False`) and no input transform (`transform_input=False`):
      the input is pytorch-fid's `2 * x - 1` of images in [0, 1], resized to 299x299 first
      (`inception_jax.fid` does both).
  Batch norm eps is 0.001 as in every InceptionV3 here. Input: [batch, 299, 299, 3] in [-1, 1].
  """

  num_classes: int = 1008
  aux_logits: bool = False
  pool_count_include_pad: bool = False
  mixed_7c_pool: Literal[MIXED_7C_POOLS] = "max"
