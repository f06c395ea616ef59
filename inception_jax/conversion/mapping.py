"""What every source shares: the layer order of each architecture (each of our layers and the
source's name for it), the checks that every source tensor is used once with the expected shape,
and the assembly of our variables tree. A mismatch raises `ConversionError` (a ValueError) naming
the first mismatching tensor and both shapes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from inception_jax import models
from inception_jax.errors import ConversionError
from inception_jax.training import checkpoint

META_FILE = checkpoint.CONVERT_META
STATE_DIR = checkpoint.STATE  # what checkpoint.load_variables looks for inside a folder
FORMAT_VERSION = 1
SOURCES = ("torchvision", "keras", "slim")
TORCHVISION_MODELS = ("googlenet_bn", "inception_v3", "inception_v3_fid")
KERAS_MODELS = ("inception_v3",)
# Overrides that the converted weights depend on: always written to convert_meta.json.
CONVENTION_FIELDS = ("transform_input", "pool_count_include_pad", "bn_scale", "aux_logits")

Variables = dict[str, Any]


# ------------------------------------------------------------------------------------------------
# Layer order, per architecture. Each entry maps one of our layers (a path in the variables tree)
# to the source's name for it.
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Layer:
  kind: str  # "convbn" (ConvBN: conv kernel + BN) or "dense"
  path: tuple[str, ...]  # our module path, e.g. ("Mixed_3b", "branch2")
  source: str  # torchvision module name, e.g. "inception3a.branch2.1"
  nchw_flatten: bool = False  # dense input is a flattened torch NCHW map (GoogLeNet aux fc1)


# GoogLeNet (torchvision googlenet / tf-slim inception_v1 layout). tf-slim end point -> torchvision.
GOOGLENET_STEM = (
  ("Conv2d_1a_7x7", "conv1"),
  ("Conv2d_2b_1x1", "conv2"),
  ("Conv2d_2c_3x3", "conv3"),
)
GOOGLENET_MIXED = (
  ("Mixed_3b", "inception3a"),
  ("Mixed_3c", "inception3b"),
  ("Mixed_4b", "inception4a"),
  ("Mixed_4c", "inception4b"),
  ("Mixed_4d", "inception4c"),
  ("Mixed_4e", "inception4d"),
  ("Mixed_4f", "inception4e"),
  ("Mixed_5b", "inception5a"),
  ("Mixed_5c", "inception5b"),
)
# Inside an InceptionModule: ours -> torchvision's nn.Sequential indices (branch4.0: the max pool).
GOOGLENET_BRANCHES = (
  ("branch1", "branch1"),
  ("branch2_reduce", "branch2.0"),
  ("branch2", "branch2.1"),
  ("branch3_reduce", "branch3.0"),
  ("branch3", "branch3.1"),
  ("branch4_proj", "branch4.1"),
)
GOOGLENET_AUX = (("AuxLogits_Mixed_4b", "aux1"), ("AuxLogits_Mixed_4e", "aux2"))

# Inception v3: our names are torchvision's. The order inside each block is the order in which
# torchvision registers the modules and Keras's inception_v3.py creates its conv2d_bn layers.
V3_STEM = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3")
FIGURE5 = (
  "branch1x1",
  "branch5x5_1",
  "branch5x5_2",
  "branch3x3dbl_1",
  "branch3x3dbl_2",
  "branch3x3dbl_3",
  "branch_pool",
)  # Mixed_5b..5d: Keras mixed0..2
REDUCTION_35 = (
  "branch3x3",
  "branch3x3dbl_1",
  "branch3x3dbl_2",
  "branch3x3dbl_3",
)  # Mixed_6a: mixed3
FIGURE6 = (
  "branch1x1",
  "branch7x7_1",
  "branch7x7_2",
  "branch7x7_3",
  "branch7x7dbl_1",
  "branch7x7dbl_2",
  "branch7x7dbl_3",
  "branch7x7dbl_4",
  "branch7x7dbl_5",
  "branch_pool",
)  # Mixed_6b..6e: mixed4..7
REDUCTION_17 = (
  "branch3x3_1",
  "branch3x3_2",
  "branch7x7x3_1",
  "branch7x7x3_2",
  "branch7x7x3_3",
  "branch7x7x3_4",
)  # Mixed_7a: mixed8
FIGURE7 = (
  "branch1x1",
  "branch3x3_1",
  "branch3x3_2a",
  "branch3x3_2b",
  "branch3x3dbl_1",
  "branch3x3dbl_2",
  "branch3x3dbl_3a",
  "branch3x3dbl_3b",
  "branch_pool",
)  # 7b, 7c: mixed9, 10
V3_MIXED = (
  ("Mixed_5b", FIGURE5),
  ("Mixed_5c", FIGURE5),
  ("Mixed_5d", FIGURE5),
  ("Mixed_6a", REDUCTION_35),
  ("Mixed_6b", FIGURE6),
  ("Mixed_6c", FIGURE6),
  ("Mixed_6d", FIGURE6),
  ("Mixed_6e", FIGURE6),
  ("Mixed_7a", REDUCTION_17),
  ("Mixed_7b", FIGURE7),
  ("Mixed_7c", FIGURE7),
)
V3_AUX = (("conv0", "convbn"), ("conv1", "convbn"), ("fc", "dense"))  # torchvision InceptionAux


def googlenet_layers(aux_logits: bool) -> list[Layer]:
  """torchvision GoogLeNet's layers in its state_dict order."""
  layers = [Layer("convbn", (ours,), tv) for ours, tv in GOOGLENET_STEM]
  for mixed, tv_mixed in GOOGLENET_MIXED:
    layers += [
      Layer("convbn", (mixed, ours), f"{tv_mixed}.{tv}") for ours, tv in GOOGLENET_BRANCHES
    ]
  if aux_logits:
    for head, tv in GOOGLENET_AUX:
      layers += [
        Layer("convbn", (head, "conv"), f"{tv}.conv"),
        Layer("dense", (head, "fc1"), f"{tv}.fc1", nchw_flatten=True),
        Layer("dense", (head, "fc2"), f"{tv}.fc2"),
      ]
  return layers + [Layer("dense", ("Logits",), "fc")]


