"""Fine-tuning converted weights on a dataset with other classes
(inception_jax/training/transfer.py).

`init_from` loads every tensor of the checkpoint the model has with the same shape; the classifier
layers (Logits, AuxLogits*), here with 10 classes instead of 1000 (or 1001), are re-initialised and
logged by name. `freeze` keeps parameters and BatchNorm statistics fixed, `init_exclude` starts
named layers afresh, `new_layers_lr_multiplier` speeds up the new layers. Input convention: the
data pipeline feeds what the weights were trained on (torchvision: ImageNet mean/std, which
the model's `transform_input` maps to [-1, 1] as torchvision does; slim and Keras: [-1, 1]).

Local presets (the embedded `digits` dataset, 2 CPU cores), from a converted torchvision GoogLeNet:
  python -m inception_jax.conversion --from=torchvision --model=googlenet_bn \
      --input=googlenet-1378be20.pth --output=converted/googlenet_bn
  python -m experiments.run --config=configs/finetune.py:local --workdir=/tmp/ft_local \
      --config.init_from=converted/googlenet_bn
  python -m experiments.run --config=configs/finetune.py:local_probe --workdir=/tmp/ft_probe \
      --config.init_from=converted/googlenet_bn
`:local` trains the whole network, `:local_probe` the classifier alone on frozen features (a
linear probe). Measured on the 2-core development machine (2026-11-30), from a torchvision
googlenet with random weights (`torchvision.models.googlenet(weights=None, aux_logits=True,
init_weights=True)`, `torch.manual_seed(0)`, saved as a state dict and converted as above; no
pretrained weights are downloaded anywhere here), so the numbers measure training, not transfer:
  :local        2 min 38 s from command start to exit (first step with compilation 15.8 s; 282
                steps of 64 at 32x32, about 246 images/s; peak memory 2.8 GB); test top-1
                88.9% (82.5% and 87.5% at steps 100 and 200), top-5 98.3%.
  :local_probe  50 s; test top-1 10.1%, chance: random weights with their initial BatchNorm
                statistics (mean 0, variance 1), frozen and so used as they are, give features
                that carry nothing. The same probe on the features the :local run learned
                (--config.init_from=/tmp/ft_local --config.init_exclude=^Logits/, which starts
                the classifier afresh): 88.6% in 42 s.
With ImageNet weights (torchvision's googlenet-1378be20.pth) the probe is the meaningful one.

Full recipe: Google's Inception-v3 (tf-slim, inception_v3_2016_08_28.tar.gz from
download.tensorflow.org/models/) on a `folder:` dataset (PATH/train/<class>/*.jpg,
PATH/validation/<class>/*.jpg) at 299:
  tar -xzf inception_v3_2016_08_28.tar.gz          # inception_v3.ckpt.{index,data-00000-of-00001}
  python -m inception_jax.conversion --from=slim --model=inception_v3 --input=inception_v3.ckpt \
      --output=converted/inception_v3_slim
  python -m experiments.run --config=configs/finetune.py --workdir=$WORKDIR \
      --config.init_from=converted/inception_v3_slim --config.dataset=folder:$PATH
  # then, optionally, all layers at a 100x smaller rate from the probe's result (slim's step 2):
  python -m experiments.run --config=configs/finetune.py --workdir=$WORKDIR2 \
      --config.init_from=$WORKDIR --config.freeze= --config.learning_rate=0.0001 \
      --config.num_train_steps=500 --config.dataset=folder:$PATH
`model_overrides` must match the conventions the converter records in DIR/convert_meta.json
(slim: no BN scale, 'SAME' pools excluding padding); init_from warns when they differ.
The full recipe follows tf-slim's scripts/finetune_inception_v3_on_flowers.sh: step 1 trains
Logits and AuxLogits only (checkpoint_exclude_scopes = trainable_scopes = InceptionV3/Logits,
InceptionV3/AuxLogits), RMSProp, learning rate 0.01 fixed, batch 32, 1000 steps, weight decay
4e-5; step 2 fine-tunes every layer at 0.0001 for 500 steps.
"""

