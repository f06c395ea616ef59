"""Prints the architecture tables, recomputed from the modules:

    python -m experiments.tables                      # markdown
    python -m experiments.tables --format=json        # a dict of lists of row dicts
    python -m experiments.tables --tables=models,googlenet_table1

Tables: googlenet_table1, models, module_cost_example, factorization_savings,
rethinking_table3_cost (see inception_jax/tables.py). Shapes only (jax.eval_shape): about half a
minute on CPU, no accelerator needed.
"""

from absl import app, flags

from inception_jax import tables

_FORMAT = flags.DEFINE_enum("format", "markdown", ["markdown", "json"], "Output format.")
_TABLES = flags.DEFINE_list("tables", list(tables.TABLES), "Which tables, comma-separated.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  result = tables.compute(_TABLES.value)
  print(tables.to_json(result) if _FORMAT.value == "json" else tables.to_markdown(result))


if __name__ == "__main__":
  app.run(main)
