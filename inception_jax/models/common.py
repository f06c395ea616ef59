"""What the networks share: their options checked from their typed fields, torchvision's input
convention, and the output convention of every network (docs/DESIGN.md).

A network's categorical options are `Literal` fields (`norm: Literal["lrn", "bn"] = "lrn"`): the
annotation is the one list of valid values, and `check_options`, called by each network when it
is constructed, raises a ValueError naming the field, the valid values and the value given.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Literal, get_args, get_origin

import flax.linen as nn
import jax
import jax.numpy as jnp

from inception_jax.layers import ConvBN

# Fields checked by range where a network has them.
POSITIVE_FIELDS = ("width_multiplier",)
RATE_FIELDS = ("dropout_rate", "aux_dropout_rate")  # in [0, 1)


@functools.cache
def literal_fields(cls: type[nn.Module]) -> dict[str, tuple[Any, ...]]:
  """{field: valid values} for the `Literal`-annotated fields of a network class (and its bases)."""
  fields = {}
  for klass in reversed(cls.__mro__):
    namespace = vars(sys.modules[klass.__module__])
    for name, annotation in vars(klass).get("__annotations__", {}).items():
      if isinstance(annotation, str):
        if not annotation.startswith("Literal["):
          continue
        annotation = eval(annotation, namespace)  # noqa: S307 - the class's own annotation
      if get_origin(annotation) is Literal:
        fields[name] = get_args(annotation)
  return fields


def check_options(module: nn.Module) -> None:
  """Raises a ValueError for an option the network does not accept, before anything is traced."""
  name = type(module).__name__
  for field, valid in literal_fields(type(module)).items():
    value = getattr(module, field)
    if value not in valid:
      raise ValueError(f"{name}: {field} must be one of {valid}, got {value!r}")
  for field in POSITIVE_FIELDS:
    if hasattr(module, field) and not getattr(module, field) > 0:
      raise ValueError(f"{name}: {field} must be > 0, got {getattr(module, field)!r}")
  for field in RATE_FIELDS:
    if hasattr(module, field) and not 0.0 <= getattr(module, field) < 1.0:
      raise ValueError(f"{name}: {field} must be in [0, 1), got {getattr(module, field)!r}")
  num_classes = getattr(module, "num_classes", 1)
  if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
    raise ValueError(f"{name}: num_classes must be a positive int, got {num_classes!r}")


def conv_layer(model: nn.Module, layer_init: Any, **fields: Any) -> Any:
  """The network's conv-BN-ReLU layer: `ConvBN` with the model's BatchNorm, dtype, kernels and
  conv initialiser (`fields` adds or overrides, e.g. `norm=None` for the LRN GoogLeNet)."""
  return functools.partial(
    ConvBN,
    bn_scale=model.bn_scale,
    bn_momentum=model.bn_momentum,
    bn_axis_name=model.bn_axis_name,
    layer_init=layer_init,
    dtype=model.dtype,
    kernels=model.kernels,
    **fields,
  )


def torchvision_to_inception_range(x: jax.Array) -> jax.Array:
  """torchvision's transform_input: ImageNet mean/std-normalised RGB -> (x - 0.5) / 0.5."""
  mean = jnp.array([0.485, 0.456, 0.406], x.dtype)
  std = jnp.array([0.229, 0.224, 0.225], x.dtype)
  return x * (std / 0.5) + (mean - 0.5) / 0.5


def outputs(logits, aux, end_points, train: bool, return_features: bool):
  """The fixed output convention of every network here (docs/DESIGN.md)."""
  if return_features:
    end_points["Logits"] = logits
    if train:
      end_points["AuxLogits"] = aux
    return end_points
  return (logits, aux) if train else logits
