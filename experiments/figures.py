"""Writes the README's figure and prints its table of effects, from the committed small-scale
results:

    python -m experiments.figures                 # docs/figures/ablation_effects.png
    python -m experiments.figures --results=results --out=/tmp/effects.png
    python -m experiments.figures --readme=README.md --notebooks   # after a chunk: publish

The figure has one line per ablation row: its paired difference of top-1 error to its base with
the 95% interval, coloured by whether the paper's effect appears (inception_jax/sweeps/figures.py,
the same code the notebooks draw with). The table (inception_jax/sweeps/summary.py) is the README's:
`--readme` writes it between the README's markers, `--notebooks` re-executes the ablation notebooks
in place on the committed results (inception_jax/sweeps/publish.py).
"""

from pathlib import Path

from absl import app, flags

try:
  from inception_jax.sweeps import figures, publish, summary
except ModuleNotFoundError as e:  # matplotlib is in the test extra, not in the base install
  raise SystemExit(
    f"experiments.figures needs {e.name}, which the base install lacks: pip install -e '.[test]'"
  ) from e

_RESULTS = flags.DEFINE_string("results", "results", "Folder with <sweep>_small/results.csv.")
_OUT = flags.DEFINE_string("out", "docs/figures/ablation_effects.png", "The PNG to write.")
_README = flags.DEFINE_string("readme", "", "Write the effects table into this README.")
_NOTEBOOKS = flags.DEFINE_bool(
  "notebooks", False, "Re-execute notebooks/v*_ablations.ipynb in place (committed results)."
)
SWEEPS = ("v1_ablations_small", "v3_ablations_small")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  found = {name: Path(_RESULTS.value, name, "results.csv") for name in SWEEPS}
  missing = [str(p) for p in found.values() if not p.exists()]
  if missing:
    raise app.UsageError(f"no results table at {', '.join(missing)}; run the sweeps first")
  rows = {name: figures.read_csv(path) for name, path in found.items()}
  digest = figures.results_digest(found.values())
  print(figures.save(figures.effects(rows), _OUT.value, source=f"results {digest}"))
  table = summary.effects_markdown({name.removesuffix("_small"): r for name, r in rows.items()})
  print(table)
  if _README.value:
    changed = publish.update_readme(_README.value, table)
    print(f"{_README.value}: {'effects table updated' if changed else 'unchanged'}")
  if _NOTEBOOKS.value:
    for name in SWEEPS:
      path = Path("notebooks", name.removesuffix("_small") + ".ipynb")
      publish.execute_notebook(path, {"SWEEP_WORKDIR": str(Path(_RESULTS.value, name).resolve())})
      print(f"{path}: executed on {Path(_RESULTS.value, name)}")


if __name__ == "__main__":
  app.run(main)
