"""The preprocessing options and conventions, without TensorFlow (the device half of the
pipeline, `device_augment`, runs in the train step on machines without it).

PREPROCESS_DEFAULTS: every preprocessing option and its default (`preprocessing.make_config`
validates overrides). INPUT_SCALES: the input conventions the recipes choose between
(`input_scale`):

"inception": pixels in [0, 1] mapped to [-1, 1] (every released Inception: slim, Keras).
"caffe": BVLC GoogLeNet's pixels 0..255 minus the ImageNet mean per channel, no division
(`CAFFE_MEAN_RGB`; docs/FIDELITY.md says why RGB). Values are `preprocessing` options.
"""

from __future__ import annotations

from typing import Any

# BVLC models/bvlc_googlenet/train_val.prototxt: mean_value 104, 117, 123 in Caffe's BGR channel
# order (OpenCV decoding); the same means in our RGB order.
CAFFE_MEAN_RGB = (123.0, 117.0, 104.0)
INPUT_SCALES: dict[str, dict[str, Any]] = {
  "inception": dict(input_range=(-1.0, 1.0), mean=None, std=None),
  "caffe": dict(mean=tuple(m / 255.0 for m in CAFFE_MEAN_RGB), std=(1.0 / 255.0,) * 3),
}

# slim's distort_color orderings of (brightness, saturation, hue, contrast).
COLOR_ORDERINGS = (
  ("brightness", "saturation", "hue", "contrast"),
  ("saturation", "brightness", "contrast", "hue"),
  ("contrast", "hue", "brightness", "saturation"),
  ("hue", "saturation", "contrast", "brightness"),
)

TEN_CROPS = ("shorter_side", "krizhevsky", "caffe")

# Where the photometric distortions and the input scaling run: "device" (the host ships uint8
# crops; `data.device_augment` distorts and scales inside the jitted train step) or "host" (the
# whole pipeline in tf.data, float32 batches, as slim).
DISTORT_ON = ("device", "host")

PREPROCESS_DEFAULTS: dict[str, Any] = dict(
  # training crop (paper: 8%-100% of the area, aspect 3/4..4/3; slim: 5%, min_object_covered 0.1)
  area_range=(0.08, 1.0),
  aspect_ratio_range=(3.0 / 4.0, 4.0 / 3.0),
  min_object_covered=0.0,
  max_attempts=100,
  crop_fallback="center",  # "center" | "whole"
  # training resize
  interpolation="bilinear",
  random_interpolation=True,
  interpolations=("bilinear", "nearest", "bicubic", "area"),
  # training flip and photometric distortions
  flip=True,
  # where the photometric distortions and input scaling run (DISTORT_ON); the device path's host
  # half decodes JPEGs at a reduced DCT scale (1/2, 1/4, 1/8) when the crop is at least that
  # many times image_size on both sides (`reduced_dct`; the host path never does)
  distort_on="device",
  reduced_dct=True,
  color_distortion=True,
  color_orderings=4,  # 1, 2 or 4 of COLOR_ORDERINGS
  color_impl="tf",  # "tf": tf.image's HSV ops, as slim; "fast": one affine colour map
  brightness=32.0 / 255.0,  # max delta; 0 turns it off
  saturation=(0.5, 1.5),  # None turns it off
  hue=0.2,  # max delta; 0 turns it off
  contrast=(0.5, 1.5),  # None turns it off
  # evaluation
  eval_crop_fraction=0.875,
  multicrop_scales=(256, 288, 320, 352),  # shorter sides for 144 crops at image_size 224
  # where 10 crops come from (data/multicrop.py): the whole aspect-preserving resize
  # ("shorter_side"), its central square (Krizhevsky et al. 2012), or the image squashed to a
  # square (Caffe's 256x256 LMDB and `oversample`, "caffe")
  ten_crop="shorter_side",
  # input scaling
  input_range=(-1.0, 1.0),
  mean=None,  # e.g. (0.485, 0.456, 0.406) with std (0.229, 0.224, 0.225) for torchvision
  std=None,
)
