"""Parameters and multiply-accumulates (MACs) per layer, computed from the module itself.

Nothing here is a hand-written list of layers: `trace` runs `module.init` under `jax.eval_shape`
(shapes only, nothing is compiled or computed) with a Flax method interceptor
(`nn.intercept_methods`) that records every `nn.Conv` and `nn.Dense` call: its module path, input
shape, output shape and kernel shape. It works for any module and any input size.

Conventions (the ones behind the published figures: torchvision's 5.713 GFLOPS for Inception-v3 at
299x299 and 1.498 GFLOPS for GoogLeNet at 224x224, which are multiply-adds; we get 5,713,216,096 and
1,498,376,192):
  - One multiply-accumulate per kernel weight per output element:
    conv MACs = out_h * out_w * out_c * k_h * k_w * in_c / groups; dense MACs = in * out.
  - Counted per image (the traces use batch 1).
  - Only convolutions and fully connected layers are counted: bias additions, BatchNorm, LRN,
    pooling, activations and concatenation cost nothing. (Counting them would add well under 1%.)
  - Auxiliary heads (top-level modules named `AuxLogits*`) are used only in training, so
    `total_macs` excludes them by default, as the published figures do; `count_params` counts
    what it is given, and `exclude_aux=True` leaves them out.
  - Parameters are the `params` collection only (kernels, biases, BatchNorm scale and offset), not
    the BatchNorm running statistics in `batch_stats` (Keras' 23,851,784 for Inception-v3 counts
    those too; torchvision's 23,834,568 does not).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from inception_jax import models

AUX_PREFIX = (
  "AuxLogits"  # top-level names of auxiliary heads: "AuxLogits", "AuxLogits_Mixed_4b", ...
)
_COUNTED = (nn.Conv, nn.Dense)


@dataclasses.dataclass(frozen=True)
class LayerCost:
  """One conv or dense call. Shapes include the batch dimension (1); `macs` is per image."""

  path: str  # module path, "/"-joined: "Mixed_5b/branch5x5_2/conv"
  kind: str  # "conv" or "dense"
  input_shape: tuple[int, ...]
  output_shape: tuple[int, ...]
  kernel_shape: tuple[int, ...]
  params: int  # this layer's kernel and bias
  macs: int

  @property
  def end_point(self) -> str:
    """The top-level module the layer belongs to (a tf-slim end point name in our networks)."""
    return self.path.split("/")[0]

  @property
  def is_aux(self) -> bool:
    return is_aux(self.end_point)


@dataclasses.dataclass(frozen=True)
class Trace:
  """What one shape-only pass through a module records."""

  layers: tuple[LayerCost, ...]
  variables: Any  # the variables tree, of jax.ShapeDtypeStruct leaves
  output: Any  # the output, of jax.ShapeDtypeStruct leaves (end points for return_features)


def is_aux(name: str) -> bool:
  """True for the top-level name of an auxiliary head."""
  return name.startswith(AUX_PREFIX)


def trace(
  module: nn.Module, input_shape: Sequence[int], dtype: Any = jnp.float32, **call_kwargs: Any
) -> Trace:
  """Records every conv/dense call of `module.init` on an input of `input_shape`.

  Runs under `jax.eval_shape`: only shapes are computed, so full-size networks take seconds.
  `call_kwargs` go to the module's `__call__` (e.g. `train=False`).
  """
  return _trace(
    module, tuple(int(d) for d in input_shape), jnp.dtype(dtype), tuple(sorted(call_kwargs.items()))
  )


@functools.lru_cache(maxsize=64)
def _trace_cached(module, input_shape, dtype, call_kwargs) -> Trace:
  return _trace_uncached(module, input_shape, dtype, call_kwargs)


def _trace(module, input_shape, dtype, call_kwargs) -> Trace:
  try:
    return _trace_cached(module, input_shape, dtype, call_kwargs)
  except TypeError:  # an unhashable attribute: trace without the cache
    return _trace_uncached(module, input_shape, dtype, call_kwargs)


def _trace_uncached(module, input_shape, dtype, call_kwargs) -> Trace:
  calls: list[tuple[tuple[str, ...], str, tuple[int, ...], tuple[int, ...]]] = []
  order: list[str] = []  # eval_shape returns dicts with sorted keys; keep the end points' order

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == "__call__" and isinstance(context.module, _COUNTED):
      kind = "conv" if isinstance(context.module, nn.Conv) else "dense"
      calls.append((tuple(context.module.path), kind, tuple(args[0].shape), tuple(out.shape)))
    return out

  def init():  # a fresh closure per call, so no cached trace can skip the recording
    with nn.intercept_methods(record):
      out = module.init_with_output(
        jax.random.key(0), jnp.zeros(input_shape, dtype), **dict(call_kwargs)
      )
    if isinstance(out[0], Mapping):
      order.extend(out[0])
    return out

  output, variables = jax.eval_shape(init)
  if order:
    output = {key: output[key] for key in order}
  params = variables.get("params", {})
  layers = []
  for path, kind, in_shape, out_shape in calls:
    leaves = _subtree(params, path)
    kernel = tuple(leaves["kernel"].shape)
    n_params = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(leaves))
    batch = out_shape[0] if len(out_shape) > 1 else 1
    # Every output element takes one multiply-add per kernel weight feeding it: the kernel's
    # receptive size (all dims but the last; in_c is already divided by the group count).
    macs = math.prod(out_shape) // batch * math.prod(kernel[:-1])
    layers.append(LayerCost("/".join(path), kind, in_shape, out_shape, kernel, n_params, macs))
  return Trace(tuple(layers), variables, output)


def _subtree(tree: Mapping[str, Any], path: Sequence[str]) -> Any:
  for key in path:
    tree = tree[key]
  return tree


# ---- Whole networks ----------------------------------------------------------------------------


def _resolve(model: nn.Module | str, image_size: int | None) -> tuple[nn.Module, int]:
  """A model name or module, and its image size (a name's default size when not given)."""
  if isinstance(model, str):
    size = image_size or models.default_image_size(model)
    return models.create(model), size
  if image_size is None:
    raise ValueError("image_size is required when a module (not a model name) is given")
  return model, image_size


def trace_model(model: nn.Module | str, image_size: int | None = None) -> Trace:
  """Traces a network on one [1, image_size, image_size, 3] image; `output` holds its end points
  (the model is cloned with return_features=True when it has that attribute)."""
  model, size = _resolve(model, image_size)
  if hasattr(model, "return_features"):
    model = model.clone(return_features=True)
  return trace(model, (1, size, size, 3), train=False)


def layer_costs(
  model: nn.Module | str, image_size: int | None = None, include_aux: bool = True
) -> list[LayerCost]:
  """Every conv and dense layer of the network, in call order, with its parameters and MACs."""
  layers = trace_model(model, image_size).layers
  return [layer for layer in layers if include_aux or not layer.is_aux]


def total_macs(
  model: nn.Module | str, image_size: int | None = None, include_aux: bool = False
) -> int:
  """Multiply-accumulates per image. Auxiliary heads are excluded by default: they run only in
  training, and the published figures (5.713G, 1.498G) leave them out."""
  return sum(layer.macs for layer in layer_costs(model, image_size, include_aux=include_aux))


def count_params(variables: Mapping[str, Any], exclude_aux: bool = False) -> int:
  """Number of parameters in a variables dict (its `params` collection only) or a params tree.

  `exclude_aux=True` leaves out the top-level `AuxLogits*` subtrees (the training-only heads).
  Works on arrays and on the jax.ShapeDtypeStruct leaves `jax.eval_shape` returns.
  """
  params = variables.get("params", variables) if isinstance(variables, Mapping) else variables
  if exclude_aux:
    params = {k: v for k, v in params.items() if not is_aux(k)}
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))


