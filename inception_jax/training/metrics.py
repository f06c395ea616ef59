"""Training metrics output: WORKDIR/metrics.jsonl, TensorBoard events and the console line, with
each step's loss checked for NaN or infinity before anything is saved."""

from __future__ import annotations

import json
import logging
import time

import jax
import numpy as np
from etils import epath

from inception_jax.errors import NonFiniteLossError
from inception_jax.training import parallel


class MetricWriter:
  """Writes scalars to WORKDIR/metrics.jsonl and TensorBoard events (process 0 only)."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    self.path = epath.Path(workdir) / "metrics.jsonl"
    self._tb = None
    if enabled:
      import tensorflow as tf  # Only the event-file writer; TensorBoard itself is not needed.
      from tensorflow.core.framework import summary_pb2

      self._tf = tf
      self._scalar_metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
      )
      self._tb = tf.summary.create_file_writer(str(epath.Path(workdir) / "tensorboard"))

  def write(self, step: int, scalars: dict[str, float]) -> None:
    if not self.enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    with self.path.open("a") as f:
      f.write(json.dumps({"step": int(step), **scalars}) + "\n")
    with self._tb.as_default():
      for k, v in scalars.items():
        self._tf.summary.write(
          k, self._tf.constant(v, self._tf.float32), step=int(step), metadata=self._scalar_metadata
        )
    self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class TrainMetrics:
  """Per-step metrics kept on device until a log or checkpoint point, where each step's loss is
  checked: a NaN or infinite loss stops the run naming its step, before anything is saved.

  Throughput counts the steps after the first (whose time is mostly compilation); a line with
  the first step alone reports that step's own rate, compilation included, and says so.
  `skipped_images` (on_corrupt="skip") is the run's total, carried over on resume."""

  def __init__(
    self, writer: MetricWriter, batch_size: int, num_steps: int, skipped_images: int = 0
  ):
    self.writer, self.batch_size, self.num_steps = writer, batch_size, num_steps
    self.pending: list[tuple[int, dict]] = []
    self.train_seconds = 0.0
    self.timed_steps = 0  # pending steps whose time train_seconds holds
    self.first_step_seconds: float | None = None
    self.skipped_images = skipped_images
    self._tick = time.time()

  def add(self, step: int, metrics: dict, timed: bool = True) -> None:
    self.pending.append((step, metrics))
    self.timed_steps += timed

  def first_step_done(self, metrics: dict) -> None:
    """Waits for the first step (compilation included) and restarts the throughput clock."""
    jax.block_until_ready(metrics)
    self.first_step_seconds = time.time() - self._tick
    logging.info("first step (compilation included) took %.1fs", self.first_step_seconds)
    self.resume()

  def _seconds_per_step(self) -> tuple[float, str]:
    if self.timed_steps:
      return self.train_seconds / self.timed_steps, ""
    return self.first_step_seconds or self.train_seconds, " (first step, compilation included)"

  def pause(self) -> None:
    """Stops the throughput clock (evaluation, checkpointing)."""
    self.train_seconds += time.time() - self._tick

  def resume(self) -> None:
    self._tick = time.time()

  def flush(self) -> None:
    if not self.pending:
      return
    host = [(step, parallel.fetch(m)) for step, m in self.pending]  # waits for the steps to finish
    self.pause()
    for step, m in host:
      if not np.isfinite(m["train/loss"]):
        raise NonFiniteLossError(
          f"training loss is {m['train/loss']} at step {step} (ce {m['train/ce_loss']}, "
          f"aux {m['train/aux_loss']}, weight decay {m['train/weight_decay']}); stopping"
        )
    step = host[-1][0]
    scalars = {k: float(np.mean([m[k] for _, m in host])) for k in host[-1][1]}
    scalars["train/learning_rate"] = float(host[-1][1]["train/learning_rate"])
    skipped = ""
    if "train/skipped_images" in scalars:  # a running total, not a mean
      self.skipped_images += int(round(sum(float(m["train/skipped_images"]) for _, m in host)))
      scalars["train/skipped_images"] = self.skipped_images
      skipped = f" | skipped {self.skipped_images} unreadable" if self.skipped_images else ""
    seconds_per_step, note = self._seconds_per_step()
    scalars["train/images_per_sec"] = self.batch_size / max(seconds_per_step, 1e-9)
    self.writer.write(step, scalars)
    logging.info(
      "step %d/%d | loss %.4f (ce %.4f aux %.4f wd %.4f) | top1 %.3f | lr %.3g | "
      "%.1f img/s%s | ETA %s%s",
      step,
      self.num_steps,
      scalars["train/loss"],
      scalars["train/ce_loss"],
      scalars["train/aux_loss"],
      scalars["train/weight_decay"],
      scalars["train/top1"],
      scalars["train/learning_rate"],
      scalars["train/images_per_sec"],
      note,
      format_eta((self.num_steps - step) * seconds_per_step) if not note else "later",
      skipped,
    )
    self.pending, self.train_seconds, self.timed_steps = [], 0.0, 0
    self.resume()