import ml_collections

from configs import common, v3

PRESETS = ("local", "local_probe")


def slim_v3_recipe() -> ml_collections.ConfigDict:
  """Inception-v3 from Google's slim checkpoint, tf-slim's flowers fine-tuning, step 1."""
  c = v3.rethinking_recipe("inception_v3")
  c.model_overrides = ml_collections.ConfigDict({"bn_scale": False})  # slim: no BN gamma
  c.image_size = 299
  c.dataset = "folder:/path/to/dataset"  # override: --config.dataset=folder:PATH
  c.eval_split = "validation"
  c.freeze = "backbone"  # slim: --trainable_scopes=InceptionV3/Logits,InceptionV3/AuxLogits
  c.optimizer = "rmsprop"  # slim script: --optimizer=rmsprop (decay 0.9, epsilon 1.0)
  c.learning_rate = 0.01  # slim script: --learning_rate=0.01
  c.base_batch_size = 32
  c.batch_size = 32  # slim script: --batch_size=32
  c.lr_schedule = "constant"  # slim script: --learning_rate_decay_type=fixed
  c.num_train_steps = 1000  # slim script: --max_number_of_steps=1000
  c.weight_decay = 4e-5  # slim script: --weight_decay=0.00004
  c.grad_clip_norm = 0.0  # slim's train_image_classifier clips nothing
  c.ema_decay = 0.0  # slim script: no --moving_average_decay
  c.eval_batch_size = 64
  c.eval_every_steps = 500
  c.checkpoint_every_steps = 500
  c.log_every_steps = 50
  return c


def torchvision_input(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """torchvision's weights read ImageNet mean/std input; transform_input maps it to [-1, 1]."""
  c.preprocess.mean = (0.485, 0.456, 0.406)
  c.preprocess.std = (0.229, 0.224, 0.225)
  return c


def local_preset(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A converted torchvision googlenet (full width) fine-tuned on digits, whole network."""
  c = common.digits_on_cpu(c, image_size=32, width_multiplier=1.0)
  c.model = "googlenet_bn"
  # The conventions of a converted torchvision googlenet (its convert_meta.json).
  c.model_overrides = ml_collections.ConfigDict(
    {"width_multiplier": 1.0, "transform_input": True, "bn_scale": True, "aux_logits": True}
  )
  c = torchvision_input(c)
  c.freeze = ""
  c.optimizer = "sgd"
  c.momentum = 0.9
  c.learning_rate = 0.05
  c.base_batch_size = 64
  c.batch_size = 64
  c.new_layers_lr_multiplier = 1.0
  c.lr_schedule = "cosine"
  c.warmup_epochs = 1.0
  c.num_epochs = 12.0  # 282 steps of 64
  c.num_train_steps = -1
  c.weight_decay = 1e-4
  c.label_smoothing = 0.0
  c.aux_loss_weight = 0.3  # torchvision's googlenet training: 0.3 per head
  c.grad_clip_norm = 0.0
  c.ema_decay = 0.0
  c.batch_norm = "sync"
  c.model_overrides.bn_momentum = 0.9
  c.eval_every_steps = 100
  c.checkpoint_every_steps = 100
  return c


def local_probe_preset(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The classifier alone on frozen features: a linear probe (no auxiliary heads)."""
  c = local_preset(c)
  c.model_overrides.aux_logits = False  # the checkpoint's aux heads are left unused (logged)
  c.freeze = "backbone"
  c.learning_rate = 0.1
  c.weight_decay = 0.0
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset = common.parse_arg(arg, PRESETS)
  c = slim_v3_recipe()
  if preset == "local":
    c = local_preset(c)
  elif preset == "local_probe":
    c = local_probe_preset(c)
  return c
