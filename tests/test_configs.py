"""Every recipe and preset builds, names its paper's values and overrides cleanly."""
import importlib
import pathlib

import pytest

from inception_jax import optim

ROOT = pathlib.Path(__file__).resolve().parents[1]
RECIPES = ["v1", "v2", "v3", "finetune"]


@pytest.mark.parametrize("name", RECIPES)
@pytest.mark.parametrize("preset", [None, "local"])
def test_config_builds(name, preset):
  module = importlib.import_module(f"configs.{name}")
  c = module.get_config(preset)
  for field in ["num_train_steps", "num_epochs", "checkpoint_every_steps", "eval_every_steps",
                "init_from", "seed", "half_precision", "batch_size", "model", "dataset"]:
    assert field in c, field
  assert c.optimizer in optim.OPTIMIZERS
  assert c.lr_schedule in optim.SCHEDULES
  if preset == "local":
    assert c.dataset == "digits"
    assert "width_multiplier" in c.model_overrides
  assert module.__doc__ and "python -m experiments.run" in module.__doc__


def test_unknown_preset():
  from configs import v3
  with pytest.raises(ValueError, match="unknown preset 'huge'"):
    v3.get_config("huge")


def test_v1_is_the_googlenet_recipe():
  from configs import v1
  c = v1.get_config()
  assert (c.model, c.optimizer, c.momentum) == ("googlenet", "sgd", 0.9)
  assert (c.lr_decay_rate, c.lr_decay_epochs) == (0.96, 8.0)
  assert c.aux_loss_weight == 0.3 and c.ema_decay > 0 and c.image_size == 224


@pytest.mark.parametrize("name, model", [("v2", "inception_v2"), ("v3", "inception_v3")])
def test_rethinking_recipes(name, model):
  c = importlib.import_module(f"configs.{name}").get_config()
  assert c.model == model
  assert (c.batch_size, c.num_epochs, c.image_size) == (1600, 100.0, 299)
  assert (c.optimizer, c.rmsprop_decay, c.rmsprop_epsilon) == ("rmsprop", 0.9, 1.0)
  assert (c.learning_rate, c.lr_decay_rate, c.lr_decay_epochs) == (0.045, 0.94, 2.0)
  assert (c.grad_clip_norm, c.label_smoothing, c.aux_loss_weight) == (2.0, 0.1, 0.4)
  assert c.ema_decay == 0.9999


def test_command_line_overrides(tmp_path):
  """--config.field=value works for every kind of field, placeholders included."""
  from absl import flags
  from ml_collections import config_flags
  argv = ["prog", f"--config={ROOT}/configs/v1.py:local", "--config.batch_size=32",
          "--config.half_precision=True", f"--config.init_from={tmp_path}",
          "--config.model_overrides.width_multiplier=0.5", "--config.num_train_steps=7"]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, flag_values=fv, sys_argv=argv)
  fv(argv)
  c = fv.config
  assert (c.batch_size, c.half_precision, c.init_from) == (32, True, str(tmp_path))
  assert (c.model_overrides.width_multiplier, c.num_train_steps) == (0.5, 7)


def test_finetune_presets():
  from configs import finetune
  full, local, probe = (finetune.get_config(p) for p in (None, "local", "local_probe"))
  assert (full.model, full.image_size, full.freeze) == ("inception_v3", 299, "backbone")
  assert full.model_overrides.bn_scale is False  # slim's Inception-v3 has no BN scale
  assert (local.model, local.freeze, local.model_overrides.transform_input) == ("googlenet_bn", "",
                                                                               True)
  assert local.preprocess.mean == (0.485, 0.456, 0.406)  # torchvision's input convention
  assert probe.freeze == "backbone" and probe.model_overrides.aux_logits is False
  assert "MEASURED" not in finetune.__doc__
