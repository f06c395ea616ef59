"""Bad data and bad commands (issue 17): caught before anything compiles, nothing lost when not.

Datasets are checked before compiling (missing split, empty class folder, classes that differ
between splits); an unreadable image mid-way either stops the run with a checkpoint at the last
completed step (on_corrupt="fail") or is skipped in place and counted (on_corrupt="skip"), and a
run that skipped resumes exactly; a rejected run leaves config.json alone; a finished run rerun
does nothing; the common mistakes get messages that say what to do.
"""

import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from helpers.training import (
  ROOT,
  TRAIN_SCRIPT,
  register_tiny_model,
  subprocess_env,
  tiny_config,
  train_processes,
)
from PIL import Image

from inception_jax import cli, data, errors, extras
from inception_jax.data import check as data_check
from inception_jax.evaluation import evaluate
from inception_jax.training import checkpoint, loop, parallel


@pytest.fixture(scope="module", autouse=True)
def tiny_model():
  register_tiny_model()


class Compiled(Exception):
  """Raised by the patched jax.jit: something was about to be compiled."""


@pytest.fixture()
def no_compile(monkeypatch):
  """Makes any jax.jit call fail, to show a check came before compilation."""

  def jit(*args, **kwargs):
    raise Compiled("jax.jit was called")

  monkeypatch.setattr(jax, "jit", jit)


def write_jpeg(path, seed, size=16):
  path.parent.mkdir(parents=True, exist_ok=True)
  pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, "JPEG")
  path.write_bytes(buf.getvalue())
  return buf.getvalue()


def make_folder(root, train=39, test=9, classes=("a", "b", "c"), truncated=True):
  """folder: dataset of generated JPEGs; with `truncated`, one more train file cut short."""
  for split, n in (("train", train), ("test", test)):
    for i in range(n):
      write_jpeg(root / split / classes[i % len(classes)] / f"{i:03d}.jpg", seed=i)
  bad = root / "train" / classes[1] / "zz_truncated.jpg"
  if truncated:
    bad.write_bytes(write_jpeg(bad, seed=999)[:60])
  return bad


def folder_config(root, **overrides):
  c = tiny_config(
    dataset=f"folder:{root}",
    train_split="train",
    eval_split="test",
    batch_size=8,
    eval_batch_size=8,
    num_eval_steps=-1,
    log_every_steps=1,
    checkpoint_every_steps=100,
  )
  for k, v in overrides.items():
    setattr(c, k, v)
  return c


def read_metrics(workdir):
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------ datasets, up front


def test_missing_split_fails_before_compiling(tmp_path, no_compile):
  for field in ("eval_split", "train_split"):
    config = tiny_config(**{field: "nope"})
    with pytest.raises(data.DatasetError) as err:
      loop.train_and_evaluate(config, str(tmp_path / "run"))
    message = str(err.value)
    assert "no split 'nope'" in message and "['test', 'train']" in message
    assert f"--config.{field}" in message
  assert not (tmp_path / "run").exists()  # nothing written either


def test_empty_class_folder_is_named_before_compiling(tmp_path, no_compile):
  make_folder(tmp_path, truncated=False)
  for split in ("train", "test"):
    (tmp_path / split / "d").mkdir()  # a fourth class folder, empty in both splits
  config = folder_config(tmp_path)
  with pytest.raises(data.DatasetError) as err:
    loop.train_and_evaluate(config, str(tmp_path / "run"))
  message = str(err.value)
  assert str(tmp_path / "train" / "d") in message and str(tmp_path / "test" / "d") in message
  assert "--config.allow_empty_classes=True" in message
  assert str(tmp_path / "train" / "a") not in message
  # The override lets it through the checks: the next thing is compilation.
  config.allow_empty_classes = True
  with pytest.raises(Compiled):
    loop.train_and_evaluate(config, str(tmp_path / "run"))


