"""The papers' preprocessing as tf ops: training crop, distortions, evaluation crop, input scaling.

Training (GoogLeNet paper, Section 6; tf-slim `inception_preprocessing.preprocess_for_train`):
  1. a random crop covering `area_range` of the image area with aspect ratio (width / height) in
     `aspect_ratio_range` (`tf.image.stateless_sample_distorted_bounding_box`); for JPEG only the
     crop window is decoded (`tf.io.decode_and_crop_jpeg`). When no crop is found in
     `max_attempts`, `crop_fallback="center"` takes the largest central crop whose aspect ratio is
     in range (torchvision's fallback), `"whole"` the whole image (slim's);
  2. random horizontal flip (of the uint8 crop: the same as flipping after the resize);
  3. resize to `image_size` x `image_size`, with an interpolation drawn from `interpolations` when
     `random_interpolation` (slim: bilinear, nearest, bicubic, area), else `interpolation`;
  4. photometric distortions (slim's `distort_color`): brightness (+-32/255), saturation
     [0.5, 1.5], hue (+-0.2), contrast [0.5, 1.5] in one of `color_orderings` random orders
     (slim's four), clipped to [0, 1]. `color_impl="tf"` (default) runs tf.image's ops (HSV
     saturation and hue) as slim does; `"fast"` uses the same draws but makes saturation a blend
     with luma and hue a rotation in YIQ (brightness and contrast are tf.image's), so that all
     four are affine, commute, and run with the input scaling as one 3x3 colour matrix per image.
     In isolation that is cheaper (one 3x3 product against two HSV round trips); in the whole
     pipeline on the 2-core development machine the two measured the same (docs/DATA.md);
  5. input scaling (below).
With `distort_on="device"` (the default) the host stops after step 3 and ships uint8; steps 4
and 5 run in the jitted train step (`device_augment`, the same tf.image arithmetic in jnp), and
a JPEG crop at least twice `image_size` decodes at a reduced DCT scale (`reduced_dct`).
`distort_on="host"` is the whole pipeline here, as slim, with float32 batches.
Every random choice is a stateless op seeded by the example's seed, so preprocessing is a pure
function of (encoded image, seed).

Evaluation (slim `preprocess_for_eval`): central crop of `eval_crop_fraction` (0.875) of each side
(exactly `tf.image.central_crop`'s window), bilinear resize to `image_size`.

Input scaling: pixels in [0, 1] are mapped linearly to `input_range` ([-1, 1]: slim, Keras); when
`mean` and `std` are set (per channel, in [0, 1] units, e.g. torchvision's ImageNet statistics),
`(x - mean) / std` instead. `INPUT_SCALES` names the two conventions the recipes use: "inception"
([-1, 1], every released Inception) and "caffe" (BVLC GoogLeNet: pixels 0..255 minus the ImageNet
mean per channel, no division; `CAFFE_MEAN_RGB`). A recipe picks one with its `input_scale` field
(`training.recipe.preprocess_options`), so training and evaluation cannot disagree.

Grayscale, CMYK, paletted and RGBA images all become 3-channel RGB.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_collections
import numpy as np
import tensorflow as tf

from inception_jax.data.conventions import (  # noqa: F401 (INPUT_SCALES, CAFFE_MEAN_RGB re-exported)
  CAFFE_MEAN_RGB,
  COLOR_ORDERINGS,
  DISTORT_ON,
  INPUT_SCALES,
  PREPROCESS_DEFAULTS,
  TEN_CROPS,
)

INTERPOLATIONS = {
  "bilinear": tf.image.ResizeMethod.BILINEAR,
  "nearest": tf.image.ResizeMethod.NEAREST_NEIGHBOR,
  "bicubic": tf.image.ResizeMethod.BICUBIC,
  "area": tf.image.ResizeMethod.AREA,
}


def default_config() -> ml_collections.ConfigDict:
  """Returns a fresh ConfigDict of PREPROCESS_DEFAULTS."""
  config = ml_collections.ConfigDict(dict(PREPROCESS_DEFAULTS))
  return config


def make_config(
  overrides: Mapping[str, Any] | ml_collections.ConfigDict | None = None,
) -> ml_collections.ConfigDict:
  """Returns the defaults updated with `overrides`; unknown keys are an error."""
  config = dict(PREPROCESS_DEFAULTS)
  overrides = dict(overrides.items()) if overrides is not None else {}
  unknown = sorted(set(overrides) - set(config))
  if unknown:
    raise ValueError(f"unknown preprocess options {unknown}; known: {sorted(config)}")
  config.update(overrides)
  _validate(config)
  return ml_collections.ConfigDict(config)


def _validate(c: dict[str, Any]) -> None:
  lo, hi = c["area_range"]
  if not 0 < lo <= hi <= 1:
    raise ValueError(f"area_range {c['area_range']} must satisfy 0 < min <= max <= 1")
  lo, hi = c["aspect_ratio_range"]
  if not 0 < lo <= hi:
    raise ValueError(f"aspect_ratio_range {c['aspect_ratio_range']} must satisfy 0 < min <= max")
  if c["crop_fallback"] not in ("center", "whole"):
    raise ValueError(f"crop_fallback must be 'center' or 'whole', not {c['crop_fallback']!r}")
  for name in [c["interpolation"], *c["interpolations"]]:
    if name not in INTERPOLATIONS:
      raise ValueError(f"interpolation {name!r} not in {sorted(INTERPOLATIONS)}")
  if c["color_impl"] not in ("fast", "tf"):
    raise ValueError(f"color_impl must be 'fast' or 'tf', not {c['color_impl']!r}")
  if c["distort_on"] not in DISTORT_ON:
    raise ValueError(f"distort_on must be one of {DISTORT_ON}, not {c['distort_on']!r}")
  if c["distort_on"] == "device" and c["color_distortion"] and c["color_impl"] != "tf":
    raise ValueError(
      f"color_impl={c['color_impl']!r} is a host-side shortcut; with distort_on='device' the "
      "device runs tf.image's own ops (color_impl='tf'). Set one of the two."
    )
  if c["color_orderings"] not in (1, 2, 4):
    raise ValueError("color_orderings must be 1, 2 or 4")
  if not 0 < c["eval_crop_fraction"] <= 1:
    raise ValueError("eval_crop_fraction must be in (0, 1]")
  if c["ten_crop"] not in TEN_CROPS:
    raise ValueError(f"ten_crop must be one of {TEN_CROPS}, not {c['ten_crop']!r}")
  if (c["mean"] is None) != (c["std"] is None):
    raise ValueError("set both mean and std, or neither")


# ----------------------------------------------------------------------------- decoding


def decode_window(encoded: tf.Tensor, window_fn, min_size: int | None = None) -> tf.Tensor:
  """Decodes the window `window_fn(height, width) -> (y, x, h, w)` of an image to uint8 RGB.

  JPEGs decode only the window (`decode_and_crop_jpeg`); other formats (PNG, GIF, BMP) are
  decoded whole and sliced. Grayscale, CMYK and RGBA inputs come out as [h, w, 3]. With
  `min_size`, a JPEG decodes at the smallest DCT scale (1, 1/2, 1/4, 1/8: `ratio`) that keeps
  both sides of the window at least `min_size` (a window of at least 2 * min_size decodes at
  half size or less); the window is then in the scaled image's pixels, rounded down.
  """

  def jpeg():
    shape = tf.io.extract_jpeg_shape(encoded)
    y, x, h, w = window_fn(shape[0], shape[1])
    if min_size is None:
      return tf.io.decode_and_crop_jpeg(encoded, tf.stack([y, x, h, w]), channels=3)
    ratios = (1, 2, 4, 8)
    side = tf.minimum(h, w)
    index = tf.add_n([tf.cast(side >= r * min_size, tf.int32) for r in ratios[1:]])

    def at(r):
      window = tf.stack([y // r, x // r, h // r, w // r])
      return lambda: tf.io.decode_and_crop_jpeg(encoded, window, channels=3, ratio=r)

    return tf.switch_case(index, [at(r) for r in ratios])

  def other():
    image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)
    shape = tf.shape(image)
    y, x, h, w = window_fn(shape[0], shape[1])
    return image[y : y + h, x : x + w]

  image = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
  image.set_shape([None, None, 3])
  return image


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
  """Decodes a whole image to uint8 [height, width, 3]."""
  return decode_window(encoded, lambda h, w: (0, 0, h, w))


# ----------------------------------------------------------------------------- crops


def central_crop_window(height: tf.Tensor, width: tf.Tensor, fraction: float):
  """The window of `tf.image.central_crop(image, fraction)`: (y, x, h, w), int32."""

  def start(size):
    size_f = tf.cast(size, tf.float64)
    return tf.cast((size_f - size_f * fraction) / 2, tf.int32)

  y, x = start(height), start(width)
  return y, x, height - 2 * y, width - 2 * x


def aspect_clamped_center_window(height, width, aspect_ratio_range):
  """Largest central window with its aspect ratio (w / h) in the range (torchvision's fallback)."""
  h_f, w_f = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
  lo, hi = aspect_ratio_range
  ratio = w_f / h_f
  crop_w = tf.where(ratio > hi, tf.round(h_f * hi), w_f)
  crop_h = tf.where(ratio < lo, tf.round(w_f / lo), h_f)
  crop_h = tf.clip_by_value(tf.cast(crop_h, tf.int32), 1, height)
  crop_w = tf.clip_by_value(tf.cast(crop_w, tf.int32), 1, width)
  return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def random_crop_window(height, width, seed: tf.Tensor, config) -> tuple[tf.Tensor, ...]:
  """Samples (y, x, h, w) covering area_range of the image with aspect in aspect_ratio_range."""
  shape = tf.stack([height, width, 3])
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
    shape,
    bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
    seed=seed,
    min_object_covered=config.min_object_covered,
    aspect_ratio_range=tuple(config.aspect_ratio_range),
    area_range=tuple(config.area_range),
    max_attempts=config.max_attempts,
    use_image_if_no_bounding_boxes=True,
  )
  y, x, h, w = begin[0], begin[1], size[0], size[1]
  if config.crop_fallback == "center":
    # The sampler returns the whole image when every attempt failed; whole is also a legal
    # draw when the image's own aspect ratio is in range, and then the fallback is the same.
    failed = tf.logical_and(tf.equal(h, height), tf.equal(w, width))
    cy, cx, ch, cw = aspect_clamped_center_window(height, width, config.aspect_ratio_range)
    y, x, h, w = (tf.where(failed, a, b) for a, b in ((cy, y), (cx, x), (ch, h), (cw, w)))
  return y, x, h, w


