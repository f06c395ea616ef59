"""Transfer learning with the tiny stand-in network on `digits`: init_from with another class count
or without auxiliary heads, init_exclude, frozen parameters and BatchNorm statistics, the
learning rate of the new layers, a resumed fine-tune, and the errors raised before compiling."""

import json
import logging
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import traverse_util
from helpers.training import TinyNet, register_tiny_model, tiny_config

from inception_jax import errors
from inception_jax.layers import ConvBN
from inception_jax.training import loop, losses, optim, parallel, transfer
from inception_jax.training import state as state_lib
from inception_jax.training import step as step_lib


@pytest.fixture(scope="module", autouse=True)
def tiny_model():
  register_tiny_model()


def flat(tree):
  return traverse_util.flatten_dict(jax.device_get(dict(tree)), sep="/")


def save_variables(directory, variables, meta=None):
  """A checkpoint of variables alone, in the layout `python -m inception_jax.conversion` writes."""
  with ocp.StandardCheckpointer() as saver:
    saver.save(directory / "state", jax.tree.map(np.asarray, variables))
  if meta is not None:
    (directory / "convert_meta.json").write_text(json.dumps(meta))
  return directory


def tiny_checkpoint(directory, num_classes=10, drop=(), **overrides):
  """TinyNet weights unlike any fresh initialisation (+1 everywhere), minus the layers `drop`."""
  variables = TinyNet(num_classes=num_classes, **overrides).init(
    jax.random.key(7), jnp.zeros((1, 16, 16, 3))
  )
  variables = jax.tree.map(lambda x: np.asarray(x) + 1.0, dict(variables))
  for collection in variables.values():
    for layer in drop:
      collection.pop(layer, None)
  return save_variables(directory, variables), flat(variables)


def unchanged_config(**overrides):
  """One step that leaves the parameters where they started (learning rate 0, no decay)."""
  config = tiny_config(
    num_train_steps=1,
    learning_rate=0.0,
    weight_decay=0.0,
    momentum=0.0,
    model_overrides={"dropout_rate": 0.0},
    **overrides,
  )
  config.ema_decay = 0.0
  return config


@pytest.fixture
def no_compile(monkeypatch):
  """Fails if the state initializer or the train step is compiled (tracing is allowed)."""
  make_init = state_lib.state_initializer

  def guarded(*args, **kwargs):
    init = make_init(*args, **kwargs)

    def initialize(rng):
      if not isinstance(rng, jax.core.Tracer):
        raise AssertionError("the state initializer was compiled before the error")
      return init(rng)

    return initialize

  def compile_step(*args, **kwargs):
    raise AssertionError("the train step was compiled before the error")

  monkeypatch.setattr(state_lib, "state_initializer", guarded)
  monkeypatch.setattr(step_lib, "compile_train_step", compile_step)


# ---- Names, presets, plans -----------------------------------------------------------------------
def test_presets_split_classifiers_from_backbone():
  names = [
    "Logits/kernel",
    "AuxLogits/fc/bias",
    "AuxLogits_Mixed_4b/fc2/kernel",
    "Mixed_3b/branch1/conv/kernel",
    "Conv2d_1a_7x7/bn/mean",
    "MyLogits/kernel",
  ]
  classifiers = transfer.parse_patterns("classifiers", "freeze")
  backbone = transfer.parse_patterns("backbone", "freeze")
  assert [n for n in names if transfer.matches(n, classifiers)] == names[:3]
  assert [n for n in names if transfer.matches(n, backbone)] == names[3:]
  assert transfer.parse_patterns(" ^Mixed_3, backbone ,", "freeze") == ("^Mixed_3", backbone[0])
  with pytest.raises(ValueError, match=r"freeze: '\(' is not a regular expression"):
    transfer.parse_patterns("(", "freeze")


