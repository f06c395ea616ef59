"""Two processes on localhost (jax.distributed, gloo CPU collectives) train and checkpoint."""

import json

import numpy as np
from helpers.training import train_processes


def test_two_processes_train_and_checkpoint(tmp_path):
  results = train_processes(
    tmp_path,
    [
      "--config.num_train_steps=6",
      "--config.checkpoint_every_steps=3",
      "--config.log_every_steps=3",
      "--config.batch_norm='per_replica'",
    ],
    processes=2,
    devices=2,
  )
  for code, out in results:
    assert code == 0, out[-5000:]
  outs = [out for _, out in results]
  assert "process 0/2, 2 local / 4 global devices" in outs[0]
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["3", "6"]
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  train_rows = [r for r in rows if "train/loss" in r]
  assert [r["step"] for r in train_rows] == [3, 6]
  assert all(np.isfinite(r["train/loss"]) for r in train_rows)
  assert any("eval/top1" in r for r in rows)
