"""Features of converted weights: `features(checkpoint, images)` gives the `PreLogits` end
point of a converted checkpoint (a directory written by `python -m inception_jax.conversion`) with
the input convention of the weights' source applied; `feature_extractor(checkpoint)` loads and
compiles once, for many batches.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from inception_jax import conversion
from inception_jax.training import transfer
from inception_jax.training.step import compile_step


def feature_extractor(checkpoint: str) -> Callable[[Any], np.ndarray]:
  """images -> PreLogits [batch, channels] for a converted checkpoint (see `features`), compiled
  once per input shape; for many batches."""
  model, variables = conversion.load(checkpoint)
  meta = json.loads((Path(checkpoint) / conversion.META_FILE).read_text())
  convention = transfer.input_convention(meta.get("source", ""))
  model = model.clone(return_features=True)
  apply = compile_step(
    lambda v, x: model.apply(v, x, train=False)["PreLogits"].astype(jnp.float32), model
  )

  def extract(images: Any) -> np.ndarray:
    return np.asarray(apply(variables, transfer.to_network_input(images, convention)))

  extract.convention = convention  # type: ignore[attr-defined]
  return extract


def features(checkpoint: str, images: Any) -> np.ndarray:
  """Pooled features (the `PreLogits` end point, [batch, channels]) of a converted checkpoint
  (a directory written by `python -m inception_jax.conversion`) for a batch of images.

  images: uint8 [batch, height, width, 3] in [0, 255], or float in [0, 1], RGB, already resized
    and cropped as the source evaluates (e.g. 224 for GoogLeNet, 299 for Inception-v3). The
    source's input convention is applied here: torchvision's ImageNet mean/std for weights
    converted from torchvision (the model's `transform_input` then works as torchvision's), [-1, 1]
    for Keras and tf-slim weights. Eval mode: BatchNorm running averages, no dropout.
  For many batches, `feature_extractor(checkpoint)` loads and compiles once.
  """
  return feature_extractor(checkpoint)(images)
