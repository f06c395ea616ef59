"""Ablation sweeps, what an experiment file declares: named config variants at a scale.

An experiment file (experiments/v1_ablations.py, v3_ablations.py) lists `Ablation`s: a paper table
or figure, and its rows as `Variant`s (a name, the paper's figure with its metric and unit, and the
config fields that differ from the scale's base config). A `Sweep` is an experiment file at one
scale; the runner (runner.py) trains it, the report (report.py) tables it beside the papers, the
plan (plan.py) prices the full scale, and cli.py is the command line of the experiment files.

Each experiment file is also a config file:
`--config=experiments/v1_ablations.py:SCALE,VARIANT,SEED` returns the exact config a row was
trained with, so the `command` column is a command that reproduces the row
(`python -m experiments.run --config=... --workdir=...`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections

from inception_jax.sweeps import datasets

SCALES = ("full", "small", "tiny")
IMAGENET_TRAIN_EXAMPLES = 1_281_167
# Metrics a paper figure can be given in. Error rates are in percent; costs for the full-size
# network.
ERROR_METRICS = {"top-1 err": "top1", "top-5 err": "top5"}
COST_METRICS = {"G multiply-adds": ("macs", 1e9), "M params": ("params", 1e6)}


# ------------------------------------------------------------------------------------------------
# What an experiment file declares.
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Paper:
  """A figure printed in a paper: `Paper(23.4, "top-1 err", "Rethinking Table 3")`."""

  value: float
  metric: str  # a key of ERROR_METRICS or COST_METRICS
  source: str

  def __post_init__(self):
    if self.metric not in ERROR_METRICS and self.metric not in COST_METRICS:
      raise ValueError(f"unknown metric {self.metric!r}")

  @property
  def unit(self) -> str:
    return "%" if self.metric in ERROR_METRICS else ""

  def __str__(self) -> str:
    if self.metric in ERROR_METRICS:
      return f"{self.metric} {self.value:g}%"
    return f"{self.value:g} {self.metric}"


@dataclasses.dataclass(frozen=True)
class Variant:
  """One row. A trained row has `overrides` (dotted config fields -> values, applied to the scale's
  base config). An evaluation-only row names the trained variant(s) it evaluates: `evaluates`
  (one variant, each seed evaluated on its own, mean and spread) or `ensemble` (all seeds of the
  listed variants averaged into one prediction), with `crops` 1, 10 or 144.

  `expect`: the paper's direction for this row's top-1 error against its base ("lower",
  "higher", or "same": the base loses nothing against this row; report.py reads the effect
  against it). Default: from the two rows' paper figures
  when both give the same metric; for crop and ensemble rows "lower" (GoogLeNet Table 3)."""

  name: str
  paper: Paper | None = None
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  evaluates: str | None = None
  ensemble: tuple[str, ...] = ()
  crops: int = 1
  note: str = ""
  expect: str | None = None

  def __post_init__(self):
    if self.expect not in (None, "lower", "higher", "same"):
      raise ValueError(f"expect must be 'lower', 'higher', 'same' or None, got {self.expect!r}")

  @property
  def trained(self) -> bool:
    return self.evaluates is None and not self.ensemble


@dataclasses.dataclass(frozen=True)
class Ablation:
  """A paper table or figure. Each trained row's effect is its paired difference to a base row:
  `base` (default the first row), or with `cumulative` the row above (Rethinking Table 3 adds
  one change per row). Evaluation-only rows compare with 1 crop of the same models."""

  name: str
  title: str  # the paper's table or figure
  variants: tuple[Variant, ...]
  base: str | None = None
  cumulative: bool = False

  def __post_init__(self):
    names = [v.name for v in self.variants]
    if self.base is not None and self.base not in names:
      raise ValueError(f"ablation {self.name!r}: base {self.base!r} is not one of its rows {names}")

  def base_of(self, variant: str) -> str | None:
    """The row `variant` is compared with (None for the base itself)."""
    names = [v.name for v in self.variants]
    i = names.index(variant)
    if self.cumulative:
      return names[i - 1] if i else None
    base = self.base or names[0]
    return None if base == variant else base


@dataclasses.dataclass
class Sweep:
  """An experiment file at one scale: the base config, its ablations and the seeds to run."""

  name: str  # "v1_ablations"
  config_file: str  # "experiments/v1_ablations.py" (a config file too)
  scale: str
  base_config: Callable[[], ml_collections.ConfigDict]
  ablations: tuple[Ablation, ...]
  # variant -> seeds; for an evaluation-only row, the seeds of the runs it evaluates (default all)
  seeds: Mapping[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
  default_seeds: tuple[int, ...] = (0,)
  eval_examples: int = -1  # examples for evaluation-only rows; -1 = whole split
  # `small` scale: the data (datasets.py): "" = the base config's (TFDS cifar10), or a TFDS
  # name, `folder:PATH` or a tarball; a field of every variant's config.
  dataset: str = ""

  def variants(self) -> dict[str, Variant]:
    """Every distinct variant by name (a variant may appear in several ablations)."""
    out: dict[str, Variant] = {}
    for ablation in self.ablations:
      for v in ablation.variants:
        if v.name in out and out[v.name] != dataclasses.replace(
          v, paper=out[v.name].paper, note=out[v.name].note
        ):
          raise ValueError(f"variant {v.name!r} is defined twice with different settings")
        out.setdefault(v.name, v)
    return out

  def seeds_of(self, variant: str) -> tuple[int, ...]:
    return tuple(self.seeds.get(variant, self.default_seeds))

  def members(self, v: Variant) -> list[tuple[str, int]]:
    """The trained runs (variant, seed) evaluation-only row `v` evaluates: every seed of its
    trained variant(s), or the seeds `seeds[v.name]` names (a costly crop row on fewer seeds)."""
    names = [v.evaluates] if v.evaluates else list(v.ensemble)
    chosen = self.seeds.get(v.name)
    for n in names:
      if chosen is not None and not set(chosen) <= set(self.seeds_of(n)):
        raise ValueError(f"{v.name}: seeds {chosen} are not all trained seeds of {n!r}")
    return [(n, s) for n in names for s in (self.seeds_of(n) if chosen is None else chosen)]

  def config(self, variant: str, seed: int = 0) -> ml_collections.ConfigDict:
    """The exact config variant `variant` trains with at this scale and seed."""
    v = self.variants()[variant]
    if not v.trained:
      v = self.variants()[v.evaluates or v.ensemble[0]]
    config = self.base_config()
    if self.dataset:
      config.dataset = datasets.dataset_field(self.dataset)
    apply_overrides(config, v.overrides)
    config.seed = seed
    return config

  def config_arg(self, variant: str, seed: int = 0) -> str:
    """`--config=FILE:SCALE,VARIANT,SEED`'s value, and the dataset when the sweep names one."""
    arg = f"{self.config_file}:{self.scale},{variant},{seed}"
    if self.dataset:
      arg += f" --config.dataset={datasets.display(datasets.dataset_field(self.dataset))}"
    return arg


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> None:
  """Sets dotted fields ("model_overrides.module"), creating leaves that are not declared yet."""
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      if p not in node:
        node[p] = ml_collections.ConfigDict()
      node = node[p]
    if (
      leaf in node
      and isinstance(node[leaf], ml_collections.ConfigDict)
      and isinstance(value, Mapping)
    ):
      node[leaf] = ml_collections.ConfigDict(dict(value))
    else:
      node[leaf] = value


