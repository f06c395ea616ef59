"""Trains a network: python -m experiments.run --config=configs/v1.py:local --workdir=/tmp/v1_local

Rerunning the same command resumes from the workdir. Multi-host: run the same command on every
host (Cloud TPU VM pods and SLURM/MPI clusters are detected), or pass --coordinator_address,
--num_processes and --process_id. See docs/TRAINING.md.
"""

import logging as py_logging

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Training recipe (configs/*.py[:preset]).", lock_config=True
)
flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and the config are written.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process runs).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process runs).")
flags.DEFINE_integer("process_id", None, "This process's index (multi-process runs).")
flags.mark_flags_as_required(["config", "workdir"])


class _QuietLibraries(py_logging.Filter):
  """Keeps Orbax's and TFDS's per-save and per-read INFO lines out of the console."""

  def filter(self, record):
    return record.levelno >= py_logging.WARNING or not any(
      part in record.pathname for part in ("/orbax/", "/tensorflow_datasets/")
    )


def main(argv):
  del argv
  logging.get_absl_handler().addFilter(_QuietLibraries())
  # Before any JAX computation: joining a cluster must come first.
  from inception_jax import cli
  from inception_jax.training import parallel

  parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  import jax

  from inception_jax.training import loop

  config = _CONFIG.value
  parallel.enable_compilation_cache(config.compilation_cache_dir or "none")
  # tf.data runs on the host only; keep TensorFlow off the accelerators.
  import tensorflow as tf

  tf.config.set_visible_devices([], "GPU")
  logging.info("JAX %s", jax.__version__)  # train_and_evaluate logs the devices
  with cli.user_errors():
    loop.train_and_evaluate(config, FLAGS.workdir)


if __name__ == "__main__":
  py_logging.getLogger("jax._src.xla_bridge").setLevel(py_logging.WARNING)
  from inception_jax import cli

  app.run(main, flags_parser=cli.parse_flags)