def model_params(
  model: nn.Module | str, image_size: int | None = None, exclude_aux: bool = False
) -> int:
  """Parameters of a network, from its variables tree (shapes only, nothing is allocated)."""
  return count_params(trace_model(model, image_size).variables, exclude_aux=exclude_aux)


def summarize(
  model: nn.Module | str,
  image_size: int | None = None,
  by: str = "end_point",
  include_aux: bool = False,
) -> list[dict[str, Any]]:
  """Rows of a network's cost, one per top-level end point (`by="end_point"`) or per conv/dense
  layer (`by="layer"`).

  End point rows, in the network's order: `end_point`, `output_shape` (without the batch
  dimension), `params` (everything under that name in the params tree, BatchNorm included),
  `macs`. Pools and PreLogits are rows with zero cost. With `include_aux`, the auxiliary heads are
  appended as rows of their own (no output shape: they are not end points of the inference path).
  """
  t = trace_model(model, image_size)
  if by == "layer":
    return [
      dict(
        path=layer.path,
        kind=layer.kind,
        input_shape=layer.input_shape[1:],
        output_shape=layer.output_shape[1:],
        kernel_shape=layer.kernel_shape,
        params=layer.params,
        macs=layer.macs,
      )
      for layer in t.layers
      if include_aux or not layer.is_aux
    ]
  if by != "end_point":
    raise ValueError(f"by must be 'end_point' or 'layer', got {by!r}")
  params = t.variables.get("params", {})
  macs: dict[str, int] = {}
  for layer in t.layers:
    macs[layer.end_point] = macs.get(layer.end_point, 0) + layer.macs
  if not isinstance(t.output, Mapping):
    raise ValueError("summarize(by='end_point') needs a network with return_features")
  rows = []
  for name, value in t.output.items():
    if name == "AuxLogits":  # the tuple of aux logits; only present in training mode
      continue
    rows.append(
      dict(
        end_point=name,
        output_shape=tuple(value.shape[1:]),
        params=count_params(params.get(name, {})),
        macs=macs.pop(name, 0),
      )
    )
  covered = {row["end_point"] for row in rows}
  for name in params:
    if name not in covered and (include_aux or not is_aux(name)):
      rows.append(
        dict(
          end_point=name,
          output_shape=None,
          params=count_params(params[name]),
          macs=macs.pop(name, 0),
        )
      )
  leftover = {k: v for k, v in macs.items() if v and (include_aux or not is_aux(k))}
  if leftover:  # a counted layer outside every end point would silently vanish from the table
    raise AssertionError(f"layers outside every end point: {leftover}")
  return rows
