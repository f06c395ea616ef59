"""Transfer learning: which variables a fine-tune loads, which it freezes, which are new, and the
pooled features of any converted checkpoint in one call.

Variables are named by their path without the collection, slim-style:
`Mixed_3b/branch1/conv/kernel`, `Mixed_3b/branch1/bn/mean`, `Logits/kernel`,
`AuxLogits_Mixed_4b/fc2/bias`. Config fields (configs/common.py) take comma-separated regular
expressions, each matched with `re.search` against those names, or presets:

| preset | matches |
|---|---|
| `classifiers` | the classifier layers: `Logits` and every auxiliary head (`AuxLogits*`) |
| `backbone` | everything else |

- `config.init_from` + `config.init_exclude`: `plan_init` decides what a checkpoint gives the
  model. A tensor is loaded when the model has it with the same shape; the classifier layers may
  differ (another class count) or be absent on either side (a checkpoint without auxiliary heads,
  or a model without them), and are then re-initialised, layer by layer, and logged by name.
  Anything else that differs is a checkpoint of another architecture: an error, before compiling.
- `config.freeze`: frozen parameters get no update (optax `set_to_zero` through
  `optax.multi_transform`, in `optim.create_optimizer`), no gradient (`stop_gradient`, so the
  backward pass stops where the trainable layers begin) and no weight decay. A BatchNorm layer
  whose statistics (`.../bn/mean`, `.../bn/var`) are frozen runs on its running averages in
  training too, as Keras's non-trainable BatchNormalization and torchvision's FrozenBatchNorm2d
  do: frozen features are then the same in training and evaluation, and the statistics stay
  bit-identical. (The alternative, normalising with batch statistics while keeping the running
  ones, would make a frozen layer compute one function in training and another in evaluation.)
- `config.new_layers_lr_multiplier`: the learning rate of the new layers (the classifiers and
  what `init_exclude` names) is multiplied by it; 1.0 = one learning rate for everything.
- `features(checkpoint, images)`: `PreLogits` of a converted checkpoint with the input convention
  of its source applied.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

CLASSIFIERS = r"^(Logits|AuxLogits[^/]*)(/|$)"
PRESETS = {"classifiers": CLASSIFIERS, "backbone": r"^(?!(Logits|AuxLogits[^/]*)(/|$))"}
# torchvision's ImageNet statistics (what its models' published weights expect), [0, 1] units.
TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)

Variables = Mapping[str, Any]


# ---------------------------------------------------------------------------------------------
# Names and patterns.
# ---------------------------------------------------------------------------------------------
def _key_name(entry: Any) -> str:
  return str(getattr(entry, "key", getattr(entry, "name", entry)))


def variable_name(path: tuple[Any, ...]) -> str:
  """'Mixed_3b/branch1/conv/kernel' for a pytree path inside one collection."""
  return "/".join(_key_name(p) for p in path)


def flat_names(tree: Any) -> dict[str, Any]:
  """{name: leaf} of one collection (params or batch_stats)."""
  return {variable_name(p): leaf for p, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def parse_patterns(spec: str | Iterable[str] | None, what: str) -> tuple[str, ...]:
  """Comma-separated regular expressions and preset names -> compiled-checked regexes.

  Raises ValueError naming the field for a pattern that is not a valid regular expression.
  """
  if not spec:
    return ()
  items = spec.split(",") if isinstance(spec, str) else list(spec)
  patterns = []
  for item in (i.strip() for i in items):
    if not item:
      continue
    pattern = PRESETS.get(item, item)
    try:
      re.compile(pattern)
    except re.error as e:
      raise ValueError(
        f"{what}: {item!r} is not a regular expression ({e}); give regexes "
        f"matched against names like 'Mixed_3b/branch1/conv/kernel', or a preset "
        f"({', '.join(PRESETS)})"
      ) from None
    patterns.append(pattern)
  return tuple(patterns)


def matches(name: str, patterns: tuple[str, ...]) -> bool:
  return any(re.search(p, name) for p in patterns)


def mask(tree: Any, patterns: tuple[str, ...]) -> Any:
  """A tree of Python bools: True where the leaf's name matches one of the patterns."""
  return jax.tree_util.tree_map_with_path(lambda p, _: matches(variable_name(p), patterns), tree)


