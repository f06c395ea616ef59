"""Shared pieces of the training tests: a tiny stand-in network and what runs it in a subprocess.

The stand-in (`tiny`, registered with `models.register` by `register_tiny_model`) has the
interface of the real networks (BatchNorm or none, an auxiliary head, dropout, `dtype`), and
compiles in a second, so the trainer's tests stay fast; the real GoogLeNet is exercised by the
`:local` preset test. `TRAIN_SCRIPT` (tests/helpers/train_tiny.py) trains it in a subprocess.
"""

import os
import socket
import subprocess
import sys
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from inception_jax import models

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_SCRIPT = os.path.join(ROOT, "tests", "helpers", "train_tiny.py")


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


def tiny(num_classes: int = 1000, **overrides: Any) -> TinyNet:
  """`models.create("tiny", ...)`: TinyNet with the real networks' default of 1000 classes."""
  return TinyNet(num_classes=num_classes, **overrides)


def register_tiny_model() -> None:
  """Registers `tiny` with `inception_jax.models` (idempotent); the library's functions are
  left as they are."""
  models.register("tiny", tiny, min_image_size=8)


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


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def train_processes(
  workdir: Any,
  args: list[str],
  processes: int = 2,
  devices: int = 1,
  env: dict[str, str] | None = None,
  timeout: int = 600,
) -> list[tuple[int, str]]:
  """Runs TRAIN_SCRIPT in `processes` processes of `devices` simulated devices each, joined by
  jax.distributed on localhost (one process: no coordinator); [(return code, output)] per process.
  A process still running at `timeout` is killed."""
  port = free_port()
  env = {**subprocess_env(num_devices=devices), **(env or {})}

  def joined(i: int) -> list[str]:
    if processes == 1:
      return []
    return [
      f"--coordinator_address=localhost:{port}",
      f"--num_processes={processes}",
      f"--process_id={i}",
    ]

  procs = [
    subprocess.Popen(
      [sys.executable, TRAIN_SCRIPT, str(workdir), *joined(i), *args],
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(processes)
  ]
  try:
    outs = [p.communicate(timeout=timeout)[0] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  return [(p.returncode, out) for p, out in zip(procs, outs, strict=True)]
