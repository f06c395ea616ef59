"""Timing of the training and evaluation steps, the matrix-product peak, compile time, and the
persistent compilation cache (docs/PERFORMANCE.md has the method and the figures).

- `benchmark_train(model, batch_size, image_size, steps, dtype)`: one dict with the compile time
  (AOT: `jit(...).lower(...)` then `.compile()`, timed separately), the median train and eval
  throughput after a warm-up step, the multiply-adds per image (`inception_jax.accounting`), the
  achieved FLOP/s and its ratio to a matrix product measured on the same devices.
- `run_peer(...)`: one of the peer scripts in inception_jax/peers (torchvision, Keras) in a
  subprocess.

The train step is the training code's own (`inception_jax.training.step.train_step`: cross-entropy
plus the auxiliary heads' term weighted 0.3 for GoogLeNet and 0.4 for Inception v3, as the peers
do), with SGD momentum 0.9 from optax, jitted with the state donated; no label smoothing or weight
decay, since the peer scripts have none. Eval is `model.apply(variables, images, train=False)`.
Benchmarks print figures; tests never time anything.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from inception_jax import accounting, fast_conv, models
from inception_jax.errors import PeerNotFoundError
from inception_jax.training import parallel
from inception_jax.training import state as state_lib
from inception_jax.training import step as step_lib

AUX_LOSS_WEIGHT = {"googlenet": 0.3, "googlenet_bn": 0.3}  # per head, as the peers; others 0.4


def _cache_entries(cache_dir: str | None) -> int | None:
  if not cache_dir or not os.path.isdir(cache_dir):
    return None
  return sum(len(files) for _, _, files in os.walk(cache_dir))


def aot_compile(fn: Any, *args: Any) -> tuple[Any, dict[str, float]]:
  """`fn.lower(*args).compile()` with both phases timed; fn is a jitted function.

  Returns the compiled executable and {"lower_seconds", "compile_seconds", "cache"}; "cache" is
  "hit" when the persistent cache served the executable (no entry written), "miss", or "off".
  """
  cache_dir = jax.config.jax_compilation_cache_dir
  before = _cache_entries(cache_dir)
  t0 = time.perf_counter()
  lowered = fn.lower(*args)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  after = _cache_entries(cache_dir)
  if before is None:
    cache = "off"
  else:
    # A miss writes an entry unless the compile was quicker than the cache's threshold.
    cache = "miss" if after > before else ("hit" if before else "miss")
  return compiled, {"lower_seconds": t1 - t0, "compile_seconds": t2 - t1, "cache": cache}


# ---------------------------------------------------------------------------------------------
# Timing.
# ---------------------------------------------------------------------------------------------
def time_calls(fn: Callable[[], Any], steps: int, warmup: int = 1) -> list[float]:
  """Seconds of each of `steps` calls of fn (blocking on its result), after `warmup` calls."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return times


def measure_peak_flops(
  dtype: Any = jnp.float32, size: int | None = None, steps: int = 5, device: Any = None
) -> float:
  """FLOP/s of a square matrix product on one device (median of `steps`, after a warm-up):
  the ceiling the convolutions are compared with. size defaults to 2048 on CPU, 8192 elsewhere."""
  device = device or jax.devices()[0]
  size = size or (2048 if device.platform == "cpu" else 8192)
  ka, kb = jax.random.split(jax.random.key(0))
  a = jax.device_put(jax.random.normal(ka, (size, size), dtype), device)
  b = jax.device_put(jax.random.normal(kb, (size, size), dtype), device)
  matmul = jax.jit(jnp.dot)
  times = time_calls(lambda: matmul(a, b), steps)
  return 2.0 * size**3 / statistics.median(times)


# ---------------------------------------------------------------------------------------------
# The steps.
# ---------------------------------------------------------------------------------------------
def _train_config(model_name: str) -> Any:
  """The config fields `step.train_step` reads (a namespace: no ml_collections needed)."""
  return types.SimpleNamespace(
    seed=0,
    batch_norm="sync",
    label_smoothing=0.0,
    weight_decay=0.0,
    aux_loss_weight=AUX_LOSS_WEIGHT.get(model_name, 0.4),
    ema_decay=0.0,
    ema_warmup=False,
  )


def make_train_step(
  model: Any, model_name: str, learning_rate: float = 0.01, momentum: float = 0.9
) -> tuple[Callable, Callable]:
  """(init_state(rng, image_size), jitted step(state, batch) with the state donated)."""
  tx = optax.sgd(learning_rate, momentum=momentum)
  config = _train_config(model_name)
  mesh = parallel.make_mesh()
  step = step_lib.compile_train_step(
    model, tx, optax.constant_schedule(learning_rate), config, mesh
  )

  def init_state(rng: jax.Array, image_size: int) -> Any:
    state = state_lib.create_train_state(model, tx, rng, image_size, use_ema=False)
    return jax.device_put(state, parallel.replicated(mesh))

  return init_state, step


