"""Label smoothing, the auxiliary term and weight decay change the loss exactly as defined."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inception_jax.training import losses


def test_smoothed_targets_follow_the_paper():
  q = losses.smooth_labels(jnp.array([2]), num_classes=4, label_smoothing=0.1)
  np.testing.assert_allclose(q[0], [0.025, 0.025, 0.925, 0.025], rtol=1e-6)
  np.testing.assert_allclose(q.sum(), 1.0, rtol=1e-6)


def test_cross_entropy_with_smoothing_by_hand():
  logits = jnp.array([[2.0, 0.0, -1.0]])
  logp = np.log(np.exp([2.0, 0.0, -1.0]) / np.exp([2.0, 0.0, -1.0]).sum())
  eps, k = 0.1, 3
  expected = -((1 - eps + eps / k) * logp[0] + eps / k * logp[1] + eps / k * logp[2])
  got = losses.cross_entropy(logits, jnp.array([0]), label_smoothing=eps)
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  np.testing.assert_allclose(losses.cross_entropy(logits, jnp.array([0])), -logp[0], rtol=1e-6)


def test_cross_entropy_weights_ignore_masked_examples():
  logits = jnp.array([[5.0, 0.0], [0.0, 5.0]])
  labels = jnp.array([0, 0])
  got = losses.cross_entropy(logits, labels, weights=jnp.array([1.0, 0.0]))
  np.testing.assert_allclose(got, losses.cross_entropy(logits[:1], labels[:1]), rtol=1e-6)


def test_aux_weights_add_exactly():
  key = jax.random.key(0)
  main, a1, a2 = jax.random.normal(key, (3, 8, 5))
  labels = jnp.arange(8) % 5
  params = {
    "conv": {"kernel": jnp.full((2, 2), 3.0), "bias": jnp.ones(2)},
    "bn": {"scale": jnp.ones(2)},
  }
  kw = dict(label_smoothing=0.1, weight_decay=1e-2)
  base, t0 = losses.training_loss(main, (), labels, params, aux_loss_weight=0.3, **kw)
  total, t = losses.training_loss(main, (a1, a2), labels, params, aux_loss_weight=0.3, **kw)

  def ce(x):
    return losses.cross_entropy(x, labels, 0.1)

  np.testing.assert_allclose(t["aux_loss"], 0.3 * ce(a1) + 0.3 * ce(a2), rtol=1e-6)
  np.testing.assert_allclose(total - base, t["aux_loss"], rtol=1e-5)
  np.testing.assert_allclose(t0["aux_loss"], 0.0)
  # Per-head weights.
  _, t2 = losses.training_loss(main, (a1, a2), labels, params, aux_loss_weight=(0.0, 1.0), **kw)
  np.testing.assert_allclose(t2["aux_loss"], ce(a2), rtol=1e-6)
  with pytest.raises(ValueError, match="2 auxiliary heads"):
    losses.auxiliary_loss((a1, a2), labels, (0.3,))
  # Weight decay: kernels only, 1e-2 * (4 * 9) / 2.
  np.testing.assert_allclose(t["weight_decay"], 1e-2 * 36 / 2, rtol=1e-6)
  np.testing.assert_allclose(t["loss"], t["ce_loss"] + t["aux_loss"] + t["weight_decay"], rtol=1e-6)


def test_losses_are_float32_for_bfloat16_logits():
  logits = jnp.zeros((2, 1000), jnp.bfloat16)
  loss = losses.cross_entropy(logits, jnp.array([1, 2]))
  assert loss.dtype == jnp.float32
  np.testing.assert_allclose(loss, math.log(1000), rtol=1e-6)


def test_topk_correct():
  scores = jnp.array([[0.1, 0.5, 0.4], [0.6, 0.3, 0.1]])
  labels = jnp.array([2, 2])
  np.testing.assert_array_equal(losses.topk_correct(scores, labels, 1), [0, 0])
  np.testing.assert_array_equal(losses.topk_correct(scores, labels, 2), [1, 0])
  np.testing.assert_array_equal(losses.topk_correct(scores, labels, 5), [1, 1])