def check_patterns_match(
  spec: str, patterns: tuple[str, ...], variables: Variables, what: str
) -> None:
  """Each pattern must name at least one variable: a typo would otherwise do nothing."""
  names = [n for c in ("params", "batch_stats") for n in flat_names(variables.get(c) or {})]
  items = [i.strip() for i in spec.split(",") if i.strip()] if isinstance(spec, str) else spec
  for item, pattern in zip(items, patterns, strict=False):
    if not any(re.search(pattern, n) for n in names):
      example = ", ".join(names[:3])
      raise ValueError(
        f"{what}: pattern {item!r} matches no variable of this model; names look "
        f"like {example}, ... (regexes matched with re.search; presets: "
        f"{', '.join(PRESETS)})"
      )


# ---------------------------------------------------------------------------------------------
# What a config freezes and what it treats as new.
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TransferSpec:
  """The transfer-learning fields of a config, parsed."""

  freeze: tuple[str, ...] = ()
  init_exclude: tuple[str, ...] = ()
  new_layers_lr_multiplier: float = 1.0

  @property
  def new_layers(self) -> tuple[str, ...]:
    return (CLASSIFIERS, *self.init_exclude)

  @property
  def active(self) -> bool:
    """Whether the optimizer needs per-parameter labels at all."""
    return bool(self.freeze) or self.new_layers_lr_multiplier != 1.0

  def labels(self, params: Any) -> Any:
    """'frozen', 'new' or 'train' per parameter (optax.multi_transform's labels)."""

    def label(path, _):
      name = variable_name(path)
      if matches(name, self.freeze):
        return "frozen"
      if self.new_layers_lr_multiplier != 1.0 and matches(name, self.new_layers):
        return "new"
      return "train"

    return jax.tree_util.tree_map_with_path(label, params)

  def frozen(self, tree: Any) -> Any:
    return mask(tree, self.freeze)

  def frozen_batch_norm_layers(self, batch_stats: Any) -> frozenset[tuple[str, ...]]:
    """Module paths of the BatchNorm layers whose statistics are all frozen."""
    layers: dict[tuple[str, ...], bool] = {}
    for path, _ in jax.tree_util.tree_leaves_with_path(batch_stats or {}):
      layer = tuple(_key_name(p) for p in path[:-1])
      layers[layer] = layers.get(layer, True) and matches(variable_name(path), self.freeze)
    return frozenset(layer for layer, frozen in layers.items() if frozen)


def spec_from_config(config: Any) -> TransferSpec:
  """Parses config.freeze, config.init_exclude, config.new_layers_lr_multiplier (ValueError)."""
  multiplier = float(getattr(config, "new_layers_lr_multiplier", 1.0))
  if not multiplier >= 0:
    raise ValueError(f"new_layers_lr_multiplier must be >= 0, got {multiplier}")
  return TransferSpec(
    freeze=parse_patterns(getattr(config, "freeze", None), "freeze"),
    init_exclude=parse_patterns(getattr(config, "init_exclude", None), "init_exclude"),
    new_layers_lr_multiplier=multiplier,
  )


def check_config_against_variables(config: Any, variables: Variables) -> None:
  """freeze and init_exclude patterns that name nothing are errors (before compiling)."""
  spec = spec_from_config(config)
  if getattr(config, "freeze", None):
    check_patterns_match(config.freeze, spec.freeze, variables, "freeze")
  if getattr(config, "init_exclude", None):
    check_patterns_match(config.init_exclude, spec.init_exclude, variables, "init_exclude")


def select(use_old: Any, old: Any, new: Any) -> Any:
  """Leaf by leaf, old where use_old (a tree of Python bools) is True, else new."""
  return jax.tree.map(lambda keep, o, n: o if keep else n, use_old, old, new)


def stop_gradient_where(frozen: Any, params: Any) -> Any:
  return jax.tree.map(lambda f, p: jax.lax.stop_gradient(p) if f else p, frozen, params)