def make_eval_step(model: Any) -> Callable:
  return step_lib.compile_step(
    lambda variables, images: model.apply(variables, images, train=False), model
  )


def _devices() -> list[str]:
  return [f"{d.platform}:{d.device_kind}" for d in jax.devices()]


def benchmark_train(
  model_name: str,
  batch_size: int,
  image_size: int | None = None,
  steps: int = 5,
  dtype: str = "float32",
  warmup: int = 1,
  eval_steps: int | None = None,
  peak: bool = True,
  seed: int = 0,
  cache_dir: str | None = None,
  overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
  """Compiles and times one training step and one eval step; returns one dict of figures.

  Throughputs are medians over `steps` timed calls after `warmup` calls. compile_seconds is the
  AOT compile of the train step (lowering excluded: lower_seconds), first_step_seconds adds the
  lowering and the first execution (comparable to Keras's first `train_on_batch`).
  achieved_flops_per_sec counts 2 FLOPs per multiply-add and a training step as 3 forward passes
  (forward, input gradient, kernel gradient), auxiliary heads included; eval counts the forward
  pass without them. utilization = achieved / peak (a float32 or bfloat16 matrix product).
  cache_dir: "" leaves the persistent compilation cache as it is; otherwise it is enabled there
    (None: the default directory, see `parallel.enable_compilation_cache`).
  overrides: extra `models.create` overrides (e.g. width_multiplier for tests at tiny sizes).
  """
  if cache_dir != "":
    cache_dir = parallel.enable_compilation_cache(cache_dir)
  image_size = image_size or models.default_image_size(model_name)
  model = models.create(model_name, dtype=dtype, **(overrides or {}))
  init_state, train_step = make_train_step(model, model_name)
  eval_step = make_eval_step(model)

  rng = np.random.default_rng(seed)
  images = jnp.asarray(rng.uniform(-1, 1, (batch_size, image_size, image_size, 3)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 1000, (batch_size,)), jnp.int32)
  batch = {"image": images, "label": labels}
  state = init_state(jax.random.key(seed), image_size)

  t0 = time.perf_counter()
  train_exe, train_compile = aot_compile(train_step, state, batch)
  state, metrics = train_exe(state, batch)
  jax.block_until_ready((state, metrics))
  first_step = time.perf_counter() - t0

  holder = {"state": state}

  def one_train_step():
    holder["state"], m = train_exe(holder["state"], batch)
    return holder["state"], m

  train_times = time_calls(one_train_step, steps, warmup)
  state = holder["state"]
  loss = float(metrics["train/loss"])

  variables = state.variables()
  eval_exe, eval_compile = aot_compile(eval_step, variables, images)
  eval_times = time_calls(lambda: eval_exe(variables, images), eval_steps or steps, warmup)

  macs = accounting.total_macs(model, image_size)
  train_macs = accounting.total_macs(model, image_size, include_aux=True)
  train_ips = batch_size / statistics.median(train_times)
  eval_ips = batch_size / statistics.median(eval_times)
  achieved = 6.0 * train_macs * train_ips
  eval_achieved = 2.0 * macs * eval_ips
  peak_flops = measure_peak_flops(jnp.dtype(dtype)) if peak else float("nan")
  return {
    "model": model_name,
    "batch_size": batch_size,
    "image_size": image_size,
    "dtype": dtype,
    "backend": jax.default_backend(),
    "devices": _devices(),
    "jax": jax.__version__,
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
    "fast_conv": model.kernels == fast_conv.CPU_KERNELS,
    "compile_cache": train_compile["cache"],
    "lower_seconds": round(train_compile["lower_seconds"], 3),
    "compile_seconds": round(train_compile["compile_seconds"], 3),
    "first_step_seconds": round(first_step, 3),
    "eval_compile_seconds": round(eval_compile["compile_seconds"], 3),
    "train_step_seconds": round(statistics.median(train_times), 4),
    "train_images_per_sec": round(train_ips, 3),
    "eval_images_per_sec": round(eval_ips, 3),
    "macs_per_image": macs,
    "train_macs_per_image": train_macs,
    "achieved_flops_per_sec": round(achieved, 1),
    "eval_achieved_flops_per_sec": round(eval_achieved, 1),
    "peak_flops_per_sec": round(peak_flops, 1),
    "utilization": round(achieved / peak_flops, 4),
    "eval_utilization": round(eval_achieved / peak_flops, 4),
    "steps": steps,
    "loss": round(loss, 4),
    "overrides": dict(overrides or {}),
  }


# ---------------------------------------------------------------------------------------------
# Peers.
# ---------------------------------------------------------------------------------------------
PEER_DIR = os.environ.get(
  "INCEPTION_JAX_PEER_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers")
)
PEER_MODEL = {"googlenet_bn": "googlenet", "googlenet": "googlenet", "inception_v3": "inception_v3"}
PEERS = ("torch", "keras")


