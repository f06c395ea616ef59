"""A training config (configs/v1.py, v2.py, v3.py) checked and read: everything that can be
checked before anything is compiled, and the values derived from the config that training and
evaluation share (input convention, compute precision, run length).

Importing this module needs neither TensorFlow nor ml_collections: configs are only annotated as
ConfigDicts, and the input pipeline (`inception_jax.data`) loads TensorFlow on first use.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import jax
from jax.sharding import Mesh

from inception_jax import data, models
from inception_jax.errors import ConfigError
from inception_jax.training import optim, parallel, transfer

if TYPE_CHECKING:
  import ml_collections

BATCH_NORM_MODES = ("per_replica", "sync")
ON_CORRUPT = ("fail", "skip")
INPUT_SCALES = ("auto", *data.INPUT_SCALES)
_SCALING_FIELDS = ("mean", "std", "input_range")


def model_overrides(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return config.model_overrides.to_dict()


def input_scale(config: ml_collections.ConfigDict) -> str | None:
  """The input convention the config trains and evaluates with: "inception" or "caffe", or None
  when preprocess sets mean / std / input_range itself.

  "auto" follows the model: Caffe's scale for the paper's GoogLeNet (LRN, as BVLC trained it),
  [-1, 1] for every network with BatchNorm. Raises ConfigError for a combination that contradicts
  itself (an explicit scale next to explicit preprocess scaling, Caffe's scale with
  transform_input).
  """
  scale = config.get("input_scale", "auto")
  if scale not in INPUT_SCALES:
    raise ConfigError(f"unknown input_scale {scale!r}; valid: {', '.join(INPUT_SCALES)}")
  explicit = sorted(k for k in _SCALING_FIELDS if k in config.preprocess)
  overrides = model_overrides(config)
  if scale == "auto":
    if explicit:
      return None
    paper = config.model == "googlenet" and overrides.get("norm", "lrn") == "lrn"
    return "caffe" if paper and not overrides.get("transform_input") else "inception"
  if explicit:
    raise ConfigError(
      f"input_scale={scale!r} and preprocess.{', preprocess.'.join(explicit)} both "
      "set the input scaling; set input_scale='auto' to use the preprocess fields, "
      "or remove them"
    )
  if scale == "caffe" and overrides.get("transform_input"):
    raise ConfigError(
      "input_scale='caffe' feeds 0..255 pixels, but "
      "model_overrides.transform_input expects torchvision's normalised input; "
      "drop one of them"
    )
  return scale


def preprocess_options(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """`config.preprocess` with the input convention of `input_scale(config)` filled in: what both
  the training and the evaluation pipelines get, so the two cannot disagree."""
  options = config.preprocess.to_dict()
  scale = input_scale(config)
  if scale is not None:
    options.update(data.INPUT_SCALES[scale])
  return options


def validate_config(
  config: ml_collections.ConfigDict, mesh: Mesh, eval_batch_size: int | None = None
) -> None:
  """Raises ConfigError with a clear message for a config that cannot run on this mesh."""

  def check(ok: bool, message: str) -> None:
    if not ok:
      raise ConfigError(message)

  check(
    config.model in models.NAMES,
    f"unknown model {config.model!r}; valid models: {', '.join(models.NAMES)}",
  )
  check(
    config.optimizer in optim.OPTIMIZERS,
    f"unknown optimizer {config.optimizer!r}; valid optimizers: {', '.join(optim.OPTIMIZERS)}",
  )
  check(
    config.lr_schedule in optim.SCHEDULES,
    f"unknown lr_schedule {config.lr_schedule!r}; valid: {', '.join(optim.SCHEDULES)}",
  )
  check(
    config.batch_norm in BATCH_NORM_MODES,
    f"unknown batch_norm {config.batch_norm!r}; valid: {', '.join(BATCH_NORM_MODES)}",
  )
  check(
    config.get("on_corrupt", "fail") in ON_CORRUPT,
    f"unknown on_corrupt {config.get('on_corrupt')!r}; valid: {', '.join(ON_CORRUPT)}",
  )
  check(
    config.batch_size > 0 and config.base_batch_size > 0,
    "batch_size and base_batch_size must be positive",
  )
  check(
    config.num_train_steps > 0 or config.num_epochs > 0, "set num_train_steps > 0 or num_epochs > 0"
  )
  for name, value in [
    ("batch_size", config.batch_size),
    ("eval_batch_size", eval_batch_size or config.eval_batch_size),
  ]:
    try:
      parallel.check_batch_size(value, mesh, name)
    except ValueError as e:
      raise ConfigError(str(e)) from None
  try:
    min_size = models.min_image_size(config.model, **model_overrides(config))
  except ValueError as e:
    raise ConfigError(f"model_overrides: {e}") from None
  check(
    config.image_size >= min_size,
    f"image_size={config.image_size} is below the smallest input {config.model} accepts "
    f"with these overrides ({min_size})",
  )
  input_scale(config)
  check(config.get("bias_lr_multiplier", 1.0) > 0, "bias_lr_multiplier must be > 0")
  try:
    transfer.spec_from_config(config)
  except ValueError as e:
    raise ConfigError(str(e)) from None


def check_data(config: ml_collections.ConfigDict) -> data.DatasetInfo:
  """The train and eval splits exist and (folder datasets) every class folder holds an image,
  the same classes in both: checked in seconds, before anything is compiled. Raises
  data.DatasetNotFoundError or data.DatasetError saying how to fix the problem."""
  return data.check_dataset(
    config.dataset,
    [config.train_split, config.eval_split],
    config.data_dir,
    allow_empty_classes=config.get("allow_empty_classes", False),
  )


def use_half_precision(config: ml_collections.ConfigDict) -> bool:
  """bfloat16 compute on TPU and GPU, float32 on CPU, unless config.half_precision says."""
  if config.half_precision is None:
    return jax.default_backend() != "cpu"
  return bool(config.half_precision)


def train_length(config: ml_collections.ConfigDict, num_train_examples: int) -> tuple[float, int]:
  """(steps per epoch, total steps)."""
  steps_per_epoch = num_train_examples / config.batch_size
  if config.num_train_steps > 0:
    return steps_per_epoch, int(config.num_train_steps)
  return steps_per_epoch, int(math.ceil(config.num_epochs * steps_per_epoch))
