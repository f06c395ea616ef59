"""Benchmarks: python -m experiments.benchmark SUBCOMMAND [flags]

  python -m experiments.benchmark input --dataset=folder:/tmp/inet --split=train \
      --image-size=224 --batches=40 [--all_on_host] --format=json
  python -m experiments.benchmark train --model=inception_v3 --batch-size=8 --image-size=299 \
      --steps=5 [--dtype=bfloat16] [--fast-conv=auto|on|off] [--peers=torch,keras --rounds=3] \
      --format=json

Subcommands live in SUBCOMMANDS (name -> (add_arguments, run)); each `run(args)` returns a dict
that is printed as one JSON object (--format=json) or as `key: value` lines.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any


def _add_input_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--dataset", default="digits", help="TFDS name, folder:PATH or digits")
  parser.add_argument("--split", default="train")
  parser.add_argument("--data-dir", default=None)
  parser.add_argument("--image-size", type=int, default=224)
  parser.add_argument("--batches", type=int, default=20, help="timed batches (after warm-up)")
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--warmup", type=int, default=5)
  parser.add_argument(
    "--plain",
    action="store_true",
    help="decode, crop, resize, flip only: no colour distortion or random "
    "interpolation (the comparison pipeline)",
  )
  parser.add_argument(
    "--all-on-host",
    "--all_on_host",
    dest="all_on_host",
    action="store_true",
    help="the old pipeline (preprocess distort_on='host'): distortions and scaling in tf.data, "
    "float32 batches; the default ships uint8 and times the device half separately",
  )
  parser.add_argument(
    "--on-corrupt",
    choices=["fail", "skip"],
    default="fail",
    help="skip: each example decoded in its own dataset, empty slots for "
    "unreadable images (the pipeline of --config.on_corrupt=skip)",
  )
  parser.add_argument(
    "--preprocess",
    default="{}",
    help="JSON dict of preprocessing overrides, e.g. '{\"color_impl\": \"tf\"}'",
  )


def _run_input(args: argparse.Namespace) -> dict[str, Any]:
  from inception_jax.data import throughput

  preprocess = dict(throughput.PLAIN) if args.plain else {}
  preprocess.update(json.loads(args.preprocess))
  return throughput.benchmark_input(
    args.dataset,
    args.split,
    image_size=args.image_size,
    batches=args.batches,
    batch_size=args.batch_size,
    warmup=args.warmup,
    data_dir=args.data_dir,
    preprocess=preprocess,
    on_corrupt=args.on_corrupt,
    all_on_host=args.all_on_host,
  )


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--model", default="inception_v3")
  parser.add_argument("--batch-size", type=int, default=8)
  parser.add_argument("--image-size", type=int, default=None, help="default: the model's own")
  parser.add_argument("--steps", type=int, default=5, help="timed steps (after a warm-up step)")
  parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
  parser.add_argument(
    "--fast-conv",
    choices=["auto", "on", "off"],
    default=None,
    help="the CPU convolution fast path (default: $INCEPTION_JAX_FAST_CONV or auto)",
  )
  parser.add_argument(
    "--cache-dir",
    default=None,
    help="persistent compilation cache ('none': off; default: "
    "$INCEPTION_JAX_COMPILATION_CACHE or ~/.cache/inception_jax/jax_cache)",
  )
  parser.add_argument("--no-peak", action="store_true", help="skip the matrix-product peak")
  parser.add_argument(
    "--peers",
    default="",
    help="comma-separated peers (torch, keras) to run side by side, each in a "
    "fresh process, interleaved with ours for --rounds rounds; prints medians",
  )
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument(
    "--variants",
    default="",
    help='with --peers: JSON {"name": {"ENV_VAR": "value"}} of our variants '
    '(e.g. fast conv off, XLA_FLAGS) to A/B in the same rounds',
  )


def _run_train(args: argparse.Namespace) -> dict[str, Any]:
  import os

  from inception_jax import benchmark, models

  if args.fast_conv:
    os.environ["INCEPTION_JAX_FAST_CONV"] = args.fast_conv
  size = args.image_size or models.default_image_size(args.model)
  if args.peers or args.variants:
    peers = tuple(p for p in args.peers.split(",") if p)
    variants = json.loads(args.variants) if args.variants else None
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    return benchmark.compare(
      args.model,
      args.batch_size,
      size,
      args.steps,
      rounds=args.rounds,
      peers=peers,
      dtype=args.dtype,
      variants=variants,
      log=log,
    )
  return benchmark.benchmark_train(
    args.model,
    args.batch_size,
    size,
    steps=args.steps,
    dtype=args.dtype,
    peak=not args.no_peak,
    cache_dir=args.cache_dir,
  )


SUBCOMMANDS: dict[
  str,
  tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], dict[str, Any]]],
] = {
  "input": (_add_input_arguments, _run_input),
  "train": (_add_train_arguments, _run_train),
}


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
    prog="python -m experiments.benchmark", description=__doc__.splitlines()[0]
  )
  subparsers = parser.add_subparsers(dest="command", required=True)
  for name, (add_arguments, _) in SUBCOMMANDS.items():
    sub = subparsers.add_parser(name)
    add_arguments(sub)
    sub.add_argument("--format", choices=["json", "text"], default="text")
  args = parser.parse_args(argv)
  from inception_jax import benchmark

  try:
    result = SUBCOMMANDS[args.command][1](args)
  except benchmark.PeerNotFoundError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  if args.format == "json":
    print(json.dumps(result))
  else:
    for key, value in result.items():
      print(f"{key}: {value}")
  sys.stdout.flush()


if __name__ == "__main__":
  main()
