"""Weight import from torchvision, Keras and tf-slim, and the Orbax checkpoints it writes.

```python
from inception_jax import convert
model, variables = convert.from_torchvision(state_dict_or_path_or_module, "inception_v3")  # or "googlenet_bn"
model, variables = convert.from_keras(model_or_weights_path, "inception_v3")
model, variables = convert.from_slim("inception_v3.ckpt", "inception_v3")  # or googlenet_bn, bn_inception
convert.save(directory, model_name, model, variables)   # Orbax checkpoint + convert_meta.json
model, variables = convert.load(directory)              # validated against the architecture
```
Command line: `python -m inception_jax.convert --from=torchvision|keras|slim --model=NAME
--input=FILE --output=DIR`. The returned model reproduces the source network's eval-mode logits
(torchvision: on its own mean/std-normalised input when transform_input is on; Keras: on [-1, 1]
input, before the softmax; slim: on [-1, 1] input, 1001 classes unless the background is dropped).
docs/CONVERT.md lists the conventions handled and the measured errors.

Layers are matched by an explicit order written down below for each architecture (torchvision's
module registration order, which is also the order in which Keras's `inception_v3.py` creates its
Conv2D/BatchNormalization pairs; slim's variable scopes by name), never by the order of a dict. Every source tensor must be used
exactly once and have the expected shape; otherwise a `ConversionError` (a ValueError) names the
first mismatching tensor and both shapes.

Checkpoint layout written by `save` (what `config.init_from` and `checkpoint.load_variables` read):
    DIR/state/              Orbax StandardCheckpointer: {"params": ..., "batch_stats": ...}
    DIR/convert_meta.json   {"model", "num_classes", "model_overrides", "source", ...}
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from inception_jax import extras, models

META_FILE = "convert_meta.json"
STATE_DIR = "state"
FORMAT_VERSION = 1
SOURCES = ("torchvision", "keras", "slim")
TORCHVISION_MODELS = ("googlenet_bn", "inception_v3", "inception_v3_fid")
KERAS_MODELS = ("inception_v3",)
BN_EPSILON = 1e-3
# Overrides that the converted weights depend on: always written to convert_meta.json.
CONVENTION_FIELDS = ("transform_input", "pool_count_include_pad", "bn_scale", "aux_logits")

Variables = dict[str, Any]


class ConversionError(ValueError):
  """The source is not a checkpoint of the requested architecture (or not a checkpoint at all)."""


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
# Inside an InceptionModule: ours -> torchvision's nn.Sequential indices (branch4.0 is the max pool).
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
def _abstract_variables(model: nn.Module, name: str) -> Variables:
  size = models.default_image_size(name)
  return jax.eval_shape(
    lambda: model.init(
      jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3), jnp.float32), train=False
    )
  )


def _flat(tree: Mapping) -> dict[str, Any]:
  """{'params/Mixed_3b/branch1/conv/kernel': leaf}, params before batch_stats, sorted within."""
  flat = traverse_util.flatten_dict(dict(tree), sep="/")
  order = {"params": 0, "batch_stats": 1}
  return dict(sorted(flat.items(), key=lambda kv: (order.get(kv[0].split("/")[0], 2), kv[0])))


def _shape(x: Any) -> tuple[int, ...]:
  if isinstance(x, (list, tuple)) and all(isinstance(d, int) for d in x):
    return tuple(x)  # already a shape (a TF checkpoint's variable-to-shape map)
  return tuple(int(d) for d in getattr(x, "shape", np.shape(x)))


def _first_mismatch(expected: Mapping, found: Mapping) -> str | None:
  """'tensor X: ...' for the first tensor missing, mis-shaped or unexpected, or None."""
  flat_expected, flat_found = _flat(expected), _flat(found)
  for key, value in flat_expected.items():
    if key not in flat_found:
      return f"'{key}' is missing (expected shape {_shape(value)})"
    if _shape(flat_found[key]) != _shape(value):
      return f"'{key}' has shape {_shape(flat_found[key])}, expected {_shape(value)}"
  for key, value in flat_found.items():
    if key not in flat_expected:
      return f"'{key}' (shape {_shape(value)}) is not a tensor of this architecture"
  return None


def _assemble(
  values: dict[tuple[str, ...], np.ndarray], abstract: Variables, what: str
) -> Variables:
  """Nested variables from {(collection, *path): array}, checked against the model's own tree."""
  variables = traverse_util.unflatten_dict(
    {k: jnp.asarray(v, jnp.float32) for k, v in values.items()}
  )
  problem = _first_mismatch(abstract, variables)
  if problem:  # A layer list above disagrees with the model code: a bug here, not in the source.
    raise AssertionError(f"{what}: the converted variables do not fit the model: {problem}")
  return variables


def _convbn_keys(path: tuple[str, ...], bn_scale: bool) -> dict[str, tuple[str, ...]]:
  keys = {
    "kernel": ("params", *path, "conv", "kernel"),
    "bias": ("params", *path, "bn", "bias"),
    "mean": ("batch_stats", *path, "bn", "mean"),
    "var": ("batch_stats", *path, "bn", "var"),
  }
  if bn_scale:
    keys["scale"] = ("params", *path, "bn", "scale")
  return keys


def _lookup(abstract: Variables, key: tuple[str, ...]) -> Any:
  node = abstract
  for k in key:
    node = node[k]
  return node


Wanted = Sequence[tuple[str, tuple[int, ...], tuple[str, ...], Any]]


