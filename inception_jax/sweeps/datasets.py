"""The data of the `small` scale, a config field: TFDS `cifar10` by default, or what the user names.

`--dataset` of a sweep (the `dataset` field of `Sweep`) is one of
  - a TFDS name (`cifar10`, the default): used as is;
  - `folder:PATH`, PATH holding `train/<class>/<image>` and `test/<class>/<image>`: used as is;
  - a tarball (.tar, .tar.gz, .tgz) of such JPEG folders (e.g. `cifar10/{train,test}/<class>/`),
    or CIFAR-10's python tarball (`cifar-10-python.tar.gz`: pickled batches, written out as PNGs),
    extracted once under DATA_ROOT (`prepare`) and read as a folder.
Every row trains on the whole `train` split and is evaluated on the whole `test` split (CIFAR-10:
50,000 and 10,000 images). Nothing here is downloaded, and nothing outside the paths the user
names is read.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_ROOT = REPO_ROOT / "workdirs" / "data"
DEFAULT = "cifar10"  # TFDS
FOLDER_PREFIX = "folder:"
TARBALL_SUFFIXES = (".tar", ".tar.gz", ".tgz")
CIFAR10_PYTHON_DIR = "cifar-10-batches-py"


def is_tarball(source: str) -> bool:
  return source.endswith(TARBALL_SUFFIXES) and not source.startswith(FOLDER_PREFIX)


def _name(source: str) -> str:
  """A short name for the view: the folder's name, or the tarball's without its suffixes and a
  trailing format word ('cifar10-jpeg.tar.gz' and 'cifar-10-python.tar.gz' -> 'cifar10')."""
  if source.startswith(FOLDER_PREFIX):
    return Path(source[len(FOLDER_PREFIX) :]).resolve().name
  stem = Path(source).name
  for suffix in TARBALL_SUFFIXES:
    stem = stem.removesuffix(suffix)
  stem = re.sub(r"[-_](jpeg|jpg|png|python|py)$", "", stem)
  return stem.replace("-", "")


def dataset_field(source: str, root: str | os.PathLike | None = None) -> str:
  """The config's `dataset` for a source (nothing is read or written): a TFDS name or a folder as
  is, a tarball as `folder:ROOT/<name>` (what `prepare` extracts)."""
  if not is_tarball(source):
    return source
  return f"{FOLDER_PREFIX}{Path(root or DATA_ROOT) / _name(source)}"


def relative(path: str | os.PathLike) -> str:
  """`path` relative to the repository when it lies inside it (what result tables show)."""
  p = Path(path)
  try:
    return str(p.resolve().relative_to(REPO_ROOT))
  except ValueError:
    return str(path)


def display(dataset: str) -> str:
  if dataset.startswith(FOLDER_PREFIX):
    return FOLDER_PREFIX + relative(dataset[len(FOLDER_PREFIX) :])
  return dataset


def prepare(source: str, root: str | os.PathLike | None = None) -> str:
  """Extracts a tarball once (a no-op for TFDS names, folders and a tarball already extracted),
  checks that a folder has train/ and test/, and returns `dataset_field(source)`."""
  field = dataset_field(source, root)
  if not field.startswith(FOLDER_PREFIX):
    return field
  if is_tarball(source):
    _extract(Path(source), Path(field[len(FOLDER_PREFIX) :]))
  full = Path(field[len(FOLDER_PREFIX) :])
  for split in ("train", "test"):
    if not (full / split).is_dir():
      raise FileNotFoundError(
        f"{source}: no {split}/ folder in {full}; a small-scale dataset needs "
        "train/<class>/<image> and test/<class>/<image>"
      )
  return field


def _extract(tarball: Path, full: Path) -> Path:
  """The tarball's train/ and test/ folders under `full` (extracted once)."""
  if (full / "test").is_dir():
    return full
  if not tarball.is_file():
    raise FileNotFoundError(f"{tarball} does not exist (expected a tarball of the dataset)")
  tmp = full.parent / f".extract-{os.getpid()}"
  with tarfile.open(tarball) as tar:
    tar.extractall(tmp, filter="data")
  python = next(tmp.rglob(CIFAR10_PYTHON_DIR), None)
  if python is not None:
    _cifar10_python_to_folders(python, tmp / "folders")
    found = tmp / "folders"
  else:
    found = next(
      (p.parent for p in sorted(tmp.rglob("test")) if (p.parent / "train").is_dir()), None
    )
    if found is None:
      shutil.rmtree(tmp)
      raise FileNotFoundError(
        f"{tarball} holds neither {CIFAR10_PYTHON_DIR}/ (CIFAR-10's python tarball) nor a "
        "folder with train/ and test/ class folders"
      )
  full.parent.mkdir(parents=True, exist_ok=True)
  found.rename(full)
  shutil.rmtree(tmp)
  return full


def _cifar10_python_to_folders(batches: Path, out: Path) -> None:
  """CIFAR-10's pickled batches as out/{train,test}/<class name>/<n>.png."""
  meta = _unpickle(batches / "batches.meta")
  names = [n.decode() if isinstance(n, bytes) else n for n in meta[b"label_names"]]
  parts = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
  for split, files in parts.items():
    n = 0
    for file in files:
      batch = _unpickle(batches / file)
      images = np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
      for image, label in zip(images, batch[b"labels"], strict=True):
        path = out / split / names[label] / f"{n}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png(image))
        n += 1


def _unpickle(path: Path) -> dict:
  with open(path, "rb") as f:
    return pickle.load(f, encoding="bytes")  # CIFAR-10's own format: the file the user named


def png(rgb: np.ndarray) -> bytes:
  """A uint8 [H, W, 3] image as PNG bytes (8-bit RGB, no filter)."""
  h, w, _ = rgb.shape
  raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

  def chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

  header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
  return (
    b"\x89PNG\r\n\x1a\n"
    + chunk(b"IHDR", header)
    + chunk(b"IDAT", zlib.compress(raw))
    + chunk(b"IEND", b"")
  )
