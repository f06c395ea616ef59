"""The device half of the input pipeline (`data.device_augment`, preprocess distort_on="device").

- Each op equals tf.image's (adjust_brightness, adjust_saturation, adjust_hue, adjust_contrast:
  TensorFlow's CPU kernels, HSV round trips included) on the same parameters, to float32
  rounding (at most 1e-6 on [0, 1] pixels; measured 2026-11-30: at most 4.8e-7, a few ulps), on
  real ImageNet photographs, also with pixels pushed outside [0, 1] as a preceding brightness
  shift leaves them.
- The draws follow the configured ranges; the orderings are slim's and pick the same chains as
  the host path's `preprocessing.distort_color`.
- The whole device path (host crop to uint8, then `finish`) matches the host path given the same
  draws; see test_device_path_matches_host_path for the tolerance and why.
- The draws are a function of (seed, step, row): the same on 1 and on 4 devices.
- The train step distorts uint8 batches exactly as `device_augment.apply` does.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from helpers.training import ROOT, register_tiny_model, subprocess_env, tiny_config
from test_data_real import IMAGENET_TAR, _require, _session_dir

from inception_jax.data import device_augment, preprocessing, samples
from inception_jax.training import optim, parallel, recipe, state
from inception_jax.training import step as step_lib

# slim's inception_preprocessing.distort_color (fast_mode=False), transcribed from its source:
# color_ordering 0..3 and the ops in the order each applies them.
SLIM_ORDERINGS = (
  ("brightness", "saturation", "hue", "contrast"),
  ("saturation", "brightness", "contrast", "hue"),
  ("contrast", "hue", "brightness", "saturation"),
  ("hue", "saturation", "contrast", "brightness"),
)
TF_OPS = {
  "brightness": tf.image.adjust_brightness,
  "saturation": tf.image.adjust_saturation,
  "hue": tf.image.adjust_hue,
  "contrast": tf.image.adjust_contrast,
}
ROUNDING = 1e-6  # float32 rounding on [0, 1] pixels: a few ulps of 1.0 (1.19e-7 each)


@pytest.fixture(scope="module")
def photo_files() -> list[Path]:
  _require(IMAGENET_TAR)
  root = _session_dir() / "imagenet_device_augment"
  if not root.exists():
    samples.extract_imagenet_sample(IMAGENET_TAR, root, limit=8)
  files = sorted(root.glob("train/*/*"))
  assert len(files) == 8
  return files


@pytest.fixture(scope="module")
def photos(photo_files) -> np.ndarray:
  """8 photographs at 1/4 DCT scale resized to 64 x 64, float32 in [0, 1], then the same shifted
  by +-0.12 (as after a brightness draw): [24, 64, 64, 3]."""
  images = []
  for f in photo_files:
    x = tf.io.decode_jpeg(tf.io.read_file(str(f)), channels=3, ratio=4)
    images.append(tf.image.resize(x, [64, 64]).numpy() / 255.0)
  images = np.clip(np.stack(images), 0, 1).astype(np.float32)
  return np.concatenate([images, images + 0.12, images - 0.12]).astype(np.float32)


@pytest.mark.parametrize(
  "op,values",
  [
    ("brightness", (-32 / 255, 0.1)),
    ("saturation", (0.0, 0.5, 1.5, 3.0)),  # 3.0 clamps saturation at 1
    ("hue", (-0.2, 0.2, -0.5, 0.5, 0.9, -1.0)),  # the whole wheel, both wrap-arounds
    ("contrast", (0.5, 1.5)),
  ],
)
def test_ops_equal_tf_image(photos, op, values):
  device_op = jax.jit(device_augment.ADJUST[op])
  for v in values:
    ref = np.stack([TF_OPS[op](tf.constant(im), v).numpy() for im in photos])
    got = np.asarray(device_op(jnp.asarray(photos), jnp.full((len(photos),), v, jnp.float32)))
    np.testing.assert_allclose(got, ref, rtol=0, atol=ROUNDING, err_msg=f"{op}({v})")
    if not (op == "hue" and abs(v) == 1.0):  # a full turn is the identity; others change
      assert np.abs(ref - photos).max() > 0.01, (op, v)


def test_ops_take_one_factor_per_image(photos):
  """A batch with a different factor per image = each image on its own."""
  factors = np.linspace(-0.3, 0.3, len(photos)).astype(np.float32)
  got = np.asarray(device_augment.adjust_hue(jnp.asarray(photos), jnp.asarray(factors)))
  ref = np.stack(
    [tf.image.adjust_hue(im, f).numpy() for im, f in zip(photos, factors, strict=True)]
  )
  np.testing.assert_allclose(got, ref, rtol=0, atol=ROUNDING)


def test_draws_follow_the_configured_ranges():
  options = device_augment.resolve({})
  draws = device_augment.draw(device_augment.step_key(0, 7), 4096)
  assert draws.shape == (4096, device_augment.NUM_DRAWS)
  ordering, f = device_augment.factors(draws, options)
  ranges = {
    "brightness": (-32 / 255, 32 / 255),
    "saturation": (0.5, 1.5),
    "hue": (-0.2, 0.2),
    "contrast": (0.5, 1.5),
  }
  assert set(f) == set(ranges)
  for name, (lo, hi) in ranges.items():
    x = np.asarray(f[name])
    assert lo <= x.min() < lo + 0.01 * (hi - lo) and hi - 0.01 * (hi - lo) < x.max() <= hi, name
    assert abs(x.mean() - (lo + hi) / 2) < 0.03 * (hi - lo), name  # uniform: mean in the middle
  counts = np.bincount(np.asarray(ordering), minlength=4)
  assert len(counts) == 4 and np.all(np.abs(counts / 4096 - 0.25) < 0.03), counts
  # Configured ranges are followed; a disabled op draws nothing.
  narrow = device_augment.resolve(
    {"brightness": 0.05, "saturation": (0.9, 1.1), "hue": 0, "color_orderings": 2}
  )
  ordering, f = device_augment.factors(draws, narrow)
  assert "hue" not in f and set(np.unique(np.asarray(ordering))) == {0, 1}
  assert np.abs(np.asarray(f["brightness"])).max() <= 0.05
  assert 0.9 <= np.asarray(f["saturation"]).min() and np.asarray(f["saturation"]).max() <= 1.1


def test_draws_are_a_function_of_seed_step_and_row():
  a = np.asarray(device_augment.draw(device_augment.step_key(3, 5), 64))
  np.testing.assert_array_equal(
    a, np.asarray(device_augment.draw(device_augment.step_key(3, 5), 64))
  )
  # Row r is row r whatever the batch size; other steps and seeds draw differently.
  np.testing.assert_array_equal(a[:16], device_augment.draw(device_augment.step_key(3, 5), 16))
  assert len(np.unique(a[:, 0])) == 64
  assert not np.allclose(a, device_augment.draw(device_augment.step_key(3, 6), 64))
  assert not np.allclose(a, device_augment.draw(device_augment.step_key(4, 5), 64))


def test_orderings_are_slims_and_match_the_host_path(photos):
  assert preprocessing.COLOR_ORDERINGS == SLIM_ORDERINGS
  options = device_augment.resolve({})
  config = preprocessing.make_config({})
  images = photos[:8]
  factors = np.random.default_rng(0).uniform(size=(len(images), 5)).astype(np.float32)
  results = []
  for k in range(4):
    draws = factors.copy()
    draws[:, 0] = (k + 0.5) / 4  # ordering k
    got = np.asarray(device_augment.distort_color(jnp.asarray(images), jnp.asarray(draws), options))
    ref = np.stack(
      [
        preprocessing.distort_color(tf.constant(im), tf.constant(d), config).numpy()
        for im, d in zip(images, draws, strict=True)
      ]
    )
    # Four ops in a chain: rounding can compound a little (contrast and saturation gain <= 1.5).
    np.testing.assert_allclose(got, ref, rtol=0, atol=4 * ROUNDING, err_msg=f"ordering {k}")
    for per_image in (True, False):  # one image at a time, or the whole batch with selects
      other = device_augment.distort_color(
        jnp.asarray(images), jnp.asarray(draws), options, per_image=per_image
      )
      np.testing.assert_allclose(np.asarray(other), ref, rtol=0, atol=4 * ROUNDING)
    # slim's chain for ordering k with the same factors, op by op with tf.image:
    _, f = preprocessing.color_factors(tf.constant(draws), config)
    chain = []
    for i, im in enumerate(images):
      x = tf.constant(im)
      for name in SLIM_ORDERINGS[k]:
        x = TF_OPS[name](x, f[name][i])
      chain.append(tf.clip_by_value(x, 0.0, 1.0).numpy())
    np.testing.assert_allclose(got, np.stack(chain), rtol=0, atol=4 * ROUNDING)
    results.append(got)
  # The orderings give different images from the same factors (so the test can tell them apart).
  for j in range(1, 4):
    assert np.abs(results[j] - results[0]).max() > 0.05, j


def _host_and_device(files, image_size, overrides, seed=0):
  """Per file: (host path float32 image, device path uint8 crop, the host's colour draws)."""
  host = preprocessing.make_config({**overrides, "distort_on": "host"})
  device = preprocessing.make_config({**overrides, "distort_on": "device"})
  out = []
  for i, f in enumerate(files):
    encoded = tf.constant(f.read_bytes())
    s = tf.constant([seed, i], tf.int64)
    ref = preprocessing.train_image(encoded, s, image_size, host).numpy()
    crop = preprocessing.train_image(encoded, s, image_size, device).numpy()
    draws = preprocessing.color_draws(tf.random.experimental.stateless_split(s, num=4)[3])
    out.append((ref, crop, draws.numpy()))
  return out


@pytest.mark.parametrize("scale", ["inception", "caffe"])
def test_device_path_matches_host_path(photo_files, scale):
  """Host path (decode, crop, flip, resize, distort, scale in tf.data) vs device path (decode,
  crop, flip, resize on the host; rounded to uint8; distort and scale with `finish`), the same
  crops, interpolations, flips and colour draws, the same decode (reduced_dct off).

  The only difference is the uint8 rounding of the resized crop (<= 0.5 / 255 per pixel), which
  the distortions can amplify (contrast and saturation by up to 1.5 each, hue's piecewise-linear
  map by a little more) and the input scaling multiplies by 2 ([-1, 1]) or 255 (caffe). Bound:
  4 / 255 of the [0, 1] range at any pixel (measured 2026-11-30: 1.9 / 255), with a mean error
  under 0.5 / 255 (measured: 0.15 / 255; rounding errors are unbiased).
  """
  overrides = dict(preprocessing.INPUT_SCALES[scale], reduced_dct=False)
  unit = 2.0 if scale == "inception" else 255.0  # network units per [0, 1]
  options = device_augment.resolve(overrides)
  worst, mean = 0.0, []
  for ref, crop, draws in _host_and_device(photo_files, 96, overrides):
    assert crop.dtype == np.uint8 and crop.shape == ref.shape == (96, 96, 3)
    got = np.asarray(
      device_augment.finish(jnp.asarray(crop[None]), jnp.asarray(draws[None]), options)
    )[0]
    err = np.abs(got - ref) / unit
    worst, mean = max(worst, float(err.max())), mean + [float(err.mean())]
  print("device vs host path:", scale, worst * 255, np.mean(mean) * 255)
  assert worst <= 4 / 255 and np.mean(mean) <= 0.5 / 255, (worst * 255, np.mean(mean) * 255)


def test_reduced_dct_decode(photo_files):
  """A window at least r times the target on both sides decodes at 1/r (r = 2, 4, 8)."""
  encoded = tf.constant(photo_files[0].read_bytes())
  h, w = (int(v) for v in tf.io.extract_jpeg_shape(encoded)[:2])
  side = min(h, w)
  whole = lambda hh, ww: (0, 0, hh, ww)  # noqa: E731
  assert preprocessing.decode_window(encoded, whole).shape == (h, w, 3)
  for r in (1, 2, 4, 8):
    min_size = side // r  # side >= r * min_size: ratio r (or more when side >= 2r * min_size)
    if side < 2 * r * min_size:
      out = preprocessing.decode_window(encoded, whole, min_size)
      assert out.shape == (h // r, w // r, 3), (r, out.shape)
  full = tf.image.resize(preprocessing.decode_window(encoded, whole), [64, 64], antialias=True)
  half = tf.image.resize(
    preprocessing.decode_window(encoded, whole, side // 2), [64, 64], antialias=True
  )
  assert np.abs(full.numpy() - half.numpy()).mean() < 2.0  # the same picture (0..255 units)


def test_reduced_dct_device_path_is_close_to_the_host_path(photo_files):
  """With the reduced-DCT decode (the default) the crops differ by the decoder's downscaling
  (an 8x8 IDCT to 4x4, 2x2 or 1x1 per block instead of a full decode and a bigger resize):
  small on average, not pixel for pixel."""
  overrides = dict(preprocessing.INPUT_SCALES["inception"])
  options = device_augment.resolve(overrides)
  errors = []
  for ref, crop, draws in _host_and_device(photo_files, 64, overrides, seed=1):
    got = np.asarray(
      device_augment.finish(jnp.asarray(crop[None]), jnp.asarray(draws[None]), options)
    )[0]
    errors.append(float(np.abs(got - ref).mean()) / 2)
  print("reduced DCT: mean abs error per image (of [0, 1]):", np.round(errors, 4))
  assert np.mean(errors) < 0.03, errors


def test_bad_options():
  with pytest.raises(ValueError, match="distort_on"):
    preprocessing.make_config({"distort_on": "gpu"})
  with pytest.raises(ValueError, match="color_impl"):
    preprocessing.make_config({"color_impl": "fast"})
  preprocessing.make_config({"color_impl": "fast", "distort_on": "host"})
  with pytest.raises(ValueError, match="color_impl"):
    device_augment.resolve({"color_impl": "fast"})
  with pytest.raises(ValueError, match="unknown preprocess options"):
    device_augment.resolve({"brightnes": 0.1})
  with pytest.raises(ValueError, match="uint8"):
    device_augment.apply(jnp.zeros((2, 8, 8, 3)), device_augment.step_key(0, 0), {})


SHARDED = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from inception_jax.data import device_augment
    from inception_jax.training import parallel
    assert jax.device_count() == 4
    images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3)).astype(np.uint8)

    def run(devices):
      mesh = parallel.make_mesh(devices)
      sharded = parallel.batch_sharded(mesh)
      fn = jax.jit(lambda x, step: device_augment.apply(x, device_augment.step_key(0, step), {}),
                   in_shardings=(sharded, None), out_shardings=sharded)
      draws = jax.jit(lambda step: device_augment.draw(device_augment.step_key(0, step), 8),
                      out_shardings=sharded)
      return np.asarray(fn(jax.device_put(images, sharded), 3)), np.asarray(draws(3))

    (four, d4), (one, d1) = run(jax.devices()), run(jax.devices()[:1])
    np.testing.assert_array_equal(d4, d1)  # the draws: bit for bit
    # The images: up to float32 rounding (XLA fuses the sharded program differently).
    np.testing.assert_allclose(four, one, rtol=0, atol=1e-5)
    assert four.dtype == np.float32 and -1 <= four.min() and four.max() <= 1
    print("same on 1 and 4 devices")
""")


def test_draws_do_not_depend_on_the_number_of_devices():
  proc = subprocess.run(
    [sys.executable, "-c", SHARDED],
    env=subprocess_env(4),
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  assert "same on 1 and 4 devices" in proc.stdout


def test_train_step_distorts_uint8_batches():
  """The step on a uint8 batch = the step on the batch `apply` makes of it, with step 0's key."""
  register_tiny_model()
  config = tiny_config(batch_size=8)
  config.preprocess = {"color_distortion": True, "flip": True}
  mesh = parallel.make_mesh(jax.devices()[:1])
  model = state.create_model(config, 10)
  lr = optim.create_learning_rate_fn(config, 10.0, 100)
  tx = optim.create_optimizer(config, lr)
  init = state.state_initializer(config, model, tx, mesh)
  step = step_lib.compile_train_step(model, tx, lr, config, mesh)
  rng = np.random.default_rng(0)
  crops = rng.integers(0, 256, (8, 16, 16, 3)).astype(np.uint8)
  labels = rng.integers(0, 10, 8).astype(np.int32)
  inputs = device_augment.apply(
    jnp.asarray(crops), device_augment.step_key(config.seed, 0), recipe.preprocess_options(config)
  )
  assert inputs.dtype == jnp.float32 and float(jnp.abs(inputs - (crops / 127.5 - 1)).max()) > 0.05
  _, m_uint8 = step(init(jax.random.key(0)), {"image": crops, "label": labels})
  _, m_float = step(init(jax.random.key(0)), {"image": np.asarray(inputs), "label": labels})
  for k in ("train/loss", "train/grad_norm"):
    np.testing.assert_allclose(float(m_uint8[k]), float(m_float[k]), rtol=1e-5)
