"""The update step: the training loss and its gradients, one data-parallel step over every
device of every host, and `compile_step`, the one place that compiles a step (train, eval,
feature extraction) with the XLA options of the model's kernels.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from inception_jax import fast_conv
from inception_jax.data import device_augment
from inception_jax.training import losses, optim, parallel, recipe, transfer
from inception_jax.training.state import TrainState

if TYPE_CHECKING:
  import ml_collections


def compile_step(fn: Callable, model: nn.Module, **jit_kwargs: Any) -> Callable:
  """`jax.jit(fn, **jit_kwargs)` with the XLA compiler options that `model`'s convolution and
  pooling kernels were chosen with (`models.create(..., backend=...)`): XLA:CPU's fast-path
  options for the CPU kernels (`fast_conv.CPU_OPS`), XLA's defaults otherwise. Use it for every
  jitted function that applies the model."""
  return jax.jit(fn, compiler_options=fast_conv.compiler_options(model), **jit_kwargs)


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
    images = device_augment.apply(images, key, recipe.preprocess_options(config))
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
  return compile_step(
    step_fn,
    model,
    in_shardings=(parallel.replicated(mesh), parallel.batch_sharded(mesh)),
    out_shardings=(parallel.replicated(mesh), parallel.replicated(mesh)),
    donate_argnums=0,
  )