def test_classes_must_agree_between_splits(tmp_path, no_compile):
  make_folder(tmp_path, truncated=False)
  shutil.rmtree(tmp_path / "test" / "c")
  only_train = r"different class folders .*only in 'train': \['c'\]"
  with pytest.raises(data.DatasetError, match=only_train):
    loop.train_and_evaluate(folder_config(tmp_path), str(tmp_path / "run"))


def test_missing_tfds_dataset_names_config_data_dir(tmp_path, no_compile):
  config = tiny_config(dataset="imagenet2012", data_dir=str(tmp_path))
  with pytest.raises(data.DatasetNotFoundError, match=r"--config\.data_dir=DIR"):
    loop.train_and_evaluate(config, str(tmp_path / "run"))
  with pytest.raises(data.DatasetNotFoundError, match=r"--config\.data_dir=DIR"):
    data.get_info("cifar10", data_dir=str(tmp_path))


# ------------------------------------------------------------------------ corrupt images


def first_bad_step(root, config, steps):
  """The training step whose batch holds the truncated file (seen through a skipping iterator),
  and the number of skipped slots in the first `steps` batches."""
  it = data.create_train_iterator(
    config.dataset,
    global_batch_size=config.batch_size,
    image_size=config.image_size,
    seed=config.seed,
    preprocess=config.preprocess.to_dict(),
    on_corrupt="skip",
  )
  masks = [next(it)["mask"] for _ in range(steps)]
  bad_steps = [k for k, m in enumerate(masks) if not m.all()]
  return (bad_steps[0] if bad_steps else None), sum(int((~m).sum()) for m in masks)


@pytest.fixture(scope="module")
def corrupt_folder(tmp_path_factory):
  """A folder dataset whose truncated file is in the batch of step 2 or later (seed chosen)."""
  root = tmp_path_factory.mktemp("corrupt")
  bad = make_folder(root)
  for seed in range(20):
    config = folder_config(root, seed=seed, num_train_steps=9)
    step, skipped = first_bad_step(root, config, 9)
    if step is not None and 2 <= step <= 4 and skipped >= 2:
      return root, bad, seed, step, skipped
  pytest.fail("no seed puts the truncated image mid-way")


def test_corrupt_image_fails_with_a_checkpoint_at_the_last_step(corrupt_folder, tmp_path, caplog):
  root, bad, seed, bad_step, _ = corrupt_folder
  config = folder_config(root, seed=seed, num_train_steps=9)
  with pytest.raises(data.CorruptImageError) as err:
    loop.train_and_evaluate(config, str(tmp_path))
  message = str(err.value)
  assert str(bad) in message and f"after step {bad_step}" in message
  assert f"Saved a checkpoint at step {bad_step}" in message
  assert "--config.on_corrupt=skip" in message
  assert "python -m inception_jax.data.check" in message
  # checkpoint_every_steps is 100: the only checkpoint is the one saved on the way out.
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [str(bad_step)]

  # Rerun with skip: resumes there, skips the file in place, counts it, names it at the end.
  caplog.set_level(logging.INFO)
  config.on_corrupt = "skip"
  state = loop.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == config.num_train_steps
  assert f"resumed from {tmp_path / 'checkpoints' / str(bad_step)}" in caplog.text
  rows = [r for r in read_metrics(tmp_path) if "train/skipped_images" in r]
  assert rows and rows[0]["step"] == bad_step + 1 and rows[0]["train/skipped_images"] == 1
  warnings = [
    r.getMessage()
    for r in caplog.records
    if r.levelno == logging.WARNING and "unreadable training images" in r.getMessage()
  ]
  assert len(warnings) == 1 and str(bad) in warnings[0]


