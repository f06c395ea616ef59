"""torchvision (and pytorch-fid) state_dicts, modules or .pth files -> our variables."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import numpy as np

from inception_jax import extras, models
from inception_jax.conversion.mapping import (
  TORCHVISION_MODELS,
  ConversionError,
  Variables,
  abstract_variables,
  assemble,
  convbn_keys,
  gather,
  googlenet_layers,
  inception_v3_layers,
  lookup,
  tensor_shape,
)
from inception_jax.layers import BN_EPSILON


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
    builders set it for the published weights (`googlenet(weights=...)`,
    `inception_v3(weights=...)`),
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
  num_classes = int(tensor_shape(fc)[0]) if fc is not None and len(tensor_shape(fc)) == 2 else 1000
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
  abstract = abstract_variables(model, model_name)

  # Every tensor the architecture needs, in torchvision's order: (torch key, torch shape, ours, fn).
  wanted: list[tuple[str, tuple[int, ...], tuple[str, ...], Any]] = []
  for layer in layers:
    if layer.kind == "convbn":
      keys = convbn_keys(layer.path, bn_scale=True)
      h, w, i, o = tensor_shape(lookup(abstract, keys["kernel"]))
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
      n_in, n_out = tensor_shape(lookup(abstract, kernel_key))
      fn = _nchw_dense(abstract, layer.path) if layer.nchw_flatten else (lambda t: t.T)
      wanted += [
        (f"{layer.source}.weight", (n_out, n_in), kernel_key, fn),
        (f"{layer.source}.bias", (n_out,), bias_key, lambda t: t),
      ]

  what = f"torchvision {model_name}"
  values = gather(
    state_dict, wanted, f"the state_dict does not match {what}", lambda key: _numpy(state_dict[key])
  )
  return model, assemble(values, abstract, what)


def _nchw_dense(abstract: Variables, path: tuple[str, ...]):
  """GoogLeNet aux fc1: torch flattens its 4x4x128 input as (C, H, W), we flatten (H, W, C)."""
  channels = tensor_shape(lookup(abstract, ("params", path[0], "conv", "conv", "kernel")))[-1]
  n_in, n_out = tensor_shape(lookup(abstract, ("params", *path, "kernel")))
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