def test_plan_ignores_aux_heads_the_model_lacks_and_refuses_other_differences():
  model = {
    "params": {
      "Mixed": {"kernel": np.zeros((3, 4))},
      "Logits": {"kernel": np.zeros((4, 10)), "bias": np.zeros(10)},
    }
  }
  ckpt = {
    "params": {
      "Mixed": {"kernel": np.ones((3, 4))},
      "Logits": {"kernel": np.ones((4, 1000)), "bias": np.ones(1000)},
      "AuxLogits": {"fc": {"kernel": np.ones((4, 1000))}},
    }
  }
  plan = transfer.plan_init(model, ckpt)
  assert plan.load == ["params/Mixed/kernel"]
  assert plan.reinitialised == ["Logits"]
  assert sorted(plan.ignored) == [
    "params/AuxLogits/fc/kernel",
    "params/Logits/bias",
    "params/Logits/kernel",
  ]
  ckpt["params"]["Mixed"]["kernel"] = np.ones((3, 5))
  with pytest.raises(
    ValueError,
    match=r"another architecture .*params/Mixed/kernel: checkpoint "
    r"\(3, 5\), model \(3, 4\)",
  ):
    transfer.plan_init(model, ckpt)
  plan = transfer.plan_init(model, ckpt, init_exclude=("^Mixed/",))  # ... unless excluded
  assert plan.load == [] and plan.reinitialised == ["Logits", "Mixed"]


# ---- init_from -----------------------------------------------------------------------------------
def test_another_class_count_reinitialises_the_classifiers(tmp_path, caplog):
  source, saved = tiny_checkpoint(tmp_path / "imagenet", num_classes=1000)
  caplog.set_level(logging.INFO)
  tuned = loop.train_and_evaluate(unchanged_config(init_from=str(source)), str(tmp_path / "a"))
  fresh = loop.train_and_evaluate(unchanged_config(), str(tmp_path / "b"))
  tuned, fresh = flat(tuned.variables()), flat(fresh.variables())
  assert tuned["params/Logits/kernel"].shape == (16, 10)
  for name, value in tuned.items():
    if name.startswith("params/"):
      expected = fresh[name] if name.split("/")[1] in ("Logits", "AuxLogits") else saved[name]
      np.testing.assert_array_equal(value, expected, err_msg=name)
  assert "re-initialised 2 layer(s): AuxLogits, Logits" in caplog.text


def test_checkpoint_without_aux_heads_and_init_exclude(tmp_path, caplog):
  source, saved = tiny_checkpoint(tmp_path / "noaux", drop=("AuxLogits",))
  assert not any("AuxLogits" in k for k in saved)
  caplog.set_level(logging.INFO)
  config = unchanged_config(init_from=str(source), init_exclude="^b2_")
  tuned = flat(loop.train_and_evaluate(config, str(tmp_path / "a")).variables())
  fresh = flat(loop.train_and_evaluate(unchanged_config(), str(tmp_path / "b")).variables())
  new = ("AuxLogits", "b2_conv", "b2_bn")
  for name, value in tuned.items():
    if name.startswith("params/"):
      expected = fresh[name] if name.split("/")[1] in new else saved[name]
      np.testing.assert_array_equal(value, expected, err_msg=name)
  assert "re-initialised 3 layer(s): AuxLogits, b2_bn, b2_conv" in caplog.text


# ---- Freezing ------------------------------------------------------------------------------------
def test_frozen_parameters_and_batch_norm_statistics_are_bit_identical(tmp_path):
  source, saved = tiny_checkpoint(tmp_path / "source")
  config = tiny_config(
    init_from=str(source),
    freeze="backbone",
    optimizer="sgd",
    learning_rate=0.1,
    momentum=0.9,
    weight_decay=1e-2,
    num_train_steps=6,
    ema_decay=0.9,
  )
  state = loop.train_and_evaluate(config, str(tmp_path / "run"))
  for ema in (False, True):
    end = flat(state.variables(ema=ema))
    assert end.keys() == saved.keys()
    for name, value in end.items():
      if name.split("/")[1] in ("Logits", "AuxLogits"):
        assert not np.array_equal(value, saved[name]), f"{name} did not train (ema={ema})"
      else:
        np.testing.assert_array_equal(value, saved[name], err_msg=f"{name} (ema={ema})")
  # No optimizer state (momentum) is kept for the frozen parameters.
  traces = [x for x in jax.tree.leaves(state.opt_state) if getattr(x, "ndim", 0) > 0]
  assert sorted(x.shape for x in traces) == [(8, 10), (10,), (10,), (16, 10)]