def test_skipping_keeps_positions_so_resume_is_exact(corrupt_folder, tmp_path):
  root, bad, seed, bad_step, skipped = corrupt_folder
  config = folder_config(
    root, seed=seed, num_train_steps=9, on_corrupt="skip", checkpoint_every_steps=bad_step + 2
  )  # a checkpoint after the first skip
  straight = loop.train_and_evaluate(config, str(tmp_path / "straight"))
  final = read_metrics(tmp_path / "straight")
  assert [r for r in final if "train/skipped_images" in r][-1]["train/skipped_images"] == skipped

  # The same run, resumed from the checkpoint after the first skip (the file comes again later).
  resumed_dir = tmp_path / "resumed"
  shutil.copytree(tmp_path / "straight", resumed_dir)
  for p in (resumed_dir / "checkpoints").iterdir():
    if p.name.isdigit() and int(p.name) > config.checkpoint_every_steps:
      shutil.rmtree(p)
  resumed = loop.train_and_evaluate(config, str(resumed_dir))
  jax.tree.map(
    np.testing.assert_array_equal, parallel.fetch(resumed.params), parallel.fetch(straight.params)
  )
  rows = [r for r in read_metrics(resumed_dir) if "train/skipped_images" in r]
  assert rows[-1]["train/skipped_images"] == skipped  # carried over in the checkpoint


def test_two_hosts_stop_together_when_one_cannot_read_its_image(corrupt_folder, tmp_path):
  """Two processes; the truncated file is in one host's half of the batch. Both stop at that
  step (none waits forever in a collective), with the checkpoint of the last completed step, and
  both name the file (the other host says which process could not read it)."""
  root, bad, seed, bad_step, _ = corrupt_folder
  config = folder_config(root, seed=seed)
  it = data.create_train_iterator(
    config.dataset,
    global_batch_size=config.batch_size,
    image_size=config.image_size,
    seed=seed,
    preprocess=config.preprocess.to_dict(),
    on_corrupt="skip",
  )
  mask = [next(it)["mask"] for _ in range(bad_step + 1)][-1]
  bad_host = int(np.flatnonzero(~mask)[0]) // (config.batch_size // 2)
  args = [
    f"--config.dataset=folder:{root}",
    "--config.train_split=train",
    "--config.eval_split=test",
    "--config.batch_size=8",
    "--config.eval_batch_size=8",
    "--config.num_eval_steps=-1",
    f"--config.seed={seed}",
    "--config.num_train_steps=9",
    "--config.checkpoint_every_steps=100",
    "--config.log_every_steps=1",
    "--config.batch_norm='per_replica'",
  ]
  results = train_processes(tmp_path, args, processes=2, devices=1, timeout=300)
  for code, out in results:
    assert code == 1, out[-5000:]
  outs = [out for _, out in results]
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [str(bad_step)]
  for i, out in enumerate(outs):
    error = [line for line in out.splitlines() if line.startswith("error (CorruptImageError)")]
    assert len(error) == 1, out[-5000:]
    assert f"process {bad_host} of 2 cannot read or decode image {bad}" in error[0]
    assert f"Saved a checkpoint at step {bad_step}" in error[0]
    if i != bad_host:
      assert f"process {bad_host} of 2 cannot read or decode image {bad}: every process" in out


def test_skipped_slot_weighs_nothing_in_the_loss():
  import jax.numpy as jnp

  from inception_jax.training import losses

  logits = jnp.array([[2.0, 0.0], [0.0, 5.0], [1.0, 1.0]])
  labels = jnp.array([0, 0, 1])
  weights = jnp.array([1.0, 0.0, 1.0])
  kept = losses.cross_entropy(logits[jnp.array([0, 2])], labels[jnp.array([0, 2])])
  np.testing.assert_allclose(losses.cross_entropy(logits, labels, 0.0, weights), kept, rtol=1e-6)


def test_check_command_lists_unreadable_files(tmp_path, capsys):
  bad = make_folder(tmp_path)
  assert data_check.main(["check", f"folder:{tmp_path}"]) == 1
  out = capsys.readouterr().out
  assert f"  {bad}\n" in out and "train: 40 images, 1 unreadable" in out
  assert "test: 9 images, 0 unreadable" in out
  bad.unlink()
  assert data_check.main(["check", f"folder:{tmp_path}", "--split=train"]) == 0
  assert "checked 39 images" in capsys.readouterr().out