# ----------------------------------------------------------------------------- distortions

# The per-example random numbers of the colour distortion: ordering, then one per op.
_COLOR_DRAWS = ("ordering", "brightness", "saturation", "hue", "contrast")


def color_draws(seed: tf.Tensor) -> tf.Tensor:
  """float32 [5] uniform [0, 1) draws: the ordering and each op's factor (see color_factors)."""
  return tf.random.stateless_uniform([len(_COLOR_DRAWS)], seed)


def color_factors(draws: tf.Tensor, config) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
  """Maps draws [..., 5] to (ordering index [...], {op: factor [...]}) for the enabled ops."""
  u = tf.unstack(draws, axis=-1)
  ordering = tf.minimum(
    tf.cast(u[0] * config.color_orderings, tf.int32), config.color_orderings - 1
  )
  factors = {}
  if config.brightness:
    factors["brightness"] = (2.0 * u[1] - 1.0) * config.brightness
  if config.saturation:
    lo, hi = config.saturation
    factors["saturation"] = lo + (hi - lo) * u[2]
  if config.hue:
    factors["hue"] = (2.0 * u[3] - 1.0) * config.hue
  if config.contrast:
    lo, hi = config.contrast
    factors["contrast"] = lo + (hi - lo) * u[4]
  return ordering, factors


