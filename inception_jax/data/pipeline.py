"""tf.data pipelines: the infinite, resumable training stream and the padded evaluation pass.

Training order. For splits that can be indexed (folders, digits, TFDS splits small enough to hold
in memory), the global batch at step `k` is a function of (seed, k, global batch size) only,
whatever the number of processes: global position `g` is example
`index_shuffle(g % n, seed=fold_in((seed, 0), epoch))` of epoch `g // n` (a stateless permutation
of the whole split per epoch), every random preprocessing op is seeded by `fold_in((seed, 0), g)`,
and batch `k` holds global positions [k * B, (k + 1) * B), of which host `p` of `P` prepares
[k * B + p * B_local, k * B + (p + 1) * B_local) (B_local = B / P). A run checkpointed on P
processes therefore resumes on any other number with the same batches; starting at step `k`
starts each host's stream at its position `k * B_local` without touching an image before it.
Splits too large to index (streamed TFDS splits) keep a per-host order: host `p` reads the
contiguous slice `host_slice(n, p, P)`, shuffled with a buffer seeded by (seed, epoch, p), and
resuming skips encoded records of the current epoch (no decoding); their order depends on P
(`TrainIterator.order` is "per_host" then, "global" otherwise).

Unreadable images. With `on_corrupt="fail"` (the default), decoding errors drop the example
(`ignore_errors`); the Python iterator notices the missing stream position and raises
`CorruptImageError` naming the file. With `on_corrupt="skip"`, each training example is decoded
in its own small dataset (an `interleave`), and one that fails is replaced by an empty slot at
the same position (zero image, label 0, `mask` False): the batches keep every other example at
its position, so a resumed run sees exactly the batches of an uninterrupted one. The iterator
names and counts the skipped images (`it.num_skipped`, `it.skipped`). Evaluation batches are
padded and masked anyway, so there a skipped image only leaves the count short.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from inception_jax.data import datasets, multicrop, preprocessing
from inception_jax.errors import CorruptImageError

_MAX_POSITION = 1 << 62
DEFAULT_SHUFFLE_BUFFER = 16384


def _process(process_index: int | None, process_count: int | None) -> tuple[int, int]:
  if process_index is None or process_count is None:
    import jax

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  return int(process_index), int(process_count)


def local_batch_size(global_batch_size: int, process_count: int) -> int:
  if global_batch_size <= 0 or global_batch_size % process_count:
    raise ValueError(
      f"global_batch_size {global_batch_size} must be a positive multiple of "
      f"the number of processes ({process_count})"
    )
  return global_batch_size // process_count


def _options() -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  options.threading.max_intra_op_parallelism = 1  # parallelism comes from the parallel map
  options.experimental_optimization.map_parallelization = True
  return options


class _Iterator:
  """Numpy batches from a tf.data pipeline, with the bookkeeping of dropped (unreadable) images."""

  def __init__(
    self, ds: tf.data.Dataset, *, describe, num_classes: int, on_corrupt: str, first_position: int
  ):
    if on_corrupt not in ("fail", "skip"):
      raise ValueError(f"on_corrupt must be 'fail' or 'skip', not {on_corrupt!r}")
    self._ds = ds
    self._it: Iterator[dict[str, np.ndarray]] | None = None
    self._describe = describe
    self._num_classes = num_classes
    self.on_corrupt = on_corrupt
    self._next_position = first_position
    self.skipped: list[str] = []  # names of unreadable images skipped so far

  @property
  def num_skipped(self) -> int:
    """How many unreadable images this iterator has skipped (on_corrupt="skip")."""
    return len(self.skipped)

  def __iter__(self):
    return self

  def _next_raw(self) -> dict[str, np.ndarray]:
    if self._it is None:
      self._it = self._ds.as_numpy_iterator()
    return next(self._it)

  def _account(self, positions: np.ndarray, end: int | None = None) -> None:
    """Finds positions missing before `end` (or the last of `positions`): unreadable images."""
    stop = int(positions[-1]) + 1 if end is None else end
    if stop - self._next_position > len(positions):
      present = set(positions.tolist())
      for pos in range(self._next_position, stop):
        if pos not in present:
          self._bad_image(pos)
    self._next_position = stop

  def _bad_image(self, pos: int) -> None:
    name = self._describe(pos)
    if self.on_corrupt == "fail":
      raise CorruptImageError(
        f"cannot read or decode image {name} (on_corrupt='skip' skips and counts "
        f"unreadable images; `python -m inception_jax.data.check DATASET` lists them all)",
        name,
      )
    logging.warning("skipping unreadable image %s", name)
    self.skipped.append(name)

  def _check_labels(self, labels: np.ndarray) -> None:
    bad = (labels < 0) | (labels >= self._num_classes)
    if bad.any():
      raise ValueError(
        f"labels {sorted(set(labels[bad].tolist()))} are outside the class "
        f"range [0, {self._num_classes})"
      )


class TrainIterator(_Iterator):
  """Infinite iterator of {"image": [B_local, S, S, 3], "label": int32 [B_local]}: uint8 crops
  with preprocess distort_on="device" (the default), float32 network inputs with "host".

  `step` is the index of the next batch; `num_skipped` / `skipped` report unreadable images.
  With on_corrupt="skip", batches also hold "mask" (bool [B_local]): an unreadable image keeps
  its slot, with mask False, a zero image and label 0, so every other example stays at its
  position (and a resumed run sees the same batches).
  """

  def __init__(self, ds, *, start_step: int, batch_size: int, order: str = "global", **kwargs):
    super().__init__(ds, first_position=start_step * batch_size, **kwargs)
    self.step = start_step
    self.batch_size = batch_size
    self.order = order  # "global": independent of the process count; or "per_host"

  def __next__(self) -> dict[str, np.ndarray]:
    batch = self._next_raw()
    positions = batch.pop("position")
    self._account(positions)
    if "mask" in batch:
      for pos in positions[~batch["mask"]]:
        self._bad_image(int(pos))
    self._check_labels(batch["label"])
    self.step += 1
    return batch


class EvalIterator(_Iterator):
  """Finite iterator of {"image": [B_local, C, S, S, 3], "label", "mask", "index": [B_local]}.

  Every host yields `len(it)` batches (the same number on every host); padding examples have
  mask False, label 0, zero images and index -1. `index`: each example's position in the split
  (hosts read contiguous slices), to put outputs gathered from several hosts back in order."""

  def __init__(
    self,
    ds,
    *,
    num_examples: int,
    num_batches: int,
    batch_size: int,
    image_shape: tuple[int, ...],
    first_index: int = 0,
    **kwargs,
  ):
    super().__init__(ds, first_position=0, **kwargs)
    self.first_index = first_index
    self.num_examples = num_examples
    self.num_batches = num_batches
    self.batch_size = batch_size
    self._image_shape = image_shape
    self._emitted = 0
    self._exhausted = False

  def __len__(self) -> int:
    return self.num_batches

  def _padded(self, batch: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    n = 0 if batch is None else len(batch["label"])
    pad = self.batch_size - n
    if batch is None:
      batch = {
        "image": np.zeros((0, *self._image_shape), np.float32),
        "label": np.zeros((0,), np.int32),
        "index": np.zeros((0,), np.int64),
      }
    return {
      "image": np.concatenate([batch["image"], np.zeros((pad, *self._image_shape), np.float32)])
      if pad
      else batch["image"],
      "label": np.concatenate([batch["label"], np.zeros((pad,), np.int32)]),
      "mask": np.arange(self.batch_size) < n,
      "index": np.concatenate([batch["index"], np.full((pad,), -1, np.int64)]),
    }

  def __next__(self) -> dict[str, np.ndarray]:
    if self._emitted >= self.num_batches:
      raise StopIteration
    batch = None
    if not self._exhausted:
      try:
        batch = self._next_raw()
        positions = batch.pop("position")
        self._account(positions)
        batch["index"] = np.asarray(positions, np.int64) + self.first_index
        self._check_labels(batch["label"])
      except StopIteration:
        self._exhausted = True
        batch = None
    if not self._exhausted and self._emitted + 1 == self.num_batches:
      # The last batch: images dropped at the very end show up only as the stream ending.
      for _ in self._it:
        raise RuntimeError("evaluation stream longer than its batch count")
      self._exhausted = True
    if self._exhausted:
      self._account(np.zeros((0,), np.int64), end=self.num_examples)
    self._emitted += 1
    return self._padded(batch)


# ----------------------------------------------------------------------------- builders


def _positions_to_examples(table: datasets.ExampleTable, seed: int, process_index: int = 0):
  n = table.size

  def example_index(position):
    epoch, i = position // n, position % n
    key = tf.random.experimental.stateless_fold_in(
      tf.constant([seed, process_index], tf.int64), epoch
    )
    return tf.random.experimental.index_shuffle(i, key, tf.constant(n - 1, tf.int64))

  return example_index


def _with_empty_slots(
  ds: tf.data.Dataset, preprocess_example, image_shape, position_index: int, dtype=tf.float32
) -> tf.data.Dataset:
  """Each element preprocessed, or, where that fails, an empty slot at the same position:
  {"image": zeros, "label": 0, "position", "mask": False}; good examples get mask True."""

  def good(*args):
    return {**preprocess_example(*args), "mask": tf.constant(True)}

  def empty(*args):
    return {
      "image": tf.zeros(image_shape, dtype),
      "label": tf.constant(0, tf.int32),
      "position": tf.cast(args[position_index], tf.int64),
      "mask": tf.constant(False),
    }

  def one(*args):
    single = tf.data.Dataset.from_tensors(args)
    return single.map(good).ignore_errors().concatenate(single.map(empty)).take(1)

  return ds.interleave(
    one,
    cycle_length=tf.data.AUTOTUNE,
    block_length=1,
    num_parallel_calls=tf.data.AUTOTUNE,
    deterministic=True,
  )


def global_position(local_position, batch_size: int, process_index: int, process_count: int):
  """The global stream position of host `process_index`'s local position (see the module
  docstring): local batch k, row r -> global batch k, row process_index * batch_size + r."""
  return (
    (local_position // batch_size) * (batch_size * process_count)
    + process_index * batch_size
    + local_position % batch_size
  )


def create_train_iterator(
  dataset: str,
  split: str = "train",
  data_dir: str | None = None,
  global_batch_size: int = 128,
  image_size: int = 224,
  seed: int = 0,
  start_step: int = 0,
  preprocess: Mapping[str, Any] | None = None,
  *,
  process_index: int | None = None,
  process_count: int | None = None,
  on_corrupt: str = "fail",
  shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
  download: bool = False,
  in_memory_max_bytes: int = datasets.DEFAULT_IN_MEMORY_MAX_BYTES,
) -> TrainIterator:
  """Returns the infinite training iterator of this host's rows of each global batch; see the
  module docstring.

  Batches: {"image": [B_local, image_size, image_size, 3] (uint8 with distort_on="device",
  float32 with "host"), "label": int32 [B_local]}, B_local = global_batch_size // process_count.
  The global batch k (the hosts' batches in process order) depends on (seed, k,
  global_batch_size) only, for indexable splits; the same whatever start_step <= k it began at.
  """
  process_index, process_count = _process(process_index, process_count)
  batch_size = local_batch_size(global_batch_size, process_count)
  config = preprocessing.make_config(preprocess)
  source = datasets.get_source(
    dataset, data_dir, download=download, in_memory_max_bytes=in_memory_max_bytes
  )
  total = source.check_split(split)
  first = start_step * batch_size
  table = source.table(split, 0, total)
  # Seeds of the order and of the preprocessing: (seed, 0) for the global order on every host.
  example_key = tf.constant([seed, 0 if table is not None else process_index], tf.int64)

  if table is not None:
    example_index = _positions_to_examples(table, seed)

    def to_global(position):
      return global_position(position, batch_size, process_index, process_count)

    def load(position):
      g = to_global(position)
      encoded, label = table.fetch(example_index(g))
      return encoded, label, position, g

    def describe(position: int) -> str:
      g = to_global(tf.constant(position, tf.int64))
      return table.describe(int(example_index(g)))

    ds = tf.data.Dataset.range(first, _MAX_POSITION)
  else:
    start, stop = datasets.host_slice(total, process_index, process_count)
    n = stop - start
    if n == 0:
      raise ValueError(
        f"{dataset} {split}: host {process_index} of {process_count} has no examples"
      )
    stream = source.stream(split, start, stop)

    def epoch(e):
      shuffle_seed = (seed * 1_000_003 + e) * 4099 + process_index
      return stream.shuffle(shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=False)

    first_epoch = first // n
    ds = (
      tf.data.Dataset.range(first_epoch, _MAX_POSITION)
      .flat_map(epoch)
      .enumerate(first_epoch * n)
      .skip(first - first_epoch * n)
      .map(lambda position, ex: (ex[0], ex[1], position, position))
    )
    load = None

    def describe(position: int) -> str:
      return (
        f"{dataset} {split} example at training-stream position {position} of host "
        f"{process_index} (epoch {position // n})"
      )

  def preprocess_example(*args):
    # position: this host's stream position (to find dropped images); seed_position: the
    # global position for the global order, the host's position for the per-host one.
    encoded, label, position, seed_position = load(*args) if load is not None else args
    seed_ = tf.random.experimental.stateless_fold_in(example_key, seed_position)
    image = preprocessing.train_image(encoded, seed_, image_size, config)
    return {"image": image, "label": tf.cast(label, tf.int32), "position": position}

  if on_corrupt == "skip":
    ds = _with_empty_slots(
      ds,
      preprocess_example,
      (image_size, image_size, 3),
      position_index=0 if load is not None else 2,
      dtype=tf.uint8 if config.distort_on == "device" else tf.float32,
    )
  else:  # A dropped example is noticed by the iterator, which raises naming it.
    ds = ds.map(
      preprocess_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    ).ignore_errors()
  ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE).with_options(_options())
  return TrainIterator(
    ds,
    start_step=start_step,
    batch_size=batch_size,
    describe=describe,
    num_classes=source.info.num_classes,
    on_corrupt=on_corrupt,
    order="global" if table is not None else "per_host",
  )


def create_eval_iterator(
  dataset: str,
  split: str = "test",
  data_dir: str | None = None,
  global_batch_size: int = 128,
  image_size: int = 224,
  crops: int = 1,
  preprocess: Mapping[str, Any] | None = None,
  *,
  process_index: int | None = None,
  process_count: int | None = None,
  on_corrupt: str = "fail",
  download: bool = False,
  in_memory_max_bytes: int = datasets.DEFAULT_IN_MEMORY_MAX_BYTES,
) -> EvalIterator:
  """Returns a finite iterator over this host's slice, every example exactly once.

  Batches: {"image": float32 [B_local, crops, S, S, 3], "label": int32 [B_local],
  "mask": bool [B_local]}; the last batches are padded (mask False) so that every host yields
  ceil(ceil(n / process_count) / B_local) batches. crops: 1, 10 or 144 (see multicrop).
  """
  if crops not in multicrop.LAYOUTS:
    raise ValueError(f"crops must be one of {multicrop.LAYOUTS}, not {crops}")
  process_index, process_count = _process(process_index, process_count)
  batch_size = local_batch_size(global_batch_size, process_count)
  config = preprocessing.make_config(preprocess)
  source = datasets.get_source(
    dataset, data_dir, download=download, in_memory_max_bytes=in_memory_max_bytes
  )
  total = source.check_split(split)
  start, stop = datasets.host_slice(total, process_index, process_count)
  n = stop - start
  num_batches = max(1, math.ceil(math.ceil(total / process_count) / batch_size))
  table = source.table(split, start, stop)
  if table is not None:
    ds = tf.data.Dataset.range(n).map(lambda i: (*table.fetch(i), i))

    def describe(position: int) -> str:
      return table.describe(position)
  else:
    ds = source.stream(split, start, stop).enumerate().map(lambda i, ex: (ex[0], ex[1], i))

    def describe(position: int) -> str:
      return source.describe(split, start + position)

  def preprocess_example(encoded, label, position):
    image = multicrop.eval_crops(encoded, image_size, crops, config)
    return {"image": image, "label": tf.cast(label, tf.int32), "position": position}

  ds = (
    ds.map(preprocess_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    .ignore_errors()
    .batch(batch_size)
    .prefetch(1 if crops > 1 else tf.data.AUTOTUNE)
    .with_options(_options())
  )
  return EvalIterator(
    ds,
    num_examples=n,
    num_batches=num_batches,
    batch_size=batch_size,
    image_shape=(crops, image_size, image_size, 3),
    first_index=start,
    describe=describe,
    num_classes=source.info.num_classes,
    on_corrupt=on_corrupt,
  )


def check_dataset(
  dataset: str,
  splits: Sequence[str],
  data_dir: str | None = None,
  *,
  allow_empty_classes: bool = False,
  download: bool = False,
) -> datasets.DatasetInfo:
  """Checks, without decoding an image, that `splits` exist and (folders) that every class
  folder holds an image and the splits have the same classes; returns the DatasetInfo.

  Raises DatasetNotFoundError or DatasetError (a ValueError) saying how to fix the problem.
  """
  source = datasets.get_source(
    dataset, data_dir, download=download, in_memory_max_bytes=datasets.DEFAULT_IN_MEMORY_MAX_BYTES
  )
  splits = list(dict.fromkeys(splits))
  for split in splits:
    source.check_split(split)
  if isinstance(source, datasets.FolderSource):
    source.check_classes(splits, allow_empty_classes)
  return source.info


def get_info(
  dataset: str, data_dir: str | None = None, *, download: bool = False
) -> datasets.DatasetInfo:
  """The dataset's DatasetInfo (.num_classes, .splits {name: num_examples}, .class_names)."""
  return datasets.get_source(
    dataset, data_dir, download=download, in_memory_max_bytes=datasets.DEFAULT_IN_MEMORY_MAX_BYTES
  ).info