def test_frozen_batch_norm_uses_running_averages_in_training():
  layer = ConvBN(4, 3, padding=1, bn_momentum=0.5)
  x = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))
  variables = nn.Module.init(
    layer, jax.random.key(1), x
  )  # ConvBN's `init` field is its initialiser
  stats = jax.tree.map(lambda s: s + 0.5, variables["batch_stats"])  # not the batch's
  variables = {"params": variables["params"], "batch_stats": stats}
  eval_out = layer.apply(variables, x, train=False)
  with transfer.frozen_batch_norm(frozenset({("bn",)})):
    frozen_out, updates = layer.apply(variables, x, train=True, mutable=["batch_stats"])
  np.testing.assert_array_equal(frozen_out, eval_out)
  jax.tree.map(np.testing.assert_array_equal, updates["batch_stats"], stats)
  train_out, updates = layer.apply(variables, x, train=True, mutable=["batch_stats"])
  assert not np.allclose(train_out, eval_out)  # without the context: batch statistics
  spec = transfer.TransferSpec(freeze=transfer.parse_patterns("^bn/m", "freeze"))
  assert spec.frozen_batch_norm_layers(stats) == frozenset()  # var is not frozen: BN trains


def test_frozen_kernels_are_not_weight_decayed():
  params = {
    "Mixed": {"kernel": jnp.full((2, 2), 3.0)},
    "Logits": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)},
  }
  frozen = transfer.mask(params, transfer.parse_patterns("backbone", "freeze"))
  np.testing.assert_allclose(losses.l2_weight_decay(params, 0.1, frozen), 0.1 * 0.5 * 4)
  np.testing.assert_allclose(losses.l2_weight_decay(params, 0.1), 0.1 * 0.5 * (4 + 36))


def test_new_layers_learning_rate_and_frozen_updates():
  config = tiny_config(
    optimizer="sgd",
    momentum=0.0,
    grad_clip_norm=0.0,
    freeze="^Mixed_3b/",
    init_exclude="^Mixed_4b/",
    new_layers_lr_multiplier=10.0,
  )
  params = {
    name: {"kernel": jnp.ones((2, 2))}
    for name in ("Mixed_3b", "Mixed_4b", "Mixed_5b", "Logits", "AuxLogits_Mixed_4e")
  }
  tx = optim.create_optimizer(config, lambda step: 0.1)
  updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
  got = {name: float(u["kernel"][0, 0]) for name, u in updates.items()}
  np.testing.assert_allclose(
    [got["Mixed_3b"], got["Mixed_5b"], got["Mixed_4b"], got["Logits"], got["AuxLogits_Mixed_4e"]],
    [0.0, -0.1, -1.0, -1.0, -1.0],
    rtol=1e-6,
  )


# ---- Resumption ----------------------------------------------------------------------------------
def test_resumed_finetune_continues_exactly(tmp_path):
  source, _ = tiny_checkpoint(tmp_path / "imagenet", num_classes=1000)
  config = tiny_config(
    init_from=str(source),
    freeze="^b1_",
    new_layers_lr_multiplier=5.0,
    num_train_steps=8,
    checkpoint_every_steps=4,
    ema_decay=0.9,
  )
  straight = loop.train_and_evaluate(config, str(tmp_path / "straight"))
  config.num_train_steps = 4
  loop.train_and_evaluate(config, str(tmp_path / "interrupted"))
  shutil.move(source, tmp_path / "moved")  # a resumed run reads its own checkpoint only
  config.num_train_steps = 8
  resumed = loop.train_and_evaluate(config, str(tmp_path / "interrupted"))
  a, b = parallel.fetch(straight), parallel.fetch(resumed)
  assert int(b.step) == 8
  jax.tree.map(np.testing.assert_array_equal, a, b)


