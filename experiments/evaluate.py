"""Evaluates one checkpoint or an ensemble, with 1, 10 or 144 crops (GoogLeNet's Table 3):

  python -m experiments.evaluate --config=configs/v1.py:local --workdir=/tmp/v1_local --crops=10
  python -m experiments.evaluate --config=configs/v1.py --workdir=A --workdir=B --crops=144

Softmax probabilities are averaged over crops and over models; prints top-1 and top-5.
"""

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
  "config",
  None,
  "The recipe the checkpoints were trained with (configs/*.py[:preset]).",
  lock_config=True,
)
flags.DEFINE_multi_string("workdir", None, "Training workdir(s); several make an ensemble.")
flags.DEFINE_enum("crops", "1", ["1", "10", "144"], "Crops per image.")
flags.DEFINE_integer("batch_size", None, "Global eval batch (default: config.eval_batch_size).")
flags.DEFINE_bool("ema", True, "Use the averaged parameters when the checkpoint has them.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  from inception_jax import cli
  from inception_jax.training import parallel

  parallel.initialize_distributed()
  import jax

  from inception_jax.evaluation import evaluate

  config = _CONFIG.value
  parallel.enable_compilation_cache(config.compilation_cache_dir or "none")
  logging.info("JAX %s, %s", jax.__version__, parallel.describe())
  with cli.user_errors():
    evaluate.evaluate_workdirs(
      config, FLAGS.workdir, crops=int(FLAGS.crops), batch_size=FLAGS.batch_size, use_ema=FLAGS.ema
    )


if __name__ == "__main__":
  from inception_jax import cli

  app.run(main, flags_parser=cli.parse_flags)
