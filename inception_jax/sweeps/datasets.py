"""The data of the `small` scale, a config field: TFDS `cifar10` by default, or what the user names.

`--dataset` of a sweep (the `dataset` field of `Sweep`) is one of
  - a TFDS name (`cifar10`, the default): used as is; evaluation reads the first
    `TEST_PER_CLASS * 10` test examples (TFDS's test split is not ordered by class);
  - `folder:PATH`, PATH holding `train/<class>/<image>` and `test/<class>/<image>`;
  - a tarball (.tar, .tar.gz, .tgz) of such JPEG folders (e.g. `cifar10/{train,test}/<class>/`),
    or CIFAR-10's python tarball (`cifar-10-python.tar.gz`: pickled batches, written out as PNGs).
A folder or a tarball becomes a class-balanced view under DATA_ROOT (`prepare`, once): `train` (all
of it), `test` (the first TEST_PER_CLASS images of each class: a folder split is ordered by class,
so a truncated evaluation would otherwise see only the first classes) and `test_crops`
(CROPS_PER_CLASS per class, for the multi-crop rows, whose 144 crops cost 144 forward passes per
image). The view's files are symlinks. Nothing here is downloaded, and nothing outside the paths
the user names is read.
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
TEST_PER_CLASS, CROPS_PER_CLASS = 200, 10
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
  """The config's `dataset` for a source (nothing is read or written): a TFDS name as is, a folder
  or tarball as `folder:ROOT/<name>_t<TEST_PER_CLASS>_c<CROPS_PER_CLASS>` (what `prepare`
  builds)."""
  if not source.startswith(FOLDER_PREFIX) and not is_tarball(source):
    return source
  view = f"{_name(source)}_t{TEST_PER_CLASS}_c{CROPS_PER_CLASS}"
  return f"{FOLDER_PREFIX}{Path(root or DATA_ROOT) / view}"


def crops_split(dataset: str) -> str | None:
  """`test_crops` for a view `prepare` built, else None (the config's own eval split)."""
  if (
    dataset.startswith(FOLDER_PREFIX) and Path(dataset[len(FOLDER_PREFIX) :], "test_crops").is_dir()
  ):
    return "test_crops"
  return None


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
  """Builds what `dataset_field(source)` names (a no-op for TFDS names and for a view already
  built) and returns it."""
  field = dataset_field(source, root)
  if not field.startswith(FOLDER_PREFIX):
    return field
  target = Path(field[len(FOLDER_PREFIX) :])
  if (target / "done").exists():
    return field
  root = Path(root or DATA_ROOT)
  if is_tarball(source):
    full = _extract(Path(source), root / _name(source))
  else:
    full = Path(source[len(FOLDER_PREFIX) :])
  for split in ("train", "test"):
    if not (full / split).is_dir():
      raise FileNotFoundError(
        f"{source}: no {split}/ folder in {full}; a small-scale dataset needs "
        "train/<class>/<image> and test/<class>/<image>"
      )
  tmp = root / f".{target.name}-{os.getpid()}"
  tmp.mkdir(parents=True)
  (tmp / "train").symlink_to((full / "train").resolve(), target_is_directory=True)
  for split, per_class in (("test", TEST_PER_CLASS), ("test_crops", CROPS_PER_CLASS)):
    for class_dir in sorted(p for p in (full / "test").iterdir() if p.is_dir()):
      out = tmp / split / class_dir.name
      out.mkdir(parents=True)
      for f in sorted(class_dir.iterdir())[:per_class]:
        (out / f.name).symlink_to(f.resolve())
  (tmp / "done").write_text("")
  if target.exists():
    shutil.rmtree(target)
  tmp.rename(target)
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
