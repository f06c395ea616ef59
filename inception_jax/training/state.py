"""The train state, the model a config describes, and what identifies a run's checkpoints:
the pieces that training (`training.loop`) and evaluation (`evaluation.evaluate`) both use.

The state is created directly replicated on the mesh; `jax.eval_shape` of the initializer gives
the abstract state that checkpoints are restored into.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import TYPE_CHECKING, Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from inception_jax import models
from inception_jax.errors import CheckpointError
from inception_jax.training import checkpoint as checkpoint_lib
from inception_jax.training import optim, parallel, recipe

if TYPE_CHECKING:
  import ml_collections


def create_model(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
  overrides = recipe.model_overrides(config)
  if recipe.use_half_precision(config):
    overrides.setdefault("dtype", jnp.bfloat16)  # parameters, BN statistics and loss stay float32
  return models.create(config.model, num_classes=num_classes, **overrides)


def initial_variables(model: nn.Module, rng: jax.Array, image_size: int) -> dict[str, Any]:
  images = jnp.zeros((2, image_size, image_size, 3), jnp.float32)
  params_rng, dropout_rng = jax.random.split(rng)
  return model.init({"params": params_rng, "dropout": dropout_rng}, images, train=False)


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
        "model_overrides": recipe.model_overrides(config),
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


def load_eval_variables(
  config, workdir: str, model: nn.Module, mesh: Mesh, num_classes: int, use_ema: bool = True
) -> dict[str, Any]:
  """The variables of a workdir's latest checkpoint (averaged ones if kept and asked for).
  Creates nothing: a mistyped workdir is an error naming it."""
  directory = checkpoint_lib.absolute(workdir) / "checkpoints"
  if not directory.is_dir():
    raise CheckpointError(
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
    raise CheckpointError(f"no checkpoint in {workdir}/checkpoints")
  state, meta = restored
  logging.info("loaded %s step %d", workdir, meta["step"])
  return state.variables(ema=use_ema and bool(state.ema_params))
