"""Input-pipeline throughput: how many training images per second the host can prepare.

`benchmark_input` builds the training iterator (decode, crop, resize, flip, distortions, batching:
everything the trainer gets), warms it up, then times `batches` batches. Besides wall-clock
images/s it reports the process CPU time per image, which tells what a machine with no other load
would reach (about `cpus / cpu_seconds_per_image`) when the measuring machine is shared.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Mapping
from typing import Any

from inception_jax.data import pipeline

# What the "plain" comparison pipeline leaves out: the photometric distortions and the random
# choice of interpolation (decode, random crop, resize, flip remain).
PLAIN = {"color_distortion": False, "random_interpolation": False}


def _cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def benchmark_input(
  dataset: str,
  split: str = "train",
  *,
  image_size: int = 224,
  batches: int = 20,
  batch_size: int = 64,
  warmup: int = 5,
  data_dir: str | None = None,
  preprocess: Mapping[str, Any] | None = None,
  seed: int = 0,
  on_corrupt: str = "fail",
) -> dict[str, Any]:
  """Times the training pipeline; returns images_per_sec, images, cpus, dataset and more."""
  it = pipeline.create_train_iterator(
    dataset,
    split,
    data_dir,
    global_batch_size=batch_size,
    image_size=image_size,
    seed=seed,
    preprocess=preprocess,
    process_index=0,
    process_count=1,
    on_corrupt=on_corrupt,
  )
  for _ in range(warmup):
    next(it)
  cpu, start = _cpu_seconds(), time.perf_counter()
  for _ in range(batches):
    next(it)
  wall = time.perf_counter() - start
  cpu = _cpu_seconds() - cpu
  images = batches * batch_size
  cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return {
    "images_per_sec": round(images / wall, 1),
    "images": images,
    "cpus": cpus,
    "dataset": dataset,
    "split": split,
    "image_size": image_size,
    "batch_size": batch_size,
    "seconds": round(wall, 3),
    "cpu_ms_per_image": round(1000 * cpu / images, 3),
    "preprocess": dict(preprocess or {}),
    "on_corrupt": on_corrupt,
  }
