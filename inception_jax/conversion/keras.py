"""Keras InceptionV3 models or .keras / .h5 weight files -> our variables."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import flax.linen as nn
import numpy as np

from inception_jax import extras, models
from inception_jax.conversion.mapping import (
  KERAS_MODELS,
  ConversionError,
  Variables,
  abstract_variables,
  assemble,
  convbn_keys,
  inception_v3_convbn_paths,
  lookup,
  tensor_shape,
)
from inception_jax.layers import BN_EPSILON


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
  ordered = keras_creation_order(kmodel)
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
  abstract = abstract_variables(model, model_name)

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
    keys = convbn_keys(path, bn_scale)
    k = _keras_numpy(conv.kernel)
    expected = tensor_shape(lookup(abstract, keys["kernel"]))
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
  expected = tensor_shape(lookup(abstract, ("params", "Logits", "kernel")))
  if kernel.shape != expected:
    raise ConversionError(
      f"the Keras model does not match InceptionV3: first mismatching "
      f"tensor '{dense.name}/kernel' has shape {kernel.shape}, expected {expected}"
    )
  values[("params", "Logits", "kernel")] = kernel
  values[("params", "Logits", "bias")] = (
    _keras_numpy(dense.bias) if dense.use_bias else np.zeros(kernel.shape[1], np.float32)
  )
  return model, assemble(values, abstract, "Keras InceptionV3")


def _is(layer: Any, class_name: str) -> bool:
  return any(c.__name__ == class_name for c in type(layer).__mro__)


def _keras_numpy(variable: Any) -> np.ndarray:
  # Variable.numpy(): np.array(variable) raises a numpy 2 DeprecationWarning on every call.
  return np.asarray(variable.numpy(), dtype=np.float32)


def _keras_parent(layer: Any) -> Any:
  """The layer that produced `layer`'s (first) input."""
  return layer._inbound_nodes[0].input_tensors[0]._keras_history.operation


def keras_creation_order(kmodel: Any) -> list[Any]:
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
