"""`python -m inception_jax.fid --weights=pt_inception-2015-12-05-*.pth A B`: FID of A and B
(folders of images or .npz statistics), IS of folders, and the protocol card; `--save_stats A
OUT.npz` writes A's statistics. See README.md, "FID and IS"."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from absl import app, flags

from inception_jax import parallel
from inception_jax.fid.card import array_sha256, file_sha256, protocol_card
from inception_jax.fid.folders import folder_features, load_statistics
from inception_jax.fid.network import DEFAULT_BATCH_SIZE, FeatureExtractor, from_pytorch_fid
from inception_jax.fid.scores import frechet_distance, inception_score, statistics


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------
def _define_flags() -> None:
  flags.DEFINE_string(
    "weights",
    None,
    "pytorch-fid's pt_inception-2015-12-05-*.pth (download it yourself; nothing is downloaded)",
  )
  flags.DEFINE_bool(
    "save_stats",
    False,
    "Write the statistics of the first path (a folder) to "
    "the second (an .npz: mu, sigma as pytorch-fid, plus n and the card)",
  )
  flags.DEFINE_integer(
    "batch_size",
    DEFAULT_BATCH_SIZE,
    "Global batch size (rounded up to a multiple of the device count)",
  )
  flags.DEFINE_enum(
    "resize",
    "bilinear",
    ["bilinear", "none"],
    "bilinear: pytorch-fid's (align_corners=False, no antialiasing); none: 299x299 images only",
  )
  flags.DEFINE_string("card", "fid_card.json", "Where the protocol card is written as JSON")
  flags.DEFINE_bool(
    "skip_unreadable",
    False,
    "Skip (and count on the card) files that cannot "
    "be read, instead of stopping (pytorch-fid stops)",
  )
  flags.DEFINE_integer(
    "splits", 10, "Inception Score splits (printed for folders of at least that many images)"
  )
  flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process runs)")
  flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process runs)")
  flags.DEFINE_integer("process_id", None, "This process's index (multi-process runs)")


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


def main(argv: Sequence[str]) -> int:
  f = flags.FLAGS
  if f.coordinator_address or f.num_processes:
    parallel.initialize_distributed(f.coordinator_address, f.num_processes, f.process_id)
  try:
    card = run(
      list(argv[1:]),
      f.weights,
      save_stats=f.save_stats,
      batch_size=f.batch_size,
      resize_method=f.resize,
      card_path=f.card,
      skip_unreadable=f.skip_unreadable,
      splits=f.splits,
    )
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if jax.process_index() == 0:
    print("protocol card:")
    print(json.dumps(card, indent=2))
    for w in card["warnings"]:
      print(f"WARNING: {w}", file=sys.stderr)
    for side in card["sides"]:
      if "inception_score" in side:
        s = side["inception_score"]
        print(f"IS ({side['path']}): {s['mean']:.4f} +- {s['std']:.4f}")
    if "fid" in card:
      print(f"FID: {card['fid']}")
    else:
      print(f"statistics of {card['sides'][0]['path']} written to {card['saved_statistics']}")
    if f.card:
      print(f"card written to {f.card}")
  return 0


if __name__ == "__main__":
  _define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
