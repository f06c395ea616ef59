"""After a chunk of a sweep: the README's effects table and the executed ablation notebooks, from
the committed results (`python -m experiments.figures --readme=README.md --notebooks`).

`update_readme` replaces the table between the README's `<!-- effects:begin -->` and
`<!-- effects:end -->` markers; `execute_notebook` runs a notebook top to bottom in place, with
this checkout importable by its kernel (nbclient, ipykernel: the `test` extra).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

BEGIN, END = "<!-- effects:begin -->", "<!-- effects:end -->"
REPO_ROOT = Path(__file__).resolve().parents[2]


def update_readme(path: str | os.PathLike, table: str) -> bool:
  """Puts `table` between the markers of the file at `path`; True when the file changed."""
  path = Path(path)
  text = path.read_text()
  if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
    raise ValueError(
      f"{path} needs one '{BEGIN}' line before one '{END}' line around the effects table"
    )
  head, rest = text.split(BEGIN)
  _, tail = rest.split(END)
  new = f"{head}{BEGIN}\n{table.strip()}\n{END}{tail}"
  if new != text:
    path.write_text(new)
  return new != text


def execute_notebook(
  path: str | os.PathLike, env: Mapping[str, str] | None = None, save: bool = True
):
  """Runs the notebook at `path` top to bottom (cwd: its folder; `env` added to the kernel's
  environment) and writes it back with its outputs when `save`; returns the executed notebook."""
  import nbclient
  import nbformat

  path = Path(path)
  kernel_env = dict(os.environ, **(env or {}))
  kernel_env.pop("MPLBACKEND", None)  # the kernel's inline backend renders PNGs
  kernel_env["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
  )
  nb = nbformat.read(path, as_version=4)
  client = nbclient.NotebookClient(
    nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
  )
  client.execute(env=kernel_env)
  if save:
    nbformat.write(nb, path)
  return nb