# ---- Errors before anything compiles -------------------------------------------------------------
def test_checkpoint_of_another_architecture_is_refused(tmp_path, no_compile):
  wider, _ = tiny_checkpoint(tmp_path / "wider", width=4)
  with pytest.raises(
    errors.CheckpointError,
    match=r"does not fit the model \(tiny\): .* another architecture .*"
    r"params/b1_conv/kernel: checkpoint \(3, 3, 3, 4\), model \(3, 3, 3, 8\)",
  ):
    loop.train_and_evaluate(tiny_config(init_from=str(wider)), str(tmp_path / "a"))
  converted, _ = tiny_checkpoint(tmp_path / "converted")
  (converted / "convert_meta.json").write_text(
    json.dumps({"model": "googlenet_bn", "num_classes": 10, "model_overrides": {}})
  )
  with pytest.raises(
    errors.CheckpointError,
    match=r"holds 'googlenet_bn' weights .* but "
    r"config.model is 'tiny'",
  ):
    loop.train_and_evaluate(tiny_config(init_from=str(converted)), str(tmp_path / "b"))


def test_truncated_checkpoints_are_refused(tmp_path, no_compile):
  variables = TinyNet().init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
  blob = tmp_path / "weights.msgpack"
  blob.write_bytes(flax_bytes(variables)[:500])
  with pytest.raises(errors.CheckpointError, match="cannot be read .truncated or corrupt"):
    loop.train_and_evaluate(tiny_config(init_from=str(blob)), str(tmp_path / "a"))
  directory, _ = tiny_checkpoint(tmp_path / "orbax")
  data = [p for p in (directory / "state").rglob("*") if p.is_file() and p.stat().st_size > 1000]
  assert data, "no array data file found"
  for p in data:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
  with pytest.raises(errors.CheckpointError, match="cannot be read .truncated or corrupt"):
    loop.train_and_evaluate(tiny_config(init_from=str(directory)), str(tmp_path / "b"))


def flax_bytes(variables):
  import flax.serialization

  return flax.serialization.msgpack_serialize(jax.device_get(dict(variables)))


def test_freeze_and_exclude_patterns_that_match_nothing_are_refused(tmp_path, no_compile):
  with pytest.raises(errors.ConfigError, match=r"freeze: pattern '\^Mixed_9z' matches no variable"):
    loop.train_and_evaluate(tiny_config(freeze="backbone,^Mixed_9z"), str(tmp_path / "a"))
  with pytest.raises(errors.ConfigError, match=r"init_exclude: pattern 'nothing' matches no"):
    loop.train_and_evaluate(tiny_config(init_exclude="nothing"), str(tmp_path / "b"))
  with pytest.raises(errors.ConfigError, match="is not a regular expression"):
    loop.train_and_evaluate(tiny_config(freeze="Mixed_[3"), str(tmp_path / "c"))


def test_frozen_batch_norm_configured_in_its_constructor_is_an_error():
  """A BatchNorm given use_running_average in its constructor and frozen is a loud error, not a
  silently training layer."""

  class Constructed(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      return nn.BatchNorm(use_running_average=not train, name="bn")(x)

  x = jnp.ones((2, 3))
  variables = Constructed().init(jax.random.key(0), x)
  with (
    pytest.raises(ValueError, match="use_running_average"),
    transfer.frozen_batch_norm(frozenset({("bn",)})),
  ):
    Constructed().apply(variables, x, train=True, mutable=["batch_stats"])


def test_wrong_model_for_the_converter_is_refused(tmp_path, capsys):
  """--model names an architecture the source does not have: an error, nothing converted."""
  from inception_jax.conversion import __main__ as conversion_cli

  weights = tmp_path / "inception_v3.h5"
  weights.write_bytes(b"unused")
  code = conversion_cli.main(
    [
      "convert",
      "--from=keras",
      "--model=googlenet_bn",
      f"--input={weights}",
      f"--output={tmp_path / 'out'}",
    ]
  )
  assert code == 2 and "Keras conversion supports ('inception_v3',)" in capsys.readouterr().err
  with pytest.raises(SystemExit) as exit_info:
    conversion_cli.main(
      [
        "convert",
        "--from=torchvision",
        "--model=resnet50",
        f"--input={weights}",
        f"--output={tmp_path / 'out'}",
      ]
    )
  assert exit_info.value.code == 2 and "value should be one of" in capsys.readouterr().err
  assert not (tmp_path / "out").exists()
