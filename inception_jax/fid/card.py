"""The protocol card: what a score depends on (weights, preprocessing, inputs, software), so that
two scores can be checked for comparability."""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

import inception_jax
from inception_jax.fid.network import FEATURE_DIM, IMAGE_SIZE


def array_sha256(a: np.ndarray) -> str:
  return hashlib.sha256(np.ascontiguousarray(a, dtype="<f8").tobytes()).hexdigest()


def file_sha256(path: str | Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def software_versions() -> dict[str, str]:
  versions = {"python": platform.python_version()}
  for name in ("inception_jax", "jax", "jaxlib", "flax", "numpy", "scipy", "pillow"):
    try:
      versions[name] = md.version(name)
    except md.PackageNotFoundError:
      if name == "inception_jax":
        versions[name] = inception_jax.__version__
  versions["backend"] = (
    f"{jax.default_backend()} x{jax.device_count()} ({jax.process_count()} process(es))"
  )
  return versions


def n_warning(n: int | None, where: str) -> str | None:
  if n is not None and n < FEATURE_DIM:
    return (
      f"{where}: N={n} < {FEATURE_DIM} (the feature dimension): the covariance is rank "
      f"deficient and FID is biased upwards at this N; compare scores only at equal N "
      "(the usual protocol is 50,000 samples)"
    )
  return None


def protocol_card(
  weights_path: str | None,
  weights_sha256: str | None,
  resize_method: str,
  sides: Sequence[dict[str, Any]],
  batch_size: int,
  fid: float | None = None,
) -> dict[str, Any]:
  """What a score depends on, so that two scores can be checked for comparability."""
  card: dict[str, Any] = {}
  if fid is not None:
    card["fid"] = fid
  card.update(
    {
      "weights": {
        "path": weights_path,
        "sha256": weights_sha256,
        "network": "inception_v3_fid (pytorch-fid FIDInceptionA/C/E_1/E_2, 1008 "
        "classes), pool3 features (2048)",
      },
      "preprocessing": {
        "resize": resize_method,
        "to": f"{IMAGE_SIZE}x{IMAGE_SIZE}",
        "antialias": resize_method == "bilinear_antialias",
        "align_corners": False if resize_method != "none" else None,
        "input_scaling": "x in [0, 1] (uint8 / 255, PIL RGB) -> 2 * x - 1",
        "resized_on": "host (float32, torch's bilinear weights)",
      },
      "sides": list(sides),
      "batch_size": batch_size,
      "software": software_versions(),
    }
  )
  card["warnings"] = [w for s in sides if (w := n_warning(s.get("n"), s["path"]))]
  return card
