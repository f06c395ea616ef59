"""The input conventions the recipes choose between (`input_scale`), without TensorFlow.

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
