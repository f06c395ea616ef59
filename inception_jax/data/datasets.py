"""Where examples come from: TFDS datasets by name, `folder:PATH` image folders, `digits`.

Every source yields *encoded* images (JPEG/PNG/... bytes) and integer labels; decoding happens in
the preprocessing so that a training crop can be decoded without decoding the whole JPEG.

A source hands out one contiguous slice `[start, stop)` of a split per host
(`host_slice(num_examples, process_index, process_count)`), either

- as an `ExampleTable` (random access by example index: image folders, and TFDS splits small enough
  to hold their encoded bytes in memory, e.g. `digits` or `cifar10`), which lets the training
  pipeline shuffle a whole epoch exactly and resume at any step without reading skipped images; or
- as a stream (`tf.data.Dataset` of encoded examples in a fixed order: large TFDS splits such as
  `imagenet2012`), shuffled with a buffer.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from inception_jax.data import digits as digits_lib
from inception_jax.errors import DatasetError, DatasetNotFoundError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
FOLDER_PREFIX = "folder:"
# TFDS splits whose encoded bytes (per host) are at most this size are held in memory.
DEFAULT_IN_MEMORY_MAX_BYTES = 1 << 30


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the model and the trainer need to know about a dataset."""

  name: str
  num_classes: int
  splits: dict[str, int]  # split name -> number of examples
  class_names: tuple[str, ...]


def host_slice(num_examples: int, process_index: int, process_count: int) -> tuple[int, int]:
  """Returns [start, stop) of this host's contiguous share; shares differ in size by at most 1."""
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} not in [0, {process_count})")
  start = num_examples * process_index // process_count
  stop = num_examples * (process_index + 1) // process_count
  return start, stop


