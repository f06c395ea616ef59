"""features.features: PreLogits of a converted checkpoint in one call, with its source's input
convention (torchvision: ImageNet mean/std; Keras and tf-slim: [-1, 1])."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inception_jax import conversion, models
from inception_jax.evaluation import features
from inception_jax.training import transfer


def converted(directory, model_name, source, size, num_classes=10, **overrides):
  """Random weights (BN variances perturbed) saved as the converter saves them."""
  model = models.create(model_name, num_classes=num_classes, **overrides)
  variables = model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)))
  keys = iter(jax.random.split(jax.random.key(1), 1000))
  # Variances in [1, 1.2]: not the initial ones, and the activations keep their scale.
  stats = jax.tree_util.tree_map_with_path(
    lambda p, s: s + 0.2 * jax.random.uniform(next(keys), s.shape) if p[-1].key == "var" else s,
    variables["batch_stats"],
  )
  variables = {"params": variables["params"], "batch_stats": stats}
  conversion.save(directory, model_name, model, variables, source=f"{source}:weights.file")
  return model, variables


def images(size, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (3, size, size, 3), dtype=np.uint8)


def prelogits_and_logits(model, variables, x):
  out = model.clone(return_features=True).apply(variables, x, train=False)
  return np.asarray(out["PreLogits"]), np.asarray(out["Logits"])


def test_torchvision_weights_get_imagenet_mean_std(tmp_path):
  model, variables = converted(
    tmp_path / "tv",
    "googlenet_bn",
    "torchvision",
    32,
    width_multiplier=0.25,
    transform_input=True,
    bn_scale=True,
  )
  x = images(32)
  got = features.features(str(tmp_path / "tv"), x)
  unit = x.astype(np.float32) / 255.0
  mean_std = (unit - np.array(transfer.TORCHVISION_MEAN)) / np.array(transfer.TORCHVISION_STD)
  expected, logits = prelogits_and_logits(model, variables, jnp.asarray(mean_std, jnp.float32))
  assert got.shape == expected.shape == (3, 256)  # Mixed_5c's 1024 channels x 0.25
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  # The PreLogits end point is what the classifier reads: features @ W + b = the logits.
  dense = variables["params"]["Logits"]
  np.testing.assert_allclose(
    got @ np.asarray(dense["kernel"]) + np.asarray(dense["bias"]), logits, rtol=1e-4, atol=1e-5
  )
  wrong, _ = prelogits_and_logits(model, variables, jnp.asarray(unit * 2 - 1, jnp.float32))
  assert np.abs(expected).max() > 0
  assert np.abs(wrong - expected).max() > 1e-2 * np.abs(expected).max()  # the convention matters
  # float pixels in [0, 1] are the same images
  np.testing.assert_allclose(
    features.features(str(tmp_path / "tv"), unit), got, rtol=1e-5, atol=1e-6
  )


def test_keras_and_slim_weights_get_minus_one_to_one(tmp_path):
  model, variables = converted(
    tmp_path / "keras",
    "inception_v3",
    "keras",
    75,
    width_multiplier=0.125,
    bn_scale=False,
    aux_logits=False,
  )
  x = images(75, seed=1)
  extract = features.feature_extractor(str(tmp_path / "keras"))
  assert extract.convention == "[-1, 1]"
  expected, _ = prelogits_and_logits(
    model, variables, jnp.asarray(x.astype(np.float32) / 255.0 * 2 - 1)
  )
  np.testing.assert_allclose(extract(x), expected, rtol=1e-5, atol=1e-6)
  assert transfer.input_convention("slim:inception_v3.ckpt") == "[-1, 1]"
  assert transfer.input_convention("torchvision:googlenet.pth") == "torchvision"


def test_bad_images_are_refused(tmp_path):
  converted(
    tmp_path / "tv", "googlenet_bn", "torchvision", 32, width_multiplier=0.25, transform_input=True
  )
  normalised = images(32).astype(np.float32) / 127.5 - 1.0
  with pytest.raises(ValueError, match=r"float images must be in \[0, 1\]"):
    features.features(str(tmp_path / "tv"), normalised)
  with pytest.raises(ValueError, match=r"must be \[batch, height, width, 3\]"):
    features.features(str(tmp_path / "tv"), images(32)[..., :1])
  with pytest.raises(conversion.ConversionError, match="does not exist"):
    features.features(str(tmp_path / "absent"), images(32))


def test_evaluate_reads_converted_weights_with_their_conventions(tmp_path):
  import sys

  from inception_jax.evaluation import evaluate

  sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
  from configs import finetune

  config = finetune.get_config("local")
  model, variables = converted(
    tmp_path / "tv",
    "googlenet_bn",
    "torchvision",
    32,
    width_multiplier=0.25,
    transform_input=True,
    bn_scale=True,
  )
  assert evaluate.input_preprocess([str(tmp_path / "tv")]) == {
    "mean": transfer.TORCHVISION_MEAN,
    "std": transfer.TORCHVISION_STD,
  }
  results = evaluate.evaluate_workdirs(config, [str(tmp_path / "tv")], batch_size=32)
  assert results["model_0"]["count"] == 297
  # The same numbers by hand: the converted model on mean/std-normalised digits.
  batches = evaluate.eval_batches(config, 297, 1, evaluate.input_preprocess([str(tmp_path / "tv")]))
  batch = next(iter(batches))
  logits = np.asarray(model.apply(variables, jnp.asarray(batch["image"][:, 0]), train=False))
  mask, labels = batch["mask"], batch["label"]
  log_p = (
    logits
    - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
    - logits.max(-1, keepdims=True)
  )
  loss = -np.mean(log_p[mask][np.arange(mask.sum()), labels[mask]])
  np.testing.assert_allclose(results["model_0"]["loss"], loss, rtol=1e-4)  # (a random model's
  # top-1 hangs on near-ties, the loss does not)
  converted(tmp_path / "k1000", "googlenet_bn", "slim", 32, num_classes=1001, width_multiplier=0.25)
  with pytest.raises(ValueError, match="has 1001 classes, digits 10: labels would be misaligned"):
    evaluate.evaluate_workdirs(config, [str(tmp_path / "k1000")], batch_size=32)