_TF_COLOR_OPS = {
  "brightness": tf.image.adjust_brightness,
  "saturation": tf.image.adjust_saturation,
  "hue": tf.image.adjust_hue,
  "contrast": tf.image.adjust_contrast,
}


def distort_color(image: tf.Tensor, draws: tf.Tensor, config) -> tf.Tensor:
  """slim's distort_color with tf.image's ops: brightness, saturation (HSV), hue (HSV), contrast.

  image: float32 [height, width, 3] in [0, 1]; draws: [5] from color_draws. The ops run in one of
  the first `config.color_orderings` of COLOR_ORDERINGS; the result is clipped to [0, 1].
  """
  ordering, factors = color_factors(draws, config)

  def apply(names):
    def fn():
      out = image
      for name in names:
        if name in factors:
          out = _TF_COLOR_OPS[name](out, factors[name])
      return out

    return fn

  orderings = COLOR_ORDERINGS[: config.color_orderings]
  out = (
    tf.switch_case(ordering, [apply(o) for o in orderings])
    if len(orderings) > 1
    else apply(orderings[0])()
  )
  return tf.clip_by_value(out, 0.0, 1.0)


# RGB -> YIQ (NTSC). The fast hue rotates the chroma plane (I, Q) about the luma axis:
# hue(theta) = _HUE_FIXED + cos(theta) * _HUE_COS + sin(theta) * _HUE_SIN.
# The coefficients of tf.image.rgb_to_yiq / yiq_to_rgb.
_RGB_TO_YIQ = np.array(
  [[0.299, 0.587, 0.114], [0.59590059, -0.27455667, -0.32134392], [0.2115, -0.52273617, 0.31119955]]
)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)
_HUE_FIXED = _YIQ_TO_RGB @ np.diag([1.0, 0.0, 0.0]) @ _RGB_TO_YIQ
_HUE_COS = _YIQ_TO_RGB @ np.diag([0.0, 1.0, 1.0]) @ _RGB_TO_YIQ
_HUE_SIN = (
  _YIQ_TO_RGB @ np.array([[0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]) @ _RGB_TO_YIQ
)
# Saturation blends with luma (tf.image.rgb_to_grayscale's weights): s * x + (1 - s) * _LUMA x.
_LUMA = np.tile(_RGB_TO_YIQ[:1], (3, 1))


# M = hue(theta) @ saturation(s) = s * (P0 + cos P1 + sin P2) + (1 - s) * LUMA (hue keeps luma and
# grey, so hue @ LUMA = LUMA): four fixed matrices, stacked transposed for x @ M^T.
_COLOR_BASIS_T = np.stack([_HUE_FIXED, _HUE_COS, _HUE_SIN, _LUMA]).transpose(0, 2, 1)


def fast_color_transform(draws: tf.Tensor, mean: tf.Tensor, config) -> tuple[tf.Tensor, tf.Tensor]:
  """The affine colour map of the fast colour distortion: x -> x @ A^T + b; returns (A^T, b).

  With saturation as a luma blend and hue as a YIQ rotation, the four ops are affine maps that
  commute (each keeps grey grey and luma's weights sum to 1; contrast moves towards the mean of
  the image it is applied to, which the others map along), so every ordering gives the same map:
  A = f * M, b = (1 - f) * M mean + delta, with M = hue(theta) @ saturation(s).
  mean: [3] per-channel mean of the image.
  """
  _, factors = color_factors(draws, config)
  s = factors.get("saturation", tf.constant(1.0))
  theta = -2.0 * np.pi * factors.get("hue", tf.constant(0.0))
  f = factors.get("contrast", tf.constant(1.0))
  coef = tf.stack([s, s * tf.cos(theta), s * tf.sin(theta), 1.0 - s])  # M's, on the basis
  basis = tf.constant(_COLOR_BASIS_T, tf.float32)
  m_mean = tf.linalg.matvec(basis, mean, transpose_a=True)  # [4, 3]: each basis matrix @ mean
  b = (1.0 - f) * tf.linalg.matvec(m_mean, coef, transpose_a=True)
  if "brightness" in factors:
    b = b + factors["brightness"]
  return tf.tensordot(f * coef, basis, axes=1), b


def finish_image(image: tf.Tensor, draws: tf.Tensor, config) -> tf.Tensor:
  """float32 [H, W, 3] in [0, 255] -> fast colour distortion, clip to [0, 1], input scaling.

  With `input_range` scaling all three are affine per pixel and run as one [H*W, 3] x [3, 3]
  product, a bias_add and a clip with scalar bounds (per-channel broadcasting is slow on CPU).
  """
  if config.mean is not None:  # per-channel scaling: finish in [0, 1], then scale
    unit = ml_collections.ConfigDict(dict(config.items()))
    unit.mean, unit.std, unit.input_range = None, None, (0.0, 1.0)
    return scale_inputs(finish_image(image, draws, unit), config)
  lo, hi = config.input_range
  gain = hi - lo
  if config.color_distortion and config.color_impl == "fast":
    mean = tf.reduce_mean(image, axis=[0, 1]) * (1.0 / 255.0)
    a_t, b = fast_color_transform(draws, mean, config)
    out = tf.nn.bias_add(tf.tensordot(image, a_t * (gain / 255.0), axes=1), gain * b + lo)
  else:
    out = image * (gain / 255.0) + lo
  return tf.clip_by_value(out, min(lo, hi), max(lo, hi))


def resize(image: tf.Tensor, size, method: str = "bilinear", uint8: bool = False) -> tf.Tensor:
  """Resizes to `size` ([height, width]); returns float32 on the input's value scale, or with
  `uint8` (for a uint8 image) the float result rounded half to even and saturated to uint8.

  The uint8 result takes the fewest passes: nearest neighbour copies uint8 pixels (no float
  round trip), bilinear and area average pixels and cannot leave [0, 255] (no clip), bicubic
  overshoots and is saturated.
  """
  if uint8 and method == "nearest":
    return tf.image.resize(image, size, method=INTERPOLATIONS[method])
  out = tf.cast(tf.image.resize(image, size, method=INTERPOLATIONS[method]), tf.float32)
  if not uint8:
    return out
  if method in ("bilinear", "area"):
    return tf.cast(tf.round(out), tf.uint8)
  return tf.saturate_cast(tf.round(out), tf.uint8)


def random_resize(image: tf.Tensor, size, seed: tf.Tensor, methods, uint8: bool = False):
  """Resizes with an interpolation drawn uniformly from `methods` (slim's random selector);
  float32, or uint8 with `uint8` (see resize)."""
  if len(methods) == 1:
    return resize(image, size, methods[0], uint8)
  choice = tf.random.stateless_uniform([], seed, 0, len(methods), dtype=tf.int32)
  out = tf.switch_case(choice, [lambda m=m: resize(image, size, m, uint8) for m in methods])
  out.set_shape([size[0], size[1], 3])
  return out


# ----------------------------------------------------------------------------- scaling


def scale_inputs(image: tf.Tensor, config) -> tf.Tensor:
  """Maps float pixels in [0, 1] to the network's input range (see module docstring)."""
  if config.mean is not None:
    mean = tf.constant(config.mean, tf.float32)
    std = tf.constant(config.std, tf.float32)
    return (image - mean) / std
  lo, hi = config.input_range
  return image * (hi - lo) + lo


# ----------------------------------------------------------------------------- entry points


def train_image(encoded: tf.Tensor, seed: tf.Tensor, image_size: int, config) -> tf.Tensor:
  """Encoded image -> [image_size, image_size, 3]: crop, flip, resize, then with
  `distort_on="host"` distort and scale (float32); with "device", round to uint8 (the train step
  distorts and scales: `device_augment`), decoding JPEGs at a reduced DCT scale (`reduced_dct`).

  seed: int32/int64 [2], the example's stateless seed. The flip is applied to the (uint8) crop
  before resizing, which is the same as flipping after (the resize kernels are symmetric).
  """
  seeds = tf.random.experimental.stateless_split(seed, num=4)
  on_device = config.distort_on == "device"
  min_size = image_size if on_device and config.reduced_dct else None
  window = lambda h, w: random_crop_window(h, w, seeds[0], config)  # noqa: E731
  image = decode_window(encoded, window, min_size)
  if config.flip and not on_device:
    image = tf.image.stateless_random_flip_left_right(image, seeds[2])
  size = [image_size, image_size]
  # On the device path the resize rounds to uint8 (bicubic overshoots: saturated, as the host
  # path's clip to [0, 1] does).
  if config.random_interpolation:
    image = random_resize(image, size, seeds[1], tuple(config.interpolations), on_device)
  else:
    image = resize(image, size, config.interpolation, on_device)
  if on_device:
    if config.flip:  # the same draw; flipping the smaller image is cheaper
      image = tf.image.stateless_random_flip_left_right(image, seeds[2])
  elif config.color_distortion and config.color_impl == "tf":
    draws = color_draws(seeds[3])
    image = distort_color(tf.clip_by_value(image * (1.0 / 255.0), 0.0, 1.0), draws, config)
    image = scale_inputs(image, config)
  else:
    image = finish_image(image, color_draws(seeds[3]), config)
  image.set_shape([image_size, image_size, 3])
  return image


def eval_image(encoded: tf.Tensor, image_size: int, config) -> tf.Tensor:
  """Encoded image -> float32 [image_size, image_size, 3]: central crop, bilinear resize, scale."""
  fraction = config.eval_crop_fraction
  image = decode_window(encoded, lambda h, w: central_crop_window(h, w, fraction))
  image = resize(image, [image_size, image_size], "bilinear") / 255.0
  image = scale_inputs(tf.clip_by_value(image, 0.0, 1.0), config)
  image.set_shape([image_size, image_size, 3])
  return image
