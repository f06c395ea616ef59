"""Folders of images read as pytorch-fid reads them (PIL, RGB, sorted, lower-case extensions) and
.npz statistics files."""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from inception_jax.fid.network import (
  FEATURE_DIM,
  IMAGE_EXTENSIONS,
  IMAGE_SIZE,
  FeatureExtractor,
  resize_numpy,
  same_count_on_every_host,
)


# ------------------------------------------------------------------------------------------------
# Folders and statistics files
# ------------------------------------------------------------------------------------------------
def list_images(folder: str | Path) -> tuple[list[Path], list[Path]]:
  """(images pytorch-fid reads, files it ignores that look like images: other-case extensions)."""
  folder = Path(folder)
  files = sorted(f for ext in IMAGE_EXTENSIONS for f in folder.glob(f"*.{ext}"))
  wanted = set(files)
  ignored = sorted(
    f
    for f in folder.iterdir()
    if f.is_file() and f not in wanted and f.suffix[1:].lower() in IMAGE_EXTENSIONS
  )
  return files, ignored


class FolderReport:
  """What reading a folder found: sizes, colour modes converted, unreadable files."""

  def __init__(self) -> None:
    self.sizes: collections.Counter = collections.Counter()
    self.modes: collections.Counter = collections.Counter()
    self.unreadable: list[str] = []

  def summary(self) -> dict[str, Any]:
    sizes = {f"{h}x{w}": n for (h, w), n in self.sizes.most_common()}
    areas = sorted(self.sizes, key=lambda s: s[0] * s[1])
    return {
      "image_sizes_hxw": {
        "distinct": len(self.sizes),
        "most_common": dict(list(sizes.items())[:5]),
        "smallest": "{}x{}".format(*areas[0]) if areas else None,
        "largest": "{}x{}".format(*areas[-1]) if areas else None,
      },
      "color_modes_read": dict(self.modes),
      "converted_to_rgb": sum(n for m, n in self.modes.items() if m != "RGB"),
      "unreadable_skipped": list(self.unreadable),
    }


def read_image(path: Path, report: FolderReport, skip_unreadable: bool) -> np.ndarray | None:
  """uint8 [H, W, 3] as pytorch-fid reads it (PIL, convert('RGB')), or None if skipped."""
  from PIL import Image

  try:
    with Image.open(path) as img:
      mode = img.mode
      rgb = np.asarray(img.convert("RGB"), np.uint8)
  except Exception as e:
    if skip_unreadable:
      report.unreadable.append(str(path))
      return None
    raise ValueError(
      f"cannot read image {path}: {e}; remove it, or pass --skip_unreadable "
      "to skip (and count) unreadable files"
    ) from e
  report.modes[mode] += 1
  report.sizes[rgb.shape[:2]] += 1
  return rgb


def folder_batches(
  files: Sequence[Path],
  local_batch: int,
  report: FolderReport,
  skip_unreadable: bool = False,
  resize: str = "bilinear",
) -> Iterator[np.ndarray]:
  """float32 [<=local_batch, 299, 299, 3] in [0, 1], each image resized on the host as
  resize('bilinear') does, so that images of any size share one compiled function.
  resize="none": the images must be 299x299 already."""
  if resize not in ("bilinear", "none"):
    raise ValueError(
      f"folders are resized on the host with pytorch-fid's bilinear resize "
      f"(or not at all: 'none'); resize={resize!r} is available for arrays "
      "(fid.activations)"
    )
  batch: list[np.ndarray] = []
  for path in files:
    rgb = read_image(path, report, skip_unreadable)
    if rgb is None:
      continue
    x = rgb.astype(np.float32) / np.float32(255.0)
    if resize == "bilinear":
      x = resize_numpy(x)
    elif x.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):
      raise ValueError(
        f"{path} is {x.shape[0]}x{x.shape[1]}; resize='none' needs "
        f"{IMAGE_SIZE}x{IMAGE_SIZE} images (use resize='bilinear')"
      )
    batch.append(x)
    if len(batch) == local_batch:
      yield np.stack(batch)
      batch = []
  if batch:
    yield np.stack(batch)


def folder_features(
  folder: str | Path, extractor: Any, skip_unreadable: bool = False, resize: str = "bilinear"
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Features of every image of a folder (split over the hosts) and the folder's report.

  extractor: a FeatureExtractor with resize="none" (images arrive resized), or a function
  returning one (called once the folder is known to hold images)."""
  folder = Path(folder)
  if not folder.is_dir():
    raise ValueError(f"{folder} is not a folder of images or an .npz of statistics")
  files, ignored = list_images(folder)
  if not files:
    raise ValueError(
      f"{folder} holds no images with the extensions pytorch-fid reads "
      f"({', '.join(IMAGE_EXTENSIONS)}, lower case)"
      + (
        f"; {len(ignored)} file(s) such as {ignored[0].name} have them in another case: rename them"
        if ignored
        else ""
      )
    )
  if not isinstance(extractor, FeatureExtractor):
    extractor = extractor()
  if extractor.resize != "none":
    raise ValueError(
      "folder images are resized on the host: pass a FeatureExtractor with resize='none'"
    )
  mine = files[jax.process_index() :: jax.process_count()]
  report = FolderReport()
  n_batches = same_count_on_every_host(-(-len(mine) // extractor.local_batch))
  batches = folder_batches(mine, extractor.local_batch, report, skip_unreadable, resize)
  empty = np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
  padded = (next(batches, empty) for _ in range(n_batches))
  try:
    out = extractor.run_batches(padded)
  except ValueError as e:
    if report.unreadable and "no images" in str(e):
      raise ValueError(f"{folder}: every image was unreadable ({len(report.unreadable)})") from e
    raise
  info = {
    "path": str(folder),
    "kind": "folder",
    "files": len(files),
    "n": len(out["pool3"]),
    "ignored_other_case_extensions": [f.name for f in ignored],
    **report.summary(),
  }
  return out, info


def load_statistics(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
  """(mu, sigma, info) from an .npz with `mu` and `sigma` (pytorch-fid's --save-stats format)."""
  path = Path(path)
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except (OSError, EOFError, ValueError, AttributeError) as e:
    raise ValueError(f"{path} cannot be read as an .npz of statistics: {e}") from e
  missing = [k for k in ("mu", "sigma") if k not in arrays]
  if missing:
    raise ValueError(
      f"{path} has no {' or '.join(missing)} array (found {sorted(arrays)}); "
      "expected statistics written by --save_stats or pytorch-fid"
    )
  mu, sigma = np.asarray(arrays["mu"], np.float64), np.asarray(arrays["sigma"], np.float64)
  card = json.loads(str(arrays["card"])) if "card" in arrays else None
  n = int(arrays["n"]) if "n" in arrays else None
  if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
    raise ValueError(f"{path}: mu {mu.shape} and sigma {sigma.shape} are not [D] and [D, D]")
  if mu.shape[0] != FEATURE_DIM:
    raise ValueError(
      f"{path} holds statistics of dimension {mu.shape[0]}, not the "
      f"{FEATURE_DIM} pool3 features of the FID network (pytorch-fid --dims "
      f"{mu.shape[0]}?); recompute them with --dims 2048 / this tool"
    )
  info = {"path": str(path), "kind": "statistics", "n": n, "saved_with_card": card is not None}
  if card is not None:
    info["saved_card"] = card
  return mu, sigma, info
