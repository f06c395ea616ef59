"""tf-slim checkpoints (Google's released inception_v1 / v2 / v3) -> our variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flax.linen as nn
import numpy as np

from inception_jax import models
from inception_jax.conversion.mapping import (
  GOOGLENET_MIXED,
  GOOGLENET_STEM,
  V3_MIXED,
  V3_STEM,
  ConversionError,
  Layer,
  Variables,
  abstract_variables,
  assemble,
  convbn_keys,
  gather,
  lookup,
  tensor_shape,
)
from inception_jax.models.bn_inception import FIGURE5 as BN_FIGURE5

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
# Inception-v3: slim's names for our (= torchvision's) names, module by module, in FIGURE5 order.
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
  num_classes = int(tensor_shape(tensors[logits_key])[0]) if logits_key else SLIM_CLASSES
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
  abstract = abstract_variables(model, model_name)

  wanted: list[tuple[str, tuple[int, ...], tuple[str, ...], Any]] = []
  keep = (lambda t: t[..., 1:]) if drop_background else (lambda t: t)
  for layer in slim_layers(model_name, separable_stem=separable, aux_logits=aux):
    src = layer.source
    if layer.kind == "convbn":
      keys = convbn_keys(layer.path, bn_scale)
      kernel = tensor_shape(lookup(abstract, keys["kernel"]))
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
      n_in, n_out = tensor_shape(lookup(abstract, kernel_key))
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
      h, w, _, c_mult = tensor_shape(lookup(abstract, dw_key))
      _, _, _, out = tensor_shape(lookup(abstract, pw_key))
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

  values = gather(tensors, wanted, f"checkpoint {checkpoint} does not match {what}", read)
  return model, assemble(values, abstract, what)


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
