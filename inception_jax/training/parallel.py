"""The one place the device mesh is built and batches are sharded.

Data parallelism over every device of every host: a one-axis mesh named `data`; parameters and
optimizer state are replicated (`replicated`), batches are split on their leading axis
(`batch_sharded`). Each host reads its own slice of the global batch and `shard_batch` assembles
the global array from the per-host slices. Multi-host runs start with `initialize_distributed`.
"""

import logging
import os
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def initialize_distributed(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
) -> None:
  """Joins a multi-process run; a no-op for a single process.

  Explicit arguments (e.g. several processes on localhost) are passed to
  jax.distributed.initialize. Without them, a cluster JAX recognises by itself (Cloud TPU VM pods,
  SLURM, Open MPI, Kubernetes, or JAX_COORDINATOR_ADDRESS set) is joined, and a plain machine stays
  single-process. CPU-only processes exchange collectives with gloo.
  """
  # Only the CPU client reads this; TPU and GPU keep their own interconnects.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if coordinator_address is not None or num_processes is not None or process_id is not None:
    jax.distributed.initialize(
      coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )
    return
  try:
    jax.distributed.initialize()
  except ValueError as e:  # No cluster detected: a single process.
    logging.info("single-process run (%s)", e)


def make_mesh(devices: list[Any] | None = None) -> Mesh:
  """A 1-D mesh named `data` over all devices of all processes (or the given ones)."""
  devices = jax.devices() if devices is None else devices
  return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Split on the leading (batch) axis over `data`."""
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh, what: str = "batch_size") -> None:
  """Raises unless the global batch splits evenly over the devices and the processes."""
  n = mesh.devices.size
  if global_batch_size % n:
    raise ValueError(
      f"{what}={global_batch_size} is not divisible by the number of devices "
      f"({n}); choose a multiple of {n}"
    )
  if global_batch_size % jax.process_count():
    raise ValueError(
      f"{what}={global_batch_size} is not divisible by the number of processes "
      f"({jax.process_count()})"
    )


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Global arrays from this host's slice of the batch (leading axis = B // process_count)."""
  sharding = batch_sharded(mesh)
  return jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch
  )


def fetch(tree: Any) -> Any:
  """Replicated device values to host numpy (works on every process of a multi-host run)."""

  def get(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return np.asarray(x.addressable_data(0))
    return np.asarray(x)

  return jax.tree.map(get, tree)


CACHE_ENV = "INCEPTION_JAX_COMPILATION_CACHE"
DEFAULT_CACHE_DIR = "~/.cache/inception_jax/jax_cache"


def enable_compilation_cache(
  cache_dir: str | None = None, min_compile_time_secs: float = 1.0, min_entry_size_bytes: int = -1
) -> str | None:
  """Turns on JAX's persistent compilation cache; returns the directory (None: left off).

  A second run of the same configuration then loads its executables from disk instead of
  compiling them (docs/PERFORMANCE.md has the figures). Call before the first compilation.
  cache_dir: None reads $INCEPTION_JAX_COMPILATION_CACHE, else DEFAULT_CACHE_DIR; "" or "none"
    leaves the cache off.
  min_compile_time_secs: only executables that took at least this long to compile are written.
  min_entry_size_bytes: -1 writes entries of any size.
  The key covers the program, the XLA flags, the backend and the jax/jaxlib versions, so a change
  to any of these compiles afresh. Keep the directory private: an entry is executable code.
  """
  if cache_dir is None:
    cache_dir = os.environ.get(CACHE_ENV, DEFAULT_CACHE_DIR)
  if not cache_dir or cache_dir.lower() == "none":
    return None
  cache_dir = os.path.abspath(os.path.expanduser(cache_dir))
  os.makedirs(cache_dir, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", cache_dir)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", int(min_entry_size_bytes))
  return cache_dir


def describe() -> str:
  """One line on the processes and devices of this run, for the logs."""
  return (
    f"process {jax.process_index()}/{jax.process_count()}, "
    f"{jax.local_device_count()} local / {jax.device_count()} global devices "
    f"({jax.devices()[0].platform}: {jax.devices()[0].device_kind}), pid {os.getpid()}"
  )