def frozen_batch_norm(layers: frozenset[tuple[str, ...]]):
  """A context in which the BatchNorm layers at these module paths use their running averages
  whatever `train` says (flax's method interception: the model code is unchanged; BatchNorm must
  take `use_running_average` at call time, as layers.ConvBN passes it)."""

  def interceptor(next_fun, args, kwargs, context):
    if (
      layers
      and context.method_name == "__call__"
      and isinstance(context.module, nn.BatchNorm)
      and tuple(context.module.path) in layers
    ):
      kwargs = {**kwargs, "use_running_average": True}
    return next_fun(*args, **kwargs)

  return nn.intercept_methods(interceptor)


# ---------------------------------------------------------------------------------------------
# init_from: what a checkpoint gives the model.
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class InitPlan:
  """Names are 'collection/name'. load: taken from the checkpoint; reinitialised: layers (module
  paths) left at their fresh initial values; ignored: checkpoint tensors the model does not use."""

  load: list[str]
  reinitialised: list[str]
  ignored: list[str]


def _flat_variables(variables: Variables) -> dict[str, Any]:
  return {
    f"{c}/{n}": leaf
    for c in ("params", "batch_stats")
    for n, leaf in flat_names(variables.get(c) or {}).items()
  }


def _layer(key: str) -> str:
  """'params/Logits/kernel' -> 'Logits'; 'batch_stats/Mixed_3b/branch1/bn/mean' -> '.../bn'."""
  return key.split("/", 1)[1].rsplit("/", 1)[0]


def _name_key(path: tuple[Any, ...]) -> str:
  return variable_name(path)


def plan_init(
  expected: Variables, found: Variables, init_exclude: tuple[str, ...] = ()
) -> InitPlan:
  """Which of `found`'s tensors initialise `expected` (abstract or concrete variables).

  Raises ValueError listing the tensors that differ outside the classifier layers and
  init_exclude: a checkpoint of another architecture (or another width, BN layout, ...).
  """
  # The project's one tree comparison, checkpoint.tree_differences (imported here: it is heavy).
  from inception_jax import checkpoint

  expected = {c: expected.get(c) or {} for c in ("params", "batch_stats")}
  found = {c: found.get(c) or {} for c in ("params", "batch_stats")}
  missing, misshaped, unexpected = checkpoint.tree_differences(expected, found, key=_name_key)
  flat_expected, flat_found = _flat_variables(expected), _flat_variables(found)
  new_layers = (CLASSIFIERS, *init_exclude)
  problems = sorted(
    (k for k in missing + misshaped + unexpected if not matches(k.split("/", 1)[1], new_layers)),
    key=lambda k: not k.startswith("params/"),
  )  # parameters first, stably
  if problems:

    def describe(k):
      if k in misshaped:
        return f"{k}: checkpoint {np.shape(flat_found[k])}, model {np.shape(flat_expected[k])}"
      return f"{k}: {'missing from the checkpoint' if k in missing else 'not in the model'}"

    raise ValueError(
      f"{len(problems)} tensor(s) differ outside the classifier layers, so this is a checkpoint "
      "of another architecture or configuration: "
      + "; ".join(map(describe, problems[:5]))
      + ". Check config.model and config.model_overrides (width_multiplier, bn_scale, ...) "
      "against the checkpoint, or name such layers in config.init_exclude to start them afresh"
    )
  fresh = {_layer(k) for k in missing + misshaped}
  fresh |= {_layer(k) for k in flat_expected if matches(k.split("/", 1)[1], init_exclude)}
  load = [k for k in flat_expected if k in flat_found and _layer(k) not in fresh]
  loaded = set(load)
  ignored = [k for k in flat_found if k not in loaded]
  return InitPlan(load=load, reinitialised=sorted(fresh), ignored=ignored)


def apply_plan(plan: InitPlan, fresh: Variables, found: Variables) -> dict[str, Any]:
  """fresh's variables with plan.load's tensors replaced by found's."""
  flat_found, load = _flat_variables(found), set(plan.load)
  out = {}
  for collection in ("params", "batch_stats"):
    tree = fresh.get(collection) or {}
    out[collection] = jax.tree_util.tree_map_with_path(
      lambda p, leaf, c=collection: (
        flat_found[f"{c}/{variable_name(p)}"] if f"{c}/{variable_name(p)}" in load else leaf
      ),
      tree,
    )
  return out


