"""Multi-crop evaluation: 1, 10 or 144 deterministic crops per image, in a fixed order.

Each layout maps one encoded image to float32 [crops, S, S, 3] (S = image_size); the evaluator
averages softmax probabilities over the crops of an image. The second half of every layout is the
first half mirrored (flipped left-right, crop by crop): crop `i + crops // 2` is crop `i` mirrored.

- 1 crop: slim's evaluation crop, the central 87.5% of each side resized to S
  (`eval_crop_fraction`).
- 10 crops: shorter side resized to round(S / 0.875) (256 for S = 224), then S x S crops at the
  top-left, top-right, bottom-left, bottom-right corners and the centre; then the same 5 mirrored.
  Index = mirror * 5 + position, positions in the order (tl, tr, bl, br, centre).
  `ten_crop` (preprocess option) chooses the image the 5 positions are taken from, of side
  round(S / 0.875) (256 for S = 224):
    "shorter_side" (default): the whole aspect-preserving resize, e.g. 256x341;
    "krizhevsky": its central 256x256 square, as Krizhevsky et al. 2012 ("rescaled the image such
      that the shorter side was of length 256, and then cropped out the central 256x256 patch"):
      the scheme GoogLeNet Section 7 compares its 144 crops with, which configs/v1.py uses for
      Table 3's 10-crop row;
    "caffe": the whole image squashed to 256x256 (the aspect ratio not kept), as BVLC's
      GoogLeNet saw it (Caffe's ImageNet LMDB is resized to 256x256; `oversample` then takes the
      corners and centre).
- 144 crops (GoogLeNet paper, Section 7): shorter side resized to each of 4 scales, 256, 288, 320,
  352 for S = 224 (`multicrop_scales`, scaled by S / 224 for other S); from each, 3 squares of side
  = shorter side (left, centre, right for landscape images, top, centre, bottom for portrait ones);
  from each square the 4 corner S x S crops, the centre S x S crop and the whole square resized to
  S; then all 72 mirrored. Index = mirror * 72 + scale * 18 + square * 6 + crop, crops in the order
  (tl, tr, bl, br, centre, whole square).

Resizing keeps the aspect ratio: the longer side becomes floor(longer * scale / shorter) (as
torchvision's Resize), bilinear. Offsets of centre crops and squares round down.
"""

from __future__ import annotations

import tensorflow as tf

from inception_jax.data import preprocessing

LAYOUTS = (1, 10, 144)
POSITIONS_10 = ("top_left", "top_right", "bottom_left", "bottom_right", "center")
POSITIONS_144 = ("top_left", "top_right", "bottom_left", "bottom_right", "center", "whole")


def crop_names(crops: int) -> list[str]:
  """Names of the crops of a layout, in output order (e.g. 'scale256/left/top_left/mirror')."""
  if crops == 1:
    return ["center"]
  if crops == 10:
    return [p + m for m in ("", "/mirror") for p in POSITIONS_10]
  if crops == 144:
    return [
      f"scale{i}/square{j}/{p}{m}"
      for m in ("", "/mirror")
      for i in range(4)
      for j in range(3)
      for p in POSITIONS_144
    ]
  raise ValueError(f"crops must be one of {LAYOUTS}, not {crops}")


def multicrop_scales(image_size: int, config) -> list[int]:
  """Shorter-side sizes of the 144-crop scheme for `image_size` (256..352 at 224)."""
  return [int(round(s * image_size / 224)) for s in config.multicrop_scales]


def resize_shorter_side(image: tf.Tensor, size: int) -> tf.Tensor:
  """Resizes (bilinear, float32): shorter side `size`, longer floor(longer * size / shorter)."""
  shape = tf.shape(image)
  h, w = shape[0], shape[1]
  short = tf.minimum(h, w)
  new_h = tf.where(h <= w, size, (h * size) // short)
  new_w = tf.where(h <= w, (w * size) // short, size)
  return tf.image.resize(tf.cast(image, tf.float32), tf.stack([new_h, new_w]), method="bilinear")


def _corner_and_center_crops(image: tf.Tensor, crop: int) -> list[tf.Tensor]:
  """The 4 corner crops and the centre crop of size `crop` (tl, tr, bl, br, centre)."""
  shape = tf.shape(image)
  dy, dx = shape[0] - crop, shape[1] - crop
  offsets = [(0, 0), (0, dx), (dy, 0), (dy, dx), (dy // 2, dx // 2)]
  return [tf.image.crop_to_bounding_box(image, y, x, crop, crop) for y, x in offsets]


def ten_crops(image: tf.Tensor, image_size: int, config) -> tf.Tensor:
  """uint8 [h, w, 3] -> float32 [10, S, S, 3] in [0, 255]; see the module docstring."""
  side = int(round(image_size / config.eval_crop_fraction))
  if config.ten_crop == "caffe":
    resized = tf.image.resize(tf.cast(image, tf.float32), [side, side], method="bilinear")
  else:
    resized = resize_shorter_side(image, side)
    if config.ten_crop == "krizhevsky":
      shape = tf.shape(resized)
      resized = tf.image.crop_to_bounding_box(
        resized, (shape[0] - side) // 2, (shape[1] - side) // 2, side, side
      )
  crops = tf.stack(_corner_and_center_crops(resized, image_size))
  return tf.concat([crops, tf.reverse(crops, axis=[2])], axis=0)


def crops_144(image: tf.Tensor, image_size: int, config) -> tf.Tensor:
  """uint8 [h, w, 3] -> float32 [144, S, S, 3] in [0, 255]; see the module docstring."""
  out = []
  for scale in multicrop_scales(image_size, config):
    resized = resize_shorter_side(image, scale)
    shape = tf.shape(resized)
    h, w = shape[0], shape[1]
    landscape = w >= h
    slack = tf.abs(w - h)
    for start in (0, slack // 2, slack):
      y = tf.where(landscape, 0, start)
      x = tf.where(landscape, start, 0)
      square = tf.image.crop_to_bounding_box(resized, y, x, scale, scale)
      out.extend(_corner_and_center_crops(square, image_size))
      out.append(tf.image.resize(square, [image_size, image_size], method="bilinear"))
  crops = tf.stack(out)
  return tf.concat([crops, tf.reverse(crops, axis=[2])], axis=0)


def eval_crops(encoded: tf.Tensor, image_size: int, crops: int, config) -> tf.Tensor:
  """Encoded image -> float32 [crops, S, S, 3], scaled to the network's input range."""
  if crops == 1:
    return preprocessing.eval_image(encoded, image_size, config)[None]
  image = preprocessing.decode_image(encoded)
  if crops == 10:
    out = ten_crops(image, image_size, config)
  elif crops == 144:
    out = crops_144(image, image_size, config)
  else:
    raise ValueError(f"crops must be one of {LAYOUTS}, not {crops}")
  out = tf.clip_by_value(out / 255.0, 0.0, 1.0)
  out = preprocessing.scale_inputs(out, config)
  out.set_shape([crops, image_size, image_size, 3])
  return out
