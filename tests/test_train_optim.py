"""Learning-rate schedules give the papers' values at the epoch boundaries; optimizers as
defined."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import v1, v3
from inception_jax.training import optim


def lr_at_epoch(fn, steps_per_epoch, epoch):
  return float(fn(int(round(epoch * steps_per_epoch))))


@pytest.mark.parametrize("steps_per_epoch", [1000.0, 800.7])  # 1,281,167 / 1600 = 800.7
def test_rethinking_schedule(steps_per_epoch):
  c = v3.get_config()
  fn = optim.create_learning_rate_fn(c, steps_per_epoch, total_steps=100 * 801)
  for epoch in [0, 1.99, 2.01, 4.01, 10.01, 99.9]:
    expected = 0.045 * 0.94 ** int(epoch // 2)
    np.testing.assert_allclose(lr_at_epoch(fn, steps_per_epoch, epoch), expected, rtol=1e-5)
  # Just before and at the first boundary.
  boundary = 2 * steps_per_epoch
  np.testing.assert_allclose(float(fn(int(np.ceil(boundary)) - 1)), 0.045, rtol=1e-6)
  np.testing.assert_allclose(float(fn(int(np.ceil(boundary)))), 0.045 * 0.94, rtol=1e-6)


def test_googlenet_schedule_four_percent_every_eight_epochs():
  c = v1.get_config()
  spe = 1281167 / c.batch_size
  fn = optim.create_learning_rate_fn(c, spe, total_steps=10**7)
  base = 0.01 * 256 / 32  # linear scaling rule from the BVLC batch of 32
  for k in range(0, 30, 7):
    np.testing.assert_allclose(lr_at_epoch(fn, spe, 8 * k + 0.01), base * 0.96**k, rtol=1e-5)
    np.testing.assert_allclose(lr_at_epoch(fn, spe, 8 * k + 7.99), base * 0.96**k, rtol=1e-5)


def test_linear_scaling_and_warmup():
  c = v3.get_config()
  c.batch_size = 3200
  c.warmup_epochs = 1.0
  assert optim.scaled_learning_rate(c) == pytest.approx(0.09)
  fn = optim.create_learning_rate_fn(c, 100.0, total_steps=10000)
  np.testing.assert_allclose(float(fn(0)), 0.0)
  np.testing.assert_allclose(float(fn(50)), 0.045, rtol=1e-6)
  np.testing.assert_allclose(float(fn(100)), 0.09, rtol=1e-6)
  np.testing.assert_allclose(float(fn(200)), 0.09 * 0.94, rtol=1e-6)  # decay counts from step 0


def test_cosine_and_constant():
  c = v3.get_config()
  c.lr_schedule = "cosine"
  fn = optim.create_learning_rate_fn(c, 10.0, total_steps=100)
  np.testing.assert_allclose(
    [float(fn(0)), float(fn(50)), float(fn(100))], [0.045, 0.0225, 0.0], atol=1e-7
  )
  c.lr_schedule = "constant"
  fn = optim.create_learning_rate_fn(c, 10.0, total_steps=100)
  np.testing.assert_allclose(float(fn(77)), 0.045)
  c.lr_schedule = "linear"
  with pytest.raises(ValueError, match="unknown lr_schedule"):
    optim.create_learning_rate_fn(c, 10.0, total_steps=100)


def tf1_rmsprop_reference(grads, lr, decay=0.9, eps=1.0, momentum=0.9):
  """tf.compat.v1.train.RMSPropOptimizer's update rule, in numpy."""
  ms, mom, w, out = 1.0, 0.0, 0.0, []
  for g in grads:
    ms = decay * ms + (1 - decay) * g * g
    mom = momentum * mom + lr * g / np.sqrt(ms + eps)
    w = w - mom
    out.append(w)
  return np.array(out)


def test_rmsprop_has_tf1_semantics():
  c = v3.get_config()
  c.grad_clip_norm = 0.0
  tx = optim.create_optimizer(c, lambda step: 0.045)
  grads = [0.5, -1.0, 2.0, 0.25]
  w = jnp.zeros(())
  state = tx.init(w)
  got = []
  for g in grads:
    u, state = tx.update(jnp.asarray(g), state, w)
    w = optax.apply_updates(w, u)
    got.append(float(w))
  np.testing.assert_allclose(got, tf1_rmsprop_reference(grads, 0.045), rtol=1e-5)


def test_gradient_clipping_by_global_norm():
  c = v3.get_config()
  c.optimizer, c.momentum, c.grad_clip_norm = "sgd", 0.0, 2.0
  tx = optim.create_optimizer(c, lambda step: 1.0)
  params = {"a": jnp.zeros(3), "b": jnp.zeros(4)}
  grads = {"a": jnp.full(3, 10.0), "b": jnp.full(4, 10.0)}
  updates, _ = tx.update(grads, tx.init(params), params)
  norm = optax.tree.norm(updates)
  np.testing.assert_allclose(norm, 2.0, rtol=1e-6)


def test_unknown_optimizer():
  c = v3.get_config()
  c.optimizer = "lamb"
  with pytest.raises(ValueError, match="unknown optimizer 'lamb'"):
    optim.create_optimizer(c, lambda step: 0.1)


def test_ema_decay_and_update():
  np.testing.assert_allclose(optim.ema_decay_at(0, 0.9999, warmup=True), 0.1)
  np.testing.assert_allclose(optim.ema_decay_at(10**7, 0.9999, warmup=True), 0.9999, rtol=1e-7)
  np.testing.assert_allclose(optim.ema_decay_at(5, 0.9999, warmup=False), 0.9999, rtol=1e-7)
  ema = optim.update_ema({"w": jnp.zeros(2)}, {"w": jnp.ones(2)}, jnp.float32(0.75))
  np.testing.assert_allclose(ema["w"], [0.25, 0.25])


def test_bias_lr_multiplier_is_bvlcs_lr_mult_2_on_layer_biases_only():
  c = v1.get_config()
  assert c.bias_lr_multiplier == 2.0  # BVLC train_val: lr_mult 2, decay_mult 0 on every bias
  c.momentum, c.grad_clip_norm = 0.0, 0.0
  tx = optim.create_optimizer(c, lambda step: 0.1)
  params = {
    "Conv2d_1a_7x7": {
      "conv": {"kernel": jnp.ones(3), "bias": jnp.ones(2)},
      "bn": {"bias": jnp.ones(2), "scale": jnp.ones(2)},
    },
    "Logits": {"kernel": jnp.ones(3), "bias": jnp.ones(2)},
  }
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["Conv2d_1a_7x7"]["conv"]["kernel"], -0.1)
  np.testing.assert_allclose(updates["Conv2d_1a_7x7"]["conv"]["bias"], -0.2)
  np.testing.assert_allclose(updates["Logits"]["bias"], -0.2)
  # BatchNorm's offset (beta) is named `bias` too, but is not a layer bias.
  np.testing.assert_allclose(updates["Conv2d_1a_7x7"]["bn"]["bias"], -0.1)
  np.testing.assert_allclose(updates["Conv2d_1a_7x7"]["bn"]["scale"], -0.1)
  assert v3.get_config().bias_lr_multiplier == 1.0  # slim: one learning rate