def check_peers(peers: tuple[str, ...]) -> None:
  """Every peer is known and its script exists in PEER_DIR ($INCEPTION_JAX_PEER_DIR)."""
  unknown = [p for p in peers if p not in PEERS]
  if unknown:
    raise PeerNotFoundError(f"unknown peer(s) {unknown}; valid peers: {', '.join(PEERS)}")
  missing = [
    os.path.join(PEER_DIR, f"peer_{p}.py")
    for p in peers
    if not os.path.isfile(os.path.join(PEER_DIR, f"peer_{p}.py"))
  ]
  if missing:
    raise PeerNotFoundError(
      f"peer script(s) not found: {', '.join(missing)}. They ship in inception_jax/peers; "
      f"restore them from the repository, point INCEPTION_JAX_PEER_DIR at the folder "
      f"holding peer_<name>.py, or drop the peer from --peers. Nothing was run."
    )


def _run_json(args: list[str], timeout: float, **run_kwargs: Any) -> dict[str, Any]:
  """Runs a benchmark script; the last JSON line it printed, or {"error": its output's tail}."""
  proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **run_kwargs)
  lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
  if proc.returncode or not lines:
    return {"error": (proc.stderr or proc.stdout)[-2000:]}
  return json.loads(lines[-1])


def run_peer(
  peer: str, model_name: str, batch_size: int, image_size: int, steps: int, timeout: float = 1800
) -> dict[str, Any]:
  """Runs peers/peer_{torch,keras}.py in a subprocess; its JSON (or {"error": ...})."""
  script = os.path.join(PEER_DIR, f"peer_{peer}.py")
  args = [
    sys.executable,
    script,
    f"--batch_size={batch_size}",
    f"--image_size={image_size}",
    f"--steps={steps}",
  ]
  if peer == "torch":
    args.append(f"--model={PEER_MODEL.get(model_name, model_name)}")
  elif model_name != "inception_v3":
    return {"peer": peer, "error": f"no {peer} peer for {model_name}"}
  t = time.perf_counter()
  out = _run_json(args, timeout)
  if "error" in out:
    return {"peer": peer, **out}
  out["wall_seconds"] = round(time.perf_counter() - t, 1)
  return out


def run_ours(
  model_name: str,
  batch_size: int,
  image_size: int,
  steps: int,
  dtype: str = "float32",
  env: dict[str, str] | None = None,
  cache_dir: str = "none",
  timeout: float = 1800,
) -> dict[str, Any]:
  """`python -m experiments.benchmark train ...` in a subprocess (a fresh process, as the peers
  get), with extra environment variables (XLA_FLAGS, INCEPTION_JAX_FAST_CONV, ...). The
  persistent cache is off by default, so compile_seconds is a real (cold) compile."""
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  args = [
    sys.executable,
    "-m",
    "experiments.benchmark",
    "train",
    f"--model={model_name}",
    f"--batch_size={batch_size}",
    f"--image_size={image_size}",
    f"--steps={steps}",
    f"--dtype={dtype}",
    f"--cache_dir={cache_dir}",
    "--format=json",
  ]
  return _run_json(args, timeout, cwd=repo, env={**os.environ, **(env or {})})


def compare(
  model_name: str,
  batch_size: int,
  image_size: int,
  steps: int,
  rounds: int = 3,
  peers: tuple[str, ...] = ("torch", "keras"),
  dtype: str = "float32",
  variants: dict[str, dict[str, str]] | None = None,
  log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
  """Ours (each variant: extra environment variables) and the peers, interleaved round by round
  in fresh processes on the same machine; returns every run and the median of each figure."""
  check_peers(tuple(peers))
  variants = variants or {"ours": {}}
  runs: dict[str, list[dict[str, Any]]] = {name: [] for name in [*variants, *peers]}
  for r in range(rounds):
    for name, env in variants.items():
      runs[name].append(run_ours(model_name, batch_size, image_size, steps, dtype, env))
      log and log(f"round {r} {name}: {json.dumps(runs[name][-1])}")
    for peer in peers:
      runs[peer].append(run_peer(peer, model_name, batch_size, image_size, steps))
      log and log(f"round {r} {peer}: {json.dumps(runs[peer][-1])}")
  keys = (
    "train_images_per_sec",
    "eval_images_per_sec",
    "compile_seconds",
    "first_step_seconds",
    "utilization",
    "peak_flops_per_sec",
  )
  medians = {}
  for name, rs in runs.items():
    ok = [r for r in rs if "error" not in r]
    medians[name] = {
      k: statistics.median(r[k] for r in ok) for k in keys if ok and all(k in r for r in ok)
    }
  return {
    "model": model_name,
    "batch_size": batch_size,
    "image_size": image_size,
    "rounds": rounds,
    "medians": medians,
    "runs": runs,
  }
