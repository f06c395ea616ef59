"""A run checkpointed on 2 processes x 2 devices resumes on 1 process x 4 devices (and the
reverse): the checkpoint is resharded onto the new devices, every step sees the same global batch
as an uninterrupted run, and the final parameters agree up to summation order."""

import json

import numpy as np
from helpers.training import train_processes

STEPS, STOP = 6, 3
ARGS = [
  f"--config.num_train_steps={STEPS}",
  "--config.checkpoint_every_steps=3",
  "--config.log_every_steps=3",
  "--config.batch_norm='per_replica'",
]


def train(workdir, processes, devices, log, stop_at=0):
  """Trains the tiny network on `processes` x `devices` (stopping as if preempted at stop_at)."""
  env = {"TINY_BATCH_LOG": str(log)}
  if stop_at:
    env["TINY_STOP_AT"] = str(stop_at)
  results = train_processes(workdir, ARGS, processes, devices, env=env)
  for code, out in results:
    assert code == 0, out[-5000:]
  outs = [out for _, out in results]
  assert f"process 0/{processes}, {devices} local / {processes * devices} global" in outs[0]
  return outs[0]


def global_batches(log, processes):
  """{step: [(label, image hash), ...]}: the hosts' rows in process order."""
  per_process = []
  for i in range(processes):
    lines = (log.parent / f"{log.name}.{i}").read_text().splitlines()
    per_process.append({r["step"]: [tuple(x) for x in r["rows"]] for r in map(json.loads, lines)})
  steps = set().union(*per_process)
  return {s: [row for p in per_process for row in p[s]] for s in steps}


def final(workdir):
  with np.load(workdir / "final_variables.npz") as f:
    return {k: f[k] for k in f.files}


def test_resume_on_another_cluster_shape(tmp_path):
  straight = tmp_path / "straight"
  train(straight, 1, 4, tmp_path / "straight.log")
  expected = global_batches(tmp_path / "straight.log", 1)
  assert sorted(expected) == list(range(STEPS))
  reference = final(straight)

  for name, first, second in [("2x2_to_1x4", (2, 2), (1, 4)), ("1x4_to_2x2", (1, 4), (2, 2))]:
    workdir = tmp_path / name
    train(workdir, *first, tmp_path / f"{name}.a.log", stop_at=STOP)
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == [str(STOP)]
    meta = json.loads((workdir / "checkpoints" / str(STOP) / "meta" / "metadata").read_text())
    assert (meta["process_count"], meta["device_count"], meta["data_order"]) == (
      first[0],
      4,
      "global",
    )
    out = train(workdir, *second, tmp_path / f"{name}.b.log")
    assert f"resumed from {workdir / 'checkpoints' / str(STOP)} at step {STOP}" in out
    seen = {
      **global_batches(tmp_path / f"{name}.a.log", first[0]),
      **global_batches(tmp_path / f"{name}.b.log", second[0]),
    }
    assert sorted(seen) == list(range(STEPS)), name
    for step in range(STEPS):
      assert seen[step] == expected[step], f"{name}: step {step} saw other examples"
    got = final(workdir)
    assert got.keys() == reference.keys()
    for k in reference:
      np.testing.assert_allclose(got[k], reference[k], rtol=1e-4, atol=1e-6, err_msg=f"{name}: {k}")


def test_a_topology_failure_is_not_called_corruption(tmp_path):
  from inception_jax.training import checkpoint

  path = tmp_path / "checkpoints" / "3"
  topology = checkpoint._unreadable(
    path,
    ValueError("Topology mismatch detected. The checkpoint was saved with a different topology"),
    [3],
  )
  assert "corrupt" not in str(topology) and "not known to be damaged" in str(topology)
  damaged = checkpoint._unreadable(path, FileNotFoundError("ocdbt manifest missing"), [3])
  assert f"checkpoint {path} is corrupt" in str(damaged)