def inception_v3_convbn_paths() -> list[tuple[str, ...]]:
  """The 94 ConvBN layers of the main Inception-v3 tower, in creation order."""
  paths = [(name,) for name in V3_STEM]
  for mixed, branches in V3_MIXED:
    paths += [(mixed, b) for b in branches]
  return paths


def inception_v3_layers(aux_logits: bool) -> list[Layer]:
  """torchvision Inception3's layers in its state_dict order (AuxLogits follows Mixed_6e)."""
  layers = []
  for path in inception_v3_convbn_paths():
    layers.append(Layer("convbn", path, ".".join(path)))
    if aux_logits and path == ("Mixed_6e", FIGURE6[-1]):
      layers += [Layer(kind, ("AuxLogits", name), f"AuxLogits.{name}") for name, kind in V3_AUX]
  return layers + [Layer("dense", ("Logits",), "fc")]


# ------------------------------------------------------------------------------------------------
# Shared helpers
# ------------------------------------------------------------------------------------------------
def abstract_variables(model: nn.Module, name: str) -> Variables:
  size = models.default_image_size(name)
  return jax.eval_shape(
    lambda: model.init(
      jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3), jnp.float32), train=False
    )
  )


def flat(tree: Mapping) -> dict[str, Any]:
  """{'params/Mixed_3b/branch1/conv/kernel': leaf}, params before batch_stats, sorted within."""
  flat = traverse_util.flatten_dict(dict(tree), sep="/")
  order = {"params": 0, "batch_stats": 1}
  return dict(sorted(flat.items(), key=lambda kv: (order.get(kv[0].split("/")[0], 2), kv[0])))


