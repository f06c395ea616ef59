"""Training: `train_and_evaluate(config, workdir)`, the loop around the compiled step.

It trains a network of `inception_jax.models` with the recipe in `config` (configs/v1.py, v2.py,
v3.py), evaluates raw and averaged parameters, writes WORKDIR/metrics.jsonl and TensorBoard
events, and checkpoints to WORKDIR/checkpoints. Rerunning the same command resumes exactly where
the last checkpoint left off: the data position is the step, the dropout key is folded from the
step, and the optimizer state and parameter averages are part of the checkpointed state.

The pieces: `training.recipe` (config checks), `training.state` (model, train state, checkpoint
metadata), `training.step` (update step, compilation), `training.metrics` (output),
`evaluation.evaluate` (evaluation), `training.checkpoint` (Orbax).

Importing this module needs neither TensorFlow nor ml_collections (the GPU benchmark,
experiments/gpu_benchmark.py, runs the train step on machines that have neither): the input
pipeline (`inception_jax.data`) loads TensorFlow on first use, and configs are only annotated as
ConfigDicts.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
from etils import epath
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from inception_jax import data, models
from inception_jax.errors import CheckpointError, ConfigError, CorruptImageError, NonFiniteLossError
from inception_jax.evaluation import evaluate as evaluate_lib
from inception_jax.training import checkpoint as checkpoint_lib
from inception_jax.training import metrics as metrics_lib
from inception_jax.training import optim, parallel, recipe, transfer
from inception_jax.training import state as state_lib
from inception_jax.training import step as step_lib
from inception_jax.training.state import TrainState

if TYPE_CHECKING:
  import ml_collections


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
  error: CorruptImageError, config: ml_collections.ConfigDict, step: int, saved: str
) -> CorruptImageError:
  """The error that stops a run at an unreadable image (on_corrupt="fail"): the file, what was
  saved, how to go on."""
  where = getattr(error, "process", None)
  where = f"process {where} of {jax.process_count()} " if where is not None else ""
  return CorruptImageError(
    f"{where}cannot read or decode image {error.name} (needed after step {step}). {saved} To skip "
    f"unreadable images (each is counted in metrics.jsonl and named at the end), rerun the same "
    f"command with --config.on_corrupt=skip; or replace the file and rerun. "
    f"`python -m inception_jax.data.check {config.dataset}` lists every unreadable image.",
    error.name,
  )


_NAME_BYTES = 1024  # of a file name exchanged between hosts (longer names are cut)


def agree_on_corrupt_images(config: ml_collections.ConfigDict) -> bool:
  """Whether the hosts must agree before each step that every one has its batch: with several
  processes, on_corrupt="fail" and a folder: dataset (the datasets with files that can be
  unreadable), a host that cannot read an image would otherwise stop alone while the others wait
  in the next step's collectives. Costs one scalar all-gather per step, only then."""
  return (
    jax.process_count() > 1
    and config.get("on_corrupt", "fail") == "fail"
    and str(config.dataset).startswith("folder:")
  )


