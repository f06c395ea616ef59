"""Losses of the two papers, each term a small named function.

- Cross-entropy against label-smoothed targets (Rethinking, Section 7):
  q'(k) = (1 - eps) * delta(k, y) + eps / K.
- The auxiliary-classifier term (Going Deeper, Section 5: weight 0.3 per head; the released
  Inception-v3 code uses 0.4), label-smoothed like the main head as the released code does.
- L2 weight decay on convolution and dense kernels, weight_decay * sum(w**2) / 2 (tf.nn.l2_loss
  and Caffe's weight_decay both use the factor 1/2; biases and BatchNorm parameters are not
  decayed).

All losses are computed in float32 whatever the compute dtype of the logits.
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array


def smooth_labels(labels: Array, num_classes: int, label_smoothing: float) -> Array:
  """One-hot targets with label smoothing. labels: int [batch] -> float32 [batch, num_classes]."""
  one_hot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  return one_hot * (1.0 - label_smoothing) + label_smoothing / num_classes


def cross_entropy(
  logits: Array, labels: Array, label_smoothing: float = 0.0, weights: Array | None = None
) -> Array:
  """Mean cross-entropy of logits [batch, K] against smoothed integer labels [batch].

  weights: optional [batch] example weights (e.g. an eval mask); the mean is over their sum.
  """
  logits = logits.astype(jnp.float32)
  targets = smooth_labels(labels, logits.shape[-1], label_smoothing)
  per_example = -jnp.sum(targets * jax.nn.log_softmax(logits, axis=-1), axis=-1)
  if weights is None:
    return jnp.mean(per_example)
  weights = weights.astype(jnp.float32)
  return jnp.sum(per_example * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def aux_head_weights(aux_loss_weight: float | Sequence[float], num_heads: int) -> tuple[float, ...]:
  """The loss weight of each auxiliary head: one float for every head, or one per head."""
  if isinstance(aux_loss_weight, (int, float)):
    return (float(aux_loss_weight),) * num_heads
  weights = tuple(float(w) for w in aux_loss_weight)
  if len(weights) != num_heads:
    raise ValueError(
      f"aux_loss_weight has {len(weights)} entries but the model has {num_heads} auxiliary heads"
    )
  return weights


def auxiliary_loss(
  aux_logits: Sequence[Array],
  labels: Array,
  aux_loss_weight: float | Sequence[float],
  label_smoothing: float = 0.0,
  example_weights: Array | None = None,
) -> Array:
  """sum_i w_i * cross_entropy(aux_logits[i], labels); 0 when there are no heads."""
  weights = aux_head_weights(aux_loss_weight, len(aux_logits))
  total = jnp.zeros((), jnp.float32)
  for w, logits in zip(weights, aux_logits, strict=False):
    total = total + w * cross_entropy(logits, labels, label_smoothing, example_weights)
  return total


def is_decayed(path: tuple[Any, ...]) -> bool:
  """Whether a parameter is weight-decayed: convolution and dense kernels only."""
  last = path[-1]
  name = getattr(last, "key", getattr(last, "name", str(last)))
  return name == "kernel"


def l2_weight_decay(params: Any, weight_decay: float, frozen: Any = None) -> Array:
  """weight_decay * sum(kernel**2) / 2 over every kernel in params, except where `frozen` (a tree
  of Python bools like params, from config.freeze) is True: frozen parameters are not decayed."""
  if not weight_decay:
    return jnp.zeros((), jnp.float32)
  skip = set()
  if frozen is not None:
    skip = {jax.tree_util.keystr(p) for p, f in jax.tree_util.tree_leaves_with_path(frozen) if f}
  squares = [
    jnp.sum(jnp.square(leaf.astype(jnp.float32)))
    for path, leaf in jax.tree_util.tree_leaves_with_path(params)
    if is_decayed(path) and jax.tree_util.keystr(path) not in skip
  ]
  return weight_decay * 0.5 * sum(squares, jnp.zeros((), jnp.float32))


def training_loss(
  logits: Array,
  aux_logits: Sequence[Array],
  labels: Array,
  params: Any,
  *,
  label_smoothing: float,
  aux_loss_weight: float | Sequence[float],
  weight_decay: float,
  example_weights: Array | None = None,
  frozen: Any = None,
) -> tuple[Array, dict[str, Array]]:
  """Total training loss and its terms: ce_loss + aux_loss + weight_decay (of the kernels that
  are not frozen).

  example_weights: optional [batch]; 0 leaves an example (e.g. a skipped image's empty slot) out
  of the cross-entropy terms, which are then means over the weights' sum.
  """
  terms = {
    "ce_loss": cross_entropy(logits, labels, label_smoothing, example_weights),
    "aux_loss": auxiliary_loss(
      aux_logits, labels, aux_loss_weight, label_smoothing, example_weights
    ),
    "weight_decay": l2_weight_decay(params, weight_decay, frozen),
  }
  loss = terms["ce_loss"] + terms["aux_loss"] + terms["weight_decay"]
  return loss, {"loss": loss, **terms}


def topk_correct(logits_or_probs: Array, labels: Array, k: int) -> Array:
  """float32 [batch]: 1 where the label is among the k highest scores."""
  k = min(k, logits_or_probs.shape[-1])
  _, top = jax.lax.top_k(logits_or_probs, k)
  return jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)
