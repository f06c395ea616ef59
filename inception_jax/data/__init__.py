"""Input pipelines: TFDS / folder / digits datasets, the papers' preprocessing, multi-crop, sharding.

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
"""

from inception_jax.data.datasets import DatasetError, DatasetInfo, DatasetNotFoundError, host_slice
from inception_jax.data.multicrop import crop_names
from inception_jax.data.pipeline import (
    CorruptImageError,
    EvalIterator,
    TrainIterator,
    check_dataset,
    create_eval_iterator,
    create_train_iterator,
    get_info,
)
from inception_jax.data.preprocessing import (INPUT_SCALES, PREPROCESS_DEFAULTS, default_config,
                                              make_config)

__all__ = [
    "CorruptImageError",
    "DatasetError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "EvalIterator",
    "PREPROCESS_DEFAULTS",
    "TrainIterator",
    "check_dataset",
    "create_eval_iterator",
    "create_train_iterator",
    "crop_names",
    "default_config",
    "get_info",
    "host_slice",
    "make_config",
    "INPUT_SCALES",
]
