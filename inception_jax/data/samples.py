"""Lays out sample-image tarballs (an ImageNet sample, CIFAR-10 as JPEGs) as `folder:` datasets.

    python -m inception_jax.data.samples imagenet DATA/imagenet-sample-500.tar /tmp/inet
    python -m inception_jax.data.samples cifar10 DATA/cifar10-jpeg.tar.gz /tmp/cifar --per_class=50

(DATA: the folder holding the tarballs; the development machines keep them beside the repository.)

- ImageNet sample (500 full-size JPEGs `imagenet-sample/<wnid>_<name>.JPEG`) -> `DEST/train/<wnid>/`
  (one image per class; the class index among the 500 present wnids is their sorted order).
- CIFAR-10 JPEGs (`cifar10/{train,test}/<class>/<n>.jpg`) -> `DEST/{train,test}/<class>/`,
  optionally only the first `per_class` files of each class and split.
"""

from __future__ import annotations

import collections
import os
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

from absl import flags

from inception_jax import cli


def extract_imagenet_sample(
  tar_path: str | os.PathLike,
  dest: str | os.PathLike,
  split: str = "train",
  limit: int | None = None,
) -> Path:
  """Extracts the ImageNet sample to `dest/<split>/<wnid>/<file>`; returns `dest`."""
  dest = Path(dest)
  with tarfile.open(tar_path) as tar:
    members = sorted(
      (m for m in tar.getmembers() if m.isfile() and m.name.lower().endswith((".jpeg", ".jpg"))),
      key=lambda m: m.name,
    )
    for member in members[:limit]:
      name = Path(member.name).name
      out = dest / split / name.split("_")[0] / name
      out.parent.mkdir(parents=True, exist_ok=True)
      with tar.extractfile(member) as src:
        out.write_bytes(src.read())
  return dest


def extract_cifar10(
  tar_path: str | os.PathLike, dest: str | os.PathLike, per_class: int | None = None
) -> Path:
  """Extracts CIFAR-10 JPEGs to `dest/{train,test}/<class>/`, at most `per_class` per class."""
  dest = Path(dest)
  counts: collections.Counter = collections.Counter()
  with tarfile.open(tar_path) as tar:
    for member in tar:  # streamed: a .tar.gz has no index, so stop reading nothing early
      parts = Path(member.name).parts
      if not member.isfile() or len(parts) != 4 or parts[0] != "cifar10":
        continue
      _, split, label, name = parts
      if per_class is not None and counts[split, label] >= per_class:
        continue
      counts[split, label] += 1
      out = dest / split / label / name
      out.parent.mkdir(parents=True, exist_ok=True)
      with tar.extractfile(member) as src:
        out.write_bytes(src.read())
  return dest


def define_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_integer(
    "per_class", None, "cifar10 only: the first N files of each class and split.", flag_values=fv
  )


def main(argv: Sequence[str]) -> int:
  """argv: [program, imagenet|cifar10, TAR, DEST, --per_class=N]."""
  f, rest = cli.parse(define_flags, argv, __doc__)
  if len(rest) != 3 or rest[0] not in ("imagenet", "cifar10"):
    print(f"usage: {__doc__.splitlines()[2].strip()}", file=sys.stderr)
    return 2
  which, tar, dest = rest
  if which == "imagenet":
    out = extract_imagenet_sample(tar, dest)
  else:
    out = extract_cifar10(tar, dest, per_class=f.per_class)
  print(f"folder:{out}")
  return 0


if __name__ == "__main__":
  cli.run(main)
