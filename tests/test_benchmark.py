"""The benchmark harness (inception_jax/speed.py, experiments/benchmark.py): the fields issue 6
asks for and how they relate, and the side-by-side runner. Nothing here asserts a speed: the
figures are checked for consistency with each other and with the accounting module only."""

import json
import math

import pytest

from inception_jax import accounting, models, speed

FIELDS = (
  "model",
  "batch_size",
  "image_size",
  "backend",
  "devices",
  "compile_seconds",
  "train_images_per_sec",
  "eval_images_per_sec",
  "macs_per_image",
  "achieved_flops_per_sec",
  "peak_flops_per_sec",
  "utilization",
)


def test_benchmark_train_reports_consistent_figures():
  r = speed.benchmark_train("googlenet_bn", batch_size=2, image_size=64, steps=2, cache_dir="")
  assert set(FIELDS) <= set(r)
  assert (r["model"], r["batch_size"], r["image_size"], r["backend"]) == (
    "googlenet_bn",
    2,
    64,
    "cpu",
  )
  model = models.create("googlenet_bn")
  assert r["macs_per_image"] == accounting.total_macs(model, 64)
  assert r["train_macs_per_image"] == accounting.total_macs(model, 64, include_aux=True)
  assert r["train_images_per_sec"] == pytest.approx(2 / r["train_step_seconds"], rel=1e-3)
  # Training counts 3 forward passes (forward, input and kernel gradients) of 2 FLOPs per MAC.
  assert r["achieved_flops_per_sec"] == pytest.approx(
    6 * r["train_macs_per_image"] * r["train_images_per_sec"], rel=1e-3
  )
  assert r["eval_achieved_flops_per_sec"] == pytest.approx(
    2 * r["macs_per_image"] * r["eval_images_per_sec"], rel=1e-3
  )
  assert r["peak_flops_per_sec"] > 0
  assert r["utilization"] == pytest.approx(
    r["achieved_flops_per_sec"] / r["peak_flops_per_sec"], rel=1e-3
  )
  assert r["first_step_seconds"] >= r["compile_seconds"] > 0 and r["lower_seconds"] > 0
  assert r["fast_conv"] is True and math.isfinite(r["loss"])


def test_compare_runs_ours_and_a_peer_in_fresh_processes(tmp_path, monkeypatch):
  """`compare` runs our benchmark in a subprocess and each peer script with the peer's model
  name (googlenet_bn -> torchvision's googlenet), and takes medians over the rounds; a peer that
  fails is reported with its error instead of stopping the run."""
  (tmp_path / "peer_torch.py").write_text(
    "import json, sys\n"
    "args = dict(a[2:].split('=') for a in sys.argv[1:])\n"
    "print('peer log line')\n"
    "print(json.dumps({'peer': 'torchvision', 'argv': args, 'train_images_per_sec': 5.0,"
    " 'eval_images_per_sec': 20.0}))\n"
  )
  (tmp_path / "peer_keras.py").write_text("import sys; sys.exit('keras is not installed')\n")
  monkeypatch.setattr(speed, "PEER_DIR", str(tmp_path))
  logged = []
  out = speed.compare("googlenet_bn", 2, 64, steps=1, rounds=1, peers=("torch",), log=logged.append)
  ours, torch = out["runs"]["ours"][0], out["runs"]["torch"][0]
  assert "error" not in ours and set(FIELDS) <= set(ours) and ours["compile_cache"] == "off"
  assert torch["argv"] == {
    "batch_size": "2",
    "image_size": "64",
    "steps": "1",
    "model": "googlenet",
  }
  assert out["medians"]["torch"] == {"train_images_per_sec": 5.0, "eval_images_per_sec": 20.0}
  assert out["medians"]["ours"]["train_images_per_sec"] == ours["train_images_per_sec"]
  assert [line.split(":")[0] for line in logged] == ["round 0 ours", "round 0 torch"]
  keras = speed.run_peer("keras", "inception_v3", 2, 75, 1)
  assert keras["peer"] == "keras" and "keras is not installed" in keras["error"]
  assert "no keras peer" in speed.run_peer("keras", "googlenet_bn", 2, 64, 1)["error"]


def test_cli_prints_one_json_object(capsys, monkeypatch):
  from experiments import benchmark as cli

  seen = {}
  monkeypatch.setattr(speed, "benchmark_train", lambda *a, **k: seen.update(a=a, k=k) or {"x": 1})
  code = cli.main(
    ["bench", "train", "--model=googlenet_bn", "--batch_size=4", "--steps=3", "--nopeak"]
    + ["--format=json"]
  )
  assert code == 0
  assert json.loads(capsys.readouterr().out) == {"x": 1}
  assert seen["a"] == ("googlenet_bn", 4, 224) and seen["k"]["steps"] == 3
  assert seen["k"]["peak"] is False
