"""Benchmarks: python -m experiments.benchmark SUBCOMMAND [flags]

  python -m experiments.benchmark input --dataset=folder:/tmp/inet --split=train \
      --image-size=224 --batches=40 --format=json

Subcommands live in SUBCOMMANDS (name -> (add_arguments, run)); each `run(args)` returns a dict
that is printed as one JSON object (--format=json) or as `key: value` lines.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable


def _add_input_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--dataset", default="digits", help="TFDS name, folder:PATH or digits")
  parser.add_argument("--split", default="train")
  parser.add_argument("--data-dir", default=None)
  parser.add_argument("--image-size", type=int, default=224)
  parser.add_argument("--batches", type=int, default=20, help="timed batches (after warm-up)")
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--warmup", type=int, default=5)
  parser.add_argument("--plain", action="store_true",
                      help="decode, crop, resize, flip only: no colour distortion or random "
                           "interpolation (the comparison pipeline)")
  parser.add_argument("--preprocess", default="{}",
                      help="JSON dict of preprocessing overrides, e.g. '{\"color_impl\": \"tf\"}'")


def _run_input(args: argparse.Namespace) -> dict[str, Any]:
  from inception_jax.data import benchmark
  preprocess = dict(benchmark.PLAIN) if args.plain else {}
  preprocess.update(json.loads(args.preprocess))
  return benchmark.benchmark_input(
      args.dataset, args.split, image_size=args.image_size, batches=args.batches,
      batch_size=args.batch_size, warmup=args.warmup, data_dir=args.data_dir,
      preprocess=preprocess)


SUBCOMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None],
                             Callable[[argparse.Namespace], dict[str, Any]]]] = {
    "input": (_add_input_arguments, _run_input),
}


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(prog="python -m experiments.benchmark",
                                   description=__doc__.splitlines()[0])
  subparsers = parser.add_subparsers(dest="command", required=True)
  for name, (add_arguments, _) in SUBCOMMANDS.items():
    sub = subparsers.add_parser(name)
    add_arguments(sub)
    sub.add_argument("--format", choices=["json", "text"], default="text")
  args = parser.parse_args(argv)
  result = SUBCOMMANDS[args.command][1](args)
  if args.format == "json":
    print(json.dumps(result))
  else:
    for key, value in result.items():
      print(f"{key}: {value}")
  sys.stdout.flush()


if __name__ == "__main__":
  main()