def _gather(
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
    f"'{extra[0]}' {_shape(shapes[extra[0]])}"
    if extra
    else ""
  )
  for key, shape, _, _ in wanted:
    if key not in shapes:
      raise ConversionError(
        f"{problem}: first mismatching tensor '{key}' is missing "
        f"(expected shape {shape}){extra_note}"
      )
    found = _shape(shapes[key])
    if found != shape:
      raise ConversionError(
        f"{problem}: first mismatching tensor '{key}' has shape {found}, expected {shape}"
      )
  if extra:
    raise ConversionError(
      f"{problem}: first mismatching tensor '{extra[0]}' "
      f"{_shape(shapes[extra[0]])} is not a tensor of this architecture "
      f"({len(extra)} unexpected tensor(s))"
    )
  return {ours: fn(read(key)) for key, _, ours, fn in wanted}


# ------------------------------------------------------------------------------------------------
# torchvision
# ------------------------------------------------------------------------------------------------
def from_torchvision(
  source: Any, model_name: str = "inception_v3", *, transform_input: bool | None = None
) -> tuple[nn.Module, Variables]:
  """(model, variables) reproducing a torchvision GoogLeNet / Inception3.

  source: an `nn.Module` (torchvision.models.googlenet / inception_v3), its `state_dict()`, or a
    path to a .pth/.pt file holding one (read with `torch.load(weights_only=True)`).
  model_name: "googlenet_bn" (torchvision googlenet), "inception_v3", or "inception_v3_fid"
    (pytorch-fid's FID network: Inception3 with its FIDInception* blocks; `fid.from_pytorch_fid`).
  transform_input: whether the model maps torchvision's ImageNet mean/std input to [-1, 1] first.
    Default: the module's own attribute; for a state_dict or file, True, as torchvision's
    builders set it for the published weights (`googlenet(weights=...)`, `inception_v3(weights=...)`),
    except for inception_v3_fid (False: pytorch-fid scales its input itself).
  num_classes and the auxiliary heads are inferred from the tensors present.
  Raises ConversionError (a ValueError) naming the first missing, unexpected or mis-shaped tensor.
  """
  if model_name not in TORCHVISION_MODELS:
    raise ConversionError(
      f"torchvision conversion supports {TORCHVISION_MODELS}, got {model_name!r}"
    )
  state_dict, module_transform = _torch_state_dict(source)
  if transform_input is None:
    transform_input = module_transform
  if transform_input is None:
    transform_input = model_name != "inception_v3_fid"
  state_dict = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}

  fc = state_dict.get("fc.weight")
  num_classes = int(_shape(fc)[0]) if fc is not None and len(_shape(fc)) == 2 else 1000
  if model_name == "googlenet_bn":
    aux = any(k.startswith(("aux1.", "aux2.")) for k in state_dict)
    overrides = dict(transform_input=bool(transform_input), bn_scale=True, aux_logits=aux)
    layers = googlenet_layers(aux)
  else:
    aux = any(k.startswith("AuxLogits.") for k in state_dict)
    overrides = dict(transform_input=bool(transform_input), bn_scale=True, aux_logits=aux)
    if model_name == "inception_v3":  # torchvision's pools; the FID network's are its own
      overrides["pool_count_include_pad"] = True
    layers = inception_v3_layers(aux)
  model = models.create(model_name, num_classes=num_classes, **overrides)
  abstract = _abstract_variables(model, model_name)

  # Every tensor the architecture needs, in torchvision's order: (torch key, torch shape, ours, fn).
  wanted: list[tuple[str, tuple[int, ...], tuple[str, ...], Any]] = []
  for layer in layers:
    if layer.kind == "convbn":
      keys = _convbn_keys(layer.path, bn_scale=True)
      h, w, i, o = _shape(_lookup(abstract, keys["kernel"]))
      wanted += [
        (
          f"{layer.source}.conv.weight",
          (o, i, h, w),
          keys["kernel"],
          lambda t: t.transpose(2, 3, 1, 0),
        )
      ]  # OIHW -> HWIO
      for tv, ours in (
        ("weight", "scale"),
        ("bias", "bias"),
        ("running_mean", "mean"),
        ("running_var", "var"),
      ):
        wanted.append((f"{layer.source}.bn.{tv}", (o,), keys[ours], lambda t: t))
    else:
      kernel_key, bias_key = ("params", *layer.path, "kernel"), ("params", *layer.path, "bias")
      n_in, n_out = _shape(_lookup(abstract, kernel_key))
      fn = _nchw_dense(abstract, layer.path) if layer.nchw_flatten else (lambda t: t.T)
      wanted += [
        (f"{layer.source}.weight", (n_out, n_in), kernel_key, fn),
        (f"{layer.source}.bias", (n_out,), bias_key, lambda t: t),
      ]

  what = f"torchvision {model_name}"
  values = _gather(
    state_dict, wanted, f"the state_dict does not match {what}", lambda key: _numpy(state_dict[key])
  )
  return model, _assemble(values, abstract, what)