def tensor_shape(x: Any) -> tuple[int, ...]:
  if isinstance(x, (list, tuple)) and all(isinstance(d, int) for d in x):
    return tuple(x)  # already a shape (a TF checkpoint's variable-to-shape map)
  return tuple(int(d) for d in getattr(x, "shape", np.shape(x)))


def first_mismatch(expected: Mapping, found: Mapping) -> str | None:
  """'tensor X: ...' for the first tensor missing, mis-shaped (params before batch_stats, sorted
  within) or unexpected, or None. The comparison is checkpoint.tree_differences'."""

  def key(path) -> str:
    return "/".join(str(getattr(k, "key", k)) for k in path)

  missing, misshaped, unexpected = checkpoint.tree_differences(expected, found, key=key)
  flat_expected, flat_found = flat(expected), flat(found)
  for k, value in flat_expected.items():
    if k in missing:
      return f"'{k}' is missing (expected shape {tensor_shape(value)})"
    if k in misshaped:
      return f"'{k}' has shape {tensor_shape(flat_found[k])}, expected {tensor_shape(value)}"
  for k in flat_found:
    if k in unexpected:
      return f"'{k}' (shape {tensor_shape(flat_found[k])}) is not a tensor of this architecture"
  return None


def assemble(
  values: dict[tuple[str, ...], np.ndarray], abstract: Variables, what: str
) -> Variables:
  """Nested variables from {(collection, *path): array}, checked against the model's own tree."""
  variables = traverse_util.unflatten_dict(
    {k: jnp.asarray(v, jnp.float32) for k, v in values.items()}
  )
  problem = first_mismatch(abstract, variables)
  if problem:  # A layer list above disagrees with the model code: a bug here, not in the source.
    raise AssertionError(f"{what}: the converted variables do not fit the model: {problem}")
  return variables


def convbn_keys(path: tuple[str, ...], bn_scale: bool) -> dict[str, tuple[str, ...]]:
  keys = {
    "kernel": ("params", *path, "conv", "kernel"),
    "bias": ("params", *path, "bn", "bias"),
    "mean": ("batch_stats", *path, "bn", "mean"),
    "var": ("batch_stats", *path, "bn", "var"),
  }
  if bn_scale:
    keys["scale"] = ("params", *path, "bn", "scale")
  return keys


def lookup(abstract: Variables, key: tuple[str, ...]) -> Any:
  node = abstract
  for k in key:
    node = node[k]
  return node


Wanted = Sequence[tuple[str, tuple[int, ...], tuple[str, ...], Any]]


def gather(
  shapes: Mapping[str, Any], wanted: Wanted, problem: str, read: Any
) -> dict[tuple[str, ...], np.ndarray]:
  """{our key: fn(read(source key))} for every (source key, shape, our key, fn) in `wanted`.

  `shapes` maps the source's tensor names to arrays or shapes. Raises ConversionError
  ("{problem}: first mismatching tensor ...") naming the first tensor, in `wanted`'s order, that
  is missing or mis-shaped, then the first source tensor left unused.
  """
  used = {key for key, *_ in wanted}
  extra = [k for k in shapes if k not in used]
  extra_note = (
    f"; the source also has {len(extra)} tensor(s) this architecture lacks, first "
    f"'{extra[0]}' {tensor_shape(shapes[extra[0]])}"
    if extra
    else ""
  )
  for key, shape, _, _ in wanted:
    if key not in shapes:
      raise ConversionError(
        f"{problem}: first mismatching tensor '{key}' is missing "
        f"(expected shape {shape}){extra_note}"
      )
    found = tensor_shape(shapes[key])
    if found != shape:
      raise ConversionError(
        f"{problem}: first mismatching tensor '{key}' has shape {found}, expected {shape}"
      )
  if extra:
    raise ConversionError(
      f"{problem}: first mismatching tensor '{extra[0]}' "
      f"{tensor_shape(shapes[extra[0]])} is not a tensor of this architecture "
      f"({len(extra)} unexpected tensor(s))"
    )
  return {ours: fn(read(key)) for key, _, ours, fn in wanted}
