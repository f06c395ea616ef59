"""GoogLeNet ablations ("Going Deeper with Convolutions"), as a sweep and as a config file.

  python -m experiments.v1_ablations --scale=small      # train what is missing, write the tables
  python -m experiments.v1_ablations --scale=small --dataset=cifar10-jpeg.tar.gz  # data you name
  python -m experiments.v1_ablations --scale=full       # print the commands and device-hours
  python -m experiments.run --config=experiments/v1_ablations.py:small,no_aux,0 --workdir=W

Ablations (rows are `sweeps.Variant`s; paper figures from docs/PAPERS.md):
  module:  Figure 2a (naive) vs 2b (1x1 reductions): cost, parameters, accuracy.
  aux:     auxiliary classifiers off / on at the paper's weight 0.3 / on at weight 1.0 (the last
           not at the small scale: no paper claims it, and the budget is 8 hours).
  norm:    LocalRespNorm (the paper) vs BatchNorm (BN-GoogLeNet, Rethinking Table 3).
  crops:   Table 3: 1 model with 1, 10, 144 crops, and an ensemble of models with 1, 10, 144 crops.

Scales: `full` is configs/v1.py on imagenet2012 (base: the paper's LRN network); `small` the whole
CIFAR-10 (TFDS `cifar10`, or `--dataset=folder:PATH` / a tarball: inception_jax/sweeps/datasets.py)
at 96x96, width 0.25, 5 epochs of 64, 3 seeds, every row evaluated on the 10,000 test images (the
module ablation: width 0.125, 2 epochs); `tiny` a few steps on `digits` (tests). Below full scale
the base is BN-GoogLeNet; the `norm` ablation keeps the paper's LRN network as a row. What was
scaled and why: docs/EXPERIMENTS.md.
"""

import dataclasses

import ml_collections

from configs import v1
from inception_jax import sweeps
from inception_jax.sweeps import Ablation, Paper, Variant

SMALL_EPOCHS = 5.0
SMALL_SEEDS = (0, 1, 2)
MODULE_EPOCHS = 2.0  # the module ablation's narrower rows (module_rows)


def base_config(scale: str) -> ml_collections.ConfigDict:
  """The paper's recipe (configs/v1.py) at `full`; below it, scaled (docs/EXPERIMENTS.md)."""
  if scale == "full":
    return v1.get_config()
  if scale == "tiny":
    c = v1.get_config("local")  # digits, width 0.25, batch 64
    c.model_overrides.width_multiplier = 0.125
    c.image_size = 96  # the aux heads' 5x5/3 pool needs a 5x5 grid at Mixed_4a/4d
  else:
    c = v1.get_config()
    c.model_overrides.width_multiplier = 0.25
    c.image_size = 96  # CIFAR-10's 32x32 upsampled; 80 is the least the aux heads take
    # Choices of the scale (docs/EXPERIMENTS.md): crops of at least half the image (the paper's
    # 8% of a 32x32 photograph is 9x9 pixels; a quarter left the base at 72.9% in 5 epochs), no
    # photometric distortion (on the CPU it costs as much as the network at this size), the
    # `local` preset's clipping and rate (0.025 at 32, so 0.05 at 64), a short warmup, and an
    # averaging horizon of ~1,000 steps.
    c.preprocess.area_range = (0.5, 1.0)
    c.preprocess.color_distortion = False
    c.learning_rate = 0.025
    c.base_batch_size = 32
    c.grad_clip_norm = 2.0
    c.warmup_epochs = 0.25
    c.ema_decay = 0.999
  # The paper's network (LRN, no BatchNorm) trains slowly; below full scale the ablations start
  # from BN-GoogLeNet and the `norm` ablation keeps the LRN row (docs/EXPERIMENTS.md).
  c.model_overrides.norm = "bn"
  sweeps.scale_run_length(c, scale, SMALL_EPOCHS)
  return c


