"""A run killed with kill -9 and restarted ends with the same parameters as an uninterrupted run."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
from helpers.training import TRAIN_SCRIPT, subprocess_env

SCRIPT = TRAIN_SCRIPT
ARGS = [
  "--config.num_train_steps=24",
  "--config.checkpoint_every_steps=6",
  "--config.log_every_steps=3",
  "--config.ema_decay=0.9",
]


def run(workdir, sleep=0.0):
  env = subprocess_env()
  env["TINY_STEP_SLEEP"] = str(sleep)
  return subprocess.Popen(
    [sys.executable, SCRIPT, str(workdir), *ARGS],
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )


def finish(proc, timeout=300):
  out, _ = proc.communicate(timeout=timeout)
  assert proc.returncode == 0, out[-4000:]
  return out


def load(workdir):
  with np.load(workdir / "final_variables.npz") as f:
    return {k: f[k] for k in f.files}


def test_kill_and_resume_matches_uninterrupted_run(tmp_path):
  finish(run(tmp_path / "straight"))

  proc = run(tmp_path / "killed", sleep=0.3)
  first = tmp_path / "killed" / "checkpoints" / "6"
  deadline = time.time() + 300
  while not (first / "_CHECKPOINT_METADATA").exists():
    assert proc.poll() is None, proc.stdout.read()[-4000:]
    assert time.time() < deadline, "no checkpoint appeared"
    time.sleep(0.1)
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  steps = sorted(
    int(p.name) for p in (tmp_path / "killed" / "checkpoints").iterdir() if p.name.isdigit()
  )
  assert steps and steps[-1] < 24, steps
  out = finish(run(tmp_path / "killed"))
  assert "resumed from" in out

  straight, resumed = load(tmp_path / "straight"), load(tmp_path / "killed")
  assert straight.keys() == resumed.keys()
  for k in straight:
    np.testing.assert_array_equal(straight[k], resumed[k], err_msg=k)


def test_sigterm_saves_and_stops(tmp_path):
  proc = run(tmp_path, sleep=0.3)
  deadline = time.time() + 300
  while not (tmp_path / "metrics.jsonl").exists():  # the loop is running
    assert proc.poll() is None and time.time() < deadline
    time.sleep(0.1)
  proc.send_signal(signal.SIGTERM)
  out = finish(proc)
  stopped = int(re.search(r"stopped at step (\d+)", out).group(1))
  saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert stopped < 24 and saved[-1] == stopped, (stopped, saved)
