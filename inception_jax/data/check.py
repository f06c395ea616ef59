"""Lists a dataset's unreadable images before a run meets them.

    python -m inception_jax.data.check DATASET [--split=NAME ...] [--data_dir=DIR]

DATASET is a TFDS name, `folder:PATH` or `digits`, as in `--config.dataset`. Every image of each
split (all splits unless --split is given) is decoded in parallel with the decoder the pipelines
use (`preprocessing.decode_image`); the unreadable ones are printed, one per line, and the exit
status is 1 if there are any (0 if none). A training run meets an unreadable image only when its
batch comes; with `--config.on_corrupt=skip` it skips and counts it instead of stopping.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import tensorflow as tf
from absl import flags

from inception_jax import cli
from inception_jax.data import datasets, preprocessing


def _decoded(split_ds: tf.data.Dataset) -> tf.data.Dataset:
  """(encoded, index) -> (index, number of decoded values); undecodable images are dropped."""

  def decode(encoded, index):
    return index, tf.size(preprocessing.decode_image(encoded))

  options = tf.data.Options()
  options.deterministic = False
  return (
    split_ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    .ignore_errors()
    .batch(256)
    .prefetch(tf.data.AUTOTUNE)
    .with_options(options)
  )


def find_unreadable(
  dataset: str, splits: Sequence[str] | None = None, data_dir: str | None = None
) -> dict[str, tuple[int, list[str]]]:
  """{split: (number of images, names of the unreadable ones)} for each split."""
  source = datasets.get_source(
    dataset, data_dir, in_memory_max_bytes=datasets.DEFAULT_IN_MEMORY_MAX_BYTES
  )
  results = {}
  for split in splits or sorted(source.info.splits):
    n = source.check_split(split)
    table = source.table(split, 0, n)
    if table is not None:
      ds = tf.data.Dataset.range(n).map(lambda i, t=table: (t.fetch(i)[0], i))
      describe = table.describe
    else:
      ds = source.stream(split, 0, n).enumerate().map(lambda i, ex: (ex[0], i))
      describe = lambda i, s=split: source.describe(s, i)  # noqa: E731
    readable = set()
    for indices, _ in _decoded(ds).as_numpy_iterator():
      readable.update(indices.tolist())
    results[split] = (n, [describe(i) for i in range(n) if i not in readable])
  return results


def define_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_multi_string(
    "split", None, "Split to check (repeatable; default: all).", flag_values=fv
  )
  flags.DEFINE_string("data_dir", None, "TFDS data directory.", flag_values=fv)


def main(argv: Sequence[str]) -> int:
  """argv: [program, DATASET, --split=NAME ..., --data_dir=DIR]; the exit status."""
  f, rest = cli.parse(define_flags, argv, __doc__)
  if len(rest) != 1:
    print("usage: python -m inception_jax.data.check DATASET [--split=NAME ...]", file=sys.stderr)
    return 2
  dataset = rest[0]
  start = time.perf_counter()
  try:
    results = find_unreadable(dataset, f.split, f.data_dir)
  except (datasets.DatasetNotFoundError, datasets.DatasetError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  seconds = time.perf_counter() - start
  total_bad = 0
  for split, (n, bad) in results.items():
    total_bad += len(bad)
    print(f"{split}: {n} images, {len(bad)} unreadable")
    for name in bad:
      print(f"  {name}")
  print(
    f"checked {sum(n for n, _ in results.values())} images in {seconds:.1f}s; "
    f"{total_bad} unreadable"
  )
  return 1 if total_bad else 0


if __name__ == "__main__":
  cli.run(main)