# ------------------------------------------------------------------------ the run's record


def test_rejected_run_leaves_config_json_untouched(tmp_path):
  loop.train_and_evaluate(tiny_config(num_train_steps=2, checkpoint_every_steps=2), str(tmp_path))
  before = (tmp_path / "config.json").read_text()
  wider = tiny_config(num_train_steps=4, model_overrides={"width": 16})
  with pytest.raises(errors.CheckpointError, match="incompatible"):
    loop.train_and_evaluate(wider, str(tmp_path))
  assert (tmp_path / "config.json").read_text() == before
  assert sorted(p.name for p in tmp_path.glob("config*.json")) == ["config.0.json", "config.json"]
  # An accepted resume records its config and keeps the first one.
  longer = tiny_config(num_train_steps=3, checkpoint_every_steps=2, log_every_steps=1)
  loop.train_and_evaluate(longer, str(tmp_path))
  assert (tmp_path / "config.0.json").read_text() == before
  assert json.loads((tmp_path / "config.2.json").read_text())["num_train_steps"] == 3
  assert json.loads((tmp_path / "config.json").read_text())["num_train_steps"] == 3


def test_evaluation_creates_no_directories(tmp_path):
  typo = tmp_path / "no_such_run"
  with pytest.raises(errors.CheckpointError, match=r"no checkpoints in .*Check --workdir"):
    evaluate.evaluate_workdirs(tiny_config(), [str(typo)])
  assert not typo.exists()


def test_finished_run_rerun_does_nothing(tmp_path, caplog):
  config = tiny_config(num_train_steps=4, checkpoint_every_steps=2)
  loop.train_and_evaluate(config, str(tmp_path))
  metrics_before = (tmp_path / "metrics.jsonl").read_text()
  caplog.set_level(logging.INFO)
  state = loop.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == 4
  assert "already finished at step 4; nothing to do" in caplog.text
  assert (tmp_path / "metrics.jsonl").read_text() == metrics_before
  assert "eval at step" not in caplog.text


def test_resume_prints_one_line_and_no_orbax_false_alarms(tmp_path, caplog):
  loop.train_and_evaluate(tiny_config(num_train_steps=2, checkpoint_every_steps=2), str(tmp_path))
  caplog.set_level(logging.INFO)
  loop.train_and_evaluate(tiny_config(num_train_steps=3), str(tmp_path))
  assert caplog.text.count("resumed from") == 1
  for alarm in checkpoint.ORBAX_FALSE_ALARMS:
    assert alarm not in caplog.text


def test_orbax_filter_keeps_real_warnings():
  f = checkpoint._OrbaxFalseAlarms()

  def record(message, path="/site-packages/orbax/checkpoint/x.py"):
    return logging.LogRecord("absl", logging.WARNING, path, 1, message, (), None)

  assert not f.filter(record('Item "state" was found in the checkpoint, but could not be restored'))
  assert not f.filter(record("Metadata file does not exist: /w/checkpoints/2/meta"))
  assert f.filter(record("Failed to read Metadata file: /w, error: x"))
  assert f.filter(record("Metadata file does not exist", path="/ours/loop.py"))


# ------------------------------------------------------------------------ messages


def run_entry_point(*args):
  return subprocess.run(
    [sys.executable, "-m", *args],
    cwd=ROOT,
    env=subprocess_env(),
    capture_output=True,
    text=True,
    timeout=120,
  )


