"""Trains the tiny test network (tests/helpers/training.py) in a subprocess:

  python tests/helpers/train_tiny.py WORKDIR [--config.field=value ...]

with optional --coordinator_address/--num_processes/--process_id (multi-process runs), and these
environment variables: TINY_STEP_SLEEP (seconds per step, to leave time for a kill -9),
TINY_STOP_AT (save and stop at that step, as if preempted), TINY_BATCH_LOG (log each batch).
Patches here live and die with this process.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from helpers.training import register_tiny_model, tiny_config  # noqa: E402


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
  from inception_jax.training import parallel

  if args.coordinator_address:
    parallel.initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)
  register_tiny_model()
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
    from inception_jax.training import checkpoint, parallel

    checkpoint.Checkpointer.should_stop = lambda self, step: step >= stop_at
  batch_log = os.environ.get("TINY_BATCH_LOG")
  if batch_log:
    _log_batches(f"{batch_log}.{jax.process_index()}")
  from inception_jax import cli
  from inception_jax.training import loop, parallel

  with cli.user_errors():  # the project's input errors end with their message, as in the CLI
    state = loop.train_and_evaluate(config, args.workdir)
  if jax.process_index() == 0:
    import numpy as np

    flat = {
      jax.tree_util.keystr(k): np.asarray(v)
      for k, v in jax.tree_util.tree_leaves_with_path(parallel.fetch(state.variables()))
    }
    np.savez(os.path.join(args.workdir, "final_variables.npz"), **flat)


if __name__ == "__main__":
  _main(sys.argv)
