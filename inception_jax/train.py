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
pipeline is imported where the loop builds it, and configs are only annotated as ConfigDicts.
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
from inception_jax import evaluate as evaluate_lib
from inception_jax import fast_conv, losses, models, optim, parallel

if TYPE_CHECKING:
  import ml_collections

BATCH_NORM_MODES = ("per_replica", "sync")


class ConfigError(ValueError):
  """A configuration that cannot run; raised before anything is compiled."""


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite."""


# ---------------------------------------------------------------------------------------------
# Config validation: everything that can be checked before compiling.
# ---------------------------------------------------------------------------------------------
def model_overrides(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return config.model_overrides.to_dict()


def validate_config(config: ml_collections.ConfigDict, mesh: Mesh,
                    eval_batch_size: int | None = None) -> None:
  """Raises ConfigError with a clear message for a config that cannot run on this mesh."""
  def check(ok: bool, message: str) -> None:
    if not ok:
      raise ConfigError(message)
  check(config.model in models.NAMES,
        f"unknown model {config.model!r}; valid models: {', '.join(models.NAMES)}")
  check(config.optimizer in optim.OPTIMIZERS,
        f"unknown optimizer {config.optimizer!r}; valid optimizers: {', '.join(optim.OPTIMIZERS)}")
  check(config.lr_schedule in optim.SCHEDULES,
        f"unknown lr_schedule {config.lr_schedule!r}; valid: {', '.join(optim.SCHEDULES)}")
  check(config.batch_norm in BATCH_NORM_MODES,
        f"unknown batch_norm {config.batch_norm!r}; valid: {', '.join(BATCH_NORM_MODES)}")
  check(config.batch_size > 0 and config.base_batch_size > 0,
        "batch_size and base_batch_size must be positive")
  check(config.num_train_steps > 0 or config.num_epochs > 0,
        "set num_train_steps > 0 or num_epochs > 0")
  for name, value in [("batch_size", config.batch_size),
                      ("eval_batch_size", eval_batch_size or config.eval_batch_size)]:
    try:
      parallel.check_batch_size(value, mesh, name)
    except ValueError as e:
      raise ConfigError(str(e)) from None
  try:
    min_size = models.min_image_size(config.model, **model_overrides(config))
  except ValueError as e:
    raise ConfigError(f"model_overrides: {e}") from None
  check(config.image_size >= min_size,
        f"image_size={config.image_size} is below the smallest input {config.model} accepts "
        f"with these overrides ({min_size})")


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
    params, batch_stats = ((self.ema_params, self.ema_batch_stats) if ema
                           else (self.params, self.batch_stats))
    return {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}


def _averages(params: Any, batch_stats: Any, use_ema: bool) -> dict[str, Any]:
  """Initial averaged parameters and BN statistics: copies (distinct buffers: the state is
  donated), or empty when averaging is off."""
  copy = lambda tree: jax.tree.map(jnp.copy, tree)  # noqa: E731
  return {"ema_params": copy(params) if use_ema else {},
          "ema_batch_stats": copy(batch_stats) if use_ema else {}}


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, rng: jax.Array,
                       image_size: int, use_ema: bool) -> TrainState:
  variables = initial_variables(model, rng, image_size)
  params = variables["params"]
  batch_stats = variables.get("batch_stats", {})
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                    opt_state=tx.init(params), **_averages(params, batch_stats, use_ema))


def state_initializer(config: ml_collections.ConfigDict, model: nn.Module,
                      tx: optax.GradientTransformation, mesh: Mesh):
  """rng -> TrainState, jitted to create the state directly replicated on the mesh.
  (jax.eval_shape of it gives the abstract state that checkpoints are restored into.)"""
  init = jax.jit(functools.partial(create_train_state, model, tx, image_size=config.image_size,
                                   use_ema=config.ema_decay > 0),
                 out_shardings=parallel.replicated(mesh))

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
  return state.replace(params=params, batch_stats=batch_stats,
                       **_averages(params, batch_stats, bool(state.ema_params)))


# ---------------------------------------------------------------------------------------------
# Update step.
# ---------------------------------------------------------------------------------------------
def loss_and_grads(params, batch_stats, images, labels, dropout_rng, *, model, config):
  """Gradients of the training loss, the new BN statistics and the loss terms of one batch."""
  def loss_fn(params):
    variables = {"params": params}
    if batch_stats:
      variables["batch_stats"] = batch_stats
      (logits, aux), updates = model.apply(variables, images, train=True,
                                           mutable=["batch_stats"], rngs={"dropout": dropout_rng})
      new_batch_stats = updates["batch_stats"]
    else:
      logits, aux = model.apply(variables, images, train=True, rngs={"dropout": dropout_rng})
      new_batch_stats = batch_stats
    loss, terms = losses.training_loss(
        logits, aux, labels, params, label_smoothing=config.label_smoothing,
        aux_loss_weight=config.aux_loss_weight, weight_decay=config.weight_decay)
    terms["top1"] = jnp.mean(losses.topk_correct(logits, labels, 1))
    return loss, (terms, new_batch_stats)
  (_, (terms, new_batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  return grads, new_batch_stats, terms


def per_replica(fn, mesh: Mesh):
  """fn on each device's shard of the batch, as the papers' replicas did: BatchNorm statistics
  per replica; gradients, new BN moving averages and metrics averaged over replicas."""
  def replica_fn(params, batch_stats, images, labels, dropout_rng):
    dropout_rng = jax.random.fold_in(dropout_rng, jax.lax.axis_index(parallel.DATA_AXIS))
    # Each replica differentiates its own copy of the parameters; without the cast, autodiff of
    # a replicated input would already sum (not average) the replicas' gradients.
    params = jax.lax.pcast(params, parallel.DATA_AXIS, to="varying")
    out = fn(params, batch_stats, images, labels, dropout_rng)
    return jax.lax.pmean(out, parallel.DATA_AXIS)
  data = P(parallel.DATA_AXIS)
  return jax.shard_map(replica_fn, mesh=mesh, in_specs=(P(), P(), data, data, P()),
                       out_specs=P())


def train_step(state: TrainState, batch: dict[str, jax.Array], *, model: nn.Module,
               tx: optax.GradientTransformation, learning_rate_fn: optax.Schedule,
               config: ml_collections.ConfigDict, mesh: Mesh) -> tuple[TrainState, dict]:
  """One update on a global batch. With batch_norm='sync' (or no BatchNorm) the forward pass
  runs over the whole batch, so BN statistics are global; with 'per_replica' it runs per device."""
  grad_fn = functools.partial(loss_and_grads, model=model, config=config)
  if config.batch_norm == "per_replica" and state.batch_stats:
    grad_fn = per_replica(grad_fn, mesh)
  # Folded from the step, so a resumed run draws the same dropout masks.
  dropout_rng = jax.random.fold_in(jax.random.key(config.seed), state.step)
  grads, batch_stats, terms = grad_fn(state.params, state.batch_stats, batch["image"],
                                      batch["label"], dropout_rng)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  step = state.step + 1
  ema_params, ema_batch_stats = state.ema_params, state.ema_batch_stats
  if ema_params:
    decay = optim.ema_decay_at(step, config.ema_decay, config.ema_warmup)
    ema_params = optim.update_ema(ema_params, params, decay)
    ema_batch_stats = optim.update_ema(ema_batch_stats, batch_stats, decay)
  new_state = state.replace(step=step, params=params, batch_stats=batch_stats,
                            opt_state=opt_state, ema_params=ema_params,
                            ema_batch_stats=ema_batch_stats)
  metrics = {**terms, "learning_rate": learning_rate_fn(state.step),
             "grad_norm": optax.tree.norm(grads)}
  return new_state, {f"train/{k}": v for k, v in metrics.items()}


def compile_train_step(model, tx, learning_rate_fn, config, mesh):
  """jit with the state replicated and donated, the batch split over `data`."""
  step_fn = functools.partial(train_step, model=model, tx=tx, learning_rate_fn=learning_rate_fn,
                              config=config, mesh=mesh)
  return jax.jit(step_fn, in_shardings=(parallel.replicated(mesh), parallel.batch_sharded(mesh)),
                 out_shardings=(parallel.replicated(mesh), parallel.replicated(mesh)),
                 donate_argnums=0, compiler_options=fast_conv.compiler_options())


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
          plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
      self._tb = tf.summary.create_file_writer(str(epath.Path(workdir) / "tensorboard"))

  def write(self, step: int, scalars: dict[str, float]) -> None:
    if not self.enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    with self.path.open("a") as f:
      f.write(json.dumps({"step": int(step), **scalars}) + "\n")
    with self._tb.as_default():
      for k, v in scalars.items():
        self._tf.summary.write(k, self._tf.constant(v, self._tf.float32), step=int(step),
                               metadata=self._scalar_metadata)
    self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class TrainMetrics:
  """Per-step metrics kept on device until a log or checkpoint point, where each step's loss is
  checked: a NaN or infinite loss stops the run naming its step, before anything is saved."""

  def __init__(self, writer: MetricWriter, batch_size: int, num_steps: int):
    self.writer, self.batch_size, self.num_steps = writer, batch_size, num_steps
    self.pending: list[tuple[int, dict]] = []
    self.train_seconds = 0.0
    self._tick = time.time()

  def add(self, step: int, metrics: dict) -> None:
    self.pending.append((step, metrics))

  def first_step_done(self, metrics: dict) -> None:
    """Waits for the first step (compilation included) and restarts the throughput clock."""
    jax.block_until_ready(metrics)
    logging.info("first step (compilation included) took %.1fs", time.time() - self._tick)
    self.resume()

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
            f"aux {m['train/aux_loss']}, weight decay {m['train/weight_decay']}); stopping")
    step = host[-1][0]
    scalars = {k: float(np.mean([m[k] for _, m in host])) for k in host[-1][1]}
    scalars["train/learning_rate"] = float(host[-1][1]["train/learning_rate"])
    seconds_per_step = self.train_seconds / len(host)
    scalars["train/images_per_sec"] = self.batch_size / max(seconds_per_step, 1e-9)
    self.writer.write(step, scalars)
    logging.info("step %d/%d | loss %.4f (ce %.4f aux %.4f wd %.4f) | top1 %.3f | lr %.3g | "
                 "%.1f img/s | ETA %s", step, self.num_steps, scalars["train/loss"],
                 scalars["train/ce_loss"], scalars["train/aux_loss"],
                 scalars["train/weight_decay"], scalars["train/top1"],
                 scalars["train/learning_rate"], scalars["train/images_per_sec"],
                 format_eta((self.num_steps - step) * seconds_per_step))
    self.pending, self.train_seconds = [], 0.0
    self.resume()


# ---------------------------------------------------------------------------------------------
# Evaluation: raw and averaged parameters, in one pass over the eval split.
# ---------------------------------------------------------------------------------------------
def evaluate_state(evaluator: evaluate_lib.Evaluator, state: TrainState,
                   config: ml_collections.ConfigDict) -> dict[str, float]:
  members = {"eval": [state.variables()]}
  if state.ema_params:
    members["eval_ema"] = [state.variables(ema=True)]
  batches = evaluate_lib.eval_batches(config, config.eval_batch_size, config.eval_crops)
  results = evaluator.evaluate(members, batches, config.num_eval_steps)
  scalars = {f"{name}/{k}": v for name, r in results.items() for k, v in r.items()
             if k != "count"}
  logging.info("eval at step %d: %s", int(parallel.fetch(state.step)),
               ", ".join(f"{k} {v:.4f}" for k, v in scalars.items()))
  return scalars


# ---------------------------------------------------------------------------------------------
# Checkpoint: what identifies a run, and initial weights.
# ---------------------------------------------------------------------------------------------
def checkpoint_meta(config: ml_collections.ConfigDict, num_classes: int, step: int,
                    data_order: str = "global") -> dict:
  """JSON saved next to each checkpoint; the first three keys must match to resume. The data
  position is the step: with data_order "global" the batches depend on (seed, step, batch_size)
  only, so any number of processes resumes them; "per_host" (streamed splits) needs the same
  process_count."""
  return json.loads(json.dumps({
      "model": config.model, "model_overrides": model_overrides(config),
      "num_classes": num_classes, "step": int(step), "data_position": int(step),
      "dataset": config.dataset, "batch_size": config.batch_size, "seed": config.seed,
      "data_order": data_order, "process_count": jax.process_count(),
      "device_count": jax.device_count()}))


def check_resume_order(meta: dict, data_order: str) -> None:
  """Warns where a resumed run will not see the batches the interrupted one would have."""
  if meta.get("data_order") == "per_host" or data_order == "per_host":
    if meta.get("process_count", jax.process_count()) != jax.process_count():
      logging.warning("resuming a run saved on %s processes on %d: this split is streamed per "
                      "host, so the training order differs from the interrupted run's",
                      meta.get("process_count"), jax.process_count())


def load_init_from(state: TrainState, path: str, mesh: Mesh) -> TrainState:
  """Starts from the params (and BN statistics) of another checkpoint or converted weights."""
  loaded = checkpoint_lib.load_variables(path)
  expected = {"params": state.params, "batch_stats": state.batch_stats}
  checkpoint_lib.check_variables_match(path, expected, loaded)
  loaded = jax.device_put(loaded, parallel.replicated(mesh))
  logging.info("initialised params from %s", path)
  return with_variables(state, loaded)


def load_eval_variables(config, workdir: str, model: nn.Module, mesh: Mesh, num_classes: int,
                        use_ema: bool = True) -> dict[str, Any]:
  """The variables of a workdir's latest checkpoint (averaged ones if kept and asked for)."""
  init = state_initializer(config, model, optim.create_optimizer(config, lambda step: 0.0), mesh)
  ckpt = checkpoint_lib.Checkpointer(workdir, async_save=False)
  restored = ckpt.restore(jax.eval_shape(init, jax.random.key(config.seed)),
                          checkpoint_meta(config, num_classes, 0),
                          sharding=parallel.replicated(mesh))
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
  workdir_path = epath.Path(workdir)
  is_main = jax.process_index() == 0
  if is_main:
    workdir_path.mkdir(parents=True, exist_ok=True)
    (workdir_path / "config.json").write_text(config.to_json_best_effort(indent=2))

  # -- Input sizes and schedule.
  from inception_jax import data  # TensorFlow (tf.data); see the module docstring
  info = data.get_info(config.dataset, config.data_dir)
  steps_per_epoch, num_steps = train_length(config, info.splits[config.train_split])
  learning_rate_fn = optim.create_learning_rate_fn(config, steps_per_epoch, num_steps)
  tx = optim.create_optimizer(config, learning_rate_fn)
  logging.info("%s on %s: %d steps (%.1f per epoch) of %d images, %s", config.model,
               config.dataset, num_steps, steps_per_epoch, config.batch_size,
               "bfloat16" if use_half_precision(config) else "float32")

  # -- Model and state, created replicated on the mesh.
  model = create_model(config, info.num_classes)
  init = state_initializer(config, model, tx, mesh)
  rng = jax.random.key(config.seed)

  # -- Checkpoint: resume from the workdir, or start from init_from, or from scratch.
  ckpt = checkpoint_lib.Checkpointer(workdir, max_to_keep=config.keep_checkpoints)
  restored = ckpt.restore(jax.eval_shape(init, rng), checkpoint_meta(config, info.num_classes, 0),
                          sharding=parallel.replicated(mesh))
  if restored is not None:
    state, meta = restored
    logging.info("resumed from %s at step %d (saved on %s processes, %s devices)",
                 ckpt.directory / str(meta["step"]), meta["step"], meta.get("process_count"),
                 meta.get("device_count"))
  else:
    state = init(rng)
    if config.init_from:
      state = load_init_from(state, config.init_from, mesh)
  if jax.process_count() == 1:  # Multi-host preemption notices come through JAX's coordinator.
    ckpt.install_sigterm_handler()
  start_step = int(parallel.fetch(state.step))

  # -- Input: the data position is the step.
  train_iter = data.create_train_iterator(
      config.dataset, split=config.train_split, data_dir=config.data_dir,
      global_batch_size=config.batch_size, image_size=config.image_size, seed=config.seed,
      start_step=start_step, preprocess=config.preprocess.to_dict())
  if restored is not None:
    check_resume_order(restored[1], train_iter.order)

  # -- Compiled functions.
  p_train_step = compile_train_step(model, tx, learning_rate_fn, config, mesh)
  evaluator = evaluate_lib.Evaluator(model, mesh)
  writer = MetricWriter(workdir, enabled=is_main)
  metrics = TrainMetrics(writer, config.batch_size, num_steps)

  def save(step):
    metrics.flush()  # Raises on a non-finite loss: a diverged state is never saved.
    metrics.pause()
    ckpt.save(step, state, checkpoint_meta(config, info.num_classes, step, train_iter.order))
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
      metrics.add(step, step_metrics)
      if step == start_step + 1:
        metrics.first_step_done(step_metrics)
      if step % config.log_every_steps == 0 or step == num_steps:
        metrics.flush()
      if config.eval_every_steps > 0 and step % config.eval_every_steps == 0 and step < num_steps:
        run_eval(step)
      if step % config.checkpoint_every_steps == 0:
        save(step)
      if ckpt.should_stop(step):
        save(step)
        ckpt.wait()
        logging.warning("stopped at step %d on request; rerun the same command to resume", step)
        return state
    save(step)
    run_eval(step)
    ckpt.wait()
    logging.info("finished at step %d in %s", step, workdir)
  except NonFiniteLossError:
    ckpt.wait()
    logging.error("the last good checkpoint (step %s) was kept", ckpt.manager.latest_step())
    raise
  finally:
    ckpt.close()
    writer.close()
  return state
