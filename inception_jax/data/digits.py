"""The embedded default dataset: scikit-learn's handwritten digits as a TFDS dataset.

1,797 grayscale 8x8 images of the digits 0-9 (the UCI "optdigits" test set that ships inside
scikit-learn, so nothing is downloaded). Pixel values 0..16 are rescaled to 0..255 and stored as
uint8 PNG, like any TFDS image dataset, so `digits` runs through the code path ImageNet does.

Fixed split: the first 1,500 images (in scikit-learn's order) are `train`, the remaining 297 `test`.

The dataset is built offline on first use into `~/.cache/inception_jax/tensorflow_datasets` (or the
`data_dir` given) and reused afterwards.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

NUM_TRAIN = 1500
NUM_EXAMPLES = 1797
DEFAULT_DATA_DIR = Path("~/.cache/inception_jax/tensorflow_datasets").expanduser()


def digit_images() -> tuple[np.ndarray, np.ndarray]:
  """Returns scikit-learn's digits as (uint8 [1797, 8, 8, 1] in 0..255, int64 [1797] labels)."""
  from sklearn.datasets import load_digits

  digits = load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[..., None]
  return images, digits.target.astype(np.int64)


class Digits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's handwritten digits (8x8, 10 classes); train = first 1500, test = last 297."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release: sklearn digits, uint8 PNG, fixed 1500/297 split."}
  # TFDS derives this from the package through `importlib_resources`, which is not always
  # installed; the file itself is all it needs.
  code_path = epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description=__doc__,
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(8, 8, 1), encoding_format="png"),
          "label": tfds.features.ClassLabel(names=[str(d) for d in range(10)]),
        }
      ),
      supervised_keys=("image", "label"),
      homepage="https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_digits.html",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is bundled with scikit-learn
    return {
      "train": self._generate_examples(0, NUM_TRAIN),
      "test": self._generate_examples(NUM_TRAIN, NUM_EXAMPLES),
    }

  def _generate_examples(self, start: int, stop: int):
    images, labels = digit_images()
    for i in range(start, stop):
      yield i, {"image": images[i], "label": int(labels[i])}


@contextlib.contextmanager
def _file_lock(path: Path):
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "w") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def builder(data_dir: str | os.PathLike | None = None) -> Digits:
  """Returns the prepared `digits` builder, building it (offline, a few seconds) if needed."""
  data_dir = Path(data_dir).expanduser() if data_dir else DEFAULT_DATA_DIR
  b = Digits(data_dir=str(data_dir))
  if not b.is_prepared():
    # Several processes (test workers, hosts sharing a disk) may get here at once.
    with _file_lock(data_dir / ".digits.lock"):
      b = Digits(data_dir=str(data_dir))
      if not b.is_prepared():
        b.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
      b = Digits(data_dir=str(data_dir))
  return b
