"""Inception-v2 of "Rethinking the Inception Architecture" (Table 3's "Inception-v2" row), trained
with the same recipe as Inception-v3 (configs/v3.py names the source of every field).

Note: this is the Rethinking paper's Inception-v2, NOT slim's inception_v2.py (BN-Inception).

Full recipe (ImageNet, 299x299):
  python -m experiments.run --config=configs/v2.py --workdir=$WORKDIR
  Paper: 23.4% top-1 error single crop (Table 3, before RMSProp / label smoothing were added;
  the paper reports no figure for v2 with this full recipe).

Local preset (`digits`, 2 CPU cores):
  python -m experiments.run --config=configs/v2.py:local --workdir=/tmp/v2_local
  About 5-10 minutes, >= 90% test top-1 expected (see docs/TRAINING.md).
"""

import ml_collections

from configs import common, v3

PRESETS = v3.PRESETS


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset = common.parse_arg(arg, PRESETS)
  c = v3.rethinking_recipe("inception_v2")
  if preset == "local":
    c = v3.local_preset(c)
  return c
