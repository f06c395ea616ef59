"""Full scale: the command of every row and the device-hours each trained row needs."""

from __future__ import annotations

from pathlib import Path

from inception_jax.sweeps import report
from inception_jax.sweeps.spec import IMAGENET_TRAIN_EXAMPLES, Sweep

# ------------------------------------------------------------------------------------------------
# Full scale: commands and device-hours.
# ------------------------------------------------------------------------------------------------
# Assumed sustained training throughput of one accelerator, in multiply-adds per second: no
# measured full-size figure exists in this repository yet (docs/PERFORMANCE.md; this session had
# no GPU). 5e13 MAC/s = 100 TFLOP/s, about 10% of an H100's dense bfloat16 peak, a usual
# utilisation for Inception's many small convolutions. Training costs about 3x the forward
# multiply-adds (forward + backward). Pass --images_per_sec with a measured figure to replace it.
DEFAULT_DEVICE_MACS_PER_SEC = 5.0e13


def images_per_sec(
  macs_per_image: int, device_macs_per_sec: float = DEFAULT_DEVICE_MACS_PER_SEC
) -> float:
  return device_macs_per_sec / (3 * macs_per_image)


def full_scale_plan(
  sweep: Sweep,
  workdir: str,
  images_per_second: float | None = None,
  device_macs_per_sec: float = DEFAULT_DEVICE_MACS_PER_SEC,
) -> str:
  """The commands of every row and the device-hours each trained row needs."""
  lines = [
    f"# {sweep.name} at scale {sweep.scale}: commands and device-hours",
    "",
    "| row | epochs | images/s/device | device-hours | command |",
    "|---|---|---|---|---|",
  ]
  total = 0.0
  for name, v in sweep.variants().items():
    cmd = report.command(sweep, v, Path(workdir))
    if not v.trained:
      lines.append(f"| {name} | eval | | | `{cmd}` |")
      continue
    config = sweep.config(name)
    macs, _ = report.model_cost(config, report.num_classes(config))
    ips = images_per_second or images_per_sec(macs, device_macs_per_sec)
    examples = IMAGENET_TRAIN_EXAMPLES if config.dataset == "imagenet2012" else 50_000
    steps = config.num_train_steps if config.num_train_steps > 0 else None
    images = steps * config.batch_size if steps else config.num_epochs * examples
    hours = images / ips / 3600 * len(sweep.seeds_of(name))
    total += hours
    lines.append(f"| {name} | {images / examples:.0f} | {ips:.0f} | {hours:.0f} | `{cmd}` |")
  lines += [
    "",
    f"Total: {total:.0f} device-hours (training only; "
    + (
      "measured throughput"
      if images_per_second
      else f"throughput assumed from {device_macs_per_sec:.2g} multiply-adds/s per device, "
      "3x forward cost per training image; pass --images_per_sec to use a measured figure"
    )
    + ").",
  ]
  return "\n".join(lines)
