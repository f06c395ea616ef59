"""Every notebook runs top to bottom headless; the ablation notebooks on a `tiny` sweep made here.

The sweeps are run by `inception_jax.sweeps.run_sweep` with `SimulatedTrainer` (tests/helpers;
the tables, curves and file layout of a real sweep, in seconds); tests/test_experiments.py trains
a real tiny variant.
"""

import importlib
import pathlib
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

from helpers.sweeps import SimulatedTrainer  # noqa: E402

from inception_jax import sweeps  # noqa: E402
from inception_jax.sweeps import figures, publish  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
ABLATION_NOTEBOOKS = {"v1_ablations.ipynb": "v1_ablations", "v3_ablations.ipynb": "v3_ablations"}


@pytest.fixture(scope="module")
def tiny_sweeps(tmp_path_factory):
  out = {}
  for name in ABLATION_NOTEBOOKS.values():
    workdir = tmp_path_factory.mktemp(name)
    module = importlib.import_module(f"experiments.{name}")
    sweeps.run_sweep(
      module.make_sweep("tiny"), workdir, trainer=SimulatedTrainer(), log=lambda m: None
    )
    out[name] = workdir
  return out


def execute(path: pathlib.Path, env: dict[str, str]) -> "nbformat.NotebookNode":
  return publish.execute_notebook(path, env, save=False)


def kernel_python_ok() -> bool:
  from jupyter_client.kernelspec import KernelSpecManager

  try:
    KernelSpecManager().get_kernel_spec("python3")
  except Exception:  # noqa: BLE001
    return False
  return True


@pytest.fixture(scope="module", autouse=True)
def python3_kernel():
  if not kernel_python_ok():
    pytest.fail(
      f"no 'python3' Jupyter kernel: `python -m ipykernel install --user` (with {sys.executable})"
    )


@pytest.mark.parametrize("notebook", sorted(ABLATION_NOTEBOOKS))
def test_ablation_notebook_executes_on_a_tiny_sweep(notebook, tiny_sweeps):
  nb = execute(
    NOTEBOOKS / notebook,
    {"SWEEP_WORKDIR": str(tiny_sweeps[ABLATION_NOTEBOOKS[notebook]])},
  )
  images = [
    o
    for c in nb.cells
    if c.cell_type == "code"
    for o in c.get("outputs", [])
    if "image/png" in o.get("data", {})
  ]
  assert len(images) >= 4  # beside the paper, effects, cost vs accuracy, learning curves
  errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
  assert not errors


def test_architecture_notebook_executes():
  nb = execute(NOTEBOOKS / "architecture.ipynb", {})
  text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
  assert "whole network: reduced 1.5" in text  # GoogLeNet: 1.58G multiply-adds recomputed


def test_architecture_notebook_is_committed_without_outputs():
  nb = nbformat.read(NOTEBOOKS / "architecture.ipynb", as_version=4)
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.parametrize("notebook", sorted(ABLATION_NOTEBOOKS))
def test_ablation_notebooks_are_committed_executed_on_the_committed_results(notebook):
  """A reader on the web sees the plots: the committed notebook ran top to bottom on the
  committed small-scale tables (the row count it printed is theirs), without an error."""
  name = ABLATION_NOTEBOOKS[notebook]
  nb = nbformat.read(NOTEBOOKS / notebook, as_version=4)
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert all(c.execution_count is not None for c in code), "run all cells before committing"
  printed = "".join(o.get("text", "") for o in code[0].outputs if o.get("name") == "stdout")
  with open(ROOT / "results" / f"{name}_small" / "results.csv") as f:
    rows = sum(1 for _ in f) - 1
  assert printed.startswith(f"{name}_small {rows} rows,") and "scale: small" in printed, printed
  digest = figures.results_digest([ROOT / "results" / f"{name}_small" / "results.csv"])
  assert f"drawn from results {digest}" in printed, "re-execute it on the committed results"
  images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
  assert len(images) >= 4  # beside the paper, effects, cost vs accuracy, learning curves
  assert not [o for c in code for o in c.outputs if o.get("output_type") == "error"]