def log_plan(plan: InitPlan, path: str) -> None:
  logging.info("init_from %s: loaded %d tensors", path, len(plan.load))
  if plan.reinitialised:
    logging.info(
      "init_from %s: re-initialised %d layer(s): %s",
      path,
      len(plan.reinitialised),
      ", ".join(plan.reinitialised),
    )
  if plan.ignored:
    logging.info(
      "init_from %s: %d checkpoint tensor(s) not used: %s",
      path,
      len(plan.ignored),
      ", ".join(plan.ignored[:20]) + (", ..." if len(plan.ignored) > 20 else ""),
    )


# ---------------------------------------------------------------------------------------------
# Features in one call.
# ---------------------------------------------------------------------------------------------
def input_convention(source: str) -> str:
  """'torchvision' (ImageNet mean/std-normalised RGB) for weights converted from torchvision,
  '[-1, 1]' for Keras and tf-slim (Inception preprocessing) and this project's own runs."""
  return "torchvision" if source.split(":", 1)[0] == "torchvision" else "[-1, 1]"


def to_network_input(images: Any, convention: str) -> jax.Array:
  """images uint8 [batch, H, W, 3] in [0, 255] or float in [0, 1] -> the network's input."""
  images = jnp.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be [batch, height, width, 3] RGB, got shape {images.shape}")
  if images.dtype == jnp.uint8:
    x = images.astype(jnp.float32) / 255.0
  else:
    x = images.astype(jnp.float32)
    lo, hi = float(jnp.min(x)), float(jnp.max(x))
    if lo < -1e-3 or hi > 1.0 + 1e-3:
      raise ValueError(
        f"float images must be in [0, 1] (got values in [{lo:.3g}, {hi:.3g}]): pass "
        "raw pixels; the checkpoint's input convention is applied here"
      )
  if convention == "torchvision":
    return (x - jnp.array(TORCHVISION_MEAN)) / jnp.array(TORCHVISION_STD)
  return x * 2.0 - 1.0


def feature_extractor(checkpoint: str) -> Callable[[Any], np.ndarray]:
  """images -> PreLogits [batch, channels] for a converted checkpoint (see `features`), compiled
  once per input shape; for many batches."""
  from inception_jax import conversion, fast_conv

  model, variables = conversion.load(checkpoint)
  meta = json.loads((Path(checkpoint) / conversion.META_FILE).read_text())
  convention = input_convention(meta.get("source", ""))
  model = model.clone(return_features=True)
  apply = jax.jit(
    lambda v, x: model.apply(v, x, train=False)["PreLogits"].astype(jnp.float32),
    compiler_options=fast_conv.compiler_options(),
  )

  def extract(images: Any) -> np.ndarray:
    return np.asarray(apply(variables, to_network_input(images, convention)))

  extract.convention = convention  # type: ignore[attr-defined]
  return extract


def features(checkpoint: str, images: Any) -> np.ndarray:
  """Pooled features (the `PreLogits` end point, [batch, channels]) of a converted checkpoint
  (a directory written by `python -m inception_jax.conversion`) for a batch of images.

  images: uint8 [batch, height, width, 3] in [0, 255], or float in [0, 1], RGB, already resized
    and cropped as the source evaluates (e.g. 224 for GoogLeNet, 299 for Inception-v3). The
    source's input convention is applied here: torchvision's ImageNet mean/std for weights
    converted from torchvision (the model's `transform_input` then works as torchvision's), [-1, 1]
    for Keras and tf-slim weights. Eval mode: BatchNorm running averages, no dropout.
  For many batches, `feature_extractor(checkpoint)` loads and compiles once.
  """
  return feature_extractor(checkpoint)(images)


__all__ = [
  "CLASSIFIERS",
  "PRESETS",
  "InitPlan",
  "TransferSpec",
  "apply_plan",
  "feature_extractor",
  "features",
  "frozen_batch_norm",
  "input_convention",
  "plan_init",
  "spec_from_config",
  "to_network_input",
]
