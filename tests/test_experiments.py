"""The ablation sweeps: complete tables at the tiny scale, resumption, paper figures on the right
rows, the small scale's data as a config field.

Most tests drive the runner with `SimulatedTrainer` (tests/helpers/sweeps.py; no training,
seconds). One test trains and evaluates a real tiny variant end to end with the real trainer.
"""

import csv
import dataclasses
import importlib
import json
import math
import pathlib
import pickle
import shutil
import tarfile

import numpy as np
import pytest
from helpers.sweeps import SimulatedTrainer

from inception_jax import sweeps
from inception_jax.sweeps import datasets, records

REQUIRED_COLUMNS = ("variant", "paper", "ours", "macs", "params", "command")


@pytest.fixture(scope="module")
def ablation_files():
  return {
    name: importlib.import_module(f"experiments.{name}")
    for name in ("v1_ablations", "v3_ablations")
  }


def read_csv(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


@pytest.mark.parametrize("name", ["v1_ablations", "v3_ablations"])
def test_tiny_sweep_writes_complete_tables(ablation_files, name, tmp_path):
  s = ablation_files[name].make_sweep("tiny")
  trainer = SimulatedTrainer()
  sweeps.run_sweep(s, tmp_path, trainer=trainer, log=lambda m: None)
  rows = read_csv(tmp_path / "results.csv")
  expected = [(a.name, v.name) for a in s.ablations for v in a.variants]
  assert [(r["ablation"], r["variant"]) for r in rows] == expected
  for r in rows:
    for column in REQUIRED_COLUMNS:
      assert column in r
    assert r["ours"] != "", r
    assert int(r["macs"]) > 0 and int(r["params"]) > 0
    assert r["command"].startswith("python -m experiments.")
    assert r["seeds"] != ""
  markdown = (tmp_path / "results.md").read_text()
  for a in s.ablations:
    assert a.title in markdown
    for v in a.variants:
      assert f"| {v.name} |" in markdown
  curves = read_csv(tmp_path / "curves.csv")
  assert {r["variant"] for r in curves} == {n for n, v in s.variants().items() if v.trained}
  # Every trained variant and seed trained once; every evaluation-only row evaluated.
  trained = {n: s.seeds_of(n) for n, v in s.variants().items() if v.trained}
  assert len(trainer.trained) == sum(len(seeds) for seeds in trained.values())


def test_interrupted_sweep_resumes_without_redoing_finished_variants(ablation_files, tmp_path):
  s = ablation_files["v3_ablations"].make_sweep("tiny")
  first = SimulatedTrainer(fail_after=2)
  with pytest.raises(KeyboardInterrupt):
    sweeps.run_sweep(s, tmp_path, trainer=first, log=lambda m: None)
  assert len(first.trained) == 2
  second = SimulatedTrainer()
  log = []
  sweeps.run_sweep(s, tmp_path, trainer=second, log=log.append)
  assert not set(first.trained) & set(second.trained)
  trained = sum(v.trained for v in s.variants().values())  # not the evaluation-only rows
  assert len(first.trained) + len(second.trained) == trained
  assert sum("recorded, skipped" in m for m in log) == 2
  # A third run trains nothing and rewrites the same table.
  before = (tmp_path / "results.csv").read_text()
  third = SimulatedTrainer()
  sweeps.run_sweep(s, tmp_path, trainer=third, log=lambda m: None)
  assert third.trained == [] and (tmp_path / "results.csv").read_text() == before


def test_run_stopped_mid_training_is_resumed_not_recorded(ablation_files, tmp_path):
  s = ablation_files["v3_ablations"].make_sweep("tiny")
  with pytest.raises(sweeps.SweepInterrupted):
    sweeps.run_sweep(
      s, tmp_path, only=["rf79"], trainer=SimulatedTrainer(stop_at=2), log=lambda m: None
    )
  assert not (tmp_path / "rf79" / "seed0" / "result.json").exists()
  resumed = SimulatedTrainer()
  sweeps.run_sweep(s, tmp_path, only=["rf79"], trainer=resumed, log=lambda m: None)
  result = json.loads((tmp_path / "rf79" / "seed0" / "result.json").read_text())
  assert result["step"] == result["steps"] == 4
  steps = [m["step"] for m in sweeps.read_metrics(tmp_path / "rf79" / "seed0") if "train/loss" in m]
  assert steps == [1, 2, 3, 4]  # the resumed run continued; nothing was trained twice


def test_records_keep_every_finished_row_when_the_workdir_is_gone(ablation_files, tmp_path):
  """The committed records are the sweep's memory: a fresh clone, or a machine whose scratch
  workdirs were wiped, rewrites the same tables and trains nothing again."""
  s = ablation_files["v1_ablations"].make_sweep("tiny")
  results, workdir = tmp_path / "results", tmp_path / "w"
  sweeps.run_sweep(s, workdir, trainer=SimulatedTrainer(), log=lambda m: None, results=results)
  tables = {n: (results / n).read_text() for n in ("results.csv", "results.md", "curves.csv")}
  assert sorted(p.name for p in (results / "runs" / "googlenet").iterdir()) == [
    "seed0.json",
    "seed1.json",
  ]
  shutil.rmtree(workdir)
  again = SimulatedTrainer()
  log = []
  sweeps.run_sweep(s, workdir, trainer=again, log=log.append, results=results)
  assert again.trained == [] and again.evaluated == []
  assert {n: (results / n).read_text() for n in tables} == tables
  assert any("crops_10: recorded, skipped" in m for m in log)
  # An evaluation-only row not recorded yet needs its runs' checkpoints: a clear error, not a
  # retraining or a blank.
  sweeps.records.eval_path(results, "crops_10").unlink()
  with pytest.raises(FileNotFoundError, match="googlenet seed 0 has a record but no run directory"):
    sweeps.run_sweep(s, workdir, only=["crops_10"], trainer=again, log=print, results=results)


def test_a_finished_run_without_a_record_is_recorded_not_trained_again(ablation_files, tmp_path):
  s = ablation_files["v3_ablations"].make_sweep("tiny")
  sweeps.run_sweep(s, tmp_path, only=["rf79"], trainer=SimulatedTrainer(), log=lambda m: None)
  record = sweeps.records.run_path(tmp_path, "rf79", 0)
  saved = json.loads(record.read_text())
  record.unlink()  # e.g. killed between the result and its record
  again = SimulatedTrainer()
  log = []
  sweeps.run_sweep(s, tmp_path, only=["rf79"], trainer=again, log=log.append)
  assert again.trained == [] and any("rf79 seed 0: done, recorded" in m for m in log)
  assert json.loads(record.read_text()) == saved
  assert saved["metrics"] == sweeps.read_metrics(tmp_path / "rf79" / "seed0")


def test_a_record_of_another_recipe_is_refused_not_tabled(ablation_files, tmp_path):
  s = ablation_files["v3_ablations"].make_sweep("tiny")
  sweeps.run_sweep(s, tmp_path, only=["rf79"], trainer=SimulatedTrainer(), log=lambda m: None)
  record = sweeps.records.run_path(tmp_path, "rf79", 0)
  saved = json.loads(record.read_text())
  assert (
    saved["recipe"]["model"] == "inception_v3" and "compilation_cache_dir" not in saved["recipe"]
  )
  saved["recipe"]["learning_rate"] = 123.0  # the experiment file changed since
  record.write_text(json.dumps(saved))
  for run in (
    lambda: sweeps.run_sweep(s, tmp_path, only=["rf79"], trainer=SimulatedTrainer(), log=print),
    lambda: sweeps.report.collect(s, tmp_path),
  ):
    with pytest.raises(ValueError, match="another recipe \\(learning_rate differ\\)"):
      run()


def test_only_filter_runs_what_a_row_needs(ablation_files, tmp_path):
  s = ablation_files["v1_ablations"].make_sweep("tiny")
  trainer = SimulatedTrainer()
  sweeps.run_sweep(s, tmp_path, only=["ensemble_10"], trainer=trainer, log=lambda m: None)
  assert sorted(trainer.trained) == [str(tmp_path / "googlenet" / f"seed{i}") for i in (0, 1)]
  # Each model's 1-crop predictions after training, then its 10-crop ones; the ensemble averages
  # the saved predictions (no second pass).
  runs = [str(tmp_path / "googlenet" / f"seed{i}") for i in (0, 1)]
  assert trainer.evaluated == [(runs[0], 1), (runs[1], 1), (runs[0], 10), (runs[1], 10)]
  rows = {(r["ablation"], r["variant"]): r for r in read_csv(tmp_path / "results.csv")}
  assert rows[("crops", "ensemble_10")]["ours"] != ""
  assert rows[("module", "naive")]["ours"] == ""  # not run: a blank, not a wrong number
  with pytest.raises(ValueError, match="unknown variant"):
    sweeps.run_sweep(s, tmp_path, only=["nope"], trainer=trainer, log=lambda m: None)
  # A misspelt row is reported before the dataset is looked at (extracting one takes minutes).
  missing = dataclasses.replace(s, dataset=f"folder:{tmp_path / 'no_such_folder'}")
  with pytest.raises(ValueError, match="unknown variant"):
    sweeps.run_sweep(missing, tmp_path, only=["nope"], trainer=trainer, log=lambda m: None)


# Paper figures (docs/PAPERS.md) that must sit on these rows.
PAPER_ROWS = {
  "v3_ablations": {
    ("table3", "v2"): (23.4, "top-1 err"),
    ("table3", "v2_rmsprop"): (23.1, "top-1 err"),
    ("table3", "v2_rmsprop_ls"): (22.8, "top-1 err"),
    ("table3", "v2_rmsprop_ls_f7x7"): (21.6, "top-1 err"),
    ("table3", "v3"): (21.2, "top-1 err"),
    ("table2", "v3"): (23.4, "top-1 err"),
    ("table2", "rf151"): (23.6, "top-1 err"),
    ("table2", "rf79"): (24.8, "top-1 err"),
    ("figure2", "v3"): (22.8, "top-1 err"),
    ("figure2", "linear"): (23.8, "top-1 err"),
  },
  "v1_ablations": {
    ("module", "googlenet"): (1.5, "G multiply-adds"),
    ("norm", "googlenet_lrn"): (29.0, "top-1 err"),
    ("norm", "googlenet"): (26.8, "top-1 err"),
    ("crops", "crops_1"): (10.07, "top-5 err"),
    ("crops", "crops_10"): (9.15, "top-5 err"),
    ("crops", "crops_144"): (7.89, "top-5 err"),
    ("crops", "ensemble_1"): (8.09, "top-5 err"),
    ("crops", "ensemble_10"): (7.62, "top-5 err"),
    ("crops", "ensemble_144"): (6.67, "top-5 err"),
  },
}


@pytest.mark.parametrize("name", ["v1_ablations", "v3_ablations"])
def test_tables_put_each_paper_figure_beside_the_right_row(ablation_files, name, tmp_path):
  s = ablation_files[name].make_sweep("tiny")
  sweeps.run_sweep(s, tmp_path, trainer=SimulatedTrainer(), log=lambda m: None)
  rows = {(r["ablation"], r["variant"]): r for r in read_csv(tmp_path / "results.csv")}
  markdown = (tmp_path / "results.md").read_text().splitlines()
  for key, (value, metric) in PAPER_ROWS[name].items():
    r = rows[key]
    assert float(r["paper_value"]) == value and r["paper_metric"] == metric, key
    assert math.isclose(float(r["difference"]), float(r["ours"]) - value, abs_tol=1e-9)
    # In the markdown, the figure is on the line of that variant, within that ablation's table.
    title = next(a.title for a in s.ablations if a.name == key[0])
    start = markdown.index(f"## {title}")
    line = next(x for x in markdown[start:] if x.startswith(f"| {key[1]} |"))
    assert f"{value:g}" in line.split("|")[2], (key, line)
  for r in rows.values():
    if r["paper_metric"] in sweeps.ERROR_METRICS:
      assert r["comparable"] == "no: scale"  # digits is not ImageNet: flagged, not hidden


def test_error_rows_use_the_papers_metric_and_cost_rows_the_full_network(ablation_files, tmp_path):
  s = ablation_files["v1_ablations"].make_sweep("tiny")
  sweeps.run_sweep(s, tmp_path, trainer=SimulatedTrainer(), log=lambda m: None)
  rows = {(r["ablation"], r["variant"]): r for r in read_csv(tmp_path / "results.csv")}
  crop = rows[("crops", "crops_144")]
  assert float(crop["ours"]) == pytest.approx(float(crop["top5_err"]))  # Table 3 is top-5
  norm = rows[("norm", "googlenet_lrn")]
  assert float(norm["ours"]) == pytest.approx(float(norm["top1_err"]))
  module = rows[("module", "googlenet")]
  assert 1.45 < float(module["ours"]) < 1.65  # GoogLeNet at 224, 1000 classes: 1.58G recomputed
  assert int(rows[("module", "naive")]["full_macs"]) > 3 * int(module["full_macs"])
  # Two seeds: a mean and a spread; the 144-crop row costs 144 forward passes per image.
  base = rows[("norm", "googlenet")]
  assert base["seeds"] == "0 1" and base["ours_std"] != ""
  assert int(crop["macs"]) == 144 * int(base["macs"])


def test_variant_configs_and_config_file_entry(ablation_files):
  v3 = ablation_files["v3_ablations"]
  c = v3.get_config("tiny,rf79,1")
  assert c.model == "inception_v3" and c.model_overrides.receptive_field == 79
  assert c.image_size == 23 and c.seed == 1 and c.dataset == "digits"
  c = v3.get_config("tiny,v2,0")
  assert (c.model, c.optimizer, c.label_smoothing) == ("inception_v2", "sgd", 0.0)
  c = v3.get_config("full,rf151,0")
  assert c.image_size == 151 and c.dataset == "imagenet2012" and c.batch_size == 1600
  v1 = ablation_files["v1_ablations"]
  c = v1.get_config("tiny,naive,0")
  assert c.model == "googlenet" and c.model_overrides.module == "naive"
  assert c.model_overrides.norm == "bn"  # below full scale the base is BN-GoogLeNet
  assert v1.get_config("tiny,googlenet_lrn,0").model_overrides.norm == "lrn"
  full = v1.make_sweep("full")
  assert "norm" not in full.config("googlenet").model_overrides  # full: the paper's LRN network
  assert full.config("googlenet_bn").model_overrides.norm == "bn"
  with pytest.raises(ValueError, match="unknown scale"):
    v3.get_config("huge")


def test_full_scale_prints_commands_and_device_hours(ablation_files, capsys):
  text = sweeps.main(
    ablation_files["v3_ablations"].make_sweep, ["v3", "--scale=full", "--workdir=/w"]
  )
  assert "python -m experiments.run --config=experiments/v3_ablations.py:full,rf79,0" in text
  assert "--workdir=/w/rf79/seed0" in text and "device-hours" in text
  line = next(x for x in text.splitlines() if x.startswith("| v3 |"))
  assert float(line.split("|")[4]) > 1  # 100 ImageNet epochs of Inception-v3: many device-hours


def test_each_models_evaluate_command_names_the_seed_it_was_trained_with(ablation_files):
  s = ablation_files["v1_ablations"].make_sweep("small")
  crops = sweeps.report.command(s, s.variants()["crops_10"], pathlib.Path("/w")).split("; ")
  seeds = s.seeds_of("googlenet")
  assert len(crops) == len(seeds) > 1
  for cmd, seed in zip(crops, seeds, strict=True):
    assert f"small,googlenet,{seed} " in cmd and f"--workdir=/w/googlenet/seed{seed} " in cmd


def test_misspelt_only_row_is_one_line_and_writes_nothing(ablation_files, tmp_path, capsys):
  workdir, results = tmp_path / "w", tmp_path / "r"
  argv = ["v1", "--scale=tiny", "--only=googlenet_lrnn", f"--workdir={workdir}"]
  with pytest.raises(SystemExit) as e:
    sweeps.main(ablation_files["v1_ablations"].make_sweep, [*argv, f"--results={results}"])
  assert e.value.code == 1
  err = capsys.readouterr().err
  assert err.startswith("error (ConfigError): unknown variant(s) ['googlenet_lrnn'] in --only")
  assert "googlenet_lrn" in err and "Traceback" not in err
  assert not workdir.exists() and not results.exists()


@pytest.mark.slow
def test_real_tiny_variant_trains_evaluates_and_is_skipped_on_rerun(ablation_files, tmp_path):
  """The real trainer end to end on one tiny variant (a few steps on digits)."""
  s = ablation_files["v1_ablations"].make_sweep("tiny")
  log = []
  sweeps.run_sweep(s, tmp_path, only=["no_aux"], log=log.append)
  result = json.loads((tmp_path / "no_aux" / "seed0" / "result.json").read_text())
  assert result["step"] == result["steps"] == 4 and 0.0 <= result["eval_ema/top1"] <= 1.0
  rows = {(r["ablation"], r["variant"]): r for r in read_csv(tmp_path / "results.csv")}
  assert 0.0 <= float(rows[("aux", "no_aux")]["top1_err"]) <= 100.0
  # The per-example predictions the paired tests read: 16 test images (tiny), 10 digits.
  probs, labels = sweeps.load_predictions(tmp_path / "no_aux" / "seed0" / "predictions_c1.npz")
  assert probs.shape == (16, 10) and labels.shape == (16,)
  np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
  assert rows[("aux", "no_aux")]["test_examples"] == "16"
  again = []
  sweeps.run_sweep(s, tmp_path, only=["no_aux"], trainer=SimulatedTrainer(), log=again.append)
  assert any("no_aux seed 0: recorded, skipped" in m for m in again)


# ---- The small scale's data: a config field ----------------------------------------------------
def _jpeg_folders(root, classes=("cat", "dog"), train=3, test=12):
  """root/{train,test}/<class>/<n>.jpg: tiny JPEGs (PIL) of a solid colour per class."""
  image_module = pytest.importorskip("PIL.Image")
  for split, n in (("train", train), ("test", test)):
    for c, name in enumerate(classes):
      (root / split / name).mkdir(parents=True)
      for i in range(n):
        image_module.new("RGB", (8, 8), (40 * c, 10 * i, 0)).save(root / split / name / f"{i}.jpg")
  return root


def test_small_scale_is_the_whole_cifar10_and_its_dataset_a_config_field(ablation_files):
  small = ablation_files["v1_ablations"].make_sweep("small")
  config = small.config("no_aux")
  assert config.dataset == "cifar10" and (config.train_split, config.eval_split) == (
    "train",
    "test",
  )
  assert config.num_train_steps == -1 and config.num_epochs == 5.0 and config.batch_size == 64
  assert config.num_eval_steps == -1 and small.eval_examples == -1  # all 10,000 test images
  assert small.seeds_of("no_aux") == small.seeds_of("googlenet") == (0, 1, 2)
  # The staircase keeps the paper's 31 decays (every 8 of 250 epochs) over the shorter run.
  assert config.lr_decay_epochs == pytest.approx(8 * 5 / 250)
  assert "--config.dataset" not in small.config_arg("no_aux")
  named = dataclasses.replace(small, dataset="folder:/somewhere/my_images")
  assert named.config("no_aux").dataset == "folder:/somewhere/my_images"
  assert named.config_arg("no_aux", 1).endswith(
    ",no_aux,1 --config.dataset=folder:/somewhere/my_images"
  )
  for tarball in ("cifar10-jpeg.tar.gz", "cifar-10-python.tar.gz"):
    assert datasets.dataset_field(f"/x/{tarball}") == f"folder:{datasets.DATA_ROOT / 'cifar10'}"
  v3 = ablation_files["v3_ablations"].make_sweep("small").config("v3", 2)
  assert (v3.num_epochs, v3.seed, v3.num_eval_steps) == (4.0, 2, -1)


def test_relative_paths_inside_the_repository():
  assert datasets.relative(datasets.REPO_ROOT / "workdirs" / "a" / "seed0") == "workdirs/a/seed0"
  assert datasets.display(f"folder:{datasets.DATA_ROOT}/c") == "folder:workdirs/data/c"
  assert datasets.relative("/elsewhere/x") == "/elsewhere/x"


def test_folder_is_read_as_is_and_a_jpeg_tarball_is_extracted_once(tmp_path):
  src = _jpeg_folders(tmp_path / "src" / "pets")
  assert datasets.prepare(f"folder:{src}", tmp_path / "data") == f"folder:{src}"
  assert not (tmp_path / "data").exists()  # nothing copied or linked
  tarball = tmp_path / "pets-jpeg.tar.gz"
  with tarfile.open(tarball, "w:gz") as tar:
    tar.add(src, arcname="pets")
  field = datasets.prepare(str(tarball), tmp_path / "data2")
  assert field == f"folder:{tmp_path / 'data2' / 'pets'}"
  assert len(list(pathlib.Path(field[7:], "test", "dog").iterdir())) == 12  # the whole split
  mtime = pathlib.Path(field[7:], "test").stat().st_mtime_ns
  assert datasets.prepare(str(tarball), tmp_path / "data2") == field  # once
  assert pathlib.Path(field[7:], "test").stat().st_mtime_ns == mtime
  with pytest.raises(FileNotFoundError, match="no train/ folder"):
    (tmp_path / "empty" / "test").mkdir(parents=True)
    datasets.prepare(f"folder:{tmp_path / 'empty'}", tmp_path / "data3")


def test_cifar10_python_tarball_is_written_out_as_png_folders(tmp_path):
  image_module = pytest.importorskip("PIL.Image")
  rng = np.random.default_rng(0)
  batches = tmp_path / "cifar-10-batches-py"
  batches.mkdir()
  names = [f"class{i}".encode() for i in range(10)]
  (batches / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))
  written = {}
  for file in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
    labels = [int(x) for x in rng.integers(0, 10, 4)]
    (batches / file).write_bytes(pickle.dumps({b"data": data, b"labels": labels}))
    written[file] = (data, labels)
  tarball = tmp_path / "cifar-10-python.tar.gz"
  with tarfile.open(tarball, "w:gz") as tar:
    tar.add(batches, arcname="cifar-10-batches-py")
  field = datasets.prepare(str(tarball), tmp_path / "data")
  full = tmp_path / "data" / "cifar10"
  assert field == f"folder:{full}" and len(list(full.glob("train/*/*.png"))) == 20
  data, labels = written["test_batch"]
  first = np.asarray(image_module.open(full / "test" / names[labels[0]].decode() / "0.png"))
  np.testing.assert_array_equal(first, data[0].reshape(3, 32, 32).transpose(1, 2, 0))


