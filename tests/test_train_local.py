"""The `:local` preset (the paper's GoogLeNet on `digits`) learns: well above chance after a short
run. The full preset reaches >= 90% test top-1 (docs/TRAINING.md has the measured figures)."""

import json

import pytest

from configs import v1
from inception_jax.training import loop


@pytest.mark.slow
def test_v1_local_preset_learns(tmp_path):
  config = v1.get_config("local")
  config.num_train_steps = 320
  config.eval_every_steps = -1
  config.checkpoint_every_steps = 320
  config.log_every_steps = 50
  loop.train_and_evaluate(config, str(tmp_path))
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  final = [r for r in rows if "eval/top1" in r][-1]
  assert final["step"] == 320
  assert final["eval/top1"] > 0.3, final  # chance is 0.1
