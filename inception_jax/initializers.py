"""The initial weights of every network, by reference implementation: the one place they are chosen.

A network's `initializer` field names a scheme; `scheme(name, family)` maps it to one `LayerInit`
(kernel and bias initialiser) per kind of layer. The models hand `scheme.conv` to `ConvBN`
(`layer_init`) through their conv partial and build their dense layers with `layers.dense`, so no
layer picks its own.

Schemes:
  - "bvlc": Caffe's xavier (uniform, variance 1 / fan_in) everywhere, bias 0.2 on every conv and
    hidden fully connected layer, 0 on the classifiers. BVLC
    `models/bvlc_googlenet/train_val.prototxt`; GoogLeNet only.
  - "slim": tf-slim's convs get `variance_scaling_initializer()` (He: truncated normal of stddev
    sqrt(1.3 * 2 / fan_in), whose samples have std sqrt(2 / fan_in)), biases 0; per network the
    overrides of its file (below). `tf_slim/nets/inception_v1.py`, `inception_v3.py`.
  - "torchvision": `trunc_normal_(std, a=-2, b=2)` on every conv and linear kernel (0.1 for
    Inception3, 0.01 for GoogLeNet; Inception3's aux `fc` 0.001), PyTorch's default bias
    uniform(+-1 / sqrt(fan_in)). `torchvision/models/inception.py`, `googlenet.py`.
  - "flax": Flax's defaults, lecun normal kernels and zero biases.

Per-network details (docs/FIDELITY.md has the table with every layer kind):
  - slim `inception_v1` (our `googlenet_bn`): `inception_v1_base` wraps every conv and fully
    connected layer in `trunc_normal(0.01)`; the logits conv sits outside that scope and gets the
    arg scope's He initialiser. Slim has no aux heads for v1; ours take the base's
    trunc_normal(0.01).
  - slim `inception_v3` (our `inception_v3`, `inception_v2`): He everywhere (logits included) except
    the aux head's 5x5 conv (`trunc_normal(0.01)`) and the aux logits (`trunc_normal(0.001)`).
  - torchvision Inception3 sets `stddev = 0.01` on the aux head's `conv1` *wrapper* (BasicConv2d),
    which its init loop never reads (it reads `nn.Conv2d.stddev`), so that conv gets 0.1 like the
    others; we reproduce what the loop does, not what the attribute says.

Truncated normals here cut at 2 standard deviations of the untruncated distribution (TensorFlow's
`truncated_normal_initializer`, `jax.nn.initializers.truncated_normal`), except torchvision's, which
cut at +-2 in absolute value (20 to 200 standard deviations: effectively a normal).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import linen as nn

Initializer = Callable[..., jax.Array]

INITIALIZERS = ("bvlc", "slim", "torchvision", "flax")
FAMILIES = ("googlenet", "bn_inception", "inception_v3")


def fan_in(shape: tuple[int, ...]) -> int:
  """Inputs per output unit of a kernel: kh * kw * in for [kh, kw, in, out], in for [in, out]."""
  return int(math.prod(shape[:-1]))


def caffe_xavier() -> Initializer:
  """Caffe's XavierFiller (default variance_norm FAN_IN): uniform(-sqrt(3 / fan_in), +sqrt(...))."""
  return nn.initializers.variance_scaling(1.0, "fan_in", "uniform")


def slim_variance_scaling(factor: float = 2.0) -> Initializer:
  """tf_slim `variance_scaling_initializer()` (factor 2, FAN_IN, not uniform): truncated normal with
  stddev sqrt(1.3 * factor / fan_in) before truncation."""

  def init(key, shape, dtype=jnp.float32):
    stddev = math.sqrt(1.3 * factor / fan_in(shape))
    return nn.initializers.truncated_normal(stddev)(key, shape, dtype)

  return init


def slim_trunc_normal(stddev: float) -> Initializer:
  """tf `truncated_normal_initializer(0, stddev)`: cut at 2 stddev."""
  return nn.initializers.truncated_normal(stddev)


def torch_trunc_normal(stddev: float) -> Initializer:
  """torch `trunc_normal_(w, 0, stddev, a=-2, b=2)`: bounds in absolute units."""
  return nn.initializers.truncated_normal(stddev, lower=-2.0 / stddev, upper=2.0 / stddev)


