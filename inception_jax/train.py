"""Training: one jit-compiled, data-parallel step over every device of every host.

`train_and_evaluate(config, workdir)` trains a network of `inception_jax.models` with the recipe in
`config` (configs/v1.py, v2.py, v3.py), evaluates raw and averaged parameters, writes
WORKDIR/metrics.jsonl and TensorBoard events, and checkpoints to WORKDIR/checkpoints. Rerunning
the same command resumes exactly where the last checkpoint left off: the data position is the
step, the dropout key is folded from the step, and the optimizer state and parameter averages are
part of the checkpointed state.

Sections follow the data flow: config validation, model, train state, update step, metrics
output, evaluation, checkpoint, loop.

Importing this module needs neither TensorFlow nor ml_collections (the GPU benchmark,
experiments/gpu_benchmark.py, runs the train step on machines that have neither): the input
pipeline (`inception_jax.data`) loads TensorFlow on first use, and configs are only annotated as
ConfigDicts.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from typing import TYPE_CHECKING, Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from etils import epath
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from inception_jax import checkpoint as checkpoint_lib
from inception_jax import data, fast_conv, losses, models, optim, parallel, transfer
from inception_jax import evaluate as evaluate_lib
from inception_jax.data import device_augment

if TYPE_CHECKING:
  import ml_collections

BATCH_NORM_MODES = ("per_replica", "sync")
ON_CORRUPT = ("fail", "skip")


class ConfigError(ValueError):
  """A configuration that cannot run; raised before anything is compiled."""


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite."""


