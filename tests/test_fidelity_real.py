"""The paper's GoogLeNet on real photographs, as configs/v1.py feeds it: its LRN layers normalise.

BVLC fed GoogLeNet pixels in 0..255 minus the ImageNet mean, and LRN's constants (alpha 1e-4,
beta 0.75, size 5) were chosen for activations of that scale. The test preprocesses the shared
ImageNet sample exactly as configs/v1.py's evaluation does (central crop, Caffe's scale), builds
`googlenet` with its own initialisation (BVLC's xavier, bias 0.2) and measures how much each LRN
layer divides its input: the mean of the divisor over every position, and the activation-weighted
mean sum(input) / sum(output), the factor by which the layer shrinks what it receives (positions
that ReLU zeroed are not divided at all). docs/FIDELITY.md reports both figures.
"""

import functools
import os
import shutil
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from configs import v1
from inception_jax import layers, models
from inception_jax.data import preprocessing, samples
from inception_jax.training import recipe

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IMAGENET_TAR = SHARED / "imagenet-sample-500.tar"
NUM_IMAGES = 48


@functools.cache
def _images_dir() -> Path:
  if not IMAGENET_TAR.exists():
    if os.environ.get("CI", "").lower() == "true":
      pytest.fail(f"shared test data missing: {IMAGENET_TAR}")
    pytest.skip(f"shared test data missing: {IMAGENET_TAR}")
  root = Path(tempfile.mkdtemp(prefix="inception_jax_lrn_"))
  import atexit

  atexit.register(shutil.rmtree, root, ignore_errors=True)
  samples.extract_imagenet_sample(IMAGENET_TAR, root / "imagenet", limit=NUM_IMAGES)
  return root / "imagenet"


def lrn_divisors(config) -> list[tuple[float, float]]:
  """(mean divisor, sum(input) / sum(output)) of each LRN layer, in network order."""
  files = sorted(p for p in _images_dir().rglob("*") if p.is_file())
  assert len(files) == NUM_IMAGES
  options = preprocessing.make_config(recipe.preprocess_options(config))  # what evaluation uses
  images = np.stack(
    [
      preprocessing.eval_image(tf.constant(f.read_bytes()), config.image_size, options).numpy()
      for f in files
    ]
  )
  model = models.create(config.model, num_classes=1000, **config.model_overrides.to_dict())
  assert model.norm == "lrn"
  variables = model.init(jax.random.key(config.seed), jnp.zeros((1, 224, 224, 3)), train=False)
  _, state = model.apply(
    variables,
    jnp.asarray(images),
    train=False,
    capture_intermediates=True,
    mutable=["intermediates"],
  )
  conv = {
    k: v["__call__"][0]
    for k, v in state["intermediates"].items()
    if k in ("Conv2d_1a_7x7", "Conv2d_2c_3x3")
  }
  lrn_inputs = [
    layers.max_pool(conv["Conv2d_1a_7x7"], 3, 2, padding=0, ceil_mode=True),
    conv["Conv2d_2c_3x3"],
  ]  # pool1 -> norm1, conv2 -> norm2 (Figure 3)
  lrn = layers.LocalResponseNorm()
  out = []
  for x in lrn_inputs:
    divisor = lrn.divisor(x)
    out.append((float(divisor.mean()), float(x.sum() / (x / divisor).sum())))
  return out


def test_lrn_divides_at_the_recipes_input_scale():
  config = v1.get_config()
  assert recipe.input_scale(config) == "caffe"
  (mean1, weighted1), (mean2, weighted2) = lrn_divisors(config)
  print(
    f"LRN divisors at Caffe's scale: norm1 mean {mean1:.3f}, weighted {weighted1:.3f}; "
    f"norm2 mean {mean2:.3f}, weighted {weighted2:.3f}"
  )
  assert weighted1 >= 1.3 and mean1 > 1.2  # the first LRN normalises
  assert weighted2 > 1.02 and mean2 > 1.01  # the second, after conv2, less so (as in BVLC)


def test_lrn_does_nothing_at_minus_one_to_one():
  # The scale the recipe had before: both layers divide by 1.000, LRN is the identity.
  config = v1.get_config()
  config.input_scale = "inception"
  for mean, weighted in lrn_divisors(config):
    assert mean < 1.001 and weighted < 1.001
