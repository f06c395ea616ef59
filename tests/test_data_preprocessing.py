"""Training and evaluation preprocessing on images made in the test
(inception_jax.data.preprocessing)."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from inception_jax.data import preprocessing as P


def encode(array: np.ndarray, fmt: str = "PNG", mode: str | None = None, **kwargs) -> bytes:
  image = Image.fromarray(array)
  if mode:
    image = image.convert(mode)
  buf = io.BytesIO()
  image.save(buf, fmt, **kwargs)
  return buf.getvalue()


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def coordinates(h: int, w: int) -> np.ndarray:
  """Pixel (y, x) holds (y, x % 256, x // 256): crops can be located exactly (lossless PNG)."""
  y, x = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  return np.stack([y, x % 256, x // 256], -1).astype(np.uint8)


def crop_windows(height: int, width: int, config, draws: int = 2000) -> np.ndarray:
  """[draws, 4] (y, x, h, w) of random_crop_window for seeds (i, 7)."""

  @tf.function
  def windows(seeds):
    return tf.map_fn(
      lambda s: tf.stack(P.random_crop_window(height, width, s, config)),
      seeds,
      fn_output_signature=tf.int32,
    )

  seeds = tf.stack([tf.range(draws), tf.fill([draws], 7)], axis=1)
  return windows(seeds).numpy()


@pytest.mark.parametrize(
  "overrides",
  [{}, {"area_range": (0.05, 1.0)}, {"area_range": (0.3, 0.5), "aspect_ratio_range": (0.5, 2.0)}],
)
def test_crop_area_and_aspect_stay_in_configured_ranges(overrides):
  config = P.make_config(overrides)
  h, w = 480, 640
  win = crop_windows(h, w, config)
  y, x, ch, cw = win.T
  assert (y >= 0).all() and (x >= 0).all() and (y + ch <= h).all() and (x + cw <= w).all()
  area = ch * cw / (h * w)
  aspect = cw / ch
  lo, hi = config.area_range
  alo, ahi = config.aspect_ratio_range
  # integer rounding of the sides moves area and aspect by about one pixel's worth
  assert area.min() >= lo - 0.01 and area.max() <= hi + 1e-9
  assert aspect.min() >= alo * 0.97 and aspect.max() <= ahi * 1.03
  # the draws spread over the ranges rather than sitting at one end
  assert np.percentile(area, 10) < lo + 0.3 * (hi - lo) < np.percentile(area, 90)
  assert aspect.min() < alo * 1.1 and aspect.max() > ahi * 0.9
  assert len({tuple(r) for r in win}) > len(win) // 2


def test_crop_fallback_center_keeps_aspect_in_range():
  # No crop of >= 90% of a 4:1 image has an aspect ratio in [3/4, 4/3]: every draw fails.
  h, w = 100, 400
  center = crop_windows(h, w, P.make_config({"area_range": (0.9, 1.0)}), draws=50)
  assert (center == [0, 133, 100, 133]).all()  # largest centred crop of aspect 4/3
  whole = crop_windows(
    h, w, P.make_config({"area_range": (0.9, 1.0), "crop_fallback": "whole"}), draws=50
  )
  assert (whole == [0, 0, 100, 400]).all()


def test_jpeg_crop_decodes_only_the_window_and_matches_full_decode():
  jpeg = encode(noise(120, 160), "JPEG", quality=95)

  def window(h, w):
    return (tf.constant(10), tf.constant(20), tf.constant(50), tf.constant(60))

  crop = P.decode_window(tf.constant(jpeg), window).numpy().astype(int)
  full = tf.io.decode_jpeg(jpeg, channels=3).numpy().astype(int)[10:60, 20:80]
  assert crop.shape == (50, 60, 3)
  assert np.abs(crop - full).mean() < 3  # chroma upsampling differs only along the crop border
  png = encode(coordinates(120, 160))
  crop = P.decode_window(tf.constant(png), window).numpy()
  np.testing.assert_array_equal(crop, coordinates(120, 160)[10:60, 20:80])


def _solid_halves():
  array = np.zeros((64, 48, 3), np.uint8)
  array[:, :24] = [200, 50, 30]
  array[:, 24:] = [20, 120, 220]
  return array


@pytest.mark.parametrize(
  "fmt,mode",
  [
    ("JPEG", "L"),
    ("JPEG", "CMYK"),
    ("JPEG", "RGB"),
    ("PNG", "RGBA"),
    ("PNG", "P"),
    ("PNG", "L"),
    ("PNG", "LA"),
    ("GIF", None),
    ("BMP", None),
  ],
)
def test_any_colour_mode_becomes_three_channels(fmt, mode):
  array = _solid_halves()
  encoded = tf.constant(encode(array, fmt, mode, **({"quality": 95} if fmt == "JPEG" else {})))
  image = P.decode_image(encoded).numpy()
  assert image.shape == (64, 48, 3) and image.dtype == np.uint8
  if mode in ("CMYK", "RGB", "RGBA"):
    assert np.abs(image[:, 4:20].astype(int) - array[:, 4:20]).max() <= 3
  if mode in ("L", "LA"):
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
  config = P.make_config({"distort_on": "host"})
  out = P.train_image(encoded, tf.constant([1, 2]), 32, config).numpy()
  assert out.shape == (32, 32, 3) and out.min() >= -1 and out.max() <= 1
  assert P.eval_image(encoded, 32, config).shape == (32, 32, 3)
  crop = P.train_image(encoded, tf.constant([1, 2]), 32, P.make_config({})).numpy()
  assert crop.shape == (32, 32, 3) and crop.dtype == np.uint8


@pytest.mark.parametrize("shape", [(1, 1), (3, 500), (500, 3), (7, 9), (1000, 1200)])
def test_images_of_any_size_and_aspect(shape):
  encoded = tf.constant(encode(noise(*shape), "JPEG"))
  config = P.make_config({})
  for seed in range(4):
    out = P.train_image(encoded, tf.constant([seed, 0]), 24, config).numpy()
    assert out.shape == (24, 24, 3) and np.isfinite(out).all()
  assert P.eval_image(encoded, 24, config).shape == (24, 24, 3)


def test_eval_crop_is_tf_central_crop_of_87_5_percent():
  array = coordinates(64, 64)
  out = P.eval_image(tf.constant(encode(array)), 56, P.make_config({"input_range": (0.0, 255.0)}))
  # 87.5% of 64 = 56: the window starts at int((64 - 56) / 2) = 4 and needs no resizing
  np.testing.assert_allclose(out.numpy(), array[4:60, 4:60].astype(np.float32), atol=1e-3)
  array = noise(90, 130)
  out = P.eval_image(tf.constant(encode(array)), 40, P.make_config({}))
  expected = tf.image.resize(tf.image.central_crop(array, 0.875), [40, 40]) / 127.5 - 1
  np.testing.assert_allclose(out.numpy(), expected.numpy(), atol=1e-5)


def test_input_scaling_options():
  array = np.zeros((16, 16, 3), np.uint8)
  array[:8] = 255
  encoded = tf.constant(encode(array))
  default = P.eval_image(encoded, 16, P.make_config({})).numpy()
  assert default.min() == -1 and default.max() == 1
  unit = P.eval_image(encoded, 16, P.make_config({"input_range": (0.0, 1.0)})).numpy()
  assert unit.min() == 0 and unit.max() == 1
  mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
  torch = P.eval_image(encoded, 16, P.make_config({"mean": mean, "std": std})).numpy()
  np.testing.assert_allclose(torch[0, 0], (1 - np.array(mean)) / std, rtol=1e-5)
  np.testing.assert_allclose(torch[-1, -1], -np.array(mean) / std, rtol=1e-5)
  train = P.train_image(
    encoded,
    tf.constant([0, 1]),
    16,
    P.make_config({"mean": mean, "std": std, "distort_on": "host"}),
  ).numpy()
  assert train.min() >= (-np.array(mean) / std).min() - 1e-5


def test_training_is_a_deterministic_function_of_the_seed():
  encoded = tf.constant(encode(noise(200, 300), "JPEG"))
  config = P.make_config({})
  a = P.train_image(encoded, tf.constant([3, 4]), 32, config).numpy()
  b = P.train_image(encoded, tf.constant([3, 4]), 32, config).numpy()
  c = P.train_image(encoded, tf.constant([3, 5]), 32, config).numpy()
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def _linear_op(name, factor, image):
  """The fast distortion's ops one at a time, on float images (no clipping in between, as slim)."""
  if name == "brightness":
    return image + factor
  if name == "contrast":
    return tf.image.adjust_contrast(image, factor)
  if name == "saturation":
    gray = tf.image.rgb_to_grayscale(image)
    return gray + factor * (image - gray)
  yiq = tf.image.rgb_to_yiq(image)
  theta = -2 * np.pi * factor  # rotate (I, Q) in HSV hue's sense
  i = yiq[..., 1] * tf.cos(theta) - yiq[..., 2] * tf.sin(theta)
  q = yiq[..., 1] * tf.sin(theta) + yiq[..., 2] * tf.cos(theta)
  return tf.image.yiq_to_rgb(tf.stack([yiq[..., 0], i, q], -1))


@pytest.mark.parametrize("ordering", P.COLOR_ORDERINGS)
def test_fast_colour_map_equals_the_four_ops_in_every_order(ordering):
  config = P.make_config({"input_range": (0.0, 1.0), "color_impl": "fast", "distort_on": "host"})
  image = tf.constant(noise(20, 30), tf.float32)
  draws = tf.constant([0.3, 0.9, 0.2, 0.7, 0.1])
  _, factors = P.color_factors(draws, config)
  expected = image / 255.0
  for name in ordering:
    expected = _linear_op(name, factors[name], expected)
  out = P.finish_image(image, draws, config)
  np.testing.assert_allclose(out.numpy(), tf.clip_by_value(expected, 0, 1).numpy(), atol=2e-4)


def test_fast_hue_and_saturation_approximate_tf_hsv_ops():
  image = tf.constant(noise(32, 32), tf.float32) / 255.0
  for name, factor, op in [
    ("saturation", 1.4, tf.image.adjust_saturation),
    ("hue", 0.05, tf.image.adjust_hue),
  ]:
    ours = tf.clip_by_value(_linear_op(name, factor, image), 0, 1)
    assert float(tf.reduce_mean(tf.abs(ours - op(image, factor)))) < 0.08


def test_tf_colour_impl_is_slims_distort_color():
  image = tf.constant(noise(20, 30), tf.float32) / 255.0
  config = P.make_config({})
  assert config.color_impl == "tf"
  draws = tf.constant([0.6, 0.9, 0.2, 0.7, 0.1])  # ordering 2: contrast, hue, brightness, sat.
  ordering, f = P.color_factors(draws, config)
  assert int(ordering) == 2
  expected = tf.image.adjust_contrast(image, f["contrast"])
  expected = tf.image.adjust_hue(expected, f["hue"])
  expected = tf.image.adjust_brightness(expected, f["brightness"])
  expected = tf.image.adjust_saturation(expected, f["saturation"])
  np.testing.assert_allclose(
    P.distort_color(image, draws, config).numpy(),
    tf.clip_by_value(expected, 0, 1).numpy(),
    atol=1e-6,
  )
  lo, hi = -32 / 255, 32 / 255
  assert lo <= float(f["brightness"]) <= hi and 0.5 <= float(f["saturation"]) <= 1.5
  assert -0.2 <= float(f["hue"]) <= 0.2 and 0.5 <= float(f["contrast"]) <= 1.5


def test_flip_and_distortions_can_be_turned_off():
  array = coordinates(40, 40)
  encoded = tf.constant(encode(array))
  config = P.make_config(
    {
      "area_range": (1.0, 1.0),
      "aspect_ratio_range": (1.0, 1.0),
      "flip": False,
      "color_distortion": False,
      "random_interpolation": False,
      "input_range": (0.0, 255.0),
    }
  )
  for seed in range(3):
    out = P.train_image(encoded, tf.constant([seed, 0]), 40, config).numpy()
    np.testing.assert_allclose(out, array.astype(np.float32), atol=1e-3)
  flipped = [
    P.train_image(
      encoded, tf.constant([seed, 0]), 40, P.make_config({**config.to_dict(), "flip": True})
    ).numpy()
    for seed in range(8)
  ]
  assert any(np.allclose(f, array[:, ::-1]) for f in flipped)
  assert any(np.allclose(f, array) for f in flipped)


def test_config_errors():
  with pytest.raises(ValueError, match="unknown preprocess options"):
    P.make_config({"area": (0.1, 1)})
  with pytest.raises(ValueError, match="area_range"):
    P.make_config({"area_range": (0.0, 1.0)})
  with pytest.raises(ValueError, match="interpolation"):
    P.make_config({"interpolations": ("lanczos9",)})
  assert P.default_config().area_range == (0.08, 1.0)


@pytest.mark.parametrize("method", sorted(P.INTERPOLATIONS))
@pytest.mark.parametrize("shape", [(50, 70), (17, 23), (32, 32)])
def test_uint8_resize_is_the_float_resize_rounded_and_saturated(method, shape):
  # The device path's host resize skips passes (no float round trip for nearest, no clip for
  # bilinear and area); its result must be tf.image.resize's, rounded half to even, saturated.
  image = tf.constant(noise(*shape, seed=shape[0]))
  expected = tf.saturate_cast(tf.round(tf.image.resize(image, [32, 32], method=method)), tf.uint8)
  out = P.resize(image, [32, 32], method, uint8=True)
  assert out.dtype == tf.uint8
  np.testing.assert_array_equal(out.numpy(), expected.numpy())
  if method == "bicubic" and shape != (32, 32):  # noise makes bicubic overshoot: saturated
    raw = tf.image.resize(image, [32, 32], method=method).numpy()
    assert raw.max() > 255.5 and raw.min() < -0.5


def test_random_uint8_resize_draws_the_same_method_as_the_float_one():
  image = tf.constant(noise(40, 60))
  methods = tuple(sorted(P.INTERPOLATIONS))
  for seed in range(8):
    s = tf.constant([seed, 1])
    f = P.random_resize(image, [24, 24], s, methods)
    u = P.random_resize(image, [24, 24], s, methods, uint8=True)
    np.testing.assert_array_equal(u.numpy(), tf.saturate_cast(tf.round(f), tf.uint8).numpy())