def ablations(scale: str) -> tuple[Ablation, ...]:
  # `googlenet` is the scale's base: the paper's network (LRN) at full scale, BN-GoogLeNet below.
  googlenet = Variant("googlenet")
  lrn, bn = (
    Paper(29.0, "top-1 err", "Rethinking Table 3"),
    Paper(26.8, "top-1 err", "Rethinking Table 3"),
  )
  if scale == "full":
    norm_rows = (
      Variant("googlenet", lrn),
      Variant("googlenet_bn", bn, {"model_overrides.norm": "bn"}),
    )
  else:
    norm_rows = (
      Variant(
        "googlenet_lrn",
        lrn,
        {"model_overrides.norm": "lrn"},
        note="the paper's network; LRN, no BatchNorm.",
      ),
      Variant("googlenet", bn, note="the base at this scale: BatchNorm, no LRN."),
    )
  return (
    Ablation(
      "module",
      "GoogLeNet Figure 2: Inception module without (2a) and with (2b) 1x1 reductions",
      module_rows(scale),
    ),
    Ablation(
      "aux",
      "GoogLeNet Section 5: auxiliary classifiers",
      (
        dataclasses.replace(googlenet, note="aux heads on (4a), (4d), weight 0.3 (paper)."),
        Variant(
          "no_aux",
          None,
          {"model_overrides.aux_logits": False, "aux_loss_weight": 0.0},
          note="GoogLeNet Sec. 5 gives no figure (the heads' effect is 'relatively minor', about "
          "0.5%); Rethinking Sec. 4 finds they act as regularizers and do not speed up early "
          "training.",
          expect="higher",
        ),
        # Not one of the papers' experiments: left out of the small scale's 8-hour budget.
        *(() if scale == "small" else (Variant("aux_weight_1", None, {"aux_loss_weight": 1.0}),)),
      ),
    ),
    Ablation(
      "norm",
      "LocalRespNorm (GoogLeNet) vs BatchNorm (BN-GoogLeNet, Rethinking Table 3)",
      norm_rows,
      base=norm_rows[-1].name,  # BatchNorm: the effect is LRN's error over it
    ),
    Ablation(
      "crops",
      "GoogLeNet Table 3: crops and ensembles (top-5 error)",
      (
        Variant("crops_1", Paper(10.07, "top-5 err", "GoogLeNet Table 3"), evaluates="googlenet"),
        Variant(
          "crops_10", Paper(9.15, "top-5 err", "GoogLeNet Table 3"), evaluates="googlenet", crops=10
        ),
        Variant(
          "crops_144",
          Paper(7.89, "top-5 err", "GoogLeNet Table 3"),
          evaluates="googlenet",
          crops=144,
        ),
        Variant(
          "ensemble_1",
          Paper(8.09, "top-5 err", "GoogLeNet Table 3 (7 models)"),
          ensemble=("googlenet",),
        ),
        Variant(
          "ensemble_10",
          Paper(7.62, "top-5 err", "GoogLeNet Table 3 (7 models)"),
          ensemble=("googlenet",),
          crops=10,
        ),
        Variant(
          "ensemble_144",
          Paper(6.67, "top-5 err", "GoogLeNet Table 3 (7 models)"),
          ensemble=("googlenet",),
          crops=144,
          note="the paper ensembles 7 models; we ensemble the seeds of `googlenet`.",
        ),
      ),
    ),
  )


def module_rows(scale: str) -> tuple[Variant, ...]:
  """Figure 2b (the network) and 2a (naive modules). Figure 2a costs 7.9x the multiply-adds per
  image at full size (our count; the paper gives none) and trains 6x slower at width 0.25, too
  much for the small scale's budget; there both rows are narrower and shorter (width 0.125, where
  the ratio is 4.0x; 2 epochs) and identical but for the module."""
  paper = Paper(1.5, "G multiply-adds", "GoogLeNet Sec. 5")
  naive_note = (
    "Figure 2a everywhere; the paper gives no accuracy, only that it is prohibitively "
    "expensive (compare the MACs and params columns)."
  )
  if scale != "small":
    return (
      Variant("googlenet", paper),
      Variant("naive", None, {"model_overrides.module": "naive"}, note=naive_note),
    )
  full = v1.get_config()
  narrow = {
    "model_overrides.width_multiplier": 0.125,
    "num_epochs": MODULE_EPOCHS,
    "lr_decay_epochs": full.lr_decay_epochs * MODULE_EPOCHS / full.num_epochs,
  }
  return (
    Variant("googlenet_narrow", paper, narrow, note="the base at width 0.125, 2 epochs."),
    Variant(
      "naive_narrow",
      None,
      {**narrow, "model_overrides.module": "naive"},
      note=naive_note,
      expect="same",  # Figure 2b's reductions cost less and lose nothing (Section 4)
    ),
  )


def make_sweep(scale: str) -> sweeps.Sweep:
  return sweeps.Sweep(
    name="v1_ablations",
    config_file="experiments/v1_ablations.py",
    scale=scale,
    base_config=lambda: base_config(scale),
    ablations=ablations(scale),
    seeds={
      "full": {"googlenet": tuple(range(7))},
      "small": {},
      "tiny": {"googlenet": (0, 1)},
    }[scale],
    default_seeds=SMALL_SEEDS if scale == "small" else (0,),
    eval_examples={"full": -1, "small": -1, "tiny": 16}[scale],
  )


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """`experiments/v1_ablations.py:SCALE,VARIANT,SEED` as a config file for experiments.run."""
  return sweeps.config_from_arg(make_sweep, arg)


if __name__ == "__main__":
  sweeps.run(make_sweep)
