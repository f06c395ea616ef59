"""GoogLeNet ablations ("Going Deeper with Convolutions"), as a sweep and as a config file.

  python -m experiments.v1_ablations --scale=small      # train what is missing, write the tables
  python -m experiments.v1_ablations --scale=small --dataset=cifar10-jpeg.tar.gz  # data you name
  python -m experiments.v1_ablations --scale=full       # print the commands and device-hours
  python -m experiments.run --config=experiments/v1_ablations.py:small,naive,0 --workdir=W

Ablations (rows are `sweeps.Variant`s; paper figures from docs/PAPERS.md):
  module:  Figure 2a (naive) vs 2b (1x1 reductions): cost, parameters, accuracy.
  aux:     auxiliary classifiers off / on at the paper's weight 0.3 / on at weight 1.0.
  norm:    LocalRespNorm (the paper) vs BatchNorm (BN-GoogLeNet, Rethinking Table 3).
  crops:   Table 3: 1 model with 1, 10, 144 crops, and an ensemble of models with 1, 10, 144 crops.

Scales: `full` is configs/v1.py on imagenet2012 (base: the paper's LRN network); `small` CIFAR-10
(TFDS `cifar10`, or `--dataset=folder:PATH` / a tarball: inception_jax/sweeps/datasets.py) at
96x96, width 0.125, 100 steps of 32; `tiny` a few steps on `digits` (tests). Below full scale
the base is BN-GoogLeNet: the LRN network does not leave chance
in 100 steps.
"""

import dataclasses

import ml_collections

from configs import v1
from inception_jax import sweeps
from inception_jax.sweeps import Ablation, Paper, Variant

SMALL_STEPS = 100
SMALL_SEEDS = {"googlenet": (0, 1)}  # two models for the ensemble rows and a spread


def base_config(scale: str) -> ml_collections.ConfigDict:
  if scale == "full":
    return v1.get_config()
  c = v1.get_config("local")  # digits, 96x96, width 0.25, batch 64
  c.model_overrides.width_multiplier = 0.125
  c.image_size = 96  # the aux heads' 5x5/3 pool needs a 5x5 grid at Mixed_4b/4e
  c.eval_every_steps = 0  # evaluate at the end only
  c.warmup_epochs = 0.0
  if scale in ("small", "tiny"):
    # The paper's network (LRN, no BatchNorm) stays at chance for the ~100 steps a small run
    # affords (measured: 10.0% top-1 after 100 steps at lr 0.01), so the smaller scales ablate
    # from BN-GoogLeNet; the `norm` ablation keeps the LRN row.
    c.model_overrides.norm = "bn"
  sweeps.scale_run_length(c, scale, SMALL_STEPS)
  if scale == "small":
    c.learning_rate = 0.04  # at base_batch_size 32 (BatchNorm allows it)
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
      (
        Variant("googlenet", Paper(1.5, "G multiply-adds", "GoogLeNet Sec. 5")),
        Variant(
          "naive",
          None,
          {"model_overrides.module": "naive"},
          note="Figure 2a everywhere; the paper gives no figure, only that it is "
          "prohibitively expensive (compare the MACs and params columns).",
        ),
      ),
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
          note="The paper gives no figure; Rethinking Sec. 4 finds the heads act as "
          "regularizers and do not speed up early training.",
        ),
        Variant("aux_weight_1", None, {"aux_loss_weight": 1.0}),
      ),
    ),
    Ablation(
      "norm", "LocalRespNorm (GoogLeNet) vs BatchNorm (BN-GoogLeNet, Rethinking Table 3)", norm_rows
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


def make_sweep(scale: str) -> sweeps.Sweep:
  return sweeps.Sweep(
    name="v1_ablations",
    config_file="experiments/v1_ablations.py",
    scale=scale,
    base_config=lambda: base_config(scale),
    ablations=ablations(scale),
    seeds={
      "full": {"googlenet": tuple(range(7))},
      "small": SMALL_SEEDS,
      "tiny": {"googlenet": (0, 1)},
    }[scale],
    eval_examples={"full": -1, "small": 100, "tiny": 16}[scale],
  )  # 10 per class: 144 crops


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """`experiments/v1_ablations.py:SCALE,VARIANT,SEED` as a config file for experiments.run."""
  return sweeps.config_from_arg(make_sweep, arg)


if __name__ == "__main__":
  sweeps.run(make_sweep)