def next_batch(train_iter: Any, agree: bool) -> dict[str, np.ndarray]:
  """The next batch of `train_iter`; with `agree`, every host raises CorruptImageError (naming
  the file and the process that could not read it) when any host cannot read its batch, so that
  all stop at the same step and save the same checkpoint."""
  if not agree:
    return next(train_iter)
  try:
    batch, error = next(train_iter), None
  except CorruptImageError as e:
    batch, error = None, e
  failed = np.asarray(multihost_utils.process_allgather(np.int32(error is not None)))
  if not failed.any():
    return batch
  # A second exchange, only when some host failed: the file names, to name them on every host.
  name = (error.name or str(error)) if error is not None else ""
  encoded = np.zeros(_NAME_BYTES, np.uint8)
  raw = name.encode("utf-8", "replace")[:_NAME_BYTES]
  encoded[: len(raw)] = np.frombuffer(raw, np.uint8)
  names = np.asarray(multihost_utils.process_allgather(encoded)).reshape(-1, _NAME_BYTES)
  first = int(np.flatnonzero(failed.reshape(-1))[0])
  if error is None:
    error = CorruptImageError(
      f"process {first} cannot read an image",
      bytes(names[first]).rstrip(b"\0").decode("utf-8", "replace"),
    )
    error.process = first
    logging.error(
      "process %d of %d cannot read or decode image %s: every process stops",
      first,
      jax.process_count(),
      error.name,
    )
  else:
    error.process = jax.process_index()
  raise error


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
    raise CheckpointError(
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
    raise CheckpointError(
      f"init_from checkpoint {path} does not fit the model ({config.model}){hint}: {e}"
    ) from None
  _warn_about_conventions(config, meta, path)
  return plan, loaded


def _warn_about_conventions(config: ml_collections.ConfigDict, meta: dict, path: str) -> None:
  """Converted weights compute their source's function only under its conventions."""
  recorded = meta.get("model_overrides") or {}
  ours = recipe.model_overrides(config)
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
  return state_lib.with_variables(state, variables)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains (or resumes) in workdir until config's last step; returns the final state."""
  # -- Logging and mesh.
  logging.info("%s", parallel.describe())
  mesh = parallel.make_mesh()
  recipe.validate_config(config, mesh)
  info = recipe.check_data(config)
  workdir_path = epath.Path(workdir)
  is_main = jax.process_index() == 0

  # -- Input sizes and schedule.
  steps_per_epoch, num_steps = recipe.train_length(config, info.splits[config.train_split])
  learning_rate_fn = optim.create_learning_rate_fn(config, steps_per_epoch, num_steps)
  tx = optim.create_optimizer(config, learning_rate_fn)
  logging.info(
    "%s on %s: %d steps (%.1f per epoch) of %d images, %s",
    config.model,
    config.dataset,
    num_steps,
    steps_per_epoch,
    config.batch_size,
    "bfloat16" if recipe.use_half_precision(config) else "float32",
  )

  # -- Model and state, created replicated on the mesh.
  model = state_lib.create_model(config, info.num_classes)
  init = state_lib.state_initializer(config, model, tx, mesh)
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
      abstract,
      state_lib.checkpoint_meta(config, info.num_classes, 0),
      sharding=parallel.replicated(mesh),
    )
  except CheckpointError:
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
    except CheckpointError:
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
    preprocess=recipe.preprocess_options(config),
    on_corrupt=config.get("on_corrupt", "fail"),
  )
  if restored is not None:
    check_resume_order(restored[1], train_iter.order)

  # -- Compiled functions.
  p_train_step = step_lib.compile_train_step(model, tx, learning_rate_fn, config, mesh)
  evaluator = evaluate_lib.Evaluator(model, mesh)
  writer = metrics_lib.MetricWriter(workdir, enabled=is_main)
  metrics = metrics_lib.TrainMetrics(
    writer, config.batch_size, num_steps, skipped_images=meta.get("skipped_images", 0)
  )

  def save(step):
    metrics.flush()  # Raises on a non-finite loss: a diverged state is never saved.
    metrics.pause()
    ckpt.save(
      step,
      state,
      state_lib.checkpoint_meta(
        config, info.num_classes, step, metrics.skipped_images, train_iter.order
      ),
    )
    metrics.resume()

  def run_eval(step):
    metrics.flush()
    metrics.pause()
    writer.write(step, evaluate_state(evaluator, state, config))
    metrics.resume()

  # -- Loop.
  step = start_step
  agree = agree_on_corrupt_images(config)
  try:
    while step < num_steps:
      batch = parallel.shard_batch(next_batch(train_iter, agree), mesh)
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
  except CorruptImageError as e:  # on_corrupt="fail": keep every completed step first.
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
