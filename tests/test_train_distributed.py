"""Two processes on localhost (jax.distributed, gloo CPU collectives) train and checkpoint."""

import json
import socket
import subprocess
import sys

import numpy as np
from helpers.training import TRAIN_SCRIPT, subprocess_env

SCRIPT = TRAIN_SCRIPT


def free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_train_and_checkpoint(tmp_path):
  port = free_port()
  procs = [
    subprocess.Popen(
      [
        sys.executable,
        SCRIPT,
        str(tmp_path),
        f"--coordinator_address=localhost:{port}",
        "--num_processes=2",
        f"--process_id={i}",
        "--config.num_train_steps=6",
        "--config.checkpoint_every_steps=3",
        "--config.log_every_steps=3",
        "--config.batch_norm='per_replica'",
      ],
      env=subprocess_env(num_devices=2),
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outs, strict=False):
    assert p.returncode == 0, out[-5000:]
  assert "process 0/2, 2 local / 4 global devices" in outs[0]
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["3", "6"]
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  train_rows = [r for r in rows if "train/loss" in r]
  assert [r["step"] for r in train_rows] == [3, 6]
  assert all(np.isfinite(r["train/loss"]) for r in train_rows)
  assert any("eval/top1" in r for r in rows)
