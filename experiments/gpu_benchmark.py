"""The GPU benchmark in one command: ours (JAX) and torchvision's, same GPU, same batch sizes.

  python -m experiments.gpu_benchmark --out=/tmp/gpu.json

Measures, for inception_v3 at 299 and googlenet_bn at 224, in bfloat16 and float32:
  - ours: compile time, train and eval images/s, utilisation (achieved FLOP/s over a bfloat16
    matrix product measured on the same device), through `inception_jax.speed.benchmark_train`
    (the trainer's own train step);
  - torchvision's inception_v3 / googlenet (the same network as googlenet_bn) on the same device:
    eager with channels_last and AMP (bfloat16 autocast) and `torch.compile` of the same, train
    and eval images/s, and the first (compiling) step's seconds; float32 without autocast too.
It needs JAX, flax, optax, orbax-checkpoint, torch and torchvision; not TensorFlow, TFDS or
ml_collections (the GPU machine's image has none of them). docs/PERFORMANCE.md has the device
command and the figures.

The two frameworks run one after the other in fresh subprocesses (`--part=jax`, `--part=torch`),
so neither holds GPU memory while the other runs. Each subprocess appends its results to
OUT.jax.json / OUT.torch.json as it goes, so a run cut short by --budget_seconds (or killed) still
leaves what it measured; items that did not fit in the budget are listed as skipped. The combined
JSON goes to --out.

On a CPU (the test suite) the same script runs at tiny sizes, e.g.
  python -m experiments.gpu_benchmark --out=/tmp/g.json --v3_size=299 --googlenet_size=64 \
      --v3_batch=2 --v3_batch_f32=2 --googlenet_batch=2 --googlenet_batch_f32=2 --steps=1 \
      --width_multiplier=0.25 --peak_size=256 --no_torch_compile
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from absl import app, flags

MODELS = ("inception_v3", "googlenet_bn")
DTYPES = ("bfloat16", "float32")
TORCH_MODELS = {"inception_v3": "inception_v3", "googlenet_bn": "googlenet"}
AUX_WEIGHT = {"inception_v3": 0.4, "googlenet_bn": 0.3}  # per auxiliary head, as ours


def define_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_string("out", None, "Path of the combined JSON.", flag_values=fv)
  flags.DEFINE_enum("part", "all", ["all", "jax", "torch"], "Which part to run.", flag_values=fv)
  flags.DEFINE_string("models", ",".join(MODELS), "Comma-separated models.", flag_values=fv)
  flags.DEFINE_string("dtypes", ",".join(DTYPES), "Comma-separated dtypes.", flag_values=fv)
  flags.DEFINE_integer("v3_size", 299, "inception_v3 input size.", flag_values=fv)
  flags.DEFINE_integer("googlenet_size", 224, "googlenet_bn input size.", flag_values=fv)
  flags.DEFINE_integer("v3_batch", 256, "inception_v3 batch in bfloat16.", flag_values=fv)
  flags.DEFINE_integer("v3_batch_f32", 128, "inception_v3 batch in float32.", flag_values=fv)
  flags.DEFINE_integer("googlenet_batch", 512, "googlenet_bn batch, bfloat16.", flag_values=fv)
  flags.DEFINE_integer("googlenet_batch_f32", 256, "googlenet_bn batch, float32.", flag_values=fv)
  flags.DEFINE_integer("steps", 10, "Timed steps after the warm-up.", flag_values=fv)
  flags.DEFINE_float(
    "width_multiplier",
    1.0,
    "Ours only (torchvision has none): < 1 for tests at tiny sizes.",
    flag_values=fv,
  )
  flags.DEFINE_integer(
    "peak_size",
    None,
    "Matrix-product side for the peak (default 8192; 2048 on CPU).",
    flag_values=fv,
  )
  flags.DEFINE_bool("no_torch", False, "Run ours only.", flag_values=fv)
  flags.DEFINE_bool(
    "no_torch_compile",
    False,
    "Skip torch.compile (on CPU in the tests: it needs a C++ toolchain and time).",
    flag_values=fv,
  )
  flags.DEFINE_float(
    "budget_seconds",
    420.0,
    "Wall-clock budget of the whole run; items that do not fit are skipped.",
    flag_values=fv,
  )
  flags.DEFINE_float("deadline", None, "Internal: a part's deadline (time.time()).", flag_values=fv)
  flags.mark_flag_as_required("out", flag_values=fv)


def parse_args(argv: Sequence[str]) -> flags.FlagValues:
  """The flags of argv ([program, --flag=value, ...]) on a FlagValues of their own (absl).

  Not inception_jax.cli.parse: that module needs ml_collections, which this script must not."""
  fv = flags.FlagValues()
  define_flags(fv)
  try:
    fv(list(argv))
  except flags.Error as e:
    raise SystemExit(f"error: {e}") from None
  return fv


def size_of(args: flags.FlagValues, model: str) -> int:
  return args.v3_size if model == "inception_v3" else args.googlenet_size


def batch_of(args: flags.FlagValues, model: str, dtype: str) -> int:
  if model == "inception_v3":
    return args.v3_batch if dtype == "bfloat16" else args.v3_batch_f32
  return args.googlenet_batch if dtype == "bfloat16" else args.googlenet_batch_f32


def _items(args: flags.FlagValues) -> list[tuple[str, str]]:
  """(model, dtype), bfloat16 first: what matters most runs first when the budget is short."""
  models = [m for m in args.models.split(",") if m]
  dtypes = [d for d in args.dtypes.split(",") if d]
  for m in models:
    if m not in MODELS:
      raise ValueError(f"--models: unknown model {m!r}; choose from {MODELS}")
  for d in dtypes:
    if d not in DTYPES:
      raise ValueError(f"--dtypes: unknown dtype {d!r}; choose from {DTYPES}")
  return [(m, d) for d in dtypes for m in models]


class _Log:
  """Results appended to a JSON file after each item, so a killed run keeps what it measured."""

  def __init__(self, path: str, header: dict[str, Any]):
    self.path, self.data = path, {**header, "results": []}
    self._write()

  def add(self, row: dict[str, Any]) -> None:
    self.data["results"].append(row)
    print(json.dumps(row), file=sys.stderr, flush=True)
    self._write()

  def set(self, key: str, value: Any) -> None:
    self.data[key] = value
    self._write()

  def _write(self) -> None:
    tmp = self.path + ".tmp"
    with open(tmp, "w") as f:
      json.dump(self.data, f, indent=1)
    os.replace(tmp, self.path)


# ---------------------------------------------------------------------------------------------
# Ours.
# ---------------------------------------------------------------------------------------------
def bf16_reduction_check() -> dict[str, Any]:
  """The gradient of a bfloat16 broadcast (a reduction over 16 x 32 x 32 values, as the gradient
  of a bias or BN scale) against float32: XLA:CPU sums it in bfloat16 (the sum stalls at 256)."""
  import jax
  import jax.numpy as jnp

  x = jax.random.uniform(jax.random.key(0), (16, 32, 32, 8), jnp.float32)

  def f(s, x):
    return jnp.sum((x * s.astype(x.dtype)).astype(jnp.float32))

  g32 = jax.jit(jax.grad(f))(jnp.ones(8), x)
  g16 = jax.jit(jax.grad(f))(jnp.ones(8), x.astype(jnp.bfloat16))
  err = float(jnp.max(jnp.abs(g16 - g32) / jnp.abs(g32)))
  return {"bf16_broadcast_grad_max_rel_error": round(err, 5)}


def run_jax(args: flags.FlagValues, deadline: float) -> None:
  import jax
  import jax.numpy as jnp

  from inception_jax import speed

  log = _Log(
    args.out + ".jax.json",
    {
      "framework": "jax",
      "jax": jax.__version__,
      "backend": jax.default_backend(),
      "devices": [f"{d.platform}:{d.device_kind}" for d in jax.devices()],
    },
  )
  t = time.perf_counter()
  peak = {
    dt: speed.measure_peak_flops(jnp.dtype(dt), size=args.peak_size)
    for dt in ("bfloat16", "float32")
  }
  log.set("peak_flops_per_sec", {k: round(v, 1) for k, v in peak.items()})
  log.set("peak_seconds", round(time.perf_counter() - t, 2))
  log.set("numerics", bf16_reduction_check())
  overrides = {"width_multiplier": args.width_multiplier} if args.width_multiplier != 1 else {}
  for model, dtype in _items(args):
    row = {
      "model": model,
      "dtype": dtype,
      "image_size": size_of(args, model),
      "batch_size": batch_of(args, model, dtype),
    }
    if time.time() > deadline:
      log.add({**row, "skipped": "time budget"})
      continue
    try:
      r = speed.benchmark_train(
        model,
        row["batch_size"],
        row["image_size"],
        steps=args.steps,
        dtype=dtype,
        peak=False,
        cache_dir="none",
        overrides=overrides,
      )
    except Exception as e:  # noqa: BLE001 - one failure (e.g. out of memory) is reported, not fatal
      log.add({**row, "error": f"{type(e).__name__}: {str(e)[:2000]}"})
      continue
    r["utilization_vs_bf16_matmul"] = round(r["achieved_flops_per_sec"] / peak["bfloat16"], 4)
    r["eval_utilization_vs_bf16_matmul"] = round(
      r["eval_achieved_flops_per_sec"] / peak["bfloat16"], 4
    )
    for key in ("peak_flops_per_sec", "utilization", "eval_utilization"):
      r.pop(key, None)  # measured once above
    log.add(r)


# ---------------------------------------------------------------------------------------------
# torchvision.
# ---------------------------------------------------------------------------------------------
def _sync(torch: Any, device: str) -> None:
  if device == "cuda":
    torch.cuda.synchronize()


def torch_matmul_peak(size: int | None, steps: int = 5) -> float:
  import statistics

  import torch

  device = "cuda" if torch.cuda.is_available() else "cpu"
  size = size or (8192 if device == "cuda" else 2048)
  a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
  b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
  times = []
  for i in range(steps + 1):
    _sync(torch, device)
    t = time.perf_counter()
    torch.matmul(a, b)
    _sync(torch, device)
    if i:
      times.append(time.perf_counter() - t)
  return 2.0 * size**3 / statistics.median(times)


def torch_benchmark(
  model_name: str, batch_size: int, image_size: int, steps: int, dtype: str, compiled: bool
) -> dict[str, Any]:
  """torchvision's network, channels_last, SGD momentum 0.9, cross-entropy plus the auxiliary
  heads' terms; bfloat16 means autocast (AMP: convolutions and matmuls in bfloat16, BatchNorm and
  the loss in float32, float32 parameters), float32 no autocast. Medians over `steps` after two
  warm-up steps; first_step_seconds includes torch.compile's compilation."""
  import statistics

  import torch
  import torchvision

  device = "cuda" if torch.cuda.is_available() else "cpu"
  torch.manual_seed(0)
  ctor = getattr(torchvision.models, TORCH_MODELS[model_name])
  model = ctor(weights=None, aux_logits=True, init_weights=False, num_classes=1000)
  model = model.to(device).to(memory_format=torch.channels_last)
  opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
  x = torch.randn(batch_size, 3, image_size, image_size, device=device)
  x = x.contiguous(memory_format=torch.channels_last)
  y = torch.randint(0, 1000, (batch_size,), device=device)
  amp = dtype == "bfloat16"
  ce = torch.nn.functional.cross_entropy
  aux_weight = AUX_WEIGHT[model_name]

  def forward_loss(net):
    with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
      out = net(x)
      logits, aux = out[0], [a for a in out[1:] if a is not None]
      return ce(logits.float(), y) + sum(aux_weight * ce(a.float(), y) for a in aux)

  net = torch.compile(model) if compiled else model

  def train_step():
    opt.zero_grad(set_to_none=True)
    loss = forward_loss(net)
    loss.backward()
    opt.step()
    return loss

  def timed(fn, n, warmup):
    first = None
    for i in range(warmup):
      _sync(torch, device)
      t = time.perf_counter()
      fn()
      _sync(torch, device)
      if i == 0:
        first = time.perf_counter() - t
    times = []
    for _ in range(n):
      t = time.perf_counter()
      fn()
      _sync(torch, device)
      times.append(time.perf_counter() - t)
    return first, statistics.median(times)

  model.train()
  first_train, train_s = timed(train_step, steps, 2)
  loss = float(forward_loss(net).detach())
  model.eval()

  @torch.no_grad()
  def eval_step():
    with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
      return net(x)

  first_eval, eval_s = timed(eval_step, steps, 2)
  return {
    "framework": "torch",
    "model": model_name,
    "torch_model": TORCH_MODELS[model_name],
    "dtype": dtype,
    "amp": amp,
    "channels_last": True,
    "compiled": compiled,
    "batch_size": batch_size,
    "image_size": image_size,
    "device": device,
    "first_step_seconds": round(first_train, 3),
    "eval_first_step_seconds": round(first_eval, 3),
    "train_step_seconds": round(train_s, 4),
    "train_images_per_sec": round(batch_size / train_s, 3),
    "eval_images_per_sec": round(batch_size / eval_s, 3),
    "steps": steps,
    "loss": round(loss, 4),
  }


