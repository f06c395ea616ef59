"""The networks, by name: `models.create(name, num_classes=1000, **overrides)`.

| name | what | default input |
|---|---|---|
| `googlenet` | GoogLeNet as the paper defines it (Table 1, Fig. 3: LRN, 5x5s, aux heads) | 224 |
| `googlenet_bn` | GoogLeNet as released (tf-slim / torchvision: BatchNorm, 3x3 "5x5") | 224 |
| `bn_inception` | BN-Inception (BN paper Figure 5; slim's `inception_v2.py`) | 224 |
| `inception_v2` | Rethinking's Inception-v2 (Table 3: 7x7/2 first conv, aux head, no BN) | 299 |
| `inception_v3` | the released Inception-v3 (factorized stem, BN-auxiliary) | 299 |
| `inception_v3_fid` | the FID network (pytorch-fid's; `InceptionV3FID`, 1008 classes) | 299 |

Overrides are the attributes of `GoogLeNet` / `BNInception` / `InceptionV3` (every ablation of
both papers); an unknown name, or a value the field's type rules out (`models.common`), raises a
ValueError before anything is traced. `initializer`
selects the initial weights: each network's reference by default (`googlenet`: BVLC's Caffe
GoogLeNet; the others: tf-slim), or "torchvision" / "flax" (`inception_jax.initializers`).

`kernels` selects how convolutions and pooling are computed (the parameters and the function are
the same): "auto" (default) chooses once, for `backend` (JAX's default backend unless given),
`fast_conv.CPU_KERNELS` on the CPU and XLA's standard lowering elsewhere; "standard" or "xla_cpu"
(or a `layers.Kernels`) choose explicitly.

`register(name, factory, min_image_size=...)` adds a network under a name of its own (tests
register a tiny one); registered names are in `NAMES` and everything that takes a model name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from inception_jax import fast_conv
from inception_jax.layers import Kernels
from inception_jax.models.bn_inception import BNInception
from inception_jax.models.googlenet import GoogLeNet
from inception_jax.models.inception_v3 import InceptionV3, InceptionV3FID

_PRESETS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
  "googlenet": (GoogLeNet, {}),
  "googlenet_bn": (
    GoogLeNet,
    dict(
      norm="bn",
      branch3_kernel=3,
      pool5_window=2,
      dropout_rate=0.2,
      aux_pooling="adaptive",
      initializer="slim",
    ),
  ),
  "bn_inception": (BNInception, {}),
  "inception_v2": (InceptionV3, dict(stem="7x7", aux_bn=False)),
  "inception_v3": (InceptionV3, {}),
  "inception_v3_fid": (InceptionV3FID, {}),
}
NAMES = tuple(_PRESETS)

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@dataclasses.dataclass(frozen=True)
class _Registered:
  factory: Callable[..., nn.Module]
  min_image_size: int
  default_image_size: int


_REGISTERED: dict[str, _Registered] = {}


def register(
  name: str,
  factory: Callable[..., nn.Module],
  *,
  min_image_size: int,
  default_image_size: int | None = None,
) -> None:
  """Makes `create(name, num_classes=..., **overrides)` return `factory(num_classes=...,
  **overrides)` (num_classes None: the factory's own default), and adds `name` to NAMES.
  Registering the same factory again under its name is a no-op; another one is an error."""
  global NAMES
  entry = _Registered(factory, min_image_size, default_image_size or min_image_size)
  if name in _PRESETS or _REGISTERED.get(name, entry) != entry:
    raise ValueError(f"model name {name!r} is already taken; valid models: {', '.join(NAMES)}")
  _REGISTERED[name] = entry
  NAMES = (*_PRESETS, *_REGISTERED)


def _kernels(value: Any, backend: str | None) -> Kernels:
  if isinstance(value, Kernels):
    return value
  if value == "auto":
    return fast_conv.kernels_for(backend or jax.default_backend())
  if value not in fast_conv.KERNELS:
    raise ValueError(
      f"kernels must be 'auto', one of {sorted(fast_conv.KERNELS)} or a layers.Kernels, got "
      f"{value!r}"
    )
  return fast_conv.KERNELS[value]


def valid_overrides(name: str) -> tuple[str, ...]:
  """The override names `create(name, ...)` accepts."""
  cls, _ = _lookup(name)
  return tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("parent", "name"))


def create(
  name: str, num_classes: int | None = None, *, backend: str | None = None, **overrides: Any
) -> nn.Module:
  """Builds a network by name; see the module docstring for names and `valid_overrides(name)`.

  num_classes: None is the network's own default (1000; 1008 for `inception_v3_fid`).
  backend: the backend the kernels are chosen for ("cpu", "gpu", "tpu"; None: JAX's default).
  """
  if name in _REGISTERED:
    factory = _REGISTERED[name].factory
    return (
      factory(**overrides) if num_classes is None else factory(num_classes=num_classes, **overrides)
    )
  cls, preset = _lookup(name)
  unknown = sorted(set(overrides) - set(valid_overrides(name)))
  if unknown:
    raise ValueError(
      f"unknown override(s) {unknown} for model {name!r}; valid overrides: "
      f"{', '.join(sorted(valid_overrides(name)))}"
    )
  if num_classes is None:
    num_classes = next(f.default for f in dataclasses.fields(cls) if f.name == "num_classes")
  kwargs = {**preset, **overrides}
  if isinstance(kwargs.get("dtype"), str):
    if kwargs["dtype"] not in _DTYPES:
      raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {kwargs['dtype']!r}")
    kwargs["dtype"] = _DTYPES[kwargs["dtype"]]
  kwargs["kernels"] = _kernels(kwargs.get("kernels", "auto"), backend)
  model = cls(num_classes=num_classes, **kwargs)  # checks its options (models.common)
  model.init_scheme()  # e.g. initializer="bvlc" on a network BVLC never trained
  return model


def default_image_size(name: str, **overrides: Any) -> int:
  """The input size each network was designed for (Table 2's receptive field where overridden)."""
  if name in _REGISTERED:
    return _REGISTERED[name].default_image_size
  cls, preset = _lookup(name)
  if cls in (GoogLeNet, BNInception):
    return 224
  return {**preset, **overrides}.get("receptive_field", 299)


def min_image_size(name: str, **overrides: Any) -> int:
  """The smallest square input the network accepts with these overrides."""
  if name in _REGISTERED:
    return _REGISTERED[name].min_image_size
  return create(name, **overrides).min_image_size


def _lookup(name: str) -> tuple[type[nn.Module], dict[str, Any]]:
  if name not in _PRESETS:
    raise ValueError(f"unknown model {name!r}; valid models: {', '.join(NAMES)}")
  return _PRESETS[name]


__all__ = [
  "NAMES",
  "BNInception",
  "GoogLeNet",
  "InceptionV3",
  "InceptionV3FID",
  "create",
  "default_image_size",
  "min_image_size",
  "register",
  "valid_overrides",
]