def test_unknown_config_field_lists_fields_and_closest_match(tmp_path):
  proc = run_entry_point(
    "experiments.run",
    "--config=configs/v1.py:local",
    "--config.on_corupt=skip",
    f"--workdir={tmp_path}",
  )
  assert proc.returncode != 0
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert "unknown config field 'on_corupt'" in proc.stderr
  assert "Did you mean --config.on_corrupt?" in proc.stderr
  assert "Valid fields of config: " in proc.stderr and "eval_split" in proc.stderr
  proc = run_entry_point(
    "experiments.evaluate",
    "--config=configs/v1.py:local",
    "--config.preprocess.on_corrupt=skip",
    f"--workdir={tmp_path}",
  )
  assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert "Did you mean --config.on_corrupt?" in proc.stderr
  assert not any(tmp_path.iterdir())


def test_unknown_field_message():
  import ml_collections

  c = ml_collections.ConfigDict({"learning_rate": 0.1, "model_overrides": {"width": 1}})
  assert cli.unknown_field_message(c, "learning_rate") is None
  assert cli.unknown_field_message(c, "model_overrides.width") is None
  message = cli.unknown_field_message(c, "learning_rat")
  assert "Did you mean --config.learning_rate?" in message
  assert "Valid fields of config: learning_rate, model_overrides" in message
  message = cli.unknown_field_message(c, "model_overrides.widht")
  assert "Did you mean --config.model_overrides.width?" in message
  assert "Valid fields of config.model_overrides: width" in message
  assert "Did you mean" not in cli.unknown_field_message(c, "zzz")


def test_missing_optional_dependency_names_the_extra(tmp_path, monkeypatch):
  from inception_jax import conversion
  from inception_jax.conversion import __main__ as conversion_cli

  weights = tmp_path / "weights.pt"
  weights.write_bytes(b"not really")
  monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
  with pytest.raises(extras.MissingDependencyError, match=r'pip install -e "\.\[parity\]"'):
    conversion.from_torchvision(str(weights), "inception_v3")
  assert (
    conversion_cli.main(
      [
        "convert",
        "--from=torchvision",
        "--model=inception_v3",
        f"--input={weights}",
        f"--output={tmp_path / 'out'}",
      ]
    )
    == 2
  )


def test_missing_peer_script_fails_before_running_ours(tmp_path, monkeypatch, capsys):
  from experiments import benchmark as benchmark_cli
  from inception_jax import speed

  monkeypatch.setattr(speed, "PEER_DIR", str(tmp_path))
  ran = []
  monkeypatch.setattr(speed, "run_ours", lambda *a, **k: ran.append(a) or {})
  code = benchmark_cli.main(
    ["bench", "train", "--model=googlenet_bn", "--peers=torch", "--rounds=1"]
  )
  assert code == 2 and not ran
  assert str(tmp_path / "peer_torch.py") in capsys.readouterr().err


def corrupt_latest_checkpoint(workdir):
  """Trains 4 steps (checkpoints at 2 and 4) and truncates every array file of step 4."""
  loop.train_and_evaluate(tiny_config(num_train_steps=4, checkpoint_every_steps=2), str(workdir))
  latest = workdir / "checkpoints" / "4"
  arrays = [f for f in (latest / "state").rglob("*") if f.is_file() and f.parent.name == "d"]
  assert arrays
  for f in arrays:
    f.write_bytes(f.read_bytes()[:40])
  return latest


def test_corrupt_checkpoint_message_is_short(tmp_path, caplog):
  latest = corrupt_latest_checkpoint(tmp_path)
  caplog.set_level(logging.INFO)
  with pytest.raises(errors.CheckpointError) as err:
    loop.train_and_evaluate(tiny_config(num_train_steps=6), str(tmp_path))
  message = str(err.value)
  assert message.startswith(f"checkpoint {latest} is corrupt")
  assert message.endswith(f"(The full error is in {tmp_path / 'checkpoint_error.log'}.)")
  assert len(message.splitlines()) <= 3 and len(message) < 800, message
  assert err.value.__cause__ is None and err.value.__suppress_context__
  assert "checkpoint error detail" in caplog.text  # the whole error is in the log


