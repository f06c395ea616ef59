"""The train step on a mesh: 8 simulated CPU devices match one device (synchronised BN); per-replica
BN matches replicas computed one by one; bad configs fail before compiling."""

import subprocess
import sys
import textwrap
import types

import jax
import numpy as np
import pytest
from helpers.training import ROOT, register_tiny_model, subprocess_env, tiny_config

EIGHT_DEVICES = textwrap.dedent("""
    import functools, jax, jax.numpy as jnp, numpy as np
    from helpers.training import register_tiny_model, tiny_config
    from inception_jax import errors
    from inception_jax.training import loop, optim, parallel, recipe
    from inception_jax.training import state as state_lib
    from inception_jax.training import step as step_lib
    assert jax.device_count() == 8, jax.devices()
    register_tiny_model()

    def one_step(config, devices, batch):
      mesh = parallel.make_mesh(devices)
      model = state_lib.create_model(config, 10)
      lr = optim.create_learning_rate_fn(config, 10.0, 100)
      tx = optim.create_optimizer(config, lr)
      state = state_lib.state_initializer(config, model, tx, mesh)(jax.random.key(0))
      step = step_lib.compile_train_step(model, tx, lr, config, mesh)
      state, metrics = step(state, parallel.shard_batch(batch, mesh))
      return parallel.fetch(state), parallel.fetch(metrics), model

    rng = np.random.default_rng(0)
    batch = {"image": rng.normal(size=(32, 16, 16, 3)).astype(np.float32),
             "label": rng.integers(0, 10, size=32).astype(np.int32)}
    close = lambda a, b: jax.tree.map(
        lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-4, atol=2e-6), a, b)

    # Synchronised BN: 8 devices == 1 device, params, BN statistics, averages and metrics.
    sync = tiny_config(batch_norm="sync", batch_size=32)
    s8, m8, _ = one_step(sync, jax.devices(), batch)
    s1, m1, _ = one_step(sync, jax.devices()[:1], batch)
    close(s8.params, s1.params); close(s8.batch_stats, s1.batch_stats)
    close(s8.ema_params, s1.ema_params); close(s8.opt_state, s1.opt_state); close(m8, m1)
    assert int(s8.step) == 1
    print("sync ok", float(m8["train/loss"]))

    # Per-replica BN on 8 devices == the mean over 8 single-device replicas of 4 images each.
    plain_sgd = dict(batch_size=32, optimizer="sgd", momentum=0.0, grad_clip_norm=0.0,
                     model_overrides={"dropout_rate": 0.0})
    config = tiny_config(batch_norm="per_replica", **plain_sgd)
    p8, _, model = one_step(config, jax.devices(), batch)
    base = state_lib.state_initializer(config, model, optim.create_optimizer(config, lambda s: 0.0),
                                   parallel.make_mesh(jax.devices()[:1]))(jax.random.key(0))
    grads, stats = [], []
    for r in range(8):
      shard = {k: v[4 * r: 4 * r + 4] for k, v in batch.items()}
      g, bs, _ = step_lib.loss_and_grads(base.params, base.batch_stats, shard["image"],
                                      shard["label"], jax.random.key(r), model=model,
                                      config=config)
      grads.append(g); stats.append(bs)
    mean = lambda trees: jax.tree.map(lambda *x: np.mean(x, axis=0), *trees)
    lr0 = float(optim.create_learning_rate_fn(config, 10.0, 100)(0))
    expected = jax.tree.map(lambda p, g: p - lr0 * g, base.params, mean(grads))
    close(p8.params, expected); close(p8.batch_stats, mean(stats))
    # ... and differs from synchronised statistics.
    s8sync, _, _ = one_step(tiny_config(batch_norm="sync", **plain_sgd), jax.devices(), batch)
    diff = max(float(np.max(np.abs(a - b))) for a, b in
               zip(jax.tree.leaves(s8sync.params), jax.tree.leaves(p8.params)))
    assert diff > 1e-6, diff
    print("per-replica ok")
""")


def test_eight_devices_match_one_device():
  result = subprocess.run(
    [sys.executable, "-c", EIGHT_DEVICES],
    cwd=f"{ROOT}/tests",
    env=subprocess_env(num_devices=8),
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
  assert "sync ok" in result.stdout and "per-replica ok" in result.stdout


@pytest.mark.parametrize(
  "field, value, message",
  [
    ("model", "inception_v9", "unknown model 'inception_v9'"),
    ("optimizer", "lamb", "unknown optimizer 'lamb'"),
    ("batch_norm", "ghost", "unknown batch_norm 'ghost'"),
    ("lr_schedule", "poly", "unknown lr_schedule 'poly'"),
    ("batch_size", 12, "batch_size=12 is not divisible by the number of devices \\(8\\)"),
    ("eval_batch_size", 20, "eval_batch_size=20 is not divisible"),
    ("image_size", 4, "image_size=4 is below the smallest input"),
  ],
)
def test_bad_configs_fail_with_a_clear_message(field, value, message):
  from inception_jax import errors
  from inception_jax.training import recipe

  register_tiny_model()
  config = tiny_config(**{field: value})  # batch 16, eval batch 32
  eight_devices = types.SimpleNamespace(devices=np.empty(8, dtype=object))
  with pytest.raises(errors.ConfigError, match=message):
    recipe.validate_config(config, eight_devices)


def test_bad_config_fails_before_compiling(tmp_path, monkeypatch):
  from inception_jax import errors
  from inception_jax.training import loop

  register_tiny_model()
  compiled = []
  monkeypatch.setattr(jax, "jit", lambda *a, **k: compiled.append(1))
  with pytest.raises(errors.ConfigError, match="unknown model 'resnet50'"):
    loop.train_and_evaluate(tiny_config(model="resnet50"), str(tmp_path))
  assert not compiled and not (tmp_path / "checkpoints").exists()


def test_unknown_model_override_is_a_config_error():
  from inception_jax import errors
  from inception_jax.training import recipe

  config = tiny_config(model="googlenet")
  config.model_overrides = {"widht_multiplier": 0.5}
  with pytest.raises(errors.ConfigError, match="widht_multiplier"):
    recipe.validate_config(config, types.SimpleNamespace(devices=np.empty(1, dtype=object)))
