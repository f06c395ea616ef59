"""1, 10 and 144 evaluation crops: positions, order, mirrors (inception_jax.data.multicrop)."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from inception_jax.data import multicrop, preprocessing

RAW = preprocessing.make_config({"input_range": (0.0, 255.0)})  # pixel values come out as is


def coordinates(h: int, w: int) -> np.ndarray:
  y, x = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  return np.stack([y, x, (y + x) % 7], -1).astype(np.uint8)


def png(array: np.ndarray) -> tf.Tensor:
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, "PNG")
  return tf.constant(buf.getvalue())


def test_crop_names_and_counts():
  assert multicrop.crop_names(1) == ["center"]
  names = multicrop.crop_names(10)
  assert names[:5] == ["top_left", "top_right", "bottom_left", "bottom_right", "center"]
  assert names[5:] == [n + "/mirror" for n in names[:5]]
  names = multicrop.crop_names(144)
  assert len(names) == len(set(names)) == 144
  assert names[0] == "scale0/square0/top_left" and names[5] == "scale0/square0/whole"
  assert names[6] == "scale0/square1/top_left" and names[18] == "scale1/square0/top_left"
  assert names[72] == "scale0/square0/top_left/mirror"
  with pytest.raises(ValueError):
    multicrop.crop_names(12)


def test_scales_are_the_papers_at_224():
  assert multicrop.multicrop_scales(224, RAW) == [256, 288, 320, 352]
  assert multicrop.multicrop_scales(299, RAW) == [342, 384, 427, 470]


def test_ten_crops_are_corners_and_centre_then_mirrored():
  # S = 56: shorter side resized to round(56 / 0.875) = 64, which this image already has.
  array = coordinates(64, 80)
  crops = multicrop.eval_crops(png(array), 56, 10, RAW).numpy()
  assert crops.shape == (10, 56, 56, 3)
  expected = [array[:56, :56], array[:56, 24:], array[8:, :56], array[8:, 24:], array[4:60, 12:68]]
  for i, e in enumerate(expected):
    np.testing.assert_allclose(crops[i], e, atol=1e-3, err_msg=multicrop.crop_names(10)[i])
    np.testing.assert_allclose(crops[i + 5], e[:, ::-1], atol=1e-3)


def test_ten_crops_resize_the_shorter_side():
  array = coordinates(128, 96)  # portrait: width 96 -> 64, height 128 -> floor(128 * 64 / 96) = 85
  crops = multicrop.eval_crops(png(array), 56, 10, RAW).numpy()
  resized = tf.image.resize(array, [85, 64]).numpy()
  np.testing.assert_allclose(crops[4], resized[14:70, 4:60], atol=1e-3)  # centre: (29 // 2, 8 // 2)
  np.testing.assert_allclose(crops[3], resized[29:, 8:], atol=1e-3)


@pytest.mark.parametrize("portrait", [False, True])
def test_144_crops_follow_the_googlenet_paper(portrait):
  # S = 56: scales 64, 72, 80, 88. The image's shorter side is 64, so scale 0 needs no resizing.
  array = coordinates(64, 100)
  if portrait:
    array = np.ascontiguousarray(array.transpose(1, 0, 2))
  crops = multicrop.eval_crops(png(array), 56, 144, RAW).numpy()
  assert crops.shape == (144, 56, 56, 3)
  np.testing.assert_allclose(crops[72:], crops[:72, :, ::-1], atol=1e-4)  # mirrors
  for square, start in enumerate([0, 18, 36]):  # left / centre / right (top / centre / bottom)
    sq = array[start : start + 64] if portrait else array[:, start : start + 64]
    expected = [
      sq[:56, :56],
      sq[:56, 8:],
      sq[8:, :56],
      sq[8:, 8:],
      sq[4:60, 4:60],
      tf.image.resize(sq, [56, 56]).numpy(),
    ]
    for crop, e in enumerate(expected):
      i = square * 6 + crop
      np.testing.assert_allclose(crops[i], e, atol=1e-3, err_msg=multicrop.crop_names(144)[i])
  # scale 1: shorter side 72, longer floor(100 * 72 / 64) = 112; right square, bottom-right crop
  resized = tf.image.resize(array, [112, 72] if portrait else [72, 112]).numpy()
  sq = resized[40:] if portrait else resized[:, 40:]
  np.testing.assert_allclose(crops[18 + 2 * 6 + 3], sq[16:, 16:], atol=1e-3)


def test_multicrop_is_deterministic_and_scaled():
  encoded = png(np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8))
  config = preprocessing.make_config({})
  a = multicrop.eval_crops(encoded, 32, 144, config).numpy()
  b = multicrop.eval_crops(encoded, 32, 144, config).numpy()
  np.testing.assert_array_equal(a, b)
  assert a.min() >= -1 and a.max() <= 1
  one = multicrop.eval_crops(encoded, 32, 1, config).numpy()
  np.testing.assert_array_equal(one[0], preprocessing.eval_image(encoded, 32, config).numpy())


def test_krizhevsky_and_caffe_ten_crops():
  # Krizhevsky et al. / Caffe's oversample: the whole image resized to 256x256 (aspect not kept),
  # then 4 corners + centre of 224 and their mirrors. Ours keeps the aspect ratio.
  image = coordinates(120, 200)
  caffe = preprocessing.make_config({"input_range": (0.0, 255.0), "ten_crop": "caffe"})
  got = multicrop.eval_crops(png(image), 56, 10, caffe).numpy()  # 64x64 square, 56x56 crops
  square = tf.image.resize(tf.cast(image, tf.float32), [64, 64], method="bilinear").numpy()
  np.testing.assert_allclose(got[0], square[:56, :56], atol=1e-3)  # top-left
  np.testing.assert_allclose(got[3], square[8:, 8:], atol=1e-3)  # bottom-right
  np.testing.assert_allclose(got[4], square[4:60, 4:60], atol=1e-3)  # centre
  np.testing.assert_allclose(got[5], got[0][:, ::-1], atol=1e-6)  # mirrors
  ours = multicrop.eval_crops(png(image), 56, 10, RAW).numpy()
  assert not np.allclose(ours[1], got[1], atol=1.0)  # the right-hand corners differ
  # Krizhevsky et al.: shorter side to 64 (64x106), its central 64x64 square, then the crops.
  kriz = preprocessing.make_config({"input_range": (0.0, 255.0), "ten_crop": "krizhevsky"})
  got = multicrop.eval_crops(png(image), 56, 10, kriz).numpy()
  resized = multicrop.resize_shorter_side(tf.constant(image), 64).numpy()
  assert resized.shape == (64, 106, 3)
  square = resized[:, 21:85]
  np.testing.assert_allclose(got[0], square[:56, :56], atol=1e-3)
  np.testing.assert_allclose(got[1], square[:56, 8:], atol=1e-3)
  np.testing.assert_allclose(got[4], ours[4], atol=1e-3)  # the centre crop is the same
  with pytest.raises(ValueError, match="ten_crop"):
    preprocessing.make_config({"ten_crop": "alexnet"})
