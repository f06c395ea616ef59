"""Input-pipeline throughput: how many training images per second the host can prepare.

`benchmark_input` builds the training iterator (everything the trainer gets: decode, crop, resize,
flip, and with preprocess distort_on="host" the distortions and scaling; batching), warms it up,
then times `batches` batches. Besides wall-clock images/s it reports the process CPU time per
image (`cpu_ms_per_image` = `host_cpu_ms_per_image`), which tells what a machine with no other
load would reach (about `cpus / cpu_seconds_per_image`) when the measuring machine is shared.

With distort_on="device" (the default) the distortions and the input scaling run in the train
step (`device_augment.apply`); `device_ms_per_image` times that jitted function alone on the
current JAX backend, on the last batch, after the host timing (None with distort_on="host").
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from collections.abc import Mapping
from typing import Any

import jax

from inception_jax.data import device_augment, pipeline

# What the "plain" comparison pipeline leaves out: the photometric distortions and the random
# choice of interpolation (decode, random crop, resize, flip remain).
PLAIN = {"color_distortion": False, "random_interpolation": False}


def _cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def _device_seconds(images, preprocess, repeats: int) -> float:
  """Median seconds of the jitted `device_augment.apply` on `images` (compiled first)."""
  fn = jax.jit(
    lambda x, step: device_augment.apply(x, device_augment.step_key(0, step), preprocess)
  )
  x = jax.device_put(images)
  jax.block_until_ready(fn(x, 0))
  times = []
  for step in range(1, repeats + 1):
    start = time.perf_counter()
    jax.block_until_ready(fn(x, step))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


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
  all_on_host: bool = False,
  device_repeats: int = 10,
) -> dict[str, Any]:
  """Times the training pipeline; returns images_per_sec, images, cpus, dataset and more.

  all_on_host: the old pipeline (preprocess distort_on="host"), whatever `preprocess` says.
  """
  preprocess = dict(preprocess or {})
  if all_on_host:
    preprocess["distort_on"] = "host"
  options = device_augment.resolve(preprocess)
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
    batch = next(it)
  wall = time.perf_counter() - start
  cpu = _cpu_seconds() - cpu
  images = batches * batch_size
  del it  # stops tf.data's threads before the device timing
  device_ms = None
  if options["distort_on"] == "device":
    device_ms = 1000 * _device_seconds(batch["image"], preprocess, device_repeats) / batch_size
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
    "host_cpu_ms_per_image": round(1000 * cpu / images, 3),
    "device_ms_per_image": None if device_ms is None else round(device_ms, 4),
    "distort_on": options["distort_on"],
    "bytes_per_image": int(batch["image"][0].nbytes),
    "backend": jax.default_backend(),
    "preprocess": preprocess,
    "on_corrupt": on_corrupt,
  }