def _nchw_dense(abstract: Variables, path: tuple[str, ...]):
  """GoogLeNet aux fc1: torch flattens its 4x4x128 input as (C, H, W), we flatten (H, W, C)."""
  channels = _shape(_lookup(abstract, ("params", path[0], "conv", "conv", "kernel")))[-1]
  n_in, n_out = _shape(_lookup(abstract, ("params", *path, "kernel")))
  side = math.isqrt(n_in // channels)
  if side * side * channels != n_in:
    raise AssertionError(f"{'/'.join(path)}: {n_in} inputs are not a square map of {channels}")

  def fn(weight: np.ndarray) -> np.ndarray:  # [out, C*H*W] -> [H*W*C, out]
    return weight.reshape(n_out, channels, side, side).transpose(2, 3, 1, 0).reshape(n_in, n_out)

  return fn


def _numpy(t: Any) -> np.ndarray:
  if hasattr(t, "detach"):  # a torch tensor
    t = t.detach().cpu().float().numpy()
  return np.asarray(t, dtype=np.float32)


def _torch_state_dict(source: Any) -> tuple[Mapping[str, Any], bool | None]:
  """(state_dict, the module's transform_input or None) from a module, a mapping or a path."""
  if isinstance(source, (str, Path)):
    path = Path(source)
    if not path.is_file():
      raise ConversionError(f"{path} does not exist or is not a file")
    torch = extras.require("torch", "parity", f"reading the PyTorch file {path}")
    try:
      source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - report any failure to read with the path
      raise ConversionError(
        f"{path} is not a PyTorch state_dict file (torch.load(weights_only=True) failed: {e})"
      ) from e
  if hasattr(source, "state_dict") and callable(source.state_dict):  # an nn.Module
    for name, module in source.named_modules():
      eps = getattr(module, "eps", None)
      if type(module).__name__.startswith("BatchNorm") and not math.isclose(eps, BN_EPSILON):
        raise ConversionError(f"BatchNorm '{name}' has eps {eps}; these models use {BN_EPSILON}")
    return source.state_dict(), bool(getattr(source, "transform_input", False))
  if not isinstance(source, Mapping):
    raise ConversionError(
      f"expected a torchvision model, a state_dict or a path to one, got {type(source).__name__}"
    )
  for wrapper in ("state_dict", "model"):  # {"state_dict": {...}} as training scripts save it
    if set(source) == {wrapper} or (
      wrapper in source
      and isinstance(source[wrapper], Mapping)
      and not any(hasattr(v, "shape") for v in source.values())
    ):
      source = source[wrapper]
      break
  if source and all(k.startswith("module.") for k in source):  # saved from DataParallel
    source = {k[len("module.") :]: v for k, v in source.items()}
  bad = [k for k, v in source.items() if not hasattr(v, "shape")]
  if bad:
    raise ConversionError(
      f"not a state_dict: entry '{bad[0]}' is a {type(source[bad[0]]).__name__}, not a tensor"
    )
  return source, None


# ------------------------------------------------------------------------------------------------
# Keras
# ------------------------------------------------------------------------------------------------
def from_keras(source: Any, model_name: str = "inception_v3") -> tuple[nn.Module, Variables]:
  """(model, variables) reproducing keras.applications.InceptionV3's logits on [-1, 1] input.

  source: a Keras model (include_top=True), a .keras file, or a .h5 file (a full model, Keras 2
    weights such as the published inception_v3_weights_tf_dim_ordering_tf_kernels.h5, or Keras 3
    .weights.h5). The model's logits are the Dense layer's pre-activation output: Keras applies a
    softmax by default (classifier_activation="softmax").
  Keras's Conv2D/BatchNormalization pairs are taken in creation order (recovered from the layer
  graph, not from `model.layers`, which orders by depth) and matched to our 94 ConvBN layers in
  the order written down in `inception_v3_convbn_paths`. Keras has no BN scale (bn_scale=False),
  its 'same' average pools exclude padding (our default) and it has no auxiliary head.
  """
  if model_name not in KERAS_MODELS:
    raise ConversionError(f"Keras conversion supports {KERAS_MODELS}, got {model_name!r}")
  kmodel = _load_keras(source) if isinstance(source, (str, Path)) else source
  if not hasattr(kmodel, "outputs") or not hasattr(kmodel, "layers"):
    raise ConversionError(f"expected a Keras model or a path to one, got {type(source).__name__}")
  ordered = _keras_creation_order(kmodel)
  convs = [layer for layer in ordered if _is(layer, "Conv2D")]
  bns = [layer for layer in ordered if _is(layer, "BatchNormalization")]
  denses = [layer for layer in ordered if _is(layer, "Dense")]
  paths = inception_v3_convbn_paths()
  if len(convs) != len(paths) or len(bns) != len(paths) or len(denses) != 1:
    raise ConversionError(
      f"the Keras model has {len(convs)} Conv2D, {len(bns)} BatchNormalization and "
      f"{len(denses)} Dense layers; keras.applications.InceptionV3 (include_top=True) has "
      f"{len(paths)}, {len(paths)} and 1"
    )
  dense = denses[0]
  kernel = _keras_numpy(dense.kernel)
  bn_scale = any(bn.scale for bn in bns)
  model = models.create(
    model_name, num_classes=int(kernel.shape[1]), aux_logits=False, bn_scale=bn_scale
  )
  abstract = _abstract_variables(model, model_name)

  values = {}
  for path, conv, bn in zip(paths, convs, bns, strict=False):
    where = f"Keras layer '{conv.name}' -> {'/'.join(path)}"
    if _keras_parent(bn) is not conv:
      raise ConversionError(f"{where}: BatchNormalization '{bn.name}' does not follow it")
    if getattr(conv, "data_format", "channels_last") != "channels_last" or bn.axis not in (
      -1,
      3,
      [3],
      [-1],
    ):
      raise ConversionError(f"{where}: only channels_last models are supported")
    if getattr(conv, "use_bias", False):
      raise ConversionError(f"{where}: has a bias; InceptionV3's convolutions have none")
    if not math.isclose(bn.epsilon, BN_EPSILON):
      raise ConversionError(
        f"{where}: BatchNormalization '{bn.name}' has epsilon {bn.epsilon}, expected {BN_EPSILON}"
      )
    keys = _convbn_keys(path, bn_scale)
    k = _keras_numpy(conv.kernel)
    expected = _shape(_lookup(abstract, keys["kernel"]))
    if k.shape != expected:
      raise ConversionError(
        f"the Keras model does not match InceptionV3: first mismatching "
        f"tensor '{conv.name}/kernel' (-> {'/'.join(path)}) has shape "
        f"{k.shape}, expected {expected}"
      )
    channels = expected[-1]
    values[keys["kernel"]] = k
    values[keys["mean"]] = _keras_numpy(bn.moving_mean)
    values[keys["var"]] = _keras_numpy(bn.moving_variance)
    values[keys["bias"]] = _keras_numpy(bn.beta) if bn.center else np.zeros(channels, np.float32)
    if bn_scale:
      values[keys["scale"]] = _keras_numpy(bn.gamma) if bn.scale else np.ones(channels, np.float32)
  expected = _shape(_lookup(abstract, ("params", "Logits", "kernel")))
  if kernel.shape != expected:
    raise ConversionError(
      f"the Keras model does not match InceptionV3: first mismatching "
      f"tensor '{dense.name}/kernel' has shape {kernel.shape}, expected {expected}"
    )
  values[("params", "Logits", "kernel")] = kernel
  values[("params", "Logits", "bias")] = (
    _keras_numpy(dense.bias) if dense.use_bias else np.zeros(kernel.shape[1], np.float32)
  )
  return model, _assemble(values, abstract, "Keras InceptionV3")


def _is(layer: Any, class_name: str) -> bool:
  return any(c.__name__ == class_name for c in type(layer).__mro__)


def _keras_numpy(variable: Any) -> np.ndarray:
  # Variable.numpy(): np.array(variable) raises a numpy 2 DeprecationWarning on every call.
  return np.asarray(variable.numpy(), dtype=np.float32)


def _keras_parent(layer: Any) -> Any:
  """The layer that produced `layer`'s (first) input."""
  return layer._inbound_nodes[0].input_tensors[0]._keras_history.operation


def _keras_creation_order(kmodel: Any) -> list[Any]:
  """The model's layers in the order a script building it top-down creates them.

  A post-order depth-first walk from the outputs, visiting each node's inputs in call order:
  for `concatenate([branch1, branch2, ...])` it emits branch1's layers, input side first, then
  branch2's, exactly as keras's inception_v3.py creates them. (`model.layers` sorts by depth.)
  """
  order, done = [], set()
  stack = [(t, False) for t in reversed(list(kmodel.outputs))]
  while stack:
    tensor, expanded = stack.pop()
    op, node_index, _ = tensor._keras_history
    if op is None:
      continue
    node = op._inbound_nodes[node_index]
    if expanded:
      if id(node) not in done:
        done.add(id(node))
        order.append(op)
      continue
    if id(node) in done:
      continue
    stack.append((tensor, True))
    stack += [(t, False) for t in reversed(list(node.input_tensors))]
  return order


def _load_keras(path: str | Path) -> Any:
  path = Path(path)
  if not path.is_file():
    raise ConversionError(f"{path} does not exist or is not a file")
  keras = extras.require("keras", "test", f"reading the Keras file {path}")
  name = path.name.lower()
  try:
    if name.endswith(".keras"):
      return keras.saving.load_model(path, compile=False)
    if not name.endswith((".h5", ".hdf5")):
      raise ConversionError(f"{path}: expected a .keras or .h5 file")
    h5py = extras.require("h5py", "test", f"reading the HDF5 file {path}")
    try:
      with h5py.File(path, "r") as f:
        full_model = "model_config" in f.attrs
        classes = _h5_classifier_width(f)
    except OSError as e:
      raise ConversionError(f"{path} is not an HDF5 file ({e})") from e
    if full_model:
      return keras.saving.load_model(path, compile=False)
    if classes is None:
      raise ConversionError(
        f"{path} holds no classifier kernel [2048, classes]: weights of "
        "InceptionV3(include_top=False) cannot be converted"
      )
    kmodel = keras.applications.InceptionV3(
      weights=None, classes=classes, classifier_activation=None
    )
    kmodel.load_weights(path)
    return kmodel
  except (ConversionError, extras.MissingDependencyError):
    raise
  except Exception as e:  # noqa: BLE001 - any failure to read is reported with the path
    raise ConversionError(f"{path} cannot be read as Keras InceptionV3 weights: {e}") from e


def _h5_classifier_width(f: Any) -> int | None:
  """Classes of the one Dense kernel [2048, classes] in an InceptionV3 weights file."""
  found = []
  f.visititems(
    lambda name, obj: (
      found.append(obj.shape[1]) if getattr(obj, "ndim", 0) == 2 and obj.shape[0] == 2048 else None
    )
  )
  return int(found[0]) if len(found) == 1 else None


# ------------------------------------------------------------------------------------------------
# tf-slim (Google's released checkpoints)
# ------------------------------------------------------------------------------------------------
# slim's nets -> ours, and the variable scope each checkpoint's tensors live under.
SLIM_MODELS = {
  "googlenet_bn": ("inception_v1", "InceptionV1"),
  "bn_inception": ("inception_v2", "InceptionV2"),
  "inception_v3": ("inception_v3", "InceptionV3"),
}
SLIM_CLASSES = 1001  # slim's ImageNet checkpoints: class 0 is "background", 1..1000 the synsets
# The variables a slim layer owns (anything else in a checkpoint, e.g. global_step or optimizer
# slots like .../RMSProp, is not part of the network and is ignored).
_SLIM_LEAVES = (
  "weights",
  "biases",
  "depthwise_weights",
  "pointwise_weights",
  "BatchNorm/beta",
  "BatchNorm/gamma",
  "BatchNorm/moving_mean",
  "BatchNorm/moving_variance",
)
# GoogLeNet module: ours -> slim's Branch_n/Conv2d_... (Mixed_5b's third branch is `Conv2d_0a_3x3`).
SLIM_V1_BRANCHES = (
  ("branch1", "Branch_0/Conv2d_0a_1x1"),
  ("branch2_reduce", "Branch_1/Conv2d_0a_1x1"),
  ("branch2", "Branch_1/Conv2d_0b_3x3"),
  ("branch3_reduce", "Branch_2/Conv2d_0a_1x1"),
  ("branch3", "Branch_2/Conv2d_0b_3x3"),
  ("branch4_proj", "Branch_3/Conv2d_0b_1x1"),
)
SLIM_V2_MODULE = (
  ("branch1x1", "Branch_0/Conv2d_0a_1x1"),
  ("branch3x3_1", "Branch_1/Conv2d_0a_1x1"),
  ("branch3x3_2", "Branch_1/Conv2d_0b_3x3"),
  ("branch3x3dbl_1", "Branch_2/Conv2d_0a_1x1"),
  ("branch3x3dbl_2", "Branch_2/Conv2d_0b_3x3"),
  ("branch3x3dbl_3", "Branch_2/Conv2d_0c_3x3"),
  ("branch_pool", "Branch_3/Conv2d_0b_1x1"),
)
SLIM_V2_REDUCTION = (
  ("branch3x3_1", "Branch_0/Conv2d_0a_1x1"),
  ("branch3x3_2", "Branch_0/Conv2d_1a_3x3"),
  ("branch3x3dbl_1", "Branch_1/Conv2d_0a_1x1"),
  ("branch3x3dbl_2", "Branch_1/Conv2d_0b_3x3"),
  ("branch3x3dbl_3", "Branch_1/Conv2d_1a_3x3"),
)
# Inception-v3: slim's names for our (= torchvision's) names, module by module, in FIGURE5 ... order.
_B = "Branch_{}/Conv2d_{}"
SLIM_V3 = {
  "Mixed_5b": ("0/0a_1x1", "1/0a_1x1", "1/0b_5x5", "2/0a_1x1", "2/0b_3x3", "2/0c_3x3", "3/0b_1x1"),
  "Mixed_5c": (
    "0/0a_1x1",
    "1/0b_1x1",
    "1/Conv_1_0c_5x5",
    "2/0a_1x1",
    "2/0b_3x3",
    "2/0c_3x3",
    "3/0b_1x1",
  ),
  "Mixed_5d": ("0/0a_1x1", "1/0a_1x1", "1/0b_5x5", "2/0a_1x1", "2/0b_3x3", "2/0c_3x3", "3/0b_1x1"),
  "Mixed_6a": ("0/1a_1x1", "1/0a_1x1", "1/0b_3x3", "1/1a_1x1"),
  "Mixed_6b": (
    "0/0a_1x1",
    "1/0a_1x1",
    "1/0b_1x7",
    "1/0c_7x1",
    "2/0a_1x1",
    "2/0b_7x1",
    "2/0c_1x7",
    "2/0d_7x1",
    "2/0e_1x7",
    "3/0b_1x1",
  ),
  "Mixed_7a": ("0/0a_1x1", "0/1a_3x3", "1/0a_1x1", "1/0b_1x7", "1/0c_7x1", "1/1a_3x3"),
  "Mixed_7b": (
    "0/0a_1x1",
    "1/0a_1x1",
    "1/0b_1x3",
    "1/0b_3x1",
    "2/0a_1x1",
    "2/0b_3x3",
    "2/0c_1x3",
    "2/0d_3x1",
    "3/0b_1x1",
  ),
  "Mixed_7c": (
    "0/0a_1x1",
    "1/0a_1x1",
    "1/0b_1x3",
    "1/0c_3x1",
    "2/0a_1x1",
    "2/0b_3x3",
    "2/0c_1x3",
    "2/0d_3x1",
    "3/0b_1x1",
  ),
}
SLIM_V3.update({m: SLIM_V3["Mixed_6b"] for m in ("Mixed_6c", "Mixed_6d", "Mixed_6e")})
SLIM_V3_AUX = (("conv0", "AuxLogits/Conv2d_1b_1x1"), ("conv1", "AuxLogits/Conv2d_2a_5x5"))


def _slim_v3_name(module: str, short: str) -> str:
  branch, conv = short.split("/")
  return f"{module}/Branch_{branch}/" + (conv if conv.startswith("Conv_") else f"Conv2d_{conv}")


def slim_layers(
  model_name: str, *, separable_stem: bool = True, aux_logits: bool = False
) -> list[Layer]:
  """Our layers and slim's scope for each (without the `InceptionV1/` ... prefix), in slim's
  creation order. Kinds: "convbn", "dense" (a 1x1 conv with bias on a 1x1 map), "separable"."""
  if model_name == "googlenet_bn":
    layers = [Layer("convbn", (ours,), ours) for ours, _ in GOOGLENET_STEM]
    for mixed, _ in GOOGLENET_MIXED:
      for ours, theirs in SLIM_V1_BRANCHES:
        if mixed == "Mixed_5b" and ours == "branch3":
          theirs = "Branch_2/Conv2d_0a_3x3"  # sic, in slim's inception_v1.py
        layers.append(Layer("convbn", (mixed, ours), f"{mixed}/{theirs}"))
    return layers + [Layer("dense", ("Logits",), "Logits/Conv2d_0c_1x1")]
  if model_name == "bn_inception":
    from inception_jax.models.bn_inception import FIGURE5 as BN_FIGURE5

    layers = [
      Layer("separable" if separable_stem else "convbn", ("Conv2d_1a_7x7",), "Conv2d_1a_7x7"),
      Layer("convbn", ("Conv2d_2b_1x1",), "Conv2d_2b_1x1"),
      Layer("convbn", ("Conv2d_2c_3x3",), "Conv2d_2c_3x3"),
    ]
    for mixed, row in BN_FIGURE5.items():
      branches = SLIM_V2_REDUCTION if row[-1] is None else SLIM_V2_MODULE
      layers += [Layer("convbn", (mixed, ours), f"{mixed}/{theirs}") for ours, theirs in branches]
    return layers + [Layer("dense", ("Logits",), "Logits/Conv2d_1c_1x1")]
  if model_name == "inception_v3":
    layers = [Layer("convbn", (name,), name) for name in V3_STEM]
    for mixed, branches in V3_MIXED:
      layers += [
        Layer("convbn", (mixed, ours), _slim_v3_name(mixed, theirs))
        for ours, theirs in zip(branches, SLIM_V3[mixed], strict=True)
      ]
    if aux_logits:
      layers += [Layer("convbn", ("AuxLogits", ours), theirs) for ours, theirs in SLIM_V3_AUX]
      layers.append(Layer("dense", ("AuxLogits", "fc"), "AuxLogits/Conv2d_2b_1x1"))
    return layers + [Layer("dense", ("Logits",), "Logits/Conv2d_1c_1x1")]
  raise ConversionError(f"tf-slim conversion supports {tuple(SLIM_MODELS)}, got {model_name!r}")


def from_slim(
  checkpoint: str | Path, model_name: str, *, drop_background: bool = False
) -> tuple[nn.Module, Variables]:
  """(model, variables) reproducing a tf-slim network's eval-mode logits on [-1, 1] input.

  checkpoint: a TF checkpoint prefix (`inception_v3.ckpt`, as Google's tarballs unpack) or a
    directory with a `checkpoint` file; read with `tf.train.load_checkpoint`.
  model_name: ours: "googlenet_bn" (slim inception_v1), "bn_inception" (slim inception_v2,
    BN-Inception: not our Rethinking "inception_v2") or "inception_v3" (aux head included when the
    checkpoint has it).
  drop_background: slim's ImageNet checkpoints have 1001 classes, class 0 being "background".
    By default it is kept, so the logits are the checkpoint's; True drops it (classifier rows
    1..1000), giving 1000 classes in TFDS `imagenet2012`'s label order.
  The model reproduces slim's conventions: TF 'SAME' padding (GoogLeNet: `padding="same"`),
    BN epsilon 0.001 without scale unless the checkpoint has `gamma`, TF average pools (padding
    excluded), no input transform. docs/CONVERT.md lists them.
  Raises ConversionError (a ValueError) naming the first missing, unexpected or mis-shaped tensor,
  or saying which architecture the checkpoint holds.
  """
  if model_name not in SLIM_MODELS:
    hint = {"inception_v1": "googlenet_bn", "inception_v2": "bn_inception"}.get(model_name)
    hint = f" (slim's {model_name} is our {hint!r})" if hint else ""
    raise ConversionError(
      f"tf-slim conversion supports {tuple(SLIM_MODELS)}, got {model_name!r}{hint}"
    )
  slim_name, scope = SLIM_MODELS[model_name]
  reader = _slim_reader(checkpoint)
  shapes = reader.get_variable_to_shape_map()
  tensors = {
    k[len(scope) + 1 :]: v
    for k, v in shapes.items()
    if k.startswith(scope + "/") and k.endswith(_SLIM_LEAVES)
  }
  if not tensors:
    scopes = sorted({k.split("/")[0] for k in shapes if k.endswith(_SLIM_LEAVES)})
    other = [m for m, (_, sc) in SLIM_MODELS.items() if sc in scopes]
    hint = f"; it holds slim's {SLIM_MODELS[other[0]][0]}: use {other[0]!r}" if other else ""
    raise ConversionError(
      f"{checkpoint} has no {scope}/ tensors, so it is not a checkpoint of "
      f"slim's {slim_name} (top-level scopes: {scopes}){hint}"
    )

  bn_scale = any(k.endswith("BatchNorm/gamma") for k in tensors)
  logits_key = next((k for k in tensors if k.startswith("Logits/") and k.endswith("/biases")), None)
  num_classes = int(_shape(tensors[logits_key])[0]) if logits_key else SLIM_CLASSES
  if drop_background and num_classes != SLIM_CLASSES:
    raise ConversionError(
      f"drop_background needs slim's {SLIM_CLASSES} classes (background 0); "
      f"this checkpoint has {num_classes}"
    )
  aux = any(k.startswith("AuxLogits/") for k in tensors)
  separable = "Conv2d_1a_7x7/depthwise_weights" in tensors
  overrides: dict[str, Any] = dict(bn_scale=bn_scale, transform_input=False)
  if model_name == "googlenet_bn":
    overrides.update(padding="same", aux_logits=False)
  elif model_name == "bn_inception":
    overrides.update(stem="separable" if separable else "7x7")
  else:
    overrides.update(aux_logits=aux, pool_count_include_pad=False)
  classes = num_classes - 1 if drop_background else num_classes
  model = models.create(model_name, num_classes=classes, **overrides)
  abstract = _abstract_variables(model, model_name)

  wanted: list[tuple[str, tuple[int, ...], tuple[str, ...], Any]] = []
  keep = (lambda t: t[..., 1:]) if drop_background else (lambda t: t)
  for layer in slim_layers(model_name, separable_stem=separable, aux_logits=aux):
    src = layer.source
    if layer.kind == "convbn":
      keys = _convbn_keys(layer.path, bn_scale)
      kernel = _shape(_lookup(abstract, keys["kernel"]))
      wanted.append((f"{src}/weights", kernel, keys["kernel"], lambda t: t))  # HWIO both
      for theirs, ours in (
        ("gamma", "scale"),
        ("beta", "bias"),
        ("moving_mean", "mean"),
        ("moving_variance", "var"),
      ):
        if ours in keys:
          wanted.append((f"{src}/BatchNorm/{theirs}", kernel[-1:], keys[ours], lambda t: t))
    elif layer.kind == "dense":
      kernel_key, bias_key = ("params", *layer.path, "kernel"), ("params", *layer.path, "bias")
      n_in, n_out = _shape(_lookup(abstract, kernel_key))
      n_src = n_out + 1 if drop_background else n_out
      wanted += [
        (
          f"{src}/weights",
          (1, 1, n_in, n_src),
          kernel_key,
          lambda t: keep(t.reshape(t.shape[2], t.shape[3])),
        ),
        (f"{src}/biases", (n_src,), bias_key, keep),
      ]
    else:  # separable: TF depthwise [h, w, in, multiplier] = our grouped [h, w, 1, in * mult]
      dw_key = ("params", *layer.path, "depthwise", "conv", "kernel")
      pw_key = ("params", *layer.path, "pointwise", "conv", "kernel")
      h, w, _, c_mult = _shape(_lookup(abstract, dw_key))
      _, _, _, out = _shape(_lookup(abstract, pw_key))
      c_in = 3  # the stem sees RGB images
      wanted += [
        (
          f"{src}/depthwise_weights",
          (h, w, c_in, c_mult // c_in),
          dw_key,
          lambda t: t.reshape(t.shape[0], t.shape[1], 1, -1),
        ),
        (f"{src}/pointwise_weights", (1, 1, c_mult, out), pw_key, lambda t: t),
        (
          f"{src}/biases",
          (out,),
          ("params", *layer.path, "pointwise", "conv", "bias"),
          lambda t: t,
        ),
      ]
  what = f"tf-slim {slim_name} ({model_name})"

  def read(key: str) -> np.ndarray:
    try:
      return np.asarray(reader.get_tensor(f"{scope}/{key}"), np.float32)
    except Exception as e:  # noqa: BLE001 - a truncated or corrupt data file
      first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise ConversionError(
        f"checkpoint {checkpoint}: tensor '{scope}/{key}' cannot be "
        f"read (a truncated or corrupt data file?): {first}"
      ) from e

  values = _gather(tensors, wanted, f"checkpoint {checkpoint} does not match {what}", read)
  return model, _assemble(values, abstract, what)


def _slim_reader(checkpoint: str | Path) -> Any:
  """tf.train.load_checkpoint's reader, or ConversionError saying what the path is instead."""
  path = Path(checkpoint)
  if path.suffix in (".index", ".meta") or path.name.endswith(".data-00000-of-00001"):
    raise ConversionError(
      f"{path}: pass the checkpoint prefix (without .index / .data-...) or its directory"
    )
  if not path.exists() and not Path(f"{path}.index").exists():
    raise ConversionError(
      f"{path} does not exist: expected a TF checkpoint prefix "
      f"({path.name}.index and .data-* beside it) or a directory with a "
      "`checkpoint` file"
    )
  import tensorflow as tf

  try:
    return tf.train.load_checkpoint(str(path))
  except Exception as e:  # noqa: BLE001 - any failure to read is reported with the path
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ConversionError(f"{path} cannot be read as a TF checkpoint: {first}") from e


# ------------------------------------------------------------------------------------------------
# Orbax checkpoints
# ------------------------------------------------------------------------------------------------
def save(
  directory: str | Path,
  model_name: str,
  model: nn.Module,
  variables: Variables,
  *,
  source: str = "",
  force: bool = False,
) -> Path:
  """Writes DIR/state (Orbax, {'params', 'batch_stats'}) and DIR/convert_meta.json."""
  import orbax.checkpoint as ocp

  directory = Path(directory).absolute()
  if directory.exists() and any(directory.iterdir()):
    if not force:
      raise FileExistsError(f"{directory} exists and is not empty; pass force=True / --force")
    import shutil

    for child in (directory / STATE_DIR, directory / META_FILE):
      if child.is_dir():
        shutil.rmtree(child)
      elif child.exists():
        child.unlink()
  directory.mkdir(parents=True, exist_ok=True)
  # The conventions the weights need are always recorded; other fields only where they differ.
  reference = models.create(model_name, num_classes=model.num_classes)
  overrides = {}
  for field in models.valid_overrides(model_name):
    value = getattr(model, field)
    if (field in CONVENTION_FIELDS or value != getattr(reference, field)) and isinstance(
      value, (bool, int, float, str, type(None))
    ):
      overrides[field] = value
  tree = {k: variables[k] for k in ("params", "batch_stats") if variables.get(k)}
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(directory / STATE_DIR, jax.tree.map(np.asarray, tree))
  checkpointer.wait_until_finished()
  checkpointer.close()
  meta = {
    "model": model_name,
    "num_classes": int(model.num_classes),
    "model_overrides": overrides,
    "source": source,
    "format_version": FORMAT_VERSION,
    "tensors": len(jax.tree.leaves(tree)),
  }
  (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
  return directory


def load(directory: str | Path, model_name: str | None = None) -> tuple[nn.Module, Variables]:
  """(model, variables) from a directory written by `save` / the command line.

  The model is rebuilt from convert_meta.json (or as `model_name`, if given) and every tensor is
  checked against it before anything is restored: a file or folder that is not such a
  checkpoint, or a checkpoint of another architecture, raises ConversionError naming the first
  mismatching tensor.
  """
  import orbax.checkpoint as ocp

  directory = Path(directory).absolute()
  if not directory.exists():
    raise ConversionError(f"{directory} does not exist")
  if not directory.is_dir():
    raise ConversionError(
      f"{directory} is a file, not a converted checkpoint: expected a "
      f"directory with {STATE_DIR}/ and {META_FILE}, as written by "
      "`python -m inception_jax.convert`"
    )
  meta_path, state_path = directory / META_FILE, directory / STATE_DIR
  meta: dict[str, Any] = {}
  if meta_path.exists():
    try:
      meta = json.loads(meta_path.read_text())
      if not isinstance(meta, dict):
        raise ValueError("not a JSON object")
    except ValueError as e:
      raise ConversionError(f"{meta_path} is not valid convert metadata: {e}") from e
  elif model_name is None:
    raise ConversionError(
      f"{directory} has no {META_FILE}; it was not written by "
      "inception_jax.convert (pass model_name= to load bare variables)"
    )
  claimed = meta.get("model")
  name = model_name or claimed
  if name not in models.NAMES:
    raise ConversionError(f"{meta_path}: unknown model {name!r}; valid models: {models.NAMES}")
  valid = set(models.valid_overrides(name))
  overrides = {k: v for k, v in (meta.get("model_overrides") or {}).items() if k in valid}
  try:
    model = models.create(name, num_classes=int(meta.get("num_classes", 1000)), **overrides)
  except (TypeError, ValueError) as e:
    raise ConversionError(f"{meta_path}: cannot build {name!r} from it: {e}") from e
  abstract = _abstract_variables(model, name)

  if not state_path.is_dir():
    raise ConversionError(f"{directory} has no {STATE_DIR}/ folder: not a converted checkpoint")
  checkpointer = ocp.StandardCheckpointer()
  try:
    try:
      stored = checkpointer.metadata(state_path).item_metadata
      if stored is None:
        raise ValueError("no item metadata")
      stored = _plain(stored)
    except Exception as e:  # noqa: BLE001 - any failure to read is reported with the path
      raise ConversionError(f"{state_path} cannot be read as an Orbax checkpoint: {e}") from e
    problem = _first_mismatch(abstract, stored)
    if problem:
      said = f" (its metadata says {claimed!r})" if claimed and claimed != name else ""
      raise ConversionError(
        f"checkpoint {directory}{said} does not match {name}: first mismatching tensor {problem}"
      )
    try:
      restored = _plain(checkpointer.restore(state_path))
    except Exception as e:  # noqa: BLE001
      raise ConversionError(f"{state_path}: the arrays cannot be read: {e}") from e
  finally:
    checkpointer.close()
  variables = {
    k: jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), restored[k])
    for k in ("params", "batch_stats")
    if restored.get(k)
  }
  return model, variables


def _plain(tree: Any) -> Any:
  """Nested plain dicts (Orbax metadata trees are Mapping subclasses)."""
  if isinstance(tree, Mapping):
    return {k: _plain(v) for k, v in tree.items()}
  return tree


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------
def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
    prog="python -m inception_jax.convert",
    description="Convert torchvision or Keras Inception weights to an Orbax checkpoint that "
    "training (config.init_from) and evaluation can start from.",
  )
  parser.add_argument("--from", dest="source", required=True, choices=SOURCES)
  parser.add_argument(
    "--model",
    required=True,
    choices=sorted(set(TORCHVISION_MODELS) | set(KERAS_MODELS) | set(SLIM_MODELS)),
    help="ours: slim's inception_v1 / inception_v2 / inception_v3 are "
    "googlenet_bn / bn_inception / inception_v3",
  )
  parser.add_argument(
    "--input",
    required=True,
    help="torchvision: .pth/.pt state_dict; keras: .keras or .h5 file; "
    "slim: TF checkpoint prefix (e.g. inception_v3.ckpt) or directory",
  )
  parser.add_argument(
    "--output", required=True, help="directory to write (state/ + convert_meta.json)"
  )
  parser.add_argument(
    "--transform_input",
    choices=("true", "false"),
    default="true",
    help="torchvision only: map mean/std-normalised input to [-1, 1] first "
    "(torchvision's setting for its published weights; default true)",
  )
  parser.add_argument(
    "--drop_background",
    action="store_true",
    help="slim only: drop class 0 (background) of the 1001, giving 1000 classes "
    "in TFDS imagenet2012's label order",
  )
  parser.add_argument("--force", action="store_true", help="overwrite a non-empty output directory")
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
  args = _parse(argv)
  try:
    if args.source == "torchvision":
      model, variables = from_torchvision(
        args.input, args.model, transform_input=args.transform_input == "true"
      )
    elif args.source == "slim":
      model, variables = from_slim(args.input, args.model, drop_background=args.drop_background)
    else:
      model, variables = from_keras(args.input, args.model)
    out = save(
      args.output,
      args.model,
      model,
      variables,
      source=f"{args.source}:{args.input}",
      force=args.force,
    )
  except (ConversionError, FileExistsError, extras.MissingDependencyError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"]))
  print(
    f"wrote {args.model} ({model.num_classes} classes, {n:,} parameters) from {args.source} "
    f"to {out}"
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
