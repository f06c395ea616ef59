"""Inception-v2/v3 ablations ("Rethinking the Inception Architecture"): a sweep and a config file.

  python -m experiments.v3_ablations --scale=small      # train what is missing, write the tables
  python -m experiments.v3_ablations --scale=small --dataset=cifar10-jpeg.tar.gz  # data you name
  python -m experiments.v3_ablations --scale=full       # print the commands and device-hours
  python -m experiments.run --config=experiments/v3_ablations.py:small,rf79,0 --workdir=W  # one row

Ablations (paper figures from docs/PAPERS.md):
  table3:  Table 3: BN-Inception (Ioffe & Szegedy 2015, configs/bn_inception.py), then
           the cumulative rows Inception-v2 (SGD), +RMSProp, +Label Smoothing, +Factorized
           7x7, +BN-auxiliary (= Inception-v3).
  table4:  Table 4: BN-Inception evaluated with 144 crops (at the small scale on seed 0 only:
           1.44 million crops take about 17 minutes a model; docs/EXPERIMENTS.md, Budget).
  table2:  receptive field 299 / 151 / 79 at equal cost: the three networks reach Mixed_5b on the
           same grid (35 at full scale) and their multiply-adds are within 1% (within 0.2% as
           built; `receptive_field` in inception_jax/models/inception_v3.py, docs/FIDELITY.md).
  figure2: linear vs ReLU first layer in the factorized convolutions.

Scales: `full` is configs/v3.py on imagenet2012 at 299 (151, 79); `small` CIFAR-10 at the smallest
inputs the stems accept, 75 / 39 / 23, which reach Mixed_5b on the same 7x7 grid as 299 / 151 / 79
reach it on 35x35, at width 0.25, 4 epochs of 64 on the whole CIFAR-10, 3 seeds, every row evaluated
on the 10,000 test images (docs/EXPERIMENTS.md); `tiny` a few steps on `digits` (tests).
"""

import ml_collections

from configs import v3
from inception_jax import sweeps
from inception_jax.sweeps import Ablation, Paper, Variant

SMALL_EPOCHS = 4.0
SMALL_SEEDS = (0, 1, 2)
# Input per receptive field. Full: Table 2. Smaller scales: the smallest input of each stem; all
# three reach Mixed_5b with the same grid (7x7), as 299 / 151 / 79 all reach it at 35x35, at costs
# within 1% (tests/test_models.py checks both at every scale here).
IMAGE_SIZES = {
  "full": {299: 299, 151: 151, 79: 79},
  "small": {299: 75, 151: 39, 79: 23},
  "tiny": {299: 75, 151: 39, 79: 23},
}
# Table 3's first rows: no RMSProp (momentum SGD at the same rate: a choice, the paper gives none)
# and no label smoothing.
V2 = {"model": "inception_v2", "optimizer": "sgd", "label_smoothing": 0.0}
# BN-Inception's row: configs/bn_inception.py's differences from the v3 recipe. Its input is 224 at
# full scale; below, the scale's base size (BN-Inception's TF 'SAME' padding takes any size).
BN_INCEPTION = {
  "model": "bn_inception",
  "optimizer": "sgd",
  "label_smoothing": 0.0,
  "aux_loss_weight": 0.0,
  "model_overrides.stem": "7x7",
}


def base_config(scale: str) -> ml_collections.ConfigDict:
  """The paper's recipe (configs/v3.py) at `full`; below it, scaled (docs/EXPERIMENTS.md)."""
  if scale == "full":
    return v3.get_config()
  if scale == "tiny":
    c = v3.get_config("local")  # digits, width 0.25, batch 64, RMSProp 0.045
    c.model_overrides.width_multiplier = 0.125
  else:
    c = v3.get_config()
    c.model_overrides.width_multiplier = 0.25
    # Choices of the scale (docs/EXPERIMENTS.md), as in v1_ablations: crops of at least half the
    # image, no photometric distortion; the `:local` preset's rate, 0.045 per batch of 64 (the
    # linear rule from 0.045 at 1,600 is too slow for a short run; 0.0225 and 0.09 did worse on
    # the base's seed 0: docs/EXPERIMENTS.md) and BatchNorm decay (0.99: the released 0.9997
    # averages over more steps than the run has); an averaging horizon of ~1,000 steps.
    c.preprocess.area_range = (0.5, 1.0)
    c.preprocess.color_distortion = False
    c.base_batch_size = 64
    c.model_overrides.bn_momentum = 0.99
    c.ema_decay = 0.999
  c.image_size = IMAGE_SIZES[scale][299]
  sweeps.scale_run_length(c, scale, SMALL_EPOCHS)
  c.base_batch_size = c.batch_size  # the rate is per batch at the reduced scales
  return c


