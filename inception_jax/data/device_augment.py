"""The photometric distortions and the input scaling on the device, inside the jitted train step.

With `preprocess.distort_on="device"` (the default) the input pipeline ships uint8 crops
(decoded, cropped, resized, flipped: `preprocessing.train_image`) and the train step finishes
them with `apply`: slim's `distort_color` (brightness, saturation, hue, contrast in one of the
first `color_orderings` of slim's orderings, then a clip to [0, 1]) and the input scaling, in jnp.

The four ops repeat the float32 arithmetic of TensorFlow's CPU kernels behind
`tf.image.adjust_brightness`, `adjust_saturation` (RGB -> HSV -> RGB, the saturation scaled and
clamped to [0, 1]), `adjust_hue` (RGB -> hue and value range -> RGB, the hue shifted modulo 1)
and `adjust_contrast` (towards each channel's mean), so the device path equals the host path's
`tf.image` calls on the same parameters up to float32 rounding (tests/test_data_device_augment.py).

Draws: image `row` of the global batch at step `step` draws its five uniforms (ordering,
brightness, saturation, hue, contrast; mapped to factors as `preprocessing.color_factors` does)
from `fold_in(step_key(seed, step), row)`. They are a function of (seed, step, row) only, so a
resumed run draws the same, and the number of processes and devices changes nothing.

No TensorFlow here: the train step runs on machines without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from inception_jax.data.conventions import COLOR_ORDERINGS, PREPROCESS_DEFAULTS

OPS = ("brightness", "saturation", "hue", "contrast")
NUM_DRAWS = 1 + len(OPS)  # the ordering, then one per op (preprocessing.color_draws' layout)
# Folded into key(seed) before the step, so the distortion draws are not the dropout masks'
# (train.train_step folds the step into key(seed) itself).
_STREAM = 0x64697374


def resolve(preprocess: Mapping[str, Any] | None) -> dict[str, Any]:
  """PREPROCESS_DEFAULTS updated with `preprocess` (e.g. `train.preprocess_options(config)`).

  Raises ValueError for unknown keys or values the device path cannot run; the input pipeline
  (`preprocessing.make_config`) checks the rest before anything is compiled.
  """
  options = dict(PREPROCESS_DEFAULTS)
  overrides = dict(preprocess.items()) if preprocess is not None else {}
  unknown = sorted(set(overrides) - set(options))
  if unknown:
    raise ValueError(f"unknown preprocess options {unknown}; known: {sorted(options)}")
  options.update(overrides)
  if options["color_orderings"] not in (1, 2, 4):
    raise ValueError("color_orderings must be 1, 2 or 4")
  if options["color_distortion"] and options["color_impl"] != "tf":
    raise ValueError(
      f"color_impl={options['color_impl']!r} runs only on the host; the device runs tf.image's "
      "own ops: set color_impl='tf' or distort_on='host'"
    )
  if (options["mean"] is None) != (options["std"] is None):
    raise ValueError("set both mean and std, or neither")
  return options


# ----------------------------------------------------------------------------- draws


def step_key(seed: int, step) -> jax.Array:
  """The key of step `step`'s distortion draws (image `row` uses `fold_in(key, row)`)."""
  return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), _STREAM), step)


def draw(key: jax.Array, batch_size: int) -> jax.Array:
  """float32 [batch_size, NUM_DRAWS] uniform [0, 1): row i from `fold_in(key, i)`."""
  rows = jnp.arange(batch_size, dtype=jnp.uint32)
  return jax.vmap(lambda r: jax.random.uniform(jax.random.fold_in(key, r), (NUM_DRAWS,)))(rows)


