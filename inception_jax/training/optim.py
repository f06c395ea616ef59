"""The one place optimizers, learning-rate schedules and parameter averages are built from a config.

Recipes (see configs/ and docs/TRAINING.md for the sources):
- GoogLeNet: SGD with momentum 0.9, learning rate decreased by 4% every 8 epochs (staircase);
  biases at twice the learning rate (BVLC's lr_mult 2).
- Inception v2/v3: RMSProp with decay 0.9 and epsilon 1.0 in TensorFlow's semantics, learning rate
  0.045 decayed by 0.94 every 2 epochs, gradients clipped to global norm 2.0.

Every schedule is defined in epochs and converted to steps with the train split's size, so the
papers' values hold at the epoch boundaries whatever the batch size. The base learning rate is given
for `config.base_batch_size` and follows the linear scaling rule (Goyal et al. 2017) when
`config.batch_size` differs, with an optional linear warmup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import optax

from inception_jax.training import transfer

if TYPE_CHECKING:
  import ml_collections

OPTIMIZERS = ("sgd", "rmsprop", "adam")
SCHEDULES = ("exponential", "cosine", "constant")


# ---------------------------------------------------------------------------------------------
# Learning rate.
# ---------------------------------------------------------------------------------------------
def scaled_learning_rate(config: ml_collections.ConfigDict) -> float:
  """Linear scaling rule: learning_rate * batch_size / base_batch_size."""
  return config.learning_rate * config.batch_size / config.base_batch_size


def staircase_exponential_decay(
  init_value: float, decay_rate: float, decay_steps: float
) -> optax.Schedule:
  """init_value * decay_rate ** floor(step / decay_steps); decay_steps may be fractional."""

  def schedule(step):
    return init_value * decay_rate ** jnp.floor(jnp.asarray(step, jnp.float32) / decay_steps)

  return schedule


def cosine_decay(init_value: float, total_steps: float) -> optax.Schedule:
  def schedule(step):
    t = jnp.clip(jnp.asarray(step, jnp.float32) / total_steps, 0.0, 1.0)
    return init_value * 0.5 * (1.0 + jnp.cos(jnp.pi * t))

  return schedule


def with_linear_warmup(
  schedule: optax.Schedule, peak_value: float, warmup_steps: float
) -> optax.Schedule:
  """Ramps linearly from 0 to peak_value over warmup_steps, then follows schedule (not shifted)."""
  if warmup_steps <= 0:
    return schedule

  def warmed(step):
    step = jnp.asarray(step, jnp.float32)
    return jnp.where(step < warmup_steps, peak_value * step / warmup_steps, schedule(step))

  return warmed


def create_learning_rate_fn(
  config: ml_collections.ConfigDict, steps_per_epoch: float, total_steps: int
) -> optax.Schedule:
  """The learning rate at each step (optax counts updates from 0)."""
  peak = scaled_learning_rate(config)
  if config.lr_schedule == "exponential":
    schedule = staircase_exponential_decay(
      peak, config.lr_decay_rate, config.lr_decay_epochs * steps_per_epoch
    )
  elif config.lr_schedule == "cosine":
    schedule = cosine_decay(peak, total_steps)
  elif config.lr_schedule == "constant":

    def schedule(step):
      return jnp.full((), peak, jnp.float32)
  else:
    raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}; expected one of {SCHEDULES}")
  return with_linear_warmup(schedule, peak, config.warmup_epochs * steps_per_epoch)


# ---------------------------------------------------------------------------------------------
# Optimizer.
# ---------------------------------------------------------------------------------------------
def tf_rmsprop(
  learning_rate: optax.ScalarOrSchedule,
  decay: float,
  epsilon: float,
  momentum: float,
  initial_scale: float = 1.0,
) -> optax.GradientTransformation:
  """tf.compat.v1.train.RMSPropOptimizer: epsilon inside the square root, the squared-gradient
  accumulator starting at 1.0, the learning rate applied before the momentum trace."""
  return optax.rmsprop(
    learning_rate,
    decay=decay,
    eps=epsilon,
    initial_scale=initial_scale,
    eps_in_sqrt=True,
    momentum=momentum or None,
  )


def is_layer_bias(path: tuple[Any, ...]) -> bool:
  """Whether a parameter is a convolution or dense bias (BatchNorm's offset, also named `bias`,
  lives under a module named `bn` and is not one)."""
  names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
  return bool(names) and names[-1] == "bias" and (len(names) < 2 or names[-2] != "bn")


def scale_layer_biases(multiplier: float) -> optax.GradientTransformation:
  """Multiplies the updates of conv / dense biases by `multiplier`: Caffe's `lr_mult` on biases
  (BVLC GoogLeNet: 2). Every optimizer here is linear in the learning rate, so this is the bias
  learning rate times `multiplier`."""

  def update_fn(updates, state, params=None):
    del params
    scaled = jax.tree_util.tree_map_with_path(
      lambda path, u: u * multiplier if is_layer_bias(path) else u, updates
    )
    return scaled, state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def _base_optimizer(
  config: ml_collections.ConfigDict, learning_rate_fn: optax.Schedule
) -> optax.GradientTransformation:
  """The configured optimizer, with the bias learning-rate multiplier (`bias_lr_multiplier`,
  BVLC's lr_mult 2 for GoogLeNet; weight decay never reaches biases, see losses.is_decayed)."""
  name = config.optimizer
  if name == "sgd":
    opt = optax.sgd(learning_rate_fn, momentum=config.momentum or None, nesterov=config.nesterov)
  elif name == "rmsprop":
    opt = tf_rmsprop(
      learning_rate_fn,
      config.rmsprop_decay,
      config.rmsprop_epsilon,
      config.momentum,
      config.rmsprop_initial_scale,
    )
  elif name == "adam":
    opt = optax.adam(learning_rate_fn)
  else:
    raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")
  bias_multiplier = getattr(config, "bias_lr_multiplier", 1.0)
  if bias_multiplier != 1.0:
    opt = optax.chain(opt, scale_layer_biases(bias_multiplier))
  return opt


def create_optimizer(
  config: ml_collections.ConfigDict, learning_rate_fn: optax.Schedule
) -> optax.GradientTransformation:
  """Optional global-norm gradient clipping followed by the configured optimizer.

  Fine-tuning (inception_jax/training/transfer.py): parameters matching config.freeze get no update
  (optax.set_to_zero, and no optimizer state), and the new layers (the classifiers and
  config.init_exclude) the learning rate times config.new_layers_lr_multiplier, through
  optax.multi_transform over per-parameter labels."""
  opt = _base_optimizer(config, learning_rate_fn)
  spec = transfer.spec_from_config(config)
  if spec.active:
    multiplier = spec.new_layers_lr_multiplier
    transforms = {"train": opt, "frozen": optax.set_to_zero()}
    if multiplier != 1.0:
      transforms["new"] = _base_optimizer(config, lambda step: learning_rate_fn(step) * multiplier)
    opt = optax.multi_transform(transforms, spec.labels)
  if config.grad_clip_norm and config.grad_clip_norm > 0:
    # Frozen gradients are zero (stop_gradient in the step), so they do not count in the norm.
    opt = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), opt)
  return opt


# ---------------------------------------------------------------------------------------------
# Polyak / exponential moving average of the parameters.
# ---------------------------------------------------------------------------------------------
def ema_decay_at(step: jax.Array, decay: float, warmup: bool) -> jax.Array:
  """The averaging decay after `step` updates. With warmup, tf.train.ExponentialMovingAverage's
  num_updates rule min(decay, (1 + step) / (10 + step)), so that short runs average sensibly."""
  decay = jnp.asarray(decay, jnp.float32)
  if not warmup:
    return decay
  step = jnp.asarray(step, jnp.float32)
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def update_ema(ema: Any, new: Any, decay: jax.Array) -> Any:
  """ema * decay + new * (1 - decay), leaf by leaf."""
  return jax.tree.map(
    lambda e, p: (e * decay + p.astype(e.dtype) * (1.0 - decay)).astype(e.dtype), ema, new
  )