def ablations(scale: str) -> tuple[Ablation, ...]:
  size = IMAGE_SIZES[scale]
  v3_row = Variant(
    "v3",
    Paper(21.2, "top-1 err", "Rethinking Table 3"),
    {"model": "inception_v3"},
    note="+BN-auxiliary: the released Inception-v3 (paper cost 4.8G ops).",
  )
  bn_inception = dict(BN_INCEPTION, **({"image_size": 224} if scale == "full" else {}))
  return (
    Ablation(
      "table3",
      "Rethinking Table 3: cumulative changes, single crop",
      (
        Variant(
          "bn_inception",
          Paper(25.2, "top-1 err", "Rethinking Table 3"),
          bn_inception,
          note="BN-Inception, the paper's dense 7x7 stem, momentum SGD (paper cost 2.0G "
          "ops; ours 2.02G multiply-adds).",
        ),
        Variant(
          "v2",
          Paper(23.4, "top-1 err", "Rethinking Table 3"),
          V2,
          note="7x7 stem, aux head without BN, momentum SGD (paper cost 3.8G ops).",
        ),
        Variant(
          "v2_rmsprop",
          Paper(23.1, "top-1 err", "Rethinking Table 3"),
          {**V2, "optimizer": "rmsprop"},
        ),
        Variant(
          "v2_rmsprop_ls",
          Paper(22.8, "top-1 err", "Rethinking Table 3"),
          {**V2, "optimizer": "rmsprop", "label_smoothing": 0.1},
        ),
        Variant(
          "v2_rmsprop_ls_f7x7",
          Paper(21.6, "top-1 err", "Rethinking Table 3"),
          {
            **V2,
            "optimizer": "rmsprop",
            "label_smoothing": 0.1,
            "model_overrides.stem": "factorized",
          },
          note="first 7x7 replaced by 3x3 convs (paper cost 4.8G ops).",
        ),
        v3_row,
      ),
      cumulative=True,  # each row adds one change to the row above
    ),
    Ablation(
      "table4",
      "Rethinking Table 4: multi-crop evaluation (top-5 err)",
      (
        Variant(
          "bn_inception_144",
          Paper(5.82, "top-5 err", "Rethinking Table 4 (top-1 22%)"),
          evaluates="bn_inception",
          crops=144,
          note="the Table 3 BN-Inception row evaluated with 144 crops (GoogLeNet's scheme).",
        ),
      ),
    ),
    Ablation(
      "table2",
      "Rethinking Table 2: receptive field at equal cost (top-1 acc as err)",
      (
        Variant(
          "v3",
          Paper(23.4, "top-1 err", "Rethinking Table 2 (76.6% acc)"),
          {"model": "inception_v3"},
        ),
        Variant(
          "rf151",
          Paper(23.6, "top-1 err", "Rethinking Table 2 (76.4% acc)"),
          {
            "model": "inception_v3",
            "model_overrides.receptive_field": 151,
            "image_size": size[151],
          },
        ),
        Variant(
          "rf79",
          Paper(24.8, "top-1 err", "Rethinking Table 2 (75.2% acc)"),
          {"model": "inception_v3", "model_overrides.receptive_field": 79, "image_size": size[79]},
        ),
      ),
    ),
    Ablation(
      "figure2",
      "Rethinking Figure 2: linear vs ReLU in the factorized layers",
      (
        Variant(
          "v3",
          Paper(22.8, "top-1 err", "Rethinking Figure 2 (77.2% acc)"),
          {"model": "inception_v3"},
        ),
        Variant(
          "linear",
          Paper(23.8, "top-1 err", "Rethinking Figure 2 (76.2% acc)"),
          {"model": "inception_v3", "model_overrides.factorization_activation": "linear"},
        ),
      ),
    ),
  )


def make_sweep(scale: str) -> sweeps.Sweep:
  return sweeps.Sweep(
    name="v3_ablations",
    config_file="experiments/v3_ablations.py",
    scale=scale,
    base_config=lambda: base_config(scale),
    ablations=ablations(scale),
    seeds={"bn_inception_144": (0,)} if scale == "small" else {},
    default_seeds=SMALL_SEEDS if scale == "small" else (0,),
    eval_examples={"full": -1, "small": -1, "tiny": 16}[scale],
  )


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """`experiments/v3_ablations.py:SCALE,VARIANT,SEED` as a config file for experiments.run."""
  return sweeps.config_from_arg(make_sweep, arg)


if __name__ == "__main__":
  sweeps.run(make_sweep)
