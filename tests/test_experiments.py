"""The ablation sweeps: complete tables at the tiny scale, resumption, paper figures on the right rows.

Most tests drive the runner with `sweep.SimulatedTrainer` (no training; seconds). One test trains
and evaluates a real tiny variant end to end with the real trainer.
"""

import csv
import importlib
import json
import math

import pytest

from inception_jax import sweep

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
  trainer = sweep.SimulatedTrainer()
  sweep.run_sweep(s, tmp_path, trainer=trainer, log=lambda m: None)
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
  first = sweep.SimulatedTrainer(fail_after=2)
  with pytest.raises(KeyboardInterrupt):
    sweep.run_sweep(s, tmp_path, trainer=first, log=lambda m: None)
  assert len(first.trained) == 2
  second = sweep.SimulatedTrainer()
  log = []
  sweep.run_sweep(s, tmp_path, trainer=second, log=log.append)
  assert not set(first.trained) & set(second.trained)
  trained = sum(v.trained for v in s.variants().values())  # not the evaluation-only rows
  assert len(first.trained) + len(second.trained) == trained
  assert sum("done, skipped" in m for m in log) == 2
  # A third run trains nothing and rewrites the same table.
  before = (tmp_path / "results.csv").read_text()
  third = sweep.SimulatedTrainer()
  sweep.run_sweep(s, tmp_path, trainer=third, log=lambda m: None)
  assert third.trained == [] and (tmp_path / "results.csv").read_text() == before


def test_run_stopped_mid_training_is_resumed_not_recorded(ablation_files, tmp_path):
  s = ablation_files["v3_ablations"].make_sweep("tiny")
  with pytest.raises(sweep.SweepInterrupted):
    sweep.run_sweep(
      s, tmp_path, only=["rf79"], trainer=sweep.SimulatedTrainer(stop_at=2), log=lambda m: None
    )
  assert not (tmp_path / "rf79" / "seed0" / "result.json").exists()
  resumed = sweep.SimulatedTrainer()
  sweep.run_sweep(s, tmp_path, only=["rf79"], trainer=resumed, log=lambda m: None)
  result = json.loads((tmp_path / "rf79" / "seed0" / "result.json").read_text())
  assert result["step"] == result["steps"] == 4
  steps = [m["step"] for m in sweep.read_metrics(tmp_path / "rf79" / "seed0") if "train/loss" in m]
  assert steps == [1, 2, 3, 4]  # the resumed run continued; nothing was trained twice


def test_only_filter_runs_what_a_row_needs(ablation_files, tmp_path):
  s = ablation_files["v1_ablations"].make_sweep("tiny")
  trainer = sweep.SimulatedTrainer()
  sweep.run_sweep(s, tmp_path, only=["ensemble_10"], trainer=trainer, log=lambda m: None)
  assert sorted(trainer.trained) == [str(tmp_path / "googlenet" / f"seed{i}") for i in (0, 1)]
  assert trainer.evaluated == [
    ((str(tmp_path / "googlenet" / "seed0"), str(tmp_path / "googlenet" / "seed1")), 10)
  ]
  rows = {(r["ablation"], r["variant"]): r for r in read_csv(tmp_path / "results.csv")}
  assert rows[("crops", "ensemble_10")]["ours"] != ""
  assert rows[("module", "naive")]["ours"] == ""  # not run: a blank, not a wrong number
  with pytest.raises(ValueError, match="unknown variant"):
    sweep.run_sweep(s, tmp_path, only=["nope"], trainer=trainer, log=lambda m: None)


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
  sweep.run_sweep(s, tmp_path, trainer=sweep.SimulatedTrainer(), log=lambda m: None)
  rows = {(r["ablation"], r["variant"]): r for r in read_csv(tmp_path / "results.csv")}
  markdown = (tmp_path / "results.md").read_text().splitlines()
  for key, (value, metric) in PAPER_ROWS[name].items():
    r = rows[key]
    assert float(r["paper_value"]) == value and r["paper_metric"] == metric, key
    assert math.isclose(float(r["difference"]), float(r["ours"]) - value, abs_tol=1e-9)
    # In the markdown, the figure is on the line of that variant, within that ablation's table.
    title = next(a.title for a in s.ablations if a.name == key[0])
    start = markdown.index(f"## {title}")
    line = next(l for l in markdown[start:] if l.startswith(f"| {key[1]} |"))
    assert f"{value:g}" in line.split("|")[2], (key, line)
  for r in rows.values():
    if r["paper_metric"] in sweep.ERROR_METRICS:
      assert r["comparable"] == "no: scale"  # digits is not ImageNet: flagged, not hidden


def test_error_rows_use_the_papers_metric_and_cost_rows_the_full_network(ablation_files, tmp_path):
  s = ablation_files["v1_ablations"].make_sweep("tiny")
  sweep.run_sweep(s, tmp_path, trainer=sweep.SimulatedTrainer(), log=lambda m: None)
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
  text = ablation_files["v3_ablations"].sweep.main(
    ablation_files["v3_ablations"].make_sweep, ["--scale=full", "--workdir=/w"]
  )
  assert "python -m experiments.run --config=experiments/v3_ablations.py:full,rf79,0" in text
  assert "--workdir=/w/rf79/seed0" in text and "device-hours" in text
  line = next(l for l in text.splitlines() if l.startswith("| v3 |"))
  assert float(line.split("|")[4]) > 1  # 100 ImageNet epochs of Inception-v3: many device-hours


@pytest.mark.slow
def test_real_tiny_variant_trains_evaluates_and_is_skipped_on_rerun(ablation_files, tmp_path):
  """The real trainer end to end on one tiny variant (a few steps on digits)."""
  s = ablation_files["v1_ablations"].make_sweep("tiny")
  log = []
  sweep.run_sweep(s, tmp_path, only=["no_aux"], log=log.append)
  result = json.loads((tmp_path / "no_aux" / "seed0" / "result.json").read_text())
  assert result["step"] == result["steps"] == 4 and 0.0 <= result["eval_ema/top1"] <= 1.0
  rows = {(r["ablation"], r["variant"]): r for r in read_csv(tmp_path / "results.csv")}
  assert 0.0 <= float(rows[("aux", "no_aux")]["top1_err"]) <= 100.0
  again = []
  sweep.run_sweep(s, tmp_path, only=["no_aux"], trainer=sweep.SimulatedTrainer(), log=again.append)
  assert any("no_aux seed 0: done, skipped" in m for m in again)
