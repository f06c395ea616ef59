"""Every recipe and preset builds, names its paper's values and overrides cleanly."""

import importlib
import pathlib

import pytest

from inception_jax import errors
from inception_jax.training import optim

ROOT = pathlib.Path(__file__).resolve().parents[1]
RECIPES = ["v1", "v2", "v3", "bn_inception", "finetune"]


@pytest.mark.parametrize("name", RECIPES)
@pytest.mark.parametrize("preset", [None, "local"])
def test_config_builds(name, preset):
  module = importlib.import_module(f"configs.{name}")
  c = module.get_config(preset)
  for field in [
    "num_train_steps",
    "num_epochs",
    "checkpoint_every_steps",
    "eval_every_steps",
    "init_from",
    "seed",
    "half_precision",
    "batch_size",
    "model",
    "dataset",
  ]:
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


@pytest.mark.parametrize("preset", [None, "local"])
def test_bn_inception_recipe(preset):
  """Table 3's BN-Inception row: the paper's dense stem, before RMSProp and label smoothing."""
  from configs import bn_inception

  c = bn_inception.get_config(preset)
  assert (c.model, c.model_overrides.stem, c.optimizer) == ("bn_inception", "7x7", "sgd")
  assert (c.label_smoothing, c.aux_loss_weight) == (0.0, 0.0)
  assert c.image_size == (224 if preset is None else 75)


def test_command_line_overrides(tmp_path):
  """--config.field=value works for every kind of field, placeholders included."""
  from absl import flags
  from ml_collections import config_flags

  argv = [
    "prog",
    f"--config={ROOT}/configs/v1.py:local",
    "--config.batch_size=32",
    "--config.half_precision=True",
    f"--config.init_from={tmp_path}",
    "--config.model_overrides.width_multiplier=0.5",
    "--config.num_train_steps=7",
  ]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, flag_values=fv, sys_argv=argv)
  fv(argv)
  c = fv.config
  assert (c.batch_size, c.half_precision, c.init_from) == (32, True, str(tmp_path))
  assert (c.model_overrides.width_multiplier, c.num_train_steps) == (0.5, 7)


# ---- Input convention: one field of the recipe, the same for training and evaluation ----------


def test_input_scale_follows_the_model():
  from configs import v1, v3
  from inception_jax import data
  from inception_jax.training import recipe

  c = v1.get_config()
  assert recipe.input_scale(c) == "caffe"  # the paper's GoogLeNet, as BVLC fed it
  options = recipe.preprocess_options(c)
  assert options["std"] == (1 / 255,) * 3
  assert [round(m * 255) for m in options["mean"]] == [123, 117, 104]  # BVLC's mean_value, RGB
  assert options["ten_crop"] == "krizhevsky"  # Table 3's 10-crop row: Section 7's baseline
  assert recipe.input_scale(v1.get_config("local")) == "caffe"
  c.model_overrides.norm = "bn"  # BN-GoogLeNet: [-1, 1]
  assert recipe.input_scale(c) == "inception"
  assert recipe.preprocess_options(c)["mean"] is None
  assert recipe.input_scale(v3.get_config()) == "inception"
  c = v1.get_config()
  c.input_scale = "inception"  # an explicit choice wins (LRN at [-1, 1])
  assert recipe.preprocess_options(c)["input_range"] == (-1.0, 1.0)
  assert data.make_config(recipe.preprocess_options(v1.get_config())).mean is not None


def test_inconsistent_input_scale_is_refused():
  from configs import v1
  from inception_jax.training import recipe

  c = v1.get_config()
  c.preprocess.mean, c.preprocess.std = (0.5,) * 3, (0.5,) * 3
  assert recipe.input_scale(c) is None  # "auto": preprocess's own scaling is used as given
  c.input_scale = "caffe"
  with pytest.raises(errors.ConfigError, match="both set the input scaling"):
    recipe.preprocess_options(c)
  c = v1.get_config()
  c.input_scale = "caffe"
  c.model_overrides.transform_input = True
  with pytest.raises(errors.ConfigError, match="transform_input"):
    recipe.input_scale(c)
  c = v1.get_config()
  c.input_scale = "bgr"
  with pytest.raises(errors.ConfigError, match="unknown input_scale"):
    recipe.input_scale(c)


def test_evaluation_gets_the_recipes_input_scale(monkeypatch):
  from configs import v1
  from inception_jax import data
  from inception_jax.evaluation import evaluate

  seen = {}
  monkeypatch.setattr(data, "create_eval_iterator", lambda *a, **k: seen.update(k))
  evaluate.eval_batches(v1.get_config("local"), 16, 10)
  assert seen["crops"] == 10 and seen["preprocess"]["std"] == (1 / 255,) * 3


def test_finetune_presets():
  from configs import finetune

  full, local, probe = (finetune.get_config(p) for p in (None, "local", "local_probe"))
  assert (full.model, full.image_size, full.freeze) == ("inception_v3", 299, "backbone")
  assert full.model_overrides.bn_scale is False  # slim's Inception-v3 has no BN scale
  assert (local.model, local.freeze, local.model_overrides.transform_input) == (
    "googlenet_bn",
    "",
    True,
  )
  assert local.preprocess.mean == (0.485, 0.456, 0.406)  # torchvision's input convention
  assert probe.freeze == "backbone" and probe.model_overrides.aux_logits is False
  assert "MEASURED" not in finetune.__doc__
