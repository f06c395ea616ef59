"""Input pipelines: TFDS, folder and digits datasets, the papers' preprocessing, multi-crop, shards.

    from inception_jax import data
    info = data.get_info("digits")                    # .num_classes, .splits, .class_names
    it = data.create_train_iterator("digits", global_batch_size=64, image_size=75, seed=0)
    batch = next(it)     # {"image": float32 [B_local, S, S, 3], "label": int32 [B_local]}
    ev = data.create_eval_iterator("digits", split="test", global_batch_size=64, image_size=75,
                                   crops=10)
    batch = next(ev)     # {"image": [B_local, 10, S, S, 3], "label": [B_local], "mask": [B_local]}

Datasets: TFDS names (`imagenet2012`, `cifar10`, ...; `data_dir` as in TFDS, nothing is downloaded
unless `download=True`), `folder:PATH` (`PATH/<split>/<class name>/<image>`, sorted classes) and
the embedded `digits` (scikit-learn's digits, built offline into
`~/.cache/inception_jax/tensorflow_datasets`). See docs/DATA.md.

`preprocess` overrides PREPROCESS_DEFAULTS (see `preprocessing`); `crops` is 1, 10 or 144 (see
`multicrop`). Each host reads its own slice (`process_index`, `process_count` default to JAX's).

Unreadable images: with `on_corrupt="fail"` (default) the iterator raises CorruptImageError naming
the file; with `on_corrupt="skip"` it skips it, and `it.num_skipped` (a count) and `it.skipped` (the
names) report what was skipped so far; training batches then carry a "mask" (False: a skipped
image's empty slot, so the other examples keep their positions). Labels outside [0, num_classes)
raise ValueError. `check_dataset(name, splits)` checks splits and class folders without decoding
anything; `python -m inception_jax.data.check DATASET` lists the unreadable images.

The submodules (TensorFlow's tf.data and tf.image) load on first use of a name below, so importing
this package, and the trainer that imports it, needs no TensorFlow: the GPU benchmark runs the
train step on machines without it (experiments/gpu_benchmark.py).
"""

import importlib
from typing import Any

# Public name -> the submodule that defines it.
_EXPORTS = {
  "DatasetError": "datasets",
  "DatasetInfo": "datasets",
  "DatasetNotFoundError": "datasets",
  "host_slice": "datasets",
  "crop_names": "multicrop",
  "CorruptImageError": "pipeline",
  "EvalIterator": "pipeline",
  "TrainIterator": "pipeline",
  "check_dataset": "pipeline",
  "create_eval_iterator": "pipeline",
  "create_train_iterator": "pipeline",
  "get_info": "pipeline",
  "INPUT_SCALES": "conventions",
  "PREPROCESS_DEFAULTS": "conventions",
  "default_config": "preprocessing",
  "make_config": "preprocessing",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
  if name not in _EXPORTS:
    raise AttributeError(f"module 'inception_jax.data' has no attribute {name!r}")
  value = getattr(importlib.import_module(f"inception_jax.data.{_EXPORTS[name]}"), name)
  globals()[name] = value  # later lookups skip this function
  return value


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(_EXPORTS))