def test_small_sweep_on_a_named_folder_evaluates_every_test_image(
  ablation_files, tmp_path, monkeypatch
):
  monkeypatch.setattr(datasets, "DATA_ROOT", tmp_path / "data")
  src = _jpeg_folders(tmp_path / "src" / "pets", classes=tuple(f"c{i}" for i in range(10)))
  s = dataclasses.replace(
    ablation_files["v1_ablations"].make_sweep("small"), dataset=f"folder:{src}"
  )
  trainer = SimulatedTrainer()
  rows = sweeps.run_sweep(s, tmp_path / "w", only=["crops_10"], trainer=trainer, log=lambda m: None)
  assert trainer.evaluated and s.config("crops_10").eval_split == "test"
  row = next(r for r in rows if r["variant"] == "crops_10")
  assert row["dataset"] == f"folder:{src}" and row["test_examples"] == "40"
  assert f"--config.dataset={row['dataset']}" in row["command"]


# Each trained row's ablated switch: the only config fields in which it differs from its base
# (Table 3's rows are cumulative: each against the row above). Written out, not derived from the
# rows, so that a recipe field (rate, optimizer, epochs, schedule, preprocessing) tuned for one row
# fails here.
SWITCHES = {
  "naive": {"model_overrides.module"},
  "naive_narrow": {"model_overrides.module"},
  "no_aux": {"model_overrides.aux_logits", "aux_loss_weight"},
  "aux_weight_1": {"aux_loss_weight"},
  "googlenet_lrn": {"model_overrides.norm"},
  "googlenet": {"model_overrides.norm"},  # full scale: BN-GoogLeNet against the paper's LRN base
  "v2": {"model", "model_overrides.stem", "aux_loss_weight"},  # BN-Inception has no aux heads
  "v2_rmsprop": {"optimizer"},
  "v2_rmsprop_ls": {"label_smoothing"},
  "v2_rmsprop_ls_f7x7": {"model_overrides.stem"},
  "v3": {"model", "model_overrides.stem"},  # Inception-v3: the BN-auxiliary head, its own stem
  "rf151": {"model_overrides.receptive_field", "image_size"},  # equal cost: Table 2's sizes
  "rf79": {"model_overrides.receptive_field", "image_size"},
  "linear": {"model_overrides.factorization_activation"},
}


@pytest.mark.parametrize("scale", ["small", "tiny", "full"])
@pytest.mark.parametrize("name", ["v1_ablations", "v3_ablations"])
def test_rows_differ_from_their_base_only_in_the_ablated_switch(ablation_files, name, scale):
  """Nothing is tuned per row: a trained row's config (same seed) equals its base's but for the
  ablated switch written out in SWITCHES."""
  s = ablation_files[name].make_sweep(scale)

  checked = 0
  for ablation in s.ablations:
    for v in ablation.variants:
      base = ablation.base_of(v.name)
      if not v.trained or base is None:
        continue
      differing = records.differences(
        records.recipe(s.config(v.name, 1)), records.recipe(s.config(base, 1))
      )
      switch = SWITCHES[v.name] | ({"image_size"} if (scale, v.name) == ("full", "v2") else set())
      assert differing == switch, (ablation.name, v.name, differing ^ switch)
      checked += 1
  assert checked >= 3