def test_corrupt_checkpoint_prints_a_few_lines_and_logs_the_rest(tmp_path):
  """The command's stderr, not only the message: TensorStore's and Orbax's tracebacks (some
  printed by their threads, some at the interpreter's exit) go to the log file, not stderr."""
  latest = corrupt_latest_checkpoint(tmp_path)
  proc = subprocess.run(
    [
      sys.executable,
      TRAIN_SCRIPT,
      str(tmp_path),
      "--config.num_train_steps=6",
    ],
    env=subprocess_env(),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 1, proc.stderr[-3000:]
  log = tmp_path / "checkpoint_error.log"
  # What remains besides the lines of absl / TensorFlow's C++ logging (I1130 ..., E0000 ...)
  # and their "Logging before flag parsing" banners: our message.
  lines = [
    line
    for line in proc.stderr.splitlines()
    if line.strip() and not re.match(r"^[IWE]\d{4} ", line) and not line.startswith("WARNING: ")
  ]
  assert len(lines) <= 4, "\n".join(lines[:60])
  assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
  assert f"checkpoint {latest} is corrupt" in lines[0]
  assert f"(The full error is in {log}.)" in proc.stderr
  detail = log.read_text()
  assert f"checkpoint {latest} is corrupt" in detail and "TensorStore" in detail
  # The whole error (TensorStore's specification: thousands of characters) is in the log, not on
  # the terminal. How many lines TensorStore's own threads print there varies with the load.
  message = "\n".join(lines)
  assert len(detail) > 1000 and len(detail) > 2 * len(message), (len(detail), message)


def test_restore_replays_real_warnings_and_drops_false_alarms(tmp_path, monkeypatch, capfd):
  """What reaches stderr during a successful restore is shown once it is over, less the Orbax
  false alarms (ORBAX_FALSE_ALARMS)."""

  def noisy_restore(self, state, meta, sharding):
    os.write(2, b"W a real warning about the restore\n")
    os.write(2, f"W Item 'state' {checkpoint.ORBAX_FALSE_ALARMS[0]}.\n".encode())
    os.write(2, f"W {checkpoint.ORBAX_FALSE_ALARMS[1]}: /x/_METADATA\n".encode())
    return "restored"

  monkeypatch.setattr(checkpoint.Checkpointer, "_restore", noisy_restore)
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  try:
    assert ckpt.restore({}, {}) == "restored"
  finally:
    ckpt.close()
  err = capfd.readouterr().err
  assert "W a real warning about the restore" in err
  assert not any(alarm in err for alarm in checkpoint.ORBAX_FALSE_ALARMS), err
  assert not (tmp_path / "checkpoint_error.log").exists()


def test_first_progress_line_rate_is_measured(tmp_path, caplog):
  caplog.set_level(logging.INFO)
  config = tiny_config(num_train_steps=3, log_every_steps=1)
  loop.train_and_evaluate(config, str(tmp_path))
  rows = [r for r in read_metrics(tmp_path) if "train/images_per_sec" in r]
  first_step = float(caplog.text.split("first step (compilation included) took ")[1].split("s")[0])
  # The first line's rate is that of the first step (its compilation included), over its time.
  np.testing.assert_allclose(
    rows[0]["train/images_per_sec"], config.batch_size / first_step, rtol=0.3
  )
  assert rows[0]["train/images_per_sec"] < rows[1]["train/images_per_sec"]
  assert "img/s (first step, compilation included)" in caplog.text


def test_data_check_runs_as_a_module(tmp_path):
  bad = make_folder(tmp_path, train=6, test=3)
  proc = run_entry_point("inception_jax.data.check", f"folder:{tmp_path}")
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert str(bad) in proc.stdout
  os.remove(bad)
  assert run_entry_point("inception_jax.data.check", f"folder:{tmp_path}").returncode == 0
