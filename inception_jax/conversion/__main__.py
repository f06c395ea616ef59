"""Convert torchvision, Keras or tf-slim Inception weights to a checkpoint that training
(config.init_from) and evaluation can start from:

  python -m inception_jax.conversion --from=torchvision|keras|slim --model=NAME --input=FILE \\
    --output=DIR [--transform_input=false] [--drop_background] [--force]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import jax
import numpy as np
from absl import flags

from inception_jax import cli, extras
from inception_jax.conversion.keras import from_keras
from inception_jax.conversion.mapping import (
  KERAS_MODELS,
  SOURCES,
  TORCHVISION_MODELS,
  ConversionError,
)
from inception_jax.conversion.slim import SLIM_MODELS, from_slim
from inception_jax.conversion.store import save
from inception_jax.conversion.torchvision import from_torchvision


def define_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_enum("from", None, SOURCES, "Where the weights come from.", flag_values=fv)
  flags.DEFINE_enum(
    "model",
    None,
    sorted(set(TORCHVISION_MODELS) | set(KERAS_MODELS) | set(SLIM_MODELS)),
    "Ours: slim's inception_v1 / inception_v2 / inception_v3 are googlenet_bn / bn_inception / "
    "inception_v3.",
    flag_values=fv,
  )
  flags.DEFINE_string(
    "input",
    None,
    "torchvision: .pth/.pt state_dict; keras: .keras or .h5 file; slim: TF checkpoint prefix "
    "(e.g. inception_v3.ckpt) or directory.",
    flag_values=fv,
  )
  flags.DEFINE_string(
    "output", None, "Directory to write (state/ + convert_meta.json).", flag_values=fv
  )
  flags.DEFINE_bool(
    "transform_input",
    True,
    "torchvision only: map mean/std-normalised input to [-1, 1] first (torchvision's setting "
    "for its published weights).",
    flag_values=fv,
  )
  flags.DEFINE_bool(
    "drop_background",
    False,
    "slim only: drop class 0 (background) of the 1001, giving 1000 classes in TFDS "
    "imagenet2012's label order.",
    flag_values=fv,
  )
  flags.DEFINE_bool("force", False, "Overwrite a non-empty output directory.", flag_values=fv)
  for name in ("from", "model", "input", "output"):
    flags.mark_flag_as_required(name, flag_values=fv)


def main(argv: Sequence[str]) -> int:
  """argv: [program, --flag=value, ...]. Returns the exit status (2: bad input, with why)."""
  f, rest = cli.parse(define_flags, argv, __doc__)
  if rest:
    print(f"error: unexpected arguments {rest}; every input is a --flag", file=sys.stderr)
    return 2
  source = f["from"].value
  try:
    if source == "torchvision":
      model, variables = from_torchvision(f.input, f.model, transform_input=f.transform_input)
    elif source == "slim":
      model, variables = from_slim(f.input, f.model, drop_background=f.drop_background)
    else:
      model, variables = from_keras(f.input, f.model)
    out = save(f.output, f.model, model, variables, source=f"{source}:{f.input}", force=f.force)
  except (ConversionError, FileExistsError, extras.MissingDependencyError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"]))
  print(f"wrote {f.model} ({model.num_classes} classes, {n:,} parameters) from {source} to {out}")
  return 0


if __name__ == "__main__":
  cli.run(main)
