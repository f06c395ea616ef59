"""`python -m inception_jax.fid --weights=pt_inception-2015-12-05-*.pth A B`: FID of A and B
(folders of images or .npz statistics), IS of folders, and the protocol card; `--save_stats A
OUT.npz` writes A's statistics. See README.md, "FID and IS"."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

import jax
from absl import app, flags

from inception_jax.fid.compute import run
from inception_jax.fid.network import DEFAULT_BATCH_SIZE
from inception_jax.training import parallel


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
