"""Defaults shared by every recipe; each field is described once, here.

A recipe (configs/v1.py, v2.py, v3.py) starts from `base_config()` and overrides the fields its
paper fixes, naming the source of each choice. Any field can be overridden on the command line with
`--config.field=value`.
"""

import ml_collections
from ml_collections import config_dict


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()

  # Model: `models.create(model, num_classes=<from the dataset>, **model_overrides)`.
  c.model = "inception_v3"
  c.model_overrides = ml_collections.ConfigDict()
  c.image_size = 299  # train and eval crop size, pixels

  # Data: `inception_jax.data` iterators; `preprocess` overrides the papers' preprocessing.
  c.dataset = "imagenet2012"
  c.data_dir = config_dict.placeholder(str)
  c.train_split = "train"
  c.eval_split = "validation"
  c.preprocess = ml_collections.ConfigDict()
  # Input convention (inception_jax.data.preprocessing.INPUT_SCALES), for training and evaluation
  # alike: "inception" ([-1, 1]), "caffe" (0..255 minus the ImageNet mean, BVLC GoogLeNet) or
  # "auto": caffe for the paper's GoogLeNet (model googlenet with LRN), inception otherwise.
  # Setting it together with preprocess.mean / std / input_range is an error.
  c.input_scale = "auto"
  c.on_corrupt = "fail"  # unreadable training image: fail (checkpoint, then stop) | skip
  c.allow_empty_classes = False  # folder: datasets: accept class folders without images
  c.batch_size = 1600  # global batch, over all devices and hosts
  c.eval_batch_size = 400  # global eval batch
  c.eval_crops = 1  # crops per image during training-time evaluation (1, 10, 144)

  # Length: num_train_steps > 0 wins over num_epochs.
  c.num_epochs = 100.0
  c.num_train_steps = -1

  # Optimizer and learning rate (inception_jax/training/optim.py).
  c.optimizer = "rmsprop"  # sgd | rmsprop | adam
  c.learning_rate = 0.045  # at base_batch_size; scaled linearly with batch_size
  c.base_batch_size = 1600
  c.lr_schedule = "exponential"  # exponential (staircase) | cosine | constant
  c.lr_decay_rate = 0.94  # multiplied in every lr_decay_epochs
  c.lr_decay_epochs = 2.0
  c.warmup_epochs = 0.0  # linear warmup from 0 (for large-batch scaling)
  c.momentum = 0.9  # SGD momentum, or RMSProp momentum
  c.nesterov = False
  c.rmsprop_decay = 0.9
  c.rmsprop_epsilon = 1.0  # inside the square root, as TF1 RMSProp
  c.rmsprop_initial_scale = 1.0  # TF1 starts the squared-gradient accumulator at 1.0
  c.grad_clip_norm = 2.0  # global-norm clipping threshold; 0 = off

  # Loss (inception_jax/training/losses.py).
  c.label_smoothing = 0.1  # on the main and the auxiliary heads
  c.aux_loss_weight = 0.4  # per auxiliary head (a float, or a tuple with one per head)
  c.weight_decay = 4e-5  # L2 on kernels: weight_decay * sum(w**2) / 2
  c.bias_lr_multiplier = 1.0  # learning rate of conv / dense biases relative to the kernels'

  # Parameter averaging (Polyak / EMA), used for evaluation next to the raw parameters.
  c.ema_decay = 0.9999  # 0 = off
  c.ema_warmup = True  # tf.train.ExponentialMovingAverage num_updates rule

  # Parallelism and precision.
  c.batch_norm = "per_replica"  # per_replica (the papers: statistics per worker) | sync
  c.half_precision = config_dict.placeholder(bool)  # None = bfloat16 on TPU/GPU, float32 on CPU

  # Loop, logging, checkpoints.
  c.seed = 0
  c.log_every_steps = 100
  c.eval_every_steps = 5000  # <= 0: evaluate at the end only
  c.num_eval_steps = -1  # eval batches per evaluation; -1 = the whole split
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3  # most recent checkpoints kept
  c.init_from = config_dict.placeholder(
    str
  )  # checkpoint (a workdir, its step folder, or converted weights) to start from

  # Transfer learning (inception_jax/training/transfer.py). Patterns: comma-separated regexes
  # matched (re.search) against variable names such as 'Mixed_3b/branch1/conv/kernel',
  # 'Logits/bias', or presets: 'classifiers' (Logits and the AuxLogits heads), 'backbone'
  # (everything else). init_from re-initialises (and logs) classifier layers whose shape differs or
  # that it lacks.
  c.init_exclude = ""  # variables not loaded from init_from (started afresh)
  c.freeze = ""  # variables not trained; their BatchNorm layers keep fixed statistics
  c.new_layers_lr_multiplier = 1.0  # learning-rate factor of the classifiers and init_exclude
  c.compilation_cache_dir = "~/.cache/inception_jax/jax_cache"  # '' = off
  return c


def digits_on_cpu(
  c: ml_collections.ConfigDict, image_size: int, width_multiplier: float
) -> ml_collections.ConfigDict:
  """What every `:local` preset shares: the embedded `digits` dataset (1,500 train / 297 test 8x8
  images) upsampled to `image_size`, a narrow network, batch 64, frequent logs and evals."""
  c.dataset = "digits"
  c.train_split = "train"
  c.eval_split = "test"
  c.image_size = image_size
  c.model_overrides = ml_collections.ConfigDict({"width_multiplier": width_multiplier})
  # Digits are not mirror-symmetric and are grayscale: no flips, no colour distortion; crops of
  # at least half the area so that the digit stays recognisable.
  c.preprocess = ml_collections.ConfigDict(
    dict(area_range=(0.5, 1.0), flip=False, color_distortion=False, random_interpolation=False)
  )
  c.batch_size = 64
  c.eval_batch_size = 128
  c.ema_decay = 0.99  # a horizon of ~100 steps (4 epochs) for a run of ~1000
  c.log_every_steps = 20
  c.eval_every_steps = 200
  c.checkpoint_every_steps = 200
  return c


def parse_arg(arg: str | None, presets: tuple[str, ...]) -> str:
  """The preset named by `--config=file.py:PRESET` ('' for the full recipe)."""
  preset = (arg or "").strip()
  if preset and preset not in presets:
    raise ValueError(f"unknown preset {preset!r}; expected one of {presets}")
  return preset
