"""Shared pieces of the training tests: a tiny stand-in network and a subprocess runner.

The stand-in (`tiny`, registered into `inception_jax.models` by `install_tiny_model`) has the
interface of the real networks (BatchNorm or none, an auxiliary head, dropout, `dtype`), and
compiles in a second, so the trainer's tests stay fast; the real GoogLeNet is exercised by the
`:local` preset test.

Run as a script, it trains: python tests/test_train_utils.py WORKDIR [--config.field=value ...]
(with optional --coordinator_address/--num_processes/--process_id, and TINY_STEP_SLEEP seconds
per step to leave time for a kill -9).
"""

import os
import sys
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TinyNet(nn.Module):
  """conv-BN-ReLU x2 with an auxiliary head after the first block; [B, S, S, 3] -> [B, K].
  The classifiers carry the real networks' names (Logits, AuxLogits) for the transfer tests."""

  num_classes: int = 10
  norm: str = "bn"  # "bn" | "none" (like the paper GoogLeNet: no batch_stats)
  width: int = 8
  dropout_rate: float = 0.2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    def block(x, features, strides, name):
      x = nn.Conv(
        features,
        (3, 3),
        strides=strides,
        use_bias=self.norm == "none",
        dtype=self.dtype,
        name=f"{name}_conv",
      )(x)
      if self.norm == "bn":
        x = nn.BatchNorm(momentum=0.9, epsilon=1e-3, dtype=self.dtype, name=f"{name}_bn")(
          x, use_running_average=not train
        )
      return nn.relu(x)

    x = block(x.astype(self.dtype), self.width, 2, "b1")
    aux = None
    if train or self.is_initializing():
      aux = nn.Dense(self.num_classes, dtype=self.dtype, name="AuxLogits")(jnp.mean(x, axis=(1, 2)))
    x = block(x, 2 * self.width, 2, "b2")
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="Logits")(x).astype(jnp.float32)
    if train:
      return logits, (aux.astype(jnp.float32),)
    return logits


def install_tiny_model() -> None:
  """Makes `models.create("tiny", ...)` return TinyNet (idempotent)."""
  from inception_jax import models

  if "tiny" in models.NAMES:
    return
  create, min_size = models.create, models.min_image_size

  def create_with_tiny(name, num_classes=None, **overrides):
    if name == "tiny":
      return TinyNet(num_classes=1000 if num_classes is None else num_classes, **overrides)
    return create(name, num_classes=num_classes, **overrides)  # None: the network's own default

  def min_image_size_with_tiny(name, **overrides):
    return 8 if name == "tiny" else min_size(name, **overrides)

  models.create = create_with_tiny
  models.min_image_size = min_image_size_with_tiny
  models.NAMES = (*models.NAMES, "tiny")


def tiny_config(**overrides):
  """The v3 recipe on digits with the tiny network: a few seconds per run."""
  sys.path.insert(0, ROOT)
  from configs import v3

  c = v3.get_config("local")
  c.model = "tiny"
  c.model_overrides = {}
  c.image_size = 16
  c.batch_size = 16
  c.eval_batch_size = 32
  c.num_train_steps = 12
  c.log_every_steps = 4
  c.eval_every_steps = -1
  c.checkpoint_every_steps = 4
  c.num_eval_steps = 2
  c.compilation_cache_dir = ""
  for k, v in overrides.items():
    setattr(c, k, v)
  return c


def subprocess_env(num_devices: int = 1) -> dict[str, str]:
  env = dict(os.environ)
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={num_devices}"
  env["JAX_PLATFORMS"] = "cpu"
  env["TF_CPP_MIN_LOG_LEVEL"] = "3"
  return env


def _log_batches(path: str) -> None:
  """Appends each training batch this process prepares to `path` as a JSON line: the step and,
  per row, the label and a hash of the image's bytes."""
  import hashlib
  import json

  from inception_jax import data

  create = data.create_train_iterator

  class Logged:
    def __init__(self, it):
      self.it = it

    def __getattr__(self, name):
      return getattr(self.it, name)

    def __iter__(self):
      return self

    def __next__(self):
      step = self.it.step
      batch = next(self.it)
      rows = [
        [int(label), hashlib.sha1(image.tobytes()).hexdigest()[:16]]
        for image, label in zip(batch["image"], batch["label"], strict=False)
      ]
      with open(path, "a") as f:
        f.write(json.dumps({"step": step, "rows": rows}) + "\n")
      return batch

  data.create_train_iterator = lambda *a, **k: Logged(create(*a, **k))


def _main(argv: list[str]) -> None:
  """Trains the tiny network in argv[1] with --config.x=y overrides (see the module docstring)."""
  import argparse

  parser = argparse.ArgumentParser()
  parser.add_argument("workdir")
  parser.add_argument("--coordinator_address")
  parser.add_argument("--num_processes", type=int)
  parser.add_argument("--process_id", type=int)
  args, rest = parser.parse_known_args(argv[1:])
  from absl import logging

  logging.use_absl_handler()
  logging.set_verbosity(logging.INFO)
  from inception_jax import parallel

  if args.coordinator_address:
    parallel.initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)
  install_tiny_model()
  import ast

  overrides = {}
  for item in rest:
    key, value = item.removeprefix("--config.").split("=", 1)
    try:
      overrides[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      overrides[key] = value
  config = tiny_config(**overrides)
  sleep = float(os.environ.get("TINY_STEP_SLEEP", "0"))
  if sleep:
    import time

    shard_batch = parallel.shard_batch

    def slow_shard_batch(batch, mesh):
      time.sleep(sleep)
      return shard_batch(batch, mesh)

    parallel.shard_batch = slow_shard_batch
  stop_at = int(os.environ.get("TINY_STOP_AT", "0"))
  if stop_at:  # as if preempted: save and stop at that step
    from inception_jax import checkpoint

    checkpoint.Checkpointer.should_stop = lambda self, step: step >= stop_at
  batch_log = os.environ.get("TINY_BATCH_LOG")
  if batch_log:
    _log_batches(f"{batch_log}.{jax.process_index()}")
  from inception_jax import cli, train

  with cli.user_errors():  # the project's input errors end with their message, as in the CLI
    state = train.train_and_evaluate(config, args.workdir)
  if jax.process_index() == 0:
    import numpy as np

    flat = {
      jax.tree_util.keystr(k): np.asarray(v)
      for k, v in jax.tree_util.tree_leaves_with_path(train.parallel.fetch(state.variables()))
    }
    np.savez(os.path.join(args.workdir, "final_variables.npz"), **flat)


if __name__ == "__main__":
  _main(sys.argv)