def parse_config_arg(arg: str | None) -> tuple[str, str | None, int]:
  """'small,naive,1' -> ('small', 'naive', 1); 'small' -> ('small', None, 0)."""
  parts = [p.strip() for p in (arg or "full").split(",")]
  scale = parts[0] or "full"
  if scale not in SCALES:
    raise ValueError(f"unknown scale {scale!r}; expected one of {SCALES}")
  variant = parts[1] if len(parts) > 1 and parts[1] else None
  seed = int(parts[2]) if len(parts) > 2 and parts[2] else 0
  return scale, variant, seed


def config_from_arg(
  make_sweep: Callable[[str], Sweep], arg: str | None
) -> ml_collections.ConfigDict:
  """An experiment file's `get_config`: 'SCALE[,VARIANT[,SEED]]' -> that run's config (the
  scale's base config without a variant), so every row's command is `experiments.run` on it."""
  scale, variant, seed = parse_config_arg(arg)
  s = make_sweep(scale)
  return s.config(variant, seed) if variant else s.base_config()


# ------------------------------------------------------------------------------------------------
# Run length of the reduced scales.
# ------------------------------------------------------------------------------------------------
def scale_run_length(config: ml_collections.ConfigDict, scale: str, small_epochs: float) -> None:
  """The data, evaluation and run length of the reduced scales, shared by every experiment file.

  small: TFDS `cifar10` (a sweep's `--dataset` replaces it: datasets.py), `small_epochs` epochs of
  the 50,000 training images at batch 64, evaluated at the end on the whole 10,000-image test
  split, with the recipe's staircase schedule compressed to keep its number of decays (and so its
  final learning rate); tiny: 4 steps of 16 on the config's own dataset (`digits`), evaluated on
  one batch.
  """
  if scale == "small":
    config.lr_decay_epochs = config.lr_decay_epochs * small_epochs / config.num_epochs
    config.dataset = datasets.DEFAULT
    config.train_split = "train"
    config.eval_split = "test"
    config.batch_size = 64
    config.eval_batch_size = 500
    config.num_epochs = small_epochs
    config.num_train_steps = -1
    config.num_eval_steps = -1  # the whole test split
    config.eval_every_steps = 0  # at the end only
    config.log_every_steps = 50
    config.checkpoint_every_steps = 500
  elif scale == "tiny":
    config.batch_size = 16
    config.eval_batch_size = 32
    config.num_train_steps = 4
    config.num_eval_steps = 1
    config.eval_every_steps = 0
    config.log_every_steps = 2
    config.checkpoint_every_steps = 4
  else:
    raise ValueError(f"scale_run_length is for the reduced scales small and tiny, got {scale!r}")