class ExampleTable:
  """Random access to examples [0, size) of one host's slice: index -> (encoded bytes, label).

  Values live in TF hash tables, so tf.data functions capture a handle rather than a constant
  holding every path (or every image) in the graph.
  """

  def __init__(
    self,
    labels: np.ndarray,
    *,
    paths: list[str] | None = None,
    encoded: list[bytes] | None = None,
    names: list[str] | None = None,
  ):
    if (paths is None) == (encoded is None):
      raise ValueError("pass exactly one of paths= or encoded=")
    self.size = len(labels)
    self.labels = np.asarray(labels, np.int64)
    self.paths = paths
    self._names = names if names is not None else paths
    keys = tf.range(self.size, dtype=tf.int64)
    values = tf.constant(paths if paths is not None else encoded, dtype=tf.string)
    self._values = tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(keys, values), default_value=""
    )
    self._labels = tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(keys, tf.constant(self.labels)), default_value=-1
    )

  def fetch(self, index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Returns (encoded image bytes, int64 label) of example `index` (a scalar int64 tensor)."""
    value = self._values.lookup(index)
    encoded = tf.io.read_file(value) if self.paths is not None else value
    return encoded, self._labels.lookup(index)

  def describe(self, index: int) -> str:
    """Names example `index` for error messages: its file path where there is one."""
    if self._names is not None:
      return str(self._names[index])
    return f"example {index}"


class Source:
  """A dataset: its info, and per split either an ExampleTable or a stream of its examples."""

  info: DatasetInfo

  def check_split(self, split: str) -> int:
    if split not in self.info.splits:
      raise DatasetError(
        f"dataset {self.info.name!r} has no split {split!r}; its splits "
        f"are {sorted(self.info.splits)}{self._missing_split_hint(split)}"
      )
    return self.info.splits[split]

  def _missing_split_hint(self, split: str) -> str:
    del split
    return (
      ". Name one of them (in experiments.run: --config.train_split=NAME or "
      "--config.eval_split=NAME)"
    )

  def table(self, split: str, start: int, stop: int) -> ExampleTable | None:
    """Random access to examples [start, stop) of `split`, or None where only streaming works."""
    raise NotImplementedError

  def stream(self, split: str, start: int, stop: int) -> tf.data.Dataset:
    """Examples [start, stop) of `split` in a fixed order, as (encoded bytes, int64 label)."""
    raise NotImplementedError

  def describe(self, split: str, index: int) -> str:
    return f"{self.info.name} {split} example {index}"


# ----------------------------------------------------------------------------- folders


class FolderSource(Source):
  """`folder:PATH`: images in `PATH/<split>/<class name>/<image>`, classes in sorted order.

  This is the layout of TFDS's ImageFolder (`tfds.folder_dataset.ImageFolder`); the class list is
  the sorted union of class folders over all splits, so labels agree between splits.
  """

  def __init__(self, root: str | os.PathLike):
    self.root = Path(root).expanduser()
    layout = (
      f"expected images in {self.root}/<split>/<class name>/<image> "
      f"(e.g. {self.root}/train/cat/0001.jpg; extensions {', '.join(IMAGE_EXTENSIONS)})"
    )
    if not self.root.is_dir():
      raise DatasetNotFoundError(f"folder dataset {str(self.root)!r} does not exist: {layout}")
    split_dirs = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
    class_names = sorted(
      {c.name for s in split_dirs for c in s.iterdir() if c.is_dir() and not c.name.startswith(".")}
    )
    if not class_names:
      raise DatasetNotFoundError(
        f"folder dataset {str(self.root)!r} has no class folders: {layout}"
      )
    label_of = {name: i for i, name in enumerate(class_names)}
    self._files: dict[str, tuple[list[str], np.ndarray]] = {}
    # split -> {class folder name: number of images}, for the checks of `check_splits`.
    self.class_counts: dict[str, dict[str, int]] = {}
    for split_dir in split_dirs:
      paths, labels = [], []
      counts = self.class_counts.setdefault(split_dir.name, {})
      for class_dir in sorted(c for c in split_dir.iterdir() if c.is_dir()):
        if class_dir.name.startswith("."):
          continue
        counts[class_dir.name] = 0
        for f in sorted(class_dir.iterdir()):
          if f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith("."):
            paths.append(str(f))
            labels.append(label_of[class_dir.name])
            counts[class_dir.name] += 1
      if paths:
        self._files[split_dir.name] = (paths, np.asarray(labels, np.int64))
    if not self._files:
      raise DatasetNotFoundError(f"folder dataset {str(self.root)!r} has no images: {layout}")
    self.info = DatasetInfo(
      name=FOLDER_PREFIX + str(self.root),
      num_classes=len(class_names),
      splits={s: len(p) for s, (p, _) in self._files.items()},
      class_names=tuple(class_names),
    )

  def _missing_split_hint(self, split: str) -> str:
    where = self.root / split
    found = (
      f"{where} exists but holds no images" if where.is_dir() else f"there is no folder {where}"
    )
    return (
      f" ({found}). Put its images in {where}/<class name>/, or name an existing split "
      f"(in experiments.run: --config.train_split=NAME or --config.eval_split=NAME)"
    )

  def check_classes(self, splits: list[str], allow_empty_classes: bool = False) -> None:
    """Every class folder of each split holds an image, and the splits have the same class
    folders; raises DatasetError naming the folders otherwise (unless allow_empty_classes)."""
    if allow_empty_classes:
      return
    override = "set --config.allow_empty_classes=True (allow_empty_classes=True)"
    empty = [
      str(self.root / s / c)
      for s in splits
      for c, n in self.class_counts.get(s, {}).items()
      if n == 0
    ]
    if empty:
      raise DatasetError(
        f"{len(empty)} class folder(s) hold no images ({', '.join(IMAGE_EXTENSIONS)}): "
        f"{', '.join(empty[:10])}{' ...' if len(empty) > 10 else ''}. Put images in "
        f"them or remove them; to keep them as classes without examples, {override}."
      )
    names = {s: set(self.class_counts.get(s, {})) for s in splits}
    for a, b in zip(splits, splits[1:], strict=False):
      if names[a] != names[b]:
        only = {x: sorted(names[x] - names[y]) for x, y in ((a, b), (b, a))}
        raise DatasetError(
          f"the {a!r} and {b!r} splits of {self.root} have different class folders "
          f"({len(names[a])} vs {len(names[b])} classes): only in {a!r}: "
          f"{only[a][:10]}, only in {b!r}: {only[b][:10]}. Labels are indices into "
          f"the sorted union of the class names, so the splits must list the same "
          f"classes: add the missing folders (with images) or, if a split really "
          f"lacks some classes, {override}."
        )

  def table(self, split: str, start: int, stop: int) -> ExampleTable:
    self.check_split(split)
    paths, labels = self._files[split]
    return ExampleTable(labels[start:stop], paths=paths[start:stop])

  def describe(self, split: str, index: int) -> str:
    return self._files[split][0][index]


# ----------------------------------------------------------------------------- TFDS


def _manual_download_message(builder: tfds.core.DatasetBuilder, data_dir: str) -> str:
  manual_dir = Path(data_dir).expanduser() / "downloads" / "manual"
  name = builder.name
  if name.startswith("imagenet2012"):
    what = (
      "ILSVRC2012_img_train.tar (138 GB) and ILSVRC2012_img_val.tar (6.3 GB), as downloaded "
      "from https://image-net.org/download-images after registering"
    )
  else:
    what = " ".join(str(builder.MANUAL_DOWNLOAD_INSTRUCTIONS).split())
  return (
    f"TFDS dataset {name!r} is not prepared in {data_dir}. It needs a manual download: put "
    f"{what} into {manual_dir}/ and run\n  tfds build {name} --data_dir={data_dir}\n"
    f"(or call tfds.builder({name!r}, data_dir={data_dir!r}).download_and_prepare()); "
    f"preparing it writes {data_dir}/{name}/<version>/. If it is prepared elsewhere, "
    f"pass that folder (the one holding {name}/): --config.data_dir=DIR in "
    f"experiments.run and experiments.evaluate (data_dir= in the data API)."
  )


class TfdsSource(Source):
  """Any TFDS image classification dataset by name, read as encoded bytes (SkipDecoding)."""

  def __init__(
    self,
    name: str,
    data_dir: str | None = None,
    *,
    download: bool = False,
    in_memory_max_bytes: int = DEFAULT_IN_MEMORY_MAX_BYTES,
    builder: tfds.core.DatasetBuilder | None = None,
  ):
    if builder is None:
      try:
        builder = tfds.builder(name, data_dir=data_dir)
      except tfds.core.registered.DatasetNotFoundError as e:
        raise DatasetNotFoundError(
          f"unknown dataset {name!r}: not a TFDS dataset name, not 'digits' and not "
          f"'folder:PATH'.\n{e}"
        ) from None
    self.builder = builder
    self.in_memory_max_bytes = in_memory_max_bytes
    self._tables: dict[tuple[str, int, int], ExampleTable] = {}
    data_dir = str(builder.data_dir_root)
    if not builder.is_prepared():
      if getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None):
        raise DatasetNotFoundError(_manual_download_message(builder, data_dir))
      if not download:
        raise DatasetNotFoundError(
          f"TFDS dataset {builder.name!r} is not prepared in {data_dir} (looked for "
          f"{builder.data_dir}). Run\n  tfds build {builder.name} --data_dir={data_dir}\n"
          f"on a machine with internet access (or pass download=True), or point "
          f"--config.data_dir=DIR (data_dir= in the data API) at the folder that holds "
          f"{builder.name}/."
        )
      builder.download_and_prepare()
    features = builder.info.features
    self.image_key, self.label_key = self._supervised_keys(builder)
    label_feature = features[self.label_key]
    if not isinstance(label_feature, tfds.features.ClassLabel):
      raise ValueError(f"{builder.name}: label feature {self.label_key!r} is not a ClassLabel")
    self.info = DatasetInfo(
      name=name,
      num_classes=label_feature.num_classes,
      splits={s: int(v.num_examples) for s, v in builder.info.splits.items()},
      class_names=tuple(label_feature.names),
    )

  @staticmethod
  def _supervised_keys(builder) -> tuple[str, str]:
    keys = builder.info.supervised_keys
    if keys and len(keys) == 2 and all(isinstance(k, str) for k in keys):
      return keys[0], keys[1]
    features = builder.info.features
    if "image" in features and "label" in features:
      return "image", "label"
    raise ValueError(
      f"{builder.name}: cannot tell the image and label features apart "
      f"({list(features)}); it is not an image classification dataset"
    )

  def _read(self, split: str, start: int, stop: int) -> tf.data.Dataset:
    self.check_split(split)
    instruction = tfds.core.ReadInstruction(split, from_=start, to=stop, unit="abs")
    ds = self.builder.as_dataset(
      split=instruction,
      shuffle_files=False,
      decoders={self.image_key: tfds.decode.SkipDecoding()},
      read_config=tfds.ReadConfig(interleave_cycle_length=1, try_autocache=False),
    )
    image_key, label_key = self.image_key, self.label_key
    return ds.map(lambda ex: (ex[image_key], tf.cast(ex[label_key], tf.int64)))

  def table(self, split: str, start: int, stop: int) -> ExampleTable | None:
    total = self.check_split(split)
    num_bytes = int(self.builder.info.splits[split].num_bytes or 0)
    if num_bytes * (stop - start) > self.in_memory_max_bytes * max(total, 1):
      return None
    if (split, start, stop) not in self._tables:  # loaded once per process
      self._tables[split, start, stop] = self._load_table(split, start, stop)
    return self._tables[split, start, stop]

  def _load_table(self, split: str, start: int, stop: int) -> ExampleTable:
    encoded, labels = [], []
    for images, batch_labels in self._read(split, start, stop).batch(1024).as_numpy_iterator():
      encoded.extend(images.tolist())
      labels.extend(batch_labels.tolist())
    names = [f"{self.info.name} {split} example {i}" for i in range(start, stop)]
    return ExampleTable(np.asarray(labels, np.int64), encoded=encoded, names=names)

  def stream(self, split: str, start: int, stop: int) -> tf.data.Dataset:
    return self._read(split, start, stop)


# ----------------------------------------------------------------------------- entry point

_SOURCES: dict[tuple[Any, ...], Source] = {}


def get_source(dataset: str, data_dir: str | None = None, **kwargs: Any) -> Source:
  """Returns the Source for a dataset name: `digits`, `folder:PATH` or a TFDS name.

  TFDS sources are cached per process; folders are scanned again each time (they may change).
  """
  if dataset.startswith(FOLDER_PREFIX):
    return FolderSource(dataset[len(FOLDER_PREFIX) :])
  key = (dataset, data_dir, tuple(sorted(kwargs.items())))
  if key not in _SOURCES:
    if dataset == "digits":
      source: Source = TfdsSource("digits", builder=digits_lib.builder(data_dir), **kwargs)
    else:
      source = TfdsSource(dataset, data_dir, **kwargs)
    _SOURCES[key] = source
  return _SOURCES[key]