def run_torch(args: flags.FlagValues, deadline: float) -> None:
  import torch
  import torchvision

  device = "cuda" if torch.cuda.is_available() else "cpu"
  log = _Log(
    args.out + ".torch.json",
    {
      "framework": "torch",
      "torch": torch.__version__,
      "torchvision": torchvision.__version__,
      "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
    },
  )
  log.set("bf16_matmul_flops_per_sec", round(torch_matmul_peak(args.peak_size), 1))
  modes = [False] + ([] if args.no_torch_compile else [True])
  for compiled in modes:
    for model, dtype in _items(args):
      row = {
        "framework": "torch",
        "model": model,
        "dtype": dtype,
        "compiled": compiled,
        "image_size": size_of(args, model),
        "batch_size": batch_of(args, model, dtype),
      }
      if time.time() > deadline:
        log.add({**row, "skipped": "time budget"})
        continue
      try:
        log.add(
          torch_benchmark(model, row["batch_size"], row["image_size"], args.steps, dtype, compiled)
        )
      except Exception as e:  # noqa: BLE001
        log.add({**row, "error": f"{type(e).__name__}: {str(e)[:2000]}"})
      finally:
        if device == "cuda":
          torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------
# The whole run.
# ---------------------------------------------------------------------------------------------
def _read(path: str) -> dict[str, Any] | None:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _part(args_list: list[str], part: str, deadline: float, out: str) -> dict[str, Any]:
  """Runs one part in a fresh process until the deadline (plus a grace period for the item in
  flight); returns what it wrote, with its exit status."""
  path = f"{out}.{part}.json"
  if os.path.exists(path):
    os.remove(path)
  cmd = [
    sys.executable,
    "-m",
    "experiments.gpu_benchmark",
    *args_list,
    f"--part={part}",
    f"--deadline={deadline}",
  ]
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p),
  }
  grace = 120.0
  t = time.perf_counter()
  try:
    proc = subprocess.run(
      cmd,
      timeout=max(deadline - time.time(), 0) + grace,
      cwd=repo,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    status, tail = proc.returncode, proc.stdout[-3000:]
  except subprocess.TimeoutExpired as e:
    status, tail = "timeout", (e.stdout or b"")[-3000:]
    tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
  sys.stderr.write(tail if status else "")
  result = _read(path) or {"results": []}
  result.update({"exit_status": status, "wall_seconds": round(time.perf_counter() - t, 1)})
  if status:
    result["output_tail"] = tail
  return result


def _summary(jax_part: dict[str, Any], torch_part: dict[str, Any] | None) -> list[dict[str, Any]]:
  """One row per (framework, variant, model, dtype) with the headline figures. Torch rows get a
  utilisation from our multiply-add count of the same network (torchvision's googlenet is
  googlenet_bn's architecture) and our bfloat16 matrix-product peak."""
  keys = (
    "train_images_per_sec",
    "eval_images_per_sec",
    "compile_seconds",
    "first_step_seconds",
    "utilization_vs_bf16_matmul",
  )
  rows, macs = [], {}
  peak = (jax_part.get("peak_flops_per_sec") or {}).get("bfloat16")
  for r in jax_part.get("results", []):
    rows.append(
      {
        "framework": "jax",
        **{k: r.get(k) for k in ("model", "dtype", "batch_size", "image_size", *keys)},
        **(
          {"status": r.get("skipped") or r.get("error")} if "skipped" in r or "error" in r else {}
        ),
      }
    )
    if "train_macs_per_image" in r and not r.get("overrides"):
      macs[(r["model"], r["image_size"])] = r["train_macs_per_image"]
  for r in (torch_part or {}).get("results", []):
    row = {
      "framework": "torch.compile" if r.get("compiled") else "torch eager",
      **{
        k: r.get(k)
        for k in (
          "model",
          "dtype",
          "batch_size",
          "image_size",
          "train_images_per_sec",
          "eval_images_per_sec",
          "first_step_seconds",
        )
      },
    }
    m = macs.get((r.get("model"), r.get("image_size")))
    if m and peak and r.get("train_images_per_sec"):
      row["utilization_vs_bf16_matmul"] = round(6.0 * m * r["train_images_per_sec"] / peak, 4)
    if "skipped" in r or "error" in r:
      row["status"] = r.get("skipped") or r.get("error")
    rows.append(row)
  return rows


def main(argv: Sequence[str]) -> dict[str, Any]:
  """argv: [program, --flag=value, ...]. Returns the combined result ({} for one part)."""
  argv = list(argv)
  args = parse_args(argv)
  _items(args)  # bad --models / --dtypes fail here, before anything starts
  start = time.time()
  if args.part != "all":
    deadline = args.deadline if args.deadline is not None else start + args.budget_seconds
    (run_jax if args.part == "jax" else run_torch)(args, deadline)
    return {}
  args.out = os.path.abspath(args.out)
  argv = [a for a in argv[1:] if not a.startswith("--out")] + [f"--out={args.out}"]
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  # Ours gets about 55% of the budget, torchvision the rest (plus what ours left).
  jax_part = _part(
    argv, "jax", start + (0.55 if not args.no_torch else 1.0) * args.budget_seconds, args.out
  )
  torch_part = (
    None if args.no_torch else _part(argv, "torch", start + args.budget_seconds, args.out)
  )
  result = {
    "command": "python -m experiments.gpu_benchmark " + " ".join(argv),
    "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(start)),
    "wall_seconds": round(time.time() - start, 1),
    "summary": _summary(jax_part, torch_part),
    "jax": jax_part,
    "torch": torch_part,
  }
  with open(args.out, "w") as f:
    json.dump(result, f, indent=1)
  for row in result["summary"]:
    print(json.dumps(row))
  print(f"wrote {args.out} in {result['wall_seconds']} s")
  return result


def _app_main(argv: list[str]) -> int:
  main(argv)
  return 0


def _absl_defaults(argv: list[str]) -> list[str]:
  flags.FLAGS(argv[:1])  # absl's own flags at their defaults; ours are parsed by main
  return argv


if __name__ == "__main__":
  app.run(_app_main, flags_parser=_absl_defaults)
