"""Converted weights on disk: DIR/state (an Orbax checkpoint of variables, written and read by
`checkpoint.py`) and DIR/convert_meta.json (the model and the conventions the weights need)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from inception_jax import models
from inception_jax.conversion.mapping import (
  CONVENTION_FIELDS,
  FORMAT_VERSION,
  META_FILE,
  STATE_DIR,
  ConversionError,
  Variables,
  abstract_variables,
  first_mismatch,
)
from inception_jax.errors import CheckpointError
from inception_jax.training import checkpoint


# ------------------------------------------------------------------------------------------------
# Orbax checkpoints
# ------------------------------------------------------------------------------------------------
def save(
  directory: str | Path,
  model_name: str,
  model: nn.Module,
  variables: Variables,
  *,
  source: str = "",
  force: bool = False,
) -> Path:
  """Writes DIR/state (Orbax, {'params', 'batch_stats'}) and DIR/convert_meta.json."""
  directory = Path(directory).absolute()
  if directory.exists() and any(directory.iterdir()):
    if not force:
      raise FileExistsError(f"{directory} exists and is not empty; pass force=True / --force")
    for child in (directory / STATE_DIR, directory / META_FILE):
      if child.is_dir():
        shutil.rmtree(child)
      elif child.exists():
        child.unlink()
  directory.mkdir(parents=True, exist_ok=True)
  # The conventions the weights need are always recorded; other fields only where they differ.
  reference = models.create(model_name, num_classes=model.num_classes)
  overrides = {}
  for field in models.valid_overrides(model_name):
    value = getattr(model, field)
    if (field in CONVENTION_FIELDS or value != getattr(reference, field)) and isinstance(
      value, (bool, int, float, str, type(None))
    ):
      overrides[field] = value
  tree = {k: variables[k] for k in ("params", "batch_stats") if variables.get(k)}
  checkpoint.save_variables(directory / STATE_DIR, tree)
  meta = {
    "model": model_name,
    "num_classes": int(model.num_classes),
    "model_overrides": overrides,
    "source": source,
    "format_version": FORMAT_VERSION,
    "tensors": len(jax.tree.leaves(tree)),
  }
  (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
  return directory


def load(directory: str | Path, model_name: str | None = None) -> tuple[nn.Module, Variables]:
  """(model, variables) from a directory written by `save` / the command line.

  The model is rebuilt from convert_meta.json (or as `model_name`, if given) and every tensor is
  checked against it before anything is restored: a file or folder that is not such a
  checkpoint, or a checkpoint of another architecture, raises ConversionError naming the first
  mismatching tensor.
  """
  directory = Path(directory).absolute()
  if not directory.exists():
    raise ConversionError(f"{directory} does not exist")
  if not directory.is_dir():
    raise ConversionError(
      f"{directory} is a file, not a converted checkpoint: expected a "
      f"directory with {STATE_DIR}/ and {META_FILE}, as written by "
      "`python -m inception_jax.conversion`"
    )
  meta_path, state_path = directory / META_FILE, directory / STATE_DIR
  meta: dict[str, Any] = {}
  if meta_path.exists():
    try:
      meta = json.loads(meta_path.read_text())
      if not isinstance(meta, dict):
        raise ValueError("not a JSON object")
    except ValueError as e:
      raise ConversionError(f"{meta_path} is not valid convert metadata: {e}") from e
  elif model_name is None:
    raise ConversionError(
      f"{directory} has no {META_FILE}; it was not written by "
      "inception_jax.conversion (pass model_name= to load bare variables)"
    )
  claimed = meta.get("model")
  name = model_name or claimed
  if name not in models.NAMES:
    raise ConversionError(f"{meta_path}: unknown model {name!r}; valid models: {models.NAMES}")
  valid = set(models.valid_overrides(name))
  overrides = {k: v for k, v in (meta.get("model_overrides") or {}).items() if k in valid}
  try:
    model = models.create(name, num_classes=int(meta.get("num_classes", 1000)), **overrides)
  except (TypeError, ValueError) as e:
    raise ConversionError(f"{meta_path}: cannot build {name!r} from it: {e}") from e
  abstract = abstract_variables(model, name)

  if not state_path.is_dir():
    raise ConversionError(f"{directory} has no {STATE_DIR}/ folder: not a converted checkpoint")
  try:
    stored = checkpoint.variables_metadata(state_path)
  except Exception as e:  # noqa: BLE001 - any failure to read is reported with the path
    raise ConversionError(f"{state_path} cannot be read as an Orbax checkpoint: {e}") from e
  problem = first_mismatch(abstract, stored)
  if problem:
    said = f" (its metadata says {claimed!r})" if claimed and claimed != name else ""
    raise ConversionError(
      f"checkpoint {directory}{said} does not match {name}: first mismatching tensor {problem}"
    )
  try:
    restored = checkpoint.load_variables(str(directory))
  except CheckpointError as e:
    raise ConversionError(f"{state_path}: the arrays cannot be read: {e}") from e
  variables = {
    k: jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), restored[k])
    for k in ("params", "batch_stats")
    if restored.get(k)
  }
  return model, variables
