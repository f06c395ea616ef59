"""Benchmarks: python -m experiments.benchmark SUBCOMMAND [flags]

  python -m experiments.benchmark input --dataset=folder:/tmp/inet --split=train \\
      --image_size=224 --batches=40 [--all_on_host] --format=json
  python -m experiments.benchmark train --model=inception_v3 --batch_size=8 --image_size=299 \\
      --steps=5 [--dtype=bfloat16] [--fast_conv=auto|on|off] [--peers=torch,keras --rounds=3] \\
      --format=json

Subcommands live in SUBCOMMANDS (name -> (define_flags, run)); each `run(flags)` returns a dict
that is printed as one JSON object (--format=json) or as `key: value` lines.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from absl import flags

from inception_jax import cli, models, speed


def _define_input_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_string("dataset", "digits", "TFDS name, folder:PATH or digits.", flag_values=fv)
  flags.DEFINE_string("split", "train", "The split to read.", flag_values=fv)
  flags.DEFINE_string("data_dir", None, "TFDS data directory.", flag_values=fv)
  flags.DEFINE_integer("image_size", 224, "Output image size.", flag_values=fv)
  flags.DEFINE_integer("batches", 20, "Timed batches (after warm-up).", flag_values=fv)
  flags.DEFINE_integer("batch_size", 64, "Images per batch.", flag_values=fv)
  flags.DEFINE_integer("warmup", 5, "Batches before timing.", flag_values=fv)
  flags.DEFINE_bool(
    "plain",
    False,
    "Decode, crop, resize, flip only: no colour distortion or random interpolation (the "
    "comparison pipeline).",
    flag_values=fv,
  )
  flags.DEFINE_bool(
    "all_on_host",
    False,
    "The old pipeline (preprocess distort_on='host'): distortions and scaling in tf.data, float32 "
    "batches; the default ships uint8 and times the device half separately.",
    flag_values=fv,
  )
  flags.DEFINE_enum(
    "on_corrupt",
    "fail",
    ["fail", "skip"],
    "skip: each example decoded in its own dataset, empty slots for unreadable images (the "
    "pipeline of --config.on_corrupt=skip).",
    flag_values=fv,
  )
  flags.DEFINE_string(
    "preprocess",
    "{}",
    'JSON dict of preprocessing overrides, e.g. \'{"color_impl": "tf"}\'.',
    flag_values=fv,
  )


def _run_input(f: flags.FlagValues) -> dict[str, Any]:
  # tf.data: imported here, so that `train` runs where TensorFlow is not installed (GPU machines).
  from inception_jax.data import throughput

  preprocess = dict(throughput.PLAIN) if f.plain else {}
  preprocess.update(json.loads(f.preprocess))
  return throughput.benchmark_input(
    f.dataset,
    f.split,
    image_size=f.image_size,
    batches=f.batches,
    batch_size=f.batch_size,
    warmup=f.warmup,
    data_dir=f.data_dir,
    preprocess=preprocess,
    on_corrupt=f.on_corrupt,
    all_on_host=f.all_on_host,
  )


def _define_train_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_string(
    "model", "inception_v3", "A model name (inception_jax.models).", flag_values=fv
  )
  flags.DEFINE_integer("batch_size", 8, "Images per step.", flag_values=fv)
  flags.DEFINE_integer("image_size", None, "Default: the model's own.", flag_values=fv)
  flags.DEFINE_integer("steps", 5, "Timed steps (after a warm-up step).", flag_values=fv)
  flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.", flag_values=fv)
  flags.DEFINE_enum(
    "fast_conv",
    None,
    ["auto", "on", "off"],
    "The CPU convolution fast path (default: $INCEPTION_JAX_FAST_CONV or auto).",
    flag_values=fv,
  )
  flags.DEFINE_string(
    "cache_dir",
    None,
    "Persistent compilation cache ('none': off; default: $INCEPTION_JAX_COMPILATION_CACHE or "
    "~/.cache/inception_jax/jax_cache).",
    flag_values=fv,
  )
  flags.DEFINE_bool(
    "peak", True, "Measure the matrix-product peak (--nopeak: skip).", flag_values=fv
  )
  flags.DEFINE_list(
    "peers",
    [],
    "Peers (torch, keras) to run side by side, each in a fresh process, interleaved with ours "
    "for --rounds rounds; prints medians.",
    flag_values=fv,
  )
  flags.DEFINE_integer("rounds", 3, "Rounds of the side-by-side comparison.", flag_values=fv)
  flags.DEFINE_string(
    "variants",
    "",
    'With --peers: JSON {"name": {"ENV_VAR": "value"}} of our variants (e.g. fast conv off, '
    "XLA_FLAGS) to A/B in the same rounds.",
    flag_values=fv,
  )


# --fast_conv: the kernels `models.create` gives the model.
FAST_CONV_KERNELS = {"auto": "auto", "on": "xla_cpu", "off": "standard"}


def _run_train(f: flags.FlagValues) -> dict[str, Any]:
  if f.fast_conv:  # for the subprocesses of --peers / --variants runs too
    os.environ["INCEPTION_JAX_FAST_CONV"] = f.fast_conv
  mode = os.environ.get("INCEPTION_JAX_FAST_CONV", "auto").strip().lower() or "auto"
  if mode not in FAST_CONV_KERNELS:
    raise ValueError(f"--fast_conv / INCEPTION_JAX_FAST_CONV must be auto, on or off; got {mode!r}")
  size = f.image_size or models.default_image_size(f.model)
  if f.peers or f.variants:
    return speed.compare(
      f.model,
      f.batch_size,
      size,
      f.steps,
      rounds=f.rounds,
      peers=tuple(f.peers),
      dtype=f.dtype,
      variants=json.loads(f.variants) if f.variants else None,
      log=lambda line: print(line, file=sys.stderr, flush=True),
    )
  return speed.benchmark_train(
    f.model,
    f.batch_size,
    size,
    steps=f.steps,
    dtype=f.dtype,
    peak=f.peak,
    cache_dir=f.cache_dir,
    overrides={"kernels": FAST_CONV_KERNELS[mode]},
  )


SUBCOMMANDS: dict[
  str, tuple[Callable[[flags.FlagValues], None], Callable[[flags.FlagValues], dict[str, Any]]]
] = {
  "input": (_define_input_flags, _run_input),
  "train": (_define_train_flags, _run_train),
}


def main(argv: Sequence[str]) -> int:
  """argv: [program, SUBCOMMAND, --flag=value, ...]."""
  if len(argv) < 2 or argv[1] not in SUBCOMMANDS:
    print(
      f"usage: {__doc__.splitlines()[0]}; SUBCOMMAND: {', '.join(SUBCOMMANDS)}", file=sys.stderr
    )
    return 2
  define, run = SUBCOMMANDS[argv[1]]

  def define_all(fv: flags.FlagValues) -> None:
    define(fv)
    flags.DEFINE_enum("format", "text", ["json", "text"], "Output format.", flag_values=fv)

  f, rest = cli.parse(define_all, [f"{argv[0]} {argv[1]}", *argv[2:]], __doc__)
  if rest:
    print(f"error: unexpected arguments {rest}", file=sys.stderr)
    return 2
  try:
    result = run(f)
  except speed.PeerNotFoundError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if f.format == "json":
    print(json.dumps(result))
  else:
    for key, value in result.items():
      print(f"{key}: {value}")
  sys.stdout.flush()
  return 0


if __name__ == "__main__":
  cli.run(main)
