"""Inception-v3, the recipe of "Rethinking the Inception Architecture" (Szegedy et al., Sec. 8).

Full recipe (ImageNet, 299x299; a TPU/GPU cluster, see docs/TRAINING.md):
  python -m experiments.run --config=configs/v3.py --workdir=$WORKDIR
  Paper: 21.2% top-1 / 5.6% top-5 error single crop (Table 3), after 100 epochs of 50 x 32 images.

Local preset (the embedded `digits` dataset, 2 CPU cores):
  python -m experiments.run --config=configs/v3.py:local --workdir=/tmp/v3_local
  A narrow Inception-v3 at the smallest size its stem accepts; about 5-10 minutes, >= 90% test top-1
  expected (see docs/TRAINING.md for measured figures).

Where the paper is silent the released code (tensorflow/models research/inception and slim) is used,
and each such field says so.
"""

import ml_collections

from configs import common

PRESETS = ("local",)


def rethinking_recipe(model: str) -> ml_collections.ConfigDict:
  """The training recipe shared by Inception-v2 and -v3 (Rethinking, Section 8)."""
  c = common.base_config()
  c.model = model
  c.image_size = 299  # paper: 299x299 input
  c.dataset = "imagenet2012"
  # Paper: "50 replicas ... batch size 32 for 100 epochs" (it does not say how replicas combined
  # their gradients). The released distributed trainer (tensorflow/models
  # inception_distributed_train.py) used SyncReplicasOptimizer: one synchronous step on the
  # gradient averaged over the replicas, which is what one batch of 50 x 32 reproduces, with
  # BatchNorm statistics per replica as each replica computed them.
  c.batch_size = 1600
  c.base_batch_size = 1600
  c.batch_norm = "per_replica"
  c.num_epochs = 100.0
  # Paper: "RMSProp with decay of 0.9 and epsilon = 1.0", "learning rate of 0.045, decayed every
  # two epochs using an exponential rate of 0.94", "gradient clipping with threshold 2.0".
  c.optimizer = "rmsprop"
  c.rmsprop_decay = 0.9
  c.rmsprop_epsilon = 1.0
  c.rmsprop_initial_scale = 1.0  # TF1 RMSPropOptimizer semantics (the paper's TensorFlow)
  c.momentum = 0.9  # not in the paper; released code (RMSPROP_MOMENTUM = 0.9)
  c.learning_rate = 0.045
  c.lr_schedule = "exponential"
  c.lr_decay_rate = 0.94
  c.lr_decay_epochs = 2.0
  c.grad_clip_norm = 2.0  # paper does not say which norm; global norm (Pascanu et al.)
  # Paper: label smoothing eps = 0.1 (Section 7). Applied to the aux head too: released code.
  c.label_smoothing = 0.1
  # Paper is silent on the auxiliary weight; the released code (slim train_image_classifier,
  # inception_v3 AuxLogits) uses 0.4.
  c.aux_loss_weight = 0.4
  c.weight_decay = 4e-5  # not in the paper; slim inception_arg_scope weight_decay=4e-5
  # Paper: "evaluated using a running average of the parameters computed over time". Decay
  # 0.9999 with TF's num_updates rule: released code (MOVING_AVERAGE_DECAY).
  c.ema_decay = 0.9999
  c.ema_warmup = True
  c.eval_batch_size = 400
  c.log_every_steps = 100
  c.eval_every_steps = 4000  # about every 5 epochs at 1600 per batch
  c.checkpoint_every_steps = 1000
  return c


def local_preset(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The same recipe scaled to `digits` on a CPU: narrow network, small images, a few epochs."""
  c = common.digits_on_cpu(c, image_size=75, width_multiplier=0.25)  # 75: the v3 stem's minimum
  # Choice: 0.045 per batch of 64, the paper's rate applied to one small batch rather than to the
  # average over 50 replicas; the linear rule from 0.045 at 1600 (0.0018) is too slow for a short
  # run.
  c.learning_rate = 0.045
  c.base_batch_size = 64
  c.num_epochs = 30.0
  c.lr_decay_epochs = 1.0  # 30 decays, as the full recipe's 50 over 100 epochs, roughly
  c.batch_norm = "per_replica"
  # The released BN decay 0.9997 averages over ~3,000 steps, longer than this whole run.
  c.model_overrides.bn_momentum = 0.99
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset = common.parse_arg(arg, PRESETS)
  c = rethinking_recipe("inception_v3")
  if preset == "local":
    c = local_preset(c)
  return c