def factors(draws: jax.Array, options: Mapping[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
  """draws [..., 5] -> (ordering index [...], {op: factor [...]}) for the enabled ops: the
  mapping of `preprocessing.color_factors` (brightness +-max delta, saturation and contrast
  uniform in their ranges, hue +-max delta; ordering uniform over the first color_orderings)."""
  n = options["color_orderings"]
  u = [draws[..., i] for i in range(NUM_DRAWS)]
  ordering = jnp.minimum((u[0] * n).astype(jnp.int32), n - 1)
  out = {}
  if options["brightness"]:
    out["brightness"] = (2.0 * u[1] - 1.0) * options["brightness"]
  if options["saturation"]:
    lo, hi = options["saturation"]
    out["saturation"] = lo + (hi - lo) * u[2]
  if options["hue"]:
    out["hue"] = (2.0 * u[3] - 1.0) * options["hue"]
  if options["contrast"]:
    lo, hi = options["contrast"]
    out["contrast"] = lo + (hi - lo) * u[4]
  return ordering, out


# ----------------------------------------------------------------------------- tf.image's ops
# image: float32 [..., H, W, 3]; factor: float32 [...] (one per image) or a scalar.


def _per_image(factor: jax.Array) -> jax.Array:
  factor = jnp.asarray(factor, jnp.float32)
  return factor.reshape(factor.shape + (1, 1, 1))


def adjust_brightness(image: jax.Array, delta) -> jax.Array:
  """tf.image.adjust_brightness on float images: image + delta."""
  return image + _per_image(delta)


def adjust_contrast(image: jax.Array, factor) -> jax.Array:
  """tf.image.adjust_contrast: (x - mean) * factor + mean, each channel's mean over the image."""
  mean = jnp.mean(image, axis=(-3, -2), keepdims=True)
  return (image - mean) * _per_image(factor) + mean


def _rgb_to_hsv(r, g, b):
  """TensorFlow's adjust_saturation kernel's rgb_to_hsv (h in [0, 1))."""
  v = jnp.maximum(r, jnp.maximum(g, b))
  span = v - jnp.minimum(r, jnp.minimum(g, b))
  s = jnp.where(v > 0, span / jnp.where(v > 0, v, 1.0), 0.0)
  norm = 1.0 / (6.0 * jnp.where(span > 0, span, 1.0))
  h = jnp.where(
    r == v,
    norm * (g - b),
    jnp.where(g == v, norm * (b - r) + 2.0 / 6.0, norm * (r - g) + 4.0 / 6.0),
  )
  h = jnp.where(span <= 0, 0.0, h)
  h = jnp.where(h < 0, h + 1.0, h)
  return h, s, v


def _hsv_to_rgb(h, s, v):
  """TensorFlow's adjust_saturation kernel's hsv_to_rgb."""
  c = s * v
  m = v - c
  dh = h * 6.0
  category = dh.astype(jnp.int32)  # truncation, as static_cast<int>
  fmodu = dh - 2.0 * jnp.floor(dh * 0.5)  # the kernel's loops of +-2 (exact for dh in [0, 6])
  x = c * (1.0 - jnp.abs(fmodu - 1.0))
  zero = jnp.zeros_like(c)
  table = (  # (r, g, b) before adding m, per category; any other category is black
    (c, x, zero),
    (x, c, zero),
    (zero, c, x),
    (zero, x, c),
    (x, zero, c),
    (c, zero, x),
  )
  conditions = [category == k for k in range(6)]
  return tuple(jnp.select(conditions, [t[ch] for t in table], zero) + m for ch in range(3))


def adjust_saturation(image: jax.Array, scale) -> jax.Array:
  """tf.image.adjust_saturation on float images: HSV saturation * scale, clamped to [0, 1]."""
  r, g, b = image[..., 0], image[..., 1], image[..., 2]
  h, s, v = _rgb_to_hsv(r, g, b)
  s = jnp.clip(s * _per_image(scale)[..., 0], 0.0, 1.0)
  return jnp.stack(_hsv_to_rgb(h, s, v), axis=-1)


def _rgb_to_hv_range(r, g, b):
  """TensorFlow's adjust_hue kernel's rgb_to_hv_range: hue in [0, 6], min and max value."""
  r_lt_g = r < g
  # (v_max, v_mid, v_min, category) for r < g: b < r -> 1, b > g -> 3, else 2;
  # for g <= r: b < g -> 0, b > r -> 4, else 5.
  lo_case = [b < r, b > g]
  hi_case = [b < g, b > r]
  v_max = jnp.where(r_lt_g, jnp.select(lo_case, [g, b], g), jnp.select(hi_case, [r, b], r))
  v_mid = jnp.where(r_lt_g, jnp.select(lo_case, [r, g], b), jnp.select(hi_case, [g, r], b))
  v_min = jnp.where(r_lt_g, jnp.select(lo_case, [b, r], r), jnp.select(hi_case, [b, g], g))
  category = jnp.where(r_lt_g, jnp.select(lo_case, [1, 3], 2), jnp.select(hi_case, [0, 4], 5))
  span = v_max - v_min
  ratio = (v_mid - v_min) / jnp.where(span == 0, 1.0, span)
  increase = (category & 1) == 0
  h = category.astype(jnp.float32) + jnp.where(increase, ratio, 1.0 - ratio)
  return jnp.where(v_max == v_min, 0.0, h), v_min, v_max


def _hv_range_to_rgb(h, v_min, v_max):
  """TensorFlow's adjust_hue kernel's hv_range_to_rgb."""
  category = h.astype(jnp.int32)
  ratio = h - category.astype(jnp.float32)
  ratio = jnp.where((category & 1) == 0, ratio, 1.0 - ratio)
  v_mid = v_min + ratio * (v_max - v_min)
  table = (
    (v_max, v_mid, v_min),
    (v_mid, v_max, v_min),
    (v_min, v_max, v_mid),
    (v_min, v_mid, v_max),
    (v_mid, v_min, v_max),
  )  # category 5 and any other: (v_max, v_min, v_mid)
  default = (v_max, v_min, v_mid)
  conditions = [category == k for k in range(5)]
  return tuple(jnp.select(conditions, [t[ch] for t in table], default[ch]) for ch in range(3))


def adjust_hue(image: jax.Array, delta) -> jax.Array:
  """tf.image.adjust_hue on float images: the hue shifted by delta (in turns), modulo 1."""
  r, g, b = image[..., 0], image[..., 1], image[..., 2]
  h, v_min, v_max = _rgb_to_hv_range(r, g, b)
  h = h + _per_image(delta)[..., 0] * 6.0
  h = jnp.where(h < 0, h + 6.0, h)  # |delta| <= 1 (tf.image's limit): one turn is enough
  h = jnp.where(h >= 6.0, h - 6.0, h)
  return jnp.stack(_hv_range_to_rgb(h, v_min, v_max), axis=-1)


ADJUST = {
  "brightness": adjust_brightness,
  "saturation": adjust_saturation,
  "hue": adjust_hue,
  "contrast": adjust_contrast,
}


def distort_color(
  image: jax.Array, draws: jax.Array, options: Mapping[str, Any], per_image: bool | None = None
) -> jax.Array:
  """slim's distort_color on a batch: image float32 [B, H, W, 3] in [0, 1], draws [B, 5].

  Image i runs the enabled ops in ordering `factors(draws)[0][i]` of COLOR_ORDERINGS, then the
  result is clipped to [0, 1] (`preprocessing.distort_color` per image, on the device).
  per_image (default: on the CPU backend): one image at a time (`lax.map`), each running only
  its own ordering's four ops. Otherwise the whole batch at once: position k of the ordering
  applies, per image, the op that image's ordering has there (every op possible at k is computed
  and selected: 4x the arithmetic, in wide elementwise kernels an accelerator runs at once).
  """
  ordering, fs = factors(draws, options)
  orderings = COLOR_ORDERINGS[: options["color_orderings"]]
  if per_image is None:
    per_image = jax.default_backend() == "cpu"
  if per_image:

    def chain(names, x, f):
      for name in names:
        if name in f:
          x = ADJUST[name](x, f[name])
      return x

    def one(args):
      x, k, f = args
      branches = [lambda x, f, o=o: chain(o, x, f) for o in orderings]
      return jax.lax.switch(k, branches, x, f) if len(branches) > 1 else branches[0](x, f)

    return jnp.clip(jax.lax.map(one, (image, ordering, fs)), 0.0, 1.0)
  out = image
  for k in range(len(OPS)):
    names = [o[k] for o in orderings]
    results = {n: ADJUST[n](out, fs[n]) if n in fs else out for n in dict.fromkeys(names)}
    if len(results) == 1:
      out = next(iter(results.values()))
      continue
    selected = results[names[-1]]
    for j in range(len(orderings) - 2, -1, -1):
      selected = jnp.where(_per_image(ordering == j) > 0, results[names[j]], selected)
    out = selected
  return jnp.clip(out, 0.0, 1.0)


def scale_inputs(image: jax.Array, options: Mapping[str, Any]) -> jax.Array:
  """Pixels in [0, 1] to the network's input range (`preprocessing.scale_inputs`)."""
  if options["mean"] is not None:
    mean = jnp.asarray(options["mean"], jnp.float32)
    std = jnp.asarray(options["std"], jnp.float32)
    return (image - mean) / std
  lo, hi = options["input_range"]
  return image * (hi - lo) + lo


def finish(images: jax.Array, draws: jax.Array, options: Mapping[str, Any]) -> jax.Array:
  """uint8 [B, H, W, 3] and draws [B, 5] -> float32 network inputs: to [0, 1], distortions
  (when `color_distortion`), input scaling; the host path's arithmetic after its resize."""
  x = images.astype(jnp.float32)
  if options["color_distortion"]:
    x = distort_color(jnp.clip(x * (1.0 / 255.0), 0.0, 1.0), draws, options)
    return scale_inputs(x, options)
  if options["mean"] is not None:  # preprocessing.finish_image: [0, 1], then the scaling
    return scale_inputs(jnp.clip(x * (1.0 / 255.0), 0.0, 1.0), options)
  lo, hi = options["input_range"]
  return jnp.clip(x * ((hi - lo) / 255.0) + lo, min(lo, hi), max(lo, hi))


def apply(images: jax.Array, key: jax.Array, preprocess: Mapping[str, Any] | None) -> jax.Array:
  """The train step's call: uint8 [B, H, W, 3] crops of the global batch -> float32 inputs.

  key: `step_key(seed, step)`; image `row` draws from `fold_in(key, row)`. preprocess: the
  preprocessing overrides (`train.preprocess_options(config)`), resolved against the defaults.
  """
  if images.dtype != jnp.uint8:
    raise ValueError(
      f"device distortions take the uint8 crops of preprocess.distort_on='device', got "
      f"{images.dtype} images; feed uint8 batches or set preprocess.distort_on='host'"
    )
  options = resolve(preprocess)
  return finish(images, draw(key, images.shape[0]), options)
