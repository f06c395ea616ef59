"""train_and_evaluate end to end with the tiny stand-in network on `digits`: outputs, resumption,
NaN stop, checkpoint errors, init_from, and the multi-crop / ensemble evaluator."""

import json
import shutil

import jax
import numpy as np
import pytest
from helpers.training import register_tiny_model, tiny_config

from inception_jax import errors
from inception_jax.evaluation import evaluate
from inception_jax.training import checkpoint, loop, parallel


@pytest.fixture(scope="module", autouse=True)
def tiny_model():
  register_tiny_model()


def read_metrics(workdir):
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_outputs_and_resume(tmp_path):
  config = tiny_config(num_train_steps=8, checkpoint_every_steps=4, keep_checkpoints=2)
  state = loop.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == 8
  rows = read_metrics(tmp_path)
  train_rows = [r for r in rows if "train/loss" in r]
  eval_rows = [r for r in rows if "eval/top1" in r]
  assert [r["step"] for r in train_rows] == [4, 8]
  for key in [
    "train/loss",
    "train/ce_loss",
    "train/aux_loss",
    "train/weight_decay",
    "train/learning_rate",
    "train/images_per_sec",
    "train/top1",
  ]:
    assert key in train_rows[0], key
  assert eval_rows[-1]["step"] == 8
  for key in ["eval/loss", "eval/top1", "eval/top5", "eval_ema/top1", "eval_ema/top5"]:
    assert key in eval_rows[-1], key
  total = train_rows[0]
  np.testing.assert_allclose(
    total["train/loss"],
    total["train/ce_loss"] + total["train/aux_loss"] + total["train/weight_decay"],
    rtol=1e-5,
  )
  assert json.loads((tmp_path / "config.json").read_text())["model"] == "tiny"
  assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["4", "8"]

  # Rerunning with a longer schedule resumes from step 8 and continues.
  config.num_train_steps = 12
  state = loop.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == 12
  assert [r["step"] for r in read_metrics(tmp_path) if "train/loss" in r] == [4, 8, 12]
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["12", "8"]


def test_relative_workdir(tmp_path, monkeypatch):
  """The README's command uses a relative workdir; Orbax needs absolute paths (it once failed
  here with 'Checkpoint path should be absolute'). Resume from it too."""
  monkeypatch.chdir(tmp_path)
  config = tiny_config(num_train_steps=4, checkpoint_every_steps=2)
  assert int(loop.train_and_evaluate(config, "runs/rel").step) == 4
  assert sorted(p.name for p in (tmp_path / "runs/rel/checkpoints").iterdir()) == ["2", "4"]
  config.num_train_steps = 6
  assert int(loop.train_and_evaluate(config, "runs/rel").step) == 6
  assert set(checkpoint.load_variables("runs/rel")) >= {"params"}


def test_non_finite_loss_stops_naming_the_step(tmp_path):
  # A huge learning rate makes the second step's loss non-finite; step 1 was saved.
  config = tiny_config(
    optimizer="sgd",
    learning_rate=1e30,
    grad_clip_norm=0.0,
    num_train_steps=6,
    log_every_steps=1,
    checkpoint_every_steps=1,
    ema_decay=0.0,
  )
  with pytest.raises(errors.NonFiniteLossError, match=r"at step 2\b"):
    loop.train_and_evaluate(config, str(tmp_path))
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["1"]


def test_corrupt_checkpoint_is_named_and_kept(tmp_path):
  config = tiny_config(num_train_steps=4, checkpoint_every_steps=2)
  loop.train_and_evaluate(config, str(tmp_path))
  latest = tmp_path / "checkpoints" / "4"
  shutil.rmtree(latest / "state" / "d")  # the array data
  for f in (latest / "state").glob("*ocdbt*"):
    shutil.rmtree(f) if f.is_dir() else f.unlink()
  config.num_train_steps = 6
  with pytest.raises(errors.CheckpointError, match=f"checkpoint {latest} is corrupt"):
    loop.train_and_evaluate(config, str(tmp_path))
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2", "4"]


def test_incompatible_checkpoint_is_refused(tmp_path):
  loop.train_and_evaluate(tiny_config(num_train_steps=2, checkpoint_every_steps=2), str(tmp_path))
  wider = tiny_config(num_train_steps=4)
  wider.model_overrides = {"width": 16}
  with pytest.raises(errors.CheckpointError, match="incompatible with this run: model_overrides"):
    loop.train_and_evaluate(wider, str(tmp_path))
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2"]


def test_checkpoint_of_another_optimizer_state_is_refused(tmp_path):
  """Same model, different optimizer state tree (clipping adds a state entry): named, kept."""
  config = tiny_config(num_train_steps=2, checkpoint_every_steps=2, grad_clip_norm=0.0)
  loop.train_and_evaluate(config, str(tmp_path))
  clipped = tiny_config(num_train_steps=4, grad_clip_norm=2.0)
  with pytest.raises(errors.CheckpointError, match=r"does not match this run's state: .*opt_state"):
    loop.train_and_evaluate(clipped, str(tmp_path))
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2"]


