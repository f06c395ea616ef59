"""GoogLeNet, the recipe of "Going Deeper with Convolutions" (Szegedy et al. 2015, Section 6).

Full recipe (ImageNet, 224x224; a TPU/GPU cluster, see docs/TRAINING.md):
  python -m experiments.run --config=configs/v1.py --workdir=$WORKDIR
  Paper: 10.07% top-5 error, 1 model 1 crop (Table 3); 7.89% with 144 crops
  (python -m experiments.evaluate --config=configs/v1.py --workdir=$WORKDIR --crops=144).

Local preset (the embedded `digits` dataset, 2 CPU cores):
  python -m experiments.run --config=configs/v1.py:local --workdir=/tmp/v1_local
  About 2 minutes on 2 CPU cores (1,407 steps of 64 images at 32x32, width 0.25); measured
  94.6% test top-1 with the averaged parameters (eval_ema/top1), 87.5% with the raw ones, with
  BVLC's initialisation and Caffe's input scale (2026-11-30, docs/TRAINING.md).

The paper gives the optimizer (asynchronous SGD, momentum 0.9), the schedule (learning rate
decreased by 4% every 8 epochs), the auxiliary weight (0.3) and Polyak averaging, but no initial
learning rate, batch size, weight decay, epoch count or averaging decay. Those come from the BVLC
Caffe reproduction of GoogLeNet (models/bvlc_googlenet/solver.prototxt: base_lr 0.01 at batch 32,
step policy with gamma 0.96 every 320,000 iterations (= 8 epochs), momentum 0.9, weight decay 2e-4,
max_iter 10M) or are this project's choices, and each field says which.
"""

import ml_collections

from configs import common

PRESETS = ("local",)


def paper_recipe() -> ml_collections.ConfigDict:
  c = common.base_config()
  c.model = "googlenet"  # the paper's network: LRN, no BatchNorm, two aux heads
  c.image_size = 224  # paper: 224x224 input
  c.dataset = "imagenet2012"
  c.optimizer = "sgd"
  c.momentum = 0.9  # paper
  c.nesterov = False
  c.learning_rate = 0.01  # not in the paper; BVLC solver base_lr at batch 32
  c.base_batch_size = 32  # BVLC train_val batch_size
  c.batch_size = 256  # choice: 8 replicas x 32, synchronous; lr scales to 0.08
  c.lr_schedule = "exponential"
  c.lr_decay_rate = 0.96  # paper: "decreasing the learning rate by 4% every 8 epochs"
  c.lr_decay_epochs = 8.0
  c.warmup_epochs = 0.0
  c.grad_clip_norm = 0.0  # paper: none
  c.label_smoothing = 0.0  # paper: none (introduced by Rethinking)
  c.aux_loss_weight = 0.3  # paper: "weighted by 0.3" each of the two heads
  c.weight_decay = 2e-4  # not in the paper; BVLC solver weight_decay
  # BVLC train_val: every bias at lr_mult 2, decay_mult 0 (our weight decay never touches biases).
  c.bias_lr_multiplier = 2.0
  # Input as BVLC fed it: "auto" is Caffe's scale (0..255 minus the per-channel ImageNet mean, RGB)
  # for this network (LRN, no BatchNorm), whose LRN constants (alpha 1e-4) were chosen for that
  # scale: at [-1, 1] both LRN layers divide by ~1.000 and do nothing (docs/FIDELITY.md). The
  # BatchNorm variants (norm="bn") get [-1, 1]. Initial weights: the model's "bvlc" default
  # (xavier, bias 0.2).
  c.input_scale = "auto"
  # Table 3's 10-crop row: Krizhevsky et al.'s 10 crops (Section 7's baseline), from the central
  # 256x256 square of the image resized to a shorter side of 256 (data/multicrop.py).
  c.preprocess.ten_crop = "krizhevsky"
  c.num_epochs = 250.0  # not in the paper; BVLC solver max_iter 10M x 32 images
  # Paper: "Polyak averaging was used to create the final model". Decay not given: choice 0.9999
  # with TF's num_updates warmup, the value of the released Inception-v3 code.
  c.ema_decay = 0.9999
  c.ema_warmup = True
  c.batch_norm = "sync"  # the paper's GoogLeNet has no BatchNorm; irrelevant
  c.eval_batch_size = 256
  c.log_every_steps = 100
  c.eval_every_steps = 25000  # about every 5 epochs at 256 per batch
  c.checkpoint_every_steps = 2500
  return c


def local_preset(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The same recipe scaled to `digits` on 2 CPU cores: narrow network, small images."""
  c = common.digits_on_cpu(c, image_size=32, width_multiplier=0.25)  # GoogLeNet accepts >= 31
  c.preprocess.ten_crop = "krizhevsky"  # as the full recipe (digits are square: the same crops)
  c.learning_rate = 0.025
  c.base_batch_size = 32  # linear scaling rule: 0.05 at 64
  c.warmup_epochs = 1.0
  # Choice: the Rethinking recipe's clipping (global norm 2.0) keeps this network without
  # BatchNorm stable; unclipped at 0.1 it diverged after a few hundred steps.
  c.grad_clip_norm = 2.0
  c.num_epochs = 60.0  # 1,407 steps
  # The full recipe decays 31 times (every 8 of 250 epochs); this one 30 times (every 2 of 60).
  c.lr_decay_epochs = 2.0
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset = common.parse_arg(arg, PRESETS)
  c = paper_recipe()
  if preset == "local":
    c = local_preset(c)
  return c