# ---------------------------------------------------------------------------------------------
# Config validation: everything that can be checked before compiling.
# ---------------------------------------------------------------------------------------------
def model_overrides(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return config.model_overrides.to_dict()


INPUT_SCALES = ("auto", *data.INPUT_SCALES)
_SCALING_FIELDS = ("mean", "std", "input_range")


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


# ---------------------------------------------------------------------------------------------
# Model.
# ---------------------------------------------------------------------------------------------
def create_model(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
  overrides = model_overrides(config)
  if use_half_precision(config):
    overrides.setdefault("dtype", jnp.bfloat16)  # parameters, BN statistics and loss stay float32
  return models.create(config.model, num_classes=num_classes, **overrides)


def initial_variables(model: nn.Module, rng: jax.Array, image_size: int) -> dict[str, Any]:
  images = jnp.zeros((2, image_size, image_size, 3), jnp.float32)
  params_rng, dropout_rng = jax.random.split(rng)
  return model.init({"params": params_rng, "dropout": dropout_rng}, images, train=False)


# ---------------------------------------------------------------------------------------------
# Train state.
# ---------------------------------------------------------------------------------------------
@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs. batch_stats is {} for networks without BatchNorm; the ema_*
  fields are {} when parameter averaging is off."""

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  ema_params: Any
  ema_batch_stats: Any

  def variables(self, ema: bool = False) -> dict[str, Any]:
    params, batch_stats = (
      (self.ema_params, self.ema_batch_stats) if ema else (self.params, self.batch_stats)
    )
    return {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}


def _averages(params: Any, batch_stats: Any, use_ema: bool) -> dict[str, Any]:
  """Initial averaged parameters and BN statistics: copies (distinct buffers: the state is
  donated), or empty when averaging is off."""
  copy = lambda tree: jax.tree.map(jnp.copy, tree)  # noqa: E731
  return {
    "ema_params": copy(params) if use_ema else {},
    "ema_batch_stats": copy(batch_stats) if use_ema else {},
  }


def create_train_state(
  model: nn.Module, tx: optax.GradientTransformation, rng: jax.Array, image_size: int, use_ema: bool
) -> TrainState:
  variables = initial_variables(model, rng, image_size)
  params = variables["params"]
  batch_stats = variables.get("batch_stats", {})
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    batch_stats=batch_stats,
    opt_state=tx.init(params),
    **_averages(params, batch_stats, use_ema),
  )


def state_initializer(
  config: ml_collections.ConfigDict, model: nn.Module, tx: optax.GradientTransformation, mesh: Mesh
):
  """rng -> TrainState, jitted to create the state directly replicated on the mesh.
  (jax.eval_shape of it gives the abstract state that checkpoints are restored into.)"""
  init = jax.jit(
    functools.partial(
      create_train_state, model, tx, image_size=config.image_size, use_ema=config.ema_decay > 0
    ),
    out_shardings=parallel.replicated(mesh),
  )

  def initialize(rng: jax.Array) -> TrainState:
    # Initial weights are replicated, so the partitionable threefry variant buys nothing here,
    # and XLA:CPU compiles it very slowly for some 4-D kernel shapes (about 7s for a single
    # 3x3x8x16 kernel, minutes for GoogLeNet).
    with jax.threefry_partitionable(False):
      return init(rng)

  return initialize


def with_variables(state: TrainState, variables: dict[str, Any]) -> TrainState:
  """state with new params and batch_stats (and averages restarted from them)."""
  params, batch_stats = variables["params"], variables.get("batch_stats") or {}
  return state.replace(
    params=params, batch_stats=batch_stats, **_averages(params, batch_stats, bool(state.ema_params))
  )


# ---------------------------------------------------------------------------------------------
# Update step.
# ---------------------------------------------------------------------------------------------
def loss_and_grads(
  params, batch_stats, images, labels, dropout_rng, weights=None, *, model, config
):
  """Gradients of the training loss, the new BN statistics and the loss terms of one batch.
  weights: None, or [batch] example weights (0 for a skipped image's empty slot).

  Frozen parameters (config.freeze) are constants here: no gradient flows into them (so the
  backward pass ends where the trainable layers begin), they are not weight-decayed, and the
  BatchNorm layers whose statistics are frozen normalise with their running averages."""
  spec = transfer.spec_from_config(config)
  frozen = spec.frozen(params)
  frozen_bn = spec.frozen_batch_norm_layers(batch_stats)

  def loss_fn(params):
    variables = {"params": transfer.stop_gradient_where(frozen, params)}
    with transfer.frozen_batch_norm(frozen_bn):
      if batch_stats:
        variables["batch_stats"] = batch_stats
        (logits, aux), updates = model.apply(
          variables, images, train=True, mutable=["batch_stats"], rngs={"dropout": dropout_rng}
        )
        new_batch_stats = updates["batch_stats"]
      else:
        logits, aux = model.apply(variables, images, train=True, rngs={"dropout": dropout_rng})
        new_batch_stats = batch_stats
    loss, terms = losses.training_loss(
      logits,
      aux,
      labels,
      params,
      label_smoothing=config.label_smoothing,
      aux_loss_weight=config.aux_loss_weight,
      weight_decay=config.weight_decay,
      example_weights=weights,
      frozen=frozen if spec.freeze else None,
    )
    correct = losses.topk_correct(logits, labels, 1)
    terms["top1"] = (
      jnp.mean(correct)
      if weights is None
      else jnp.sum(correct * weights) / jnp.maximum(jnp.sum(weights), 1.0)
    )
    return loss, (terms, new_batch_stats)

  (_, (terms, new_batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  return grads, new_batch_stats, terms


def per_replica(fn, mesh: Mesh):
  """fn on each device's shard of the batch, as the papers' replicas did: BatchNorm statistics
  per replica; gradients, new BN moving averages and metrics averaged over replicas."""

  def replica_fn(params, batch_stats, images, labels, dropout_rng, weights):
    dropout_rng = jax.random.fold_in(dropout_rng, jax.lax.axis_index(parallel.DATA_AXIS))
    # Each replica differentiates its own copy of the parameters; without the cast, autodiff of
    # a replicated input would already sum (not average) the replicas' gradients.
    params = jax.lax.pcast(params, parallel.DATA_AXIS, to="varying")
    out = fn(params, batch_stats, images, labels, dropout_rng, weights)
    return jax.lax.pmean(out, parallel.DATA_AXIS)

  data = P(parallel.DATA_AXIS)
  return jax.shard_map(
    replica_fn, mesh=mesh, in_specs=(P(), P(), data, data, P(), data), out_specs=P()
  )


def train_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  *,
  model: nn.Module,
  tx: optax.GradientTransformation,
  learning_rate_fn: optax.Schedule,
  config: ml_collections.ConfigDict,
  mesh: Mesh,
) -> tuple[TrainState, dict]:
  """One update on a global batch. With batch_norm='sync' (or no BatchNorm) the forward pass
  runs over the whole batch, so BN statistics are global; with 'per_replica' it runs per device."""
  grad_fn = functools.partial(loss_and_grads, model=model, config=config)
  if config.batch_norm == "per_replica" and state.batch_stats:
    grad_fn = per_replica(grad_fn, mesh)
  # Folded from the step, so a resumed run draws the same dropout masks.
  dropout_rng = jax.random.fold_in(jax.random.key(config.seed), state.step)
  # With on_corrupt="skip" the batch has a mask: skipped images' slots weigh 0 in the loss.
  mask = batch.get("mask")
  weights = None if mask is None else mask.astype(jnp.float32)
  images = batch["image"]
  if images.dtype == jnp.uint8:  # preprocess.distort_on="device": distort and scale here
    key = device_augment.step_key(config.seed, state.step)
    images = device_augment.apply(images, key, preprocess_options(config))
  grads, batch_stats, terms = grad_fn(
    state.params, state.batch_stats, images, batch["label"], dropout_rng, weights
  )
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  step = state.step + 1
  ema_params, ema_batch_stats = state.ema_params, state.ema_batch_stats
  if ema_params:
    decay = optim.ema_decay_at(step, config.ema_decay, config.ema_warmup)
    ema_params = optim.update_ema(ema_params, params, decay)
    ema_batch_stats = optim.update_ema(ema_batch_stats, batch_stats, decay)
  spec = transfer.spec_from_config(config)
  if spec.freeze:  # Frozen variables and their averages are carried over bit for bit.
    params = transfer.select(spec.frozen(params), state.params, params)
    batch_stats = transfer.select(spec.frozen(batch_stats), state.batch_stats, batch_stats)
    if ema_params:
      ema_params = transfer.select(spec.frozen(ema_params), state.ema_params, ema_params)
      ema_batch_stats = transfer.select(
        spec.frozen(ema_batch_stats), state.ema_batch_stats, ema_batch_stats
      )
  new_state = state.replace(
    step=step,
    params=params,
    batch_stats=batch_stats,
    opt_state=opt_state,
    ema_params=ema_params,
    ema_batch_stats=ema_batch_stats,
  )
  metrics = {
    **terms,
    "learning_rate": learning_rate_fn(state.step),
    "grad_norm": optax.tree.norm(grads),
  }
  if mask is not None:
    metrics["skipped_images"] = jnp.sum(1.0 - weights)  # over the global batch
  return new_state, {f"train/{k}": v for k, v in metrics.items()}


def compile_train_step(model, tx, learning_rate_fn, config, mesh):
  """jit with the state replicated and donated, the batch split over `data`."""
  step_fn = functools.partial(
    train_step, model=model, tx=tx, learning_rate_fn=learning_rate_fn, config=config, mesh=mesh
  )
  return jax.jit(
    step_fn,
    in_shardings=(parallel.replicated(mesh), parallel.batch_sharded(mesh)),
    out_shardings=(parallel.replicated(mesh), parallel.replicated(mesh)),
    donate_argnums=0,
    compiler_options=fast_conv.compiler_options(),
  )


# ---------------------------------------------------------------------------------------------
# Metrics output: metrics.jsonl, TensorBoard events, console.
# ---------------------------------------------------------------------------------------------
class MetricWriter:
  """Writes scalars to WORKDIR/metrics.jsonl and TensorBoard events (process 0 only)."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    self.path = epath.Path(workdir) / "metrics.jsonl"
    self._tb = None
    if enabled:
      import tensorflow as tf  # Only the event-file writer; TensorBoard itself is not needed.
      from tensorflow.core.framework import summary_pb2

      self._tf = tf
      self._scalar_metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
      )
      self._tb = tf.summary.create_file_writer(str(epath.Path(workdir) / "tensorboard"))

  def write(self, step: int, scalars: dict[str, float]) -> None:
    if not self.enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    with self.path.open("a") as f:
      f.write(json.dumps({"step": int(step), **scalars}) + "\n")
    with self._tb.as_default():
      for k, v in scalars.items():
        self._tf.summary.write(
          k, self._tf.constant(v, self._tf.float32), step=int(step), metadata=self._scalar_metadata
        )
    self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class TrainMetrics:
  """Per-step metrics kept on device until a log or checkpoint point, where each step's loss is
  checked: a NaN or infinite loss stops the run naming its step, before anything is saved.

  Throughput counts the steps after the first (whose time is mostly compilation); a line with
  the first step alone reports that step's own rate, compilation included, and says so.
  `skipped_images` (on_corrupt="skip") is the run's total, carried over on resume."""

  def __init__(
    self, writer: MetricWriter, batch_size: int, num_steps: int, skipped_images: int = 0
  ):
    self.writer, self.batch_size, self.num_steps = writer, batch_size, num_steps
    self.pending: list[tuple[int, dict]] = []
    self.train_seconds = 0.0
    self.timed_steps = 0  # pending steps whose time train_seconds holds
    self.first_step_seconds: float | None = None
    self.skipped_images = skipped_images
    self._tick = time.time()

  def add(self, step: int, metrics: dict, timed: bool = True) -> None:
    self.pending.append((step, metrics))
    self.timed_steps += timed

  def first_step_done(self, metrics: dict) -> None:
    """Waits for the first step (compilation included) and restarts the throughput clock."""
    jax.block_until_ready(metrics)
    self.first_step_seconds = time.time() - self._tick
    logging.info("first step (compilation included) took %.1fs", self.first_step_seconds)
    self.resume()

  def _seconds_per_step(self) -> tuple[float, str]:
    if self.timed_steps:
      return self.train_seconds / self.timed_steps, ""
    return self.first_step_seconds or self.train_seconds, " (first step, compilation included)"

  def pause(self) -> None:
    """Stops the throughput clock (evaluation, checkpointing)."""
    self.train_seconds += time.time() - self._tick

  def resume(self) -> None:
    self._tick = time.time()

  def flush(self) -> None:
    if not self.pending:
      return
    host = [(step, parallel.fetch(m)) for step, m in self.pending]  # waits for the steps to finish
    self.pause()
    for step, m in host:
      if not np.isfinite(m["train/loss"]):
        raise NonFiniteLossError(
          f"training loss is {m['train/loss']} at step {step} (ce {m['train/ce_loss']}, "
          f"aux {m['train/aux_loss']}, weight decay {m['train/weight_decay']}); stopping"
        )
    step = host[-1][0]
    scalars = {k: float(np.mean([m[k] for _, m in host])) for k in host[-1][1]}
    scalars["train/learning_rate"] = float(host[-1][1]["train/learning_rate"])
    skipped = ""
    if "train/skipped_images" in scalars:  # a running total, not a mean
      self.skipped_images += int(round(sum(float(m["train/skipped_images"]) for _, m in host)))
      scalars["train/skipped_images"] = self.skipped_images
      skipped = f" | skipped {self.skipped_images} unreadable" if self.skipped_images else ""
    seconds_per_step, note = self._seconds_per_step()
    scalars["train/images_per_sec"] = self.batch_size / max(seconds_per_step, 1e-9)
    self.writer.write(step, scalars)
    logging.info(
      "step %d/%d | loss %.4f (ce %.4f aux %.4f wd %.4f) | top1 %.3f | lr %.3g | "
      "%.1f img/s%s | ETA %s%s",
      step,
      self.num_steps,
      scalars["train/loss"],
      scalars["train/ce_loss"],
      scalars["train/aux_loss"],
      scalars["train/weight_decay"],
      scalars["train/top1"],
      scalars["train/learning_rate"],
      scalars["train/images_per_sec"],
      note,
      format_eta((self.num_steps - step) * seconds_per_step) if not note else "later",
      skipped,
    )
    self.pending, self.train_seconds, self.timed_steps = [], 0.0, 0
    self.resume()


# ---------------------------------------------------------------------------------------------
# Evaluation: raw and averaged parameters, in one pass over the eval split.
# ---------------------------------------------------------------------------------------------
def evaluate_state(
  evaluator: evaluate_lib.Evaluator, state: TrainState, config: ml_collections.ConfigDict
) -> dict[str, float]:
  members = {"eval": [state.variables()]}
  if state.ema_params:
    members["eval_ema"] = [state.variables(ema=True)]
  batches = evaluate_lib.eval_batches(config, config.eval_batch_size, config.eval_crops)
  results = evaluator.evaluate(members, batches, config.num_eval_steps)
  scalars = {f"{name}/{k}": v for name, r in results.items() for k, v in r.items() if k != "count"}
  logging.info(
    "eval at step %d: %s",
    int(parallel.fetch(state.step)),
    ", ".join(f"{k} {v:.4f}" for k, v in scalars.items()),
  )
  return scalars


# ---------------------------------------------------------------------------------------------
# Checkpoint: what identifies a run, and initial weights.
# ---------------------------------------------------------------------------------------------
def checkpoint_meta(
  config: ml_collections.ConfigDict,
  num_classes: int,
  step: int,
  skipped_images: int = 0,
  data_order: str = "global",
) -> dict:
  """JSON saved next to each checkpoint; the first three keys must match to resume. The data
  position is the step: with data_order "global" the batches depend on (seed, step, batch_size)
  only, so any number of processes resumes them; "per_host" (streamed splits) needs the same
  process_count."""
  return json.loads(
    json.dumps(
      {
        "model": config.model,
        "model_overrides": model_overrides(config),
        "num_classes": num_classes,
        "step": int(step),
        "data_position": int(step),
        "dataset": config.dataset,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "skipped_images": int(skipped_images),
        "data_order": data_order,
        "process_count": jax.process_count(),
        "device_count": jax.device_count(),
      }
    )
  )


def check_resume_order(meta: dict, data_order: str) -> None:
  """Warns where a resumed run will not see the batches the interrupted one would have."""
  if meta.get("data_order") == "per_host" or data_order == "per_host":
    if meta.get("process_count", jax.process_count()) != jax.process_count():
      logging.warning(
        "resuming a run saved on %s processes on %d: this split is streamed per "
        "host, so the training order differs from the interrupted run's",
        meta.get("process_count"),
        jax.process_count(),
      )


def write_config_record(
  workdir: epath.Path, config: ml_collections.ConfigDict, start_step: int
) -> None:
  """WORKDIR/config.json (the latest run's config) and config.<start_step>.json (the config of
  the run that started or resumed at that step), written only once the checkpoint check has
  passed: a rejected run leaves the record of the runs that made the checkpoints untouched."""
  text = config.to_json_best_effort(indent=2)
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / f"config.{start_step}.json").write_text(text)
  (workdir / "config.json").write_text(text)


def corrupt_image_stop(
  error: data.CorruptImageError, config: ml_collections.ConfigDict, step: int, saved: str
) -> data.CorruptImageError:
  """The error that stops a run at an unreadable image (on_corrupt="fail"): the file, what was
  saved, how to go on."""
  return data.CorruptImageError(
    f"cannot read or decode image {error.name} (needed after step {step}). {saved} To skip "
    f"unreadable images (each is counted in metrics.jsonl and named at the end), rerun the same "
    f"command with --config.on_corrupt=skip; or replace the file and rerun. "
    f"`python -m inception_jax.data.check {config.dataset}` lists every unreadable image.",
    error.name,
  )


def warn_skipped(names: list[str], total: int) -> None:
  """The final warning of a run that skipped unreadable images (on_corrupt="skip")."""
  if not names and not total:
    return
  distinct = sorted(set(names))
  shown = ", ".join(distinct[:20]) + (
    f" (and {len(distinct) - 20} more)" if len(distinct) > 20 else ""
  )
  logging.warning(
    "skipped %d unreadable training images in all (train/skipped_images in "
    "metrics.jsonl); in this run %d draws of %d distinct files: %s",
    total,
    len(names),
    len(distinct),
    shown or "none",
  )


def plan_init_from(
  config: ml_collections.ConfigDict, abstract: TrainState
) -> tuple[transfer.InitPlan, dict[str, Any]]:
  """Reads config.init_from and decides, against the abstract state, what it initialises: every
  tensor the model has with the same shape, except config.init_exclude; the classifier layers
  when they differ (another class count) or are absent (no auxiliary heads) are re-initialised.
  Raises CheckpointError before anything is compiled for a checkpoint that cannot be read or is
  of another architecture."""
  path = config.init_from
  meta = checkpoint_lib.read_init_meta(path)
  if meta.get("model") not in (None, config.model):
    raise checkpoint_lib.CheckpointError(
      f"init_from checkpoint {path} holds {meta['model']!r} weights (its convert_meta.json), "
      f"but config.model is {config.model!r}: a checkpoint of another architecture. Use the "
      f"recipe of {meta['model']!r} or convert weights of {config.model!r}"
    )
  loaded = checkpoint_lib.load_variables(path)
  expected = {"params": abstract.params, "batch_stats": abstract.batch_stats}
  try:
    plan = transfer.plan_init(expected, loaded, transfer.spec_from_config(config).init_exclude)
  except ValueError as e:
    hint = (
      f" (convert_meta.json records model_overrides {meta.get('model_overrides')})" if meta else ""
    )
    raise checkpoint_lib.CheckpointError(
      f"init_from checkpoint {path} does not fit the model ({config.model}){hint}: {e}"
    ) from None
  _warn_about_conventions(config, meta, path)
  return plan, loaded


def _warn_about_conventions(config: ml_collections.ConfigDict, meta: dict, path: str) -> None:
  """Converted weights compute their source's function only under its conventions."""
  recorded = meta.get("model_overrides") or {}
  ours = model_overrides(config)
  for field in ("transform_input", "pool_count_include_pad", "bn_scale"):
    if (
      field in recorded
      and ours.get(field, _default_override(config.model, field)) != recorded[field]
    ):
      logging.warning(
        "init_from %s was converted with %s=%r but config.model_overrides gives %r",
        path,
        field,
        recorded[field],
        ours.get(field),
      )
  if (
    str(meta.get("source", "")).startswith("torchvision")
    and recorded.get("transform_input")
    and config.preprocess.get("mean") is None
  ):
    logging.warning(
      "init_from %s holds torchvision weights with transform_input=True, which "
      "expect ImageNet mean/std input: set config.preprocess.mean and .std "
      "(configs/finetune.py does)",
      path,
    )


def _default_override(model_name: str, field: str) -> Any:
  return getattr(models.create(model_name), field, None)


def load_init_from(
  state: TrainState, plan: transfer.InitPlan, loaded: dict[str, Any], path: str, mesh: Mesh
) -> TrainState:
  """state's params and BN statistics, with the tensors `plan` loads taken from `loaded`."""
  fresh = {"params": state.params, "batch_stats": state.batch_stats}
  variables = jax.device_put(transfer.apply_plan(plan, fresh, loaded), parallel.replicated(mesh))
  transfer.log_plan(plan, path)
  return with_variables(state, variables)


def load_eval_variables(
  config, workdir: str, model: nn.Module, mesh: Mesh, num_classes: int, use_ema: bool = True
) -> dict[str, Any]:
  """The variables of a workdir's latest checkpoint (averaged ones if kept and asked for).
  Creates nothing: a mistyped workdir is an error naming it."""
  directory = checkpoint_lib.absolute(workdir) / "checkpoints"
  if not directory.is_dir():
    raise checkpoint_lib.CheckpointError(
      f"no checkpoints in {workdir}: {directory} does not exist. Check --workdir (the "
      f"training run's workdir, the folder holding checkpoints/ and config.json)."
    )
  init = state_initializer(config, model, optim.create_optimizer(config, lambda step: 0.0), mesh)
  ckpt = checkpoint_lib.Checkpointer(workdir, async_save=False, create=False)
  restored = ckpt.restore(
    jax.eval_shape(init, jax.random.key(config.seed)),
    checkpoint_meta(config, num_classes, 0),
    sharding=parallel.replicated(mesh),
  )
  ckpt.close()
  if restored is None:
    raise checkpoint_lib.CheckpointError(f"no checkpoint in {workdir}/checkpoints")
  state, meta = restored
  logging.info("loaded %s step %d", workdir, meta["step"])
  return state.variables(ema=use_ema and bool(state.ema_params))


# ---------------------------------------------------------------------------------------------
# Loop.
# ---------------------------------------------------------------------------------------------
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains (or resumes) in workdir until config's last step; returns the final state."""
  # -- Logging and mesh.
  logging.info("%s", parallel.describe())
  mesh = parallel.make_mesh()
  validate_config(config, mesh)
  info = check_data(config)
  workdir_path = epath.Path(workdir)
  is_main = jax.process_index() == 0

  # -- Input sizes and schedule.
  steps_per_epoch, num_steps = train_length(config, info.splits[config.train_split])
  learning_rate_fn = optim.create_learning_rate_fn(config, steps_per_epoch, num_steps)
  tx = optim.create_optimizer(config, learning_rate_fn)
  logging.info(
    "%s on %s: %d steps (%.1f per epoch) of %d images, %s",
    config.model,
    config.dataset,
    num_steps,
    steps_per_epoch,
    config.batch_size,
    "bfloat16" if use_half_precision(config) else "float32",
  )

  # -- Model and state, created replicated on the mesh.
  model = create_model(config, info.num_classes)
  init = state_initializer(config, model, tx, mesh)
  rng = jax.random.key(config.seed)
  abstract = jax.eval_shape(init, rng)  # traced, not compiled: every check below comes first
  try:
    transfer.check_config_against_variables(config, abstract.variables())
  except ValueError as e:
    raise ConfigError(str(e)) from None

  # -- Checkpoint: resume from the workdir, or start from init_from, or from scratch.
  ckpt = checkpoint_lib.Checkpointer(workdir, max_to_keep=config.keep_checkpoints)
  try:
    restored = ckpt.restore(
      abstract, checkpoint_meta(config, info.num_classes, 0), sharding=parallel.replicated(mesh)
    )
  except checkpoint_lib.CheckpointError:
    ckpt.close()  # rejected: nothing written, the workdir's record left as it was
    raise
  meta = {}
  if restored is not None:
    state, meta = restored
    if meta["step"] >= num_steps:
      ckpt.close()
      logging.info(
        "already finished at step %d; nothing to do (num_train_steps %d, workdir %s)",
        meta["step"],
        num_steps,
        workdir,
      )
      return state
    logging.info(
      "resumed from %s at step %d (saved on %s processes, %s devices)",
      ckpt.directory / str(meta["step"]),
      meta["step"],
      meta.get("process_count"),
      meta.get("device_count"),
    )
  elif config.init_from:
    try:
      plan, loaded = plan_init_from(config, abstract)
    except checkpoint_lib.CheckpointError:
      ckpt.close()  # rejected before anything was written or compiled
      raise
    state = load_init_from(init(rng), plan, loaded, config.init_from, mesh)
  else:
    state = init(rng)
  if jax.process_count() == 1:  # Multi-host preemption notices come through JAX's coordinator.
    ckpt.install_sigterm_handler()
  start_step = int(parallel.fetch(state.step))
  if is_main:
    write_config_record(workdir_path, config, start_step)

  # -- Input: the data position is the step.
  train_iter = data.create_train_iterator(
    config.dataset,
    split=config.train_split,
    data_dir=config.data_dir,
    global_batch_size=config.batch_size,
    image_size=config.image_size,
    seed=config.seed,
    start_step=start_step,
    preprocess=preprocess_options(config),
    on_corrupt=config.get("on_corrupt", "fail"),
  )
  if restored is not None:
    check_resume_order(restored[1], train_iter.order)

  # -- Compiled functions.
  p_train_step = compile_train_step(model, tx, learning_rate_fn, config, mesh)
  evaluator = evaluate_lib.Evaluator(model, mesh)
  writer = MetricWriter(workdir, enabled=is_main)
  metrics = TrainMetrics(
    writer, config.batch_size, num_steps, skipped_images=meta.get("skipped_images", 0)
  )

  def save(step):
    metrics.flush()  # Raises on a non-finite loss: a diverged state is never saved.
    metrics.pause()
    ckpt.save(
      step,
      state,
      checkpoint_meta(config, info.num_classes, step, metrics.skipped_images, train_iter.order),
    )
    metrics.resume()

  def run_eval(step):
    metrics.flush()
    metrics.pause()
    writer.write(step, evaluate_state(evaluator, state, config))
    metrics.resume()

  # -- Loop.
  step = start_step
  try:
    while step < num_steps:
      batch = parallel.shard_batch(next(train_iter), mesh)
      state, step_metrics = p_train_step(state, batch)
      step += 1
      metrics.add(step, step_metrics, timed=step > start_step + 1)
      if step == start_step + 1:
        metrics.first_step_done(step_metrics)
      if step % config.log_every_steps == 0 or step == num_steps:
        metrics.flush()
      if config.eval_every_steps > 0 and step % config.eval_every_steps == 0 and step < num_steps:
        run_eval(step)
      if step % config.checkpoint_every_steps == 0 and step < num_steps:
        save(step)  # (the last step's checkpoint comes after the final evaluation)
      if ckpt.should_stop(step):
        save(step)
        ckpt.wait()
        logging.warning("stopped at step %d on request; rerun the same command to resume", step)
        return state
    # The final evaluation comes before the final checkpoint, which marks the run as finished.
    run_eval(step)
    save(step)
    ckpt.wait()
    logging.info("finished at step %d in %s", step, workdir)
  except NonFiniteLossError:
    ckpt.wait()
    logging.error("the last good checkpoint (step %s) was kept", ckpt.manager.latest_step())
    raise
  except data.CorruptImageError as e:  # on_corrupt="fail": keep every completed step first.
    if step > start_step:
      save(step)
      ckpt.wait()
      saved = f"Saved a checkpoint at step {step}, the last completed step, in {ckpt.directory}."
    else:
      saved = f"No step was completed in this run (it started at step {start_step})."
    raise corrupt_image_stop(e, config, step, saved) from None
  finally:
    warn_skipped(train_iter.skipped, metrics.skipped_images)
    ckpt.close()
    writer.close()
  return state