def test_init_from_another_run(tmp_path):
  source = tmp_path / "source"
  state = loop.train_and_evaluate(tiny_config(num_train_steps=2), str(source))
  config = tiny_config(
    num_train_steps=1,
    init_from=str(source),
    learning_rate=0.0,
    weight_decay=0.0,
    momentum=0.0,
    model_overrides={"dropout_rate": 0.0},
  )
  config.ema_decay = 0.0
  # With a zero learning rate, one step leaves the loaded parameters unchanged.
  started = loop.train_and_evaluate(config, str(tmp_path / "target"))
  jax.tree.map(
    np.testing.assert_array_equal, parallel.fetch(started.params), parallel.fetch(state.params)
  )
  with pytest.raises(errors.CheckpointError, match="does not exist"):
    loop.train_and_evaluate(
      tiny_config(init_from=str(tmp_path / "nowhere")), str(tmp_path / "other")
    )


def test_multicrop_and_ensemble_average_softmax():
  import flax.linen as nn
  import jax.numpy as jnp

  class Scale(nn.Module):  # logits = w * mean pixel value per class channel
    @nn.compact
    def __call__(self, x, train=False):
      w = self.param("w", nn.initializers.ones, (3,))
      return jnp.mean(x, axis=(1, 2)) * w

  model, mesh = Scale(), parallel.make_mesh()
  images = np.zeros((2, 3, 4, 4, 3), np.float32)  # 2 examples, 3 crops
  images[0, 0, ..., 0] = 5.0  # crop 0 of example 0 says class 0
  images[0, 1:, ..., 2] = 1.0  # crops 1, 2 weakly say class 2
  images[1, :, ..., 1] = 2.0
  batch = {"image": images, "label": np.array([2, 1], np.int32), "mask": np.array([True, False])}
  v1 = {"params": {"w": jnp.ones(3)}}
  v2 = {"params": {"w": jnp.array([1.0, 1.0, 3.0])}}
  ev = evaluate.Evaluator(model, mesh)
  probs = np.asarray(evaluate.crop_averaged_probabilities(model, v1, jnp.asarray(images)))

  def softmax(z):
    return np.exp(z) / np.exp(z).sum()

  expected0 = (softmax(np.array([5.0, 0, 0])) + 2 * softmax(np.array([0, 0, 1.0]))) / 3
  np.testing.assert_allclose(probs[0], expected0, rtol=1e-5)
  results = ev.evaluate({"one": [v1], "both": [v1, v2]}, [batch])
  assert results["one"]["count"] == 1  # the masked example is not counted
  assert results["one"]["top1"] == 0.0  # the averaged crops favour class 0 ...
  assert results["both"]["top1"] == 1.0  # ... the ensemble with v2 favours class 2
  p_both = (
    expected0 + np.asarray(evaluate.crop_averaged_probabilities(model, v2, jnp.asarray(images)))[0]
  ) / 2
  np.testing.assert_allclose(results["both"]["loss"], -np.log(p_both[2]), rtol=1e-5)


def test_evaluate_workdirs_ensemble_table(tmp_path, capsys):
  config = tiny_config(num_train_steps=2, checkpoint_every_steps=2)
  for seed in (0, 1):
    config.seed = seed
    loop.train_and_evaluate(config, str(tmp_path / f"m{seed}"))
  results = evaluate.evaluate_workdirs(
    config, [str(tmp_path / "m0"), str(tmp_path / "m1")], crops=10, batch_size=32
  )
  assert set(results) == {"model_0", "model_1", "ensemble"}
  assert all(r["count"] == 297 for r in results.values())  # the whole digits test split
  table = capsys.readouterr().out
  assert "| 2 (ensemble) | 10 |" in table and "top-5 error" in table


def test_init_from_converted_weights_layout(tmp_path):
  """docs/CONVERT.md's layout: DIR/state is a StandardCheckpointer tree of params + batch_stats."""
  import jax.numpy as jnp
  import orbax.checkpoint as ocp
  from helpers.training import TinyNet

  variables = TinyNet(num_classes=10).init(jax.random.key(7), jnp.zeros((1, 16, 16, 3)))
  variables = jax.tree.map(lambda x: x + 1.0, variables)
  with ocp.StandardCheckpointer() as saver:
    saver.save(tmp_path / "converted" / "state", variables)
  loaded = checkpoint.load_variables(str(tmp_path / "converted"))
  jax.tree.map(np.testing.assert_array_equal, loaded, jax.device_get(dict(variables)))
  with pytest.raises(errors.CheckpointError, match="does not fit the model"):
    loop.train_and_evaluate(
      tiny_config(init_from=str(tmp_path / "converted"), model_overrides={"width": 4}),
      str(tmp_path / "run"),
    )
