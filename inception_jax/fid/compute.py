"""The command line's work: the FID of two sides (folders of images or .npz statistics), the IS of
folders, the protocol card, or with save_stats the statistics of one folder (`run`)."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from inception_jax.fid.card import array_sha256, file_sha256, protocol_card
from inception_jax.fid.folders import folder_features, load_statistics
from inception_jax.fid.network import DEFAULT_BATCH_SIZE, FeatureExtractor, from_pytorch_fid
from inception_jax.fid.scores import frechet_distance, inception_score, statistics


def _side(path: str, get_extractor, skip_unreadable: bool, splits: int, resize_method: str):
  """(mu, sigma, info) of a folder or an .npz."""
  if path.endswith(".npz"):
    return load_statistics(path)
  out, info = folder_features(path, get_extractor, skip_unreadable, resize_method)
  mu, sigma = statistics(out["pool3"]) if info["n"] >= 2 else (None, None)
  if mu is None:
    raise ValueError(f"{path}: statistics need at least 2 images, found {info['n']}")
  if info["n"] >= splits:
    m, s = inception_score(out["logits_unbiased"], splits)
    info["inception_score"] = {"mean": m, "std": s, "splits": splits}
  return mu, sigma, info


def run(
  paths: Sequence[str],
  weights: str | None,
  *,
  save_stats: bool = False,
  batch_size: int = DEFAULT_BATCH_SIZE,
  resize_method: str = "bilinear",
  card_path: str | None = "fid_card.json",
  skip_unreadable: bool = False,
  splits: int = 10,
) -> dict[str, Any]:
  """The command line's work; returns the protocol card (with "fid" unless save_stats)."""
  if len(paths) != 2:
    raise ValueError(
      f"expected two paths (A B, or with --save_stats FOLDER OUT.npz), got "
      f"{len(paths)}: {list(paths)}"
    )
  if save_stats:
    if paths[0].endswith(".npz") or not paths[1].endswith(".npz"):
      raise ValueError("--save_stats reads a folder and writes an .npz: FOLDER OUT.npz")
    if Path(paths[1]).exists():
      raise ValueError(f"{paths[1]} exists; not overwriting it")
  for p in paths[:1] if save_stats else paths:
    if not Path(p).exists():
      raise ValueError(f"{p} does not exist (expected a folder of images or an .npz)")
  needs_network = save_stats or any(not p.endswith(".npz") for p in paths)
  if needs_network and not weights:
    raise ValueError("--weights=pt_inception-2015-12-05-*.pth is needed to read folders")
  if weights and not Path(weights).is_file():
    raise ValueError(f"--weights: {weights} is not a file")
  weights_sha = file_sha256(weights) if weights else None

  @functools.lru_cache(maxsize=1)
  def get_extractor():
    model, variables = from_pytorch_fid(weights)
    return FeatureExtractor(model, variables, batch_size=batch_size, resize="none")

  side_paths = paths[:1] if save_stats else paths
  stats, sides = [], []
  for p in side_paths:
    mu, sigma, info = _side(p, get_extractor, skip_unreadable, splits, resize_method)
    info["mu_sha256"], info["sigma_sha256"] = array_sha256(mu), array_sha256(sigma)
    stats.append((mu, sigma))
    sides.append(info)
  score = None if save_stats else frechet_distance(*stats[0], *stats[1])
  card = protocol_card(
    weights,
    weights_sha,
    resize_method,
    sides,
    get_extractor().global_batch if needs_network else batch_size,
    score,
  )
  if save_stats and jax.process_index() == 0:
    np.savez_compressed(
      paths[1], mu=stats[0][0], sigma=stats[0][1], n=sides[0]["n"], card=json.dumps(card)
    )
    card["saved_statistics"] = paths[1]
  if card_path and jax.process_index() == 0:
    Path(card_path).write_text(json.dumps(card, indent=2) + "\n")
  return card