def constant(value: float) -> Callable[[int], Initializer]:
  return lambda fan: nn.initializers.constant(value)


def torch_default_bias(fan: int) -> Initializer:
  """PyTorch's Conv2d / Linear bias: uniform(-1 / sqrt(fan_in), 1 / sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


@dataclasses.dataclass(frozen=True)
class LayerInit:
  """A kernel initialiser, and a bias initialiser built from the layer's fan-in (PyTorch's needs
  it)."""

  kernel: Initializer
  bias: Callable[[int], Initializer] = constant(0.0)

  def bias_init(self, fan: int) -> Initializer:
    return self.bias(fan)


@dataclasses.dataclass(frozen=True)
class Scheme:
  """One LayerInit per kind of layer.

  conv: every convolution of the trunk (and of the aux heads unless named below);
  aux_conv: Inception-v3's aux head 5x5 ("fully connected") conv; GoogLeNet's aux 1x1 conv;
  hidden: GoogLeNet's aux head fully connected 1024; logits: the main classifier;
  aux_logits: the aux heads' classifiers;
  stem, reduce, proj: BN-Inception's first conv, its 1x1 reductions before 3x3 convs, and its
  pool projections and Conv2d_2b_1x1, where slim's inception_v2.py sets them apart (None: `conv`).
  """

  conv: LayerInit
  aux_conv: LayerInit
  hidden: LayerInit
  logits: LayerInit
  aux_logits: LayerInit
  stem: LayerInit | None = None
  reduce: LayerInit | None = None
  proj: LayerInit | None = None


def scheme(name: str, family: str) -> Scheme:
  """The initialisers `name` gives a network of `family` (one of FAMILIES)."""
  if name not in INITIALIZERS:
    raise ValueError(f"initializer must be one of {INITIALIZERS}, got {name!r}")
  if family not in FAMILIES:
    raise ValueError(f"unknown network family {family!r}; expected one of {FAMILIES}")
  if name == "flax":
    flax_default = LayerInit(nn.initializers.lecun_normal())
    return Scheme(*(flax_default,) * 5)
  if name == "bvlc":
    if family != "googlenet":
      raise ValueError(
        "initializer='bvlc' (BVLC Caffe GoogLeNet) exists for googlenet only; "
        "use 'slim', 'torchvision' or 'flax'"
      )
    body = LayerInit(caffe_xavier(), constant(0.2))
    classifier = LayerInit(caffe_xavier(), constant(0.0))
    return Scheme(conv=body, aux_conv=body, hidden=body, logits=classifier, aux_logits=classifier)
  if name == "torchvision":
    if family == "bn_inception":
      raise ValueError(
        "initializer='torchvision' does not exist for bn_inception (torchvision has "
        "no BN-Inception); use 'slim' or 'flax'"
      )
    std = 0.01 if family == "googlenet" else 0.1
    base = LayerInit(torch_trunc_normal(std), torch_default_bias)
    aux_logits = LayerInit(
      torch_trunc_normal(0.001 if family == "inception_v3" else std), torch_default_bias
    )
    return Scheme(conv=base, aux_conv=base, hidden=base, logits=base, aux_logits=aux_logits)
  he = LayerInit(slim_variance_scaling())
  if family == "bn_inception":
    # slim inception_v2.py: He by default; the separable Conv2d_1a_7x7 trunc_normal(1.0) (depthwise
    # and pointwise); 1x1 reductions before 3x3 convs trunc_normal(0.09); pool projections and
    # Conv2d_2b_1x1 trunc_normal(0.1); the logits conv the arg scope's He. No aux heads.
    return Scheme(
      conv=he,
      aux_conv=he,
      hidden=he,
      logits=he,
      aux_logits=he,
      stem=LayerInit(slim_trunc_normal(1.0)),
      reduce=LayerInit(slim_trunc_normal(0.09)),
      proj=LayerInit(slim_trunc_normal(0.1)),
    )
  if family == "googlenet":
    base = LayerInit(slim_trunc_normal(0.01))
    return Scheme(conv=base, aux_conv=base, hidden=base, logits=he, aux_logits=base)
  return Scheme(
    conv=he,
    aux_conv=LayerInit(slim_trunc_normal(0.01)),
    hidden=he,
    logits=he,
    aux_logits=LayerInit(slim_trunc_normal(0.001)),
  )
