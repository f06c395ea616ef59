"""experiments/gpu_benchmark.py, the one-command GPU benchmark, run on the CPU at tiny sizes so
that it cannot rot: both frameworks, the combined JSON and its summary. Nothing here asserts a
speed. Also: the benchmark's import path needs no TensorFlow, TFDS or ml_collections (the GPU
machine's image has none of them). Under CI=true a missing torch / torchvision fails."""

import json
import os
import subprocess
import sys

import pytest
from helpers.training import ROOT, subprocess_env

# torchvision's inception_v3 aux head needs a 299 input in training (its 5x5 conv after a 5/3 pool).
TINY = [
  "--models=inception_v3,googlenet_bn",
  "--dtypes=bfloat16",
  "--v3_size=299",
  "--googlenet_size=64",
  "--v3_batch=2",
  "--googlenet_batch=2",
  "--steps=1",
  "--width_multiplier=0.25",
  "--peak_size=256",
  "--no_torch_compile",
]


def require_torch():
  try:
    import torch  # noqa: F401
    import torchvision  # noqa: F401
  except ImportError as e:
    if os.environ.get("CI", "").lower() == "true":
      pytest.fail(
        f"torch and torchvision are required for the GPU benchmark's test under CI=true: {e}"
      )
    pytest.skip(f"torch / torchvision not installed: {e}")


def test_benchmark_import_path_needs_no_tensorflow():
  code = (
    "import sys\n"
    "import experiments.gpu_benchmark as g, inception_jax.speed, inception_jax.training.loop\n"
    "from inception_jax import models\n"
    "from inception_jax.training import checkpoint, optim, parallel, step\n"
    "bad = [m for m in ('tensorflow', 'tensorflow_datasets', 'ml_collections') "
    "if m in sys.modules]\n"
    "assert not bad, bad\n"
    "print('ok')\n"
  )
  proc = subprocess.run(
    [sys.executable, "-c", code],
    cwd=ROOT,
    env=subprocess_env(),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_bad_flags_fail_before_anything_runs(tmp_path):
  from experiments import gpu_benchmark

  with pytest.raises(ValueError, match="unknown model 'resnet'"):
    gpu_benchmark.main(["g", f"--out={tmp_path}/g.json", "--models=resnet"])
  with pytest.raises(ValueError, match="unknown dtype"):
    gpu_benchmark.main(["g", f"--out={tmp_path}/g.json", "--dtypes=float16"])
  assert not list(tmp_path.iterdir())


def test_tiny_run_writes_both_frameworks(tmp_path):
  require_torch()
  out = tmp_path / "out" / "gpu.json"
  proc = subprocess.run(
    [sys.executable, "-m", "experiments.gpu_benchmark", f"--out={out}", *TINY],
    cwd=ROOT,
    env=subprocess_env(),
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  result = json.loads(out.read_text())
  jax_part, torch_part = result["jax"], result["torch"]
  assert jax_part["exit_status"] == 0 and torch_part["exit_status"] == 0
  assert jax_part["backend"] == "cpu"
  peak = jax_part["peak_flops_per_sec"]["bfloat16"]
  assert peak > 0 and jax_part["peak_flops_per_sec"]["float32"] > 0
  assert jax_part["numerics"]["bf16_broadcast_grad_max_rel_error"] >= 0
  ours = {r["model"]: r for r in jax_part["results"]}
  assert sorted(ours) == ["googlenet_bn", "inception_v3"]
  for name, r in ours.items():
    assert "error" not in r and "skipped" not in r, r
    assert (r["dtype"], r["batch_size"]) == ("bfloat16", 2)
    assert r["image_size"] == (299 if name == "inception_v3" else 64)
    assert r["overrides"] == {"width_multiplier": 0.25}
    assert r["compile_seconds"] > 0 and r["train_images_per_sec"] > 0
    assert r["eval_images_per_sec"] > 0
    assert r["utilization_vs_bf16_matmul"] == pytest.approx(  # written with 4 decimals
      r["achieved_flops_per_sec"] / peak, rel=1e-3, abs=5e-5
    )
  theirs = {r["model"]: r for r in torch_part["results"]}
  assert sorted(theirs) == ["googlenet_bn", "inception_v3"]
  for r in theirs.values():
    assert "error" not in r, r
    assert r["amp"] and r["channels_last"] and not r["compiled"] and r["device"] == "cpu"
    assert r["train_images_per_sec"] > 0 and r["eval_images_per_sec"] > 0
  assert theirs["googlenet_bn"]["torch_model"] == "googlenet"
  frameworks = sorted({row["framework"] for row in result["summary"]})
  assert frameworks == ["jax", "torch eager"]
  assert len(result["summary"]) == 4 and result["command"].startswith("python -m")


def test_budget_skips_what_does_not_fit(tmp_path):
  """With no time left every item is listed as skipped, and the JSON is still written."""
  out = tmp_path / "gpu.json"
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.gpu_benchmark",
      f"--out={out}",
      *TINY,
      "--budget_seconds=0",
      "--no_torch",
    ],
    cwd=ROOT,
    env=subprocess_env(),
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  result = json.loads(out.read_text())
  assert result["torch"] is None
  assert [r.get("skipped") for r in result["jax"]["results"]] == ["time budget"] * 2
  assert all(row["status"] == "time budget" for row in result["summary"])
