"""BN-Inception (Ioffe and Szegedy 2015; Rethinking Table 3's "BN-Inception" row), trained with the
Rethinking recipe of configs/v3.py minus what Table 3 adds after this row, at BN-Inception's 224.

Full recipe (ImageNet, 224x224):
  python -m experiments.run --config=configs/bn_inception.py --workdir=$WORKDIR
  Paper: 25.2% top-1 / 7.8% top-5 error single crop (Rethinking Table 3), 22% / 5.82% with 144
  crops (Table 4): python -m experiments.evaluate --config=configs/bn_inception.py \
    --workdir=W --crops=144

Local preset (`digits`, 2 CPU cores):
  python -m experiments.run --config=configs/bn_inception.py:local --workdir=/tmp/bn_inception_local

Choices (docs/FIDELITY.md): the network is the paper's (`stem="7x7"`, dense first conv: Table 3's
2.0 G ops is its cost, 2.02 G multiply-adds); `stem="separable"` (the model's default) is the
layer slim's released checkpoint was trained with. Table 3 adds RMSProp and label smoothing only in
later rows, so this row uses momentum SGD at the recipe's 0.045 (the BN paper's BN-x30 rate) and no
label smoothing, as the Inception-v2 row of experiments/v3_ablations.py does. BN-Inception has no
auxiliary head (slim builds none), so no aux loss. Dropout before the classifier is slim's
(keep 0.8).
"""

import ml_collections

from configs import common, v3

PRESETS = ("local",)


def bn_inception_recipe() -> ml_collections.ConfigDict:
  c = v3.rethinking_recipe("bn_inception")
  c.image_size = 224  # BN paper / slim: inception_v2.default_image_size = 224
  c.model_overrides.stem = "7x7"  # the paper's dense 7x7 (slim's checkpoint: "separable")
  c.optimizer = "sgd"  # Table 3: RMSProp is added two rows later
  c.label_smoothing = 0.0  # Table 3: label smoothing is added three rows later
  c.aux_loss_weight = 0.0  # no auxiliary head
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset = common.parse_arg(arg, PRESETS)
  c = bn_inception_recipe()
  if preset == "local":
    c = v3.local_preset(c)  # (replaces model_overrides: the stem is set again)
    c.model_overrides.stem = "7x7"
    c.image_size = 75  # the v3 presets' size; BN-Inception takes any size
  return c
