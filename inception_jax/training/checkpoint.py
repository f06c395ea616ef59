"""Orbax checkpoints of a training run: asynchronous saves, the last N kept, saves on preemption,
resumption from the workdir, and weights to start from (`config.init_from`).

Layout: WORKDIR/checkpoints/<step>/{state, meta}. `state` is the train state as a nested dict of
arrays (flax.serialization.to_state_dict); `meta` is JSON naming the model and the data position.
Orbax writes each step to a temporary folder and renames it when complete, so a run killed while
saving leaves the previous checkpoint intact and the half-written one is ignored.

Checkpoints are never dropped silently: a checkpoint that cannot be read, or that belongs to
another model or configuration, raises CheckpointError naming it, instead of starting afresh over
it (the run would otherwise overwrite the older, valid checkpoints as it goes).
"""

import gc
import json
import logging
import os
import signal
import sys
import tempfile
import time
import types
from typing import Any

import flax.serialization
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from inception_jax.errors import CheckpointError

STATE, META = "state", "meta"
# Orbax warnings that every successful restore of a Composite checkpoint prints (the item is
# restored by a second call; the metadata file is one Orbax itself does not write for it).
ORBAX_FALSE_ALARMS = (
  "was found in the checkpoint, but could not be restored",
  "Metadata file does not exist",
)
_DETAIL_CHARS = 300  # of an Orbax/TensorStore error kept in a CheckpointError's message


class _OrbaxFalseAlarms(logging.Filter):
  """Drops the ORBAX_FALSE_ALARMS warnings of Orbax; every other record passes."""

  def filter(self, record: logging.LogRecord) -> bool:
    if "orbax" not in record.pathname:
      return True
    message = record.getMessage()
    return not any(alarm in message for alarm in ORBAX_FALSE_ALARMS)


def quiet_orbax_false_alarms() -> None:
  """Installs the filter on the logger Orbax writes through (absl's), once."""
  for name in ("absl", "orbax"):
    logger = logging.getLogger(name)
    if not any(isinstance(f, _OrbaxFalseAlarms) for f in logger.filters):
      logger.addFilter(_OrbaxFalseAlarms())


quiet_orbax_false_alarms()


def _short(error: BaseException) -> str:
  """The first line of an error, cut to a few hundred characters; the whole error goes to the
  log (TensorStore errors carry a specification of about 200 lines)."""
  # After a failed array read, TensorStore reads still in flight finish on their threads and
  # each prints a traceback ('Event loop is closed': Orbax's loop is gone) straight to stderr,
  # outside Python's hooks. Letting them finish first keeps the message the last thing shown.
  time.sleep(0.5)
  logging.error("checkpoint error detail: %s", error)
  text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
  # Orbax appends the repr of a bound method ("See full TensorStore details: <bound method ...");
  # the details themselves are in the log.
  text = text.split(" See full TensorStore details")[0]
  if len(text) > _DETAIL_CHARS:
    text = text[:_DETAIL_CHARS] + " ... (full error in the log)"
  return text


class _CapturedStderr:
  """File descriptor 2 redirected to a temporary file while Orbax reads a checkpoint.

  A failed read of a corrupt checkpoint makes TensorStore's threads and Orbax's coroutines print
  hundreds of lines of tracebacks straight to the process's stderr (outside Python's logging);
  with the descriptor redirected, they land in the file instead. `settle()` lets them finish
  (and collects the abandoned coroutines, which would otherwise print at interpreter exit);
  `stop()` puts stderr back and returns what was captured. Where stderr has no descriptor,
  nothing is captured."""

  def __init__(self):
    self._saved: int | None = None
    self._file = None
    try:
      sys.stderr.flush()
      self._saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
      return
    self._file = tempfile.TemporaryFile()
    os.dup2(self._file.fileno(), 2)

  @staticmethod
  def settle() -> None:
    """Waits for the failed read's threads, and closes Orbax's abandoned read coroutines now
    (left for the interpreter's exit, each prints a traceback there, after our message)."""
    time.sleep(0.3)
    for obj in gc.get_objects():
      if (
        isinstance(obj, types.CoroutineType)
        and "orbax" in obj.cr_code.co_filename
        and "read" in obj.cr_code.co_name
        and obj.cr_frame is not None
        and not obj.cr_running
      ):
        try:
          obj.close()
        except Exception:  # noqa: BLE001 - its output is captured; the read failed anyway
          pass
    gc.collect()  # their futures' "exception was never retrieved" reports come now, captured

  def stop(self) -> str:
    if self._saved is None:
      return ""
    try:
      sys.stderr.flush()
    except (OSError, ValueError):
      pass
    os.dup2(self._saved, 2)
    os.close(self._saved)
    self._saved = None
    self._file.seek(0)
    text = self._file.read().decode("utf-8", "replace")
    self._file.close()
    return text

  def replay(self) -> None:
    """Puts stderr back and writes what was captured to it (real warnings stay visible; the
    ORBAX_FALSE_ALARMS lines are dropped)."""
    text = self.stop()
    kept = [
      line
      for line in text.splitlines(keepends=True)
      if not any(alarm in line for alarm in ORBAX_FALSE_ALARMS)
    ]
    if kept:
      sys.stderr.write("".join(kept))
      sys.stderr.flush()


def absolute(path: str | epath.PathLike) -> epath.Path:
  """Orbax refuses relative paths ("Checkpoint path should be absolute"): local paths are made
  absolute against the current directory; cloud paths (gs://...) are kept as they are."""
  p = epath.Path(path)
  return p if "://" in str(path) else epath.Path(os.path.abspath(os.path.expanduser(str(path))))


def _abstract(tree: Any, sharding: jax.sharding.Sharding | None = None) -> Any:
  """ShapeDtypeStructs to restore into, from arrays (or abstract arrays) of the same layout.

  Every leaf carries a sharding on the current devices: its own, or `sharding` (default: replicated
  over all devices) where it has none. Orbax would otherwise take the sharding stored in the
  checkpoint, i.e. the devices of the run that saved it, and fail on any other cluster shape.
  """
  if sharding is None:
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

  def leaf(x):
    own = getattr(x, "sharding", None)
    return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=own or sharding)

  return jax.tree.map(leaf, tree)


# Words of Orbax / JAX errors about devices and shardings rather than about the bytes on disk.
_TOPOLOGY_WORDS = ("topology", "sharding", "mesh")


def _unreadable(path: epath.Path, e: Exception, steps: list[int]) -> CheckpointError:
  """CheckpointError for a failed restore: "corrupt" only when the failure is not about devices."""
  if any(word in str(e).lower() for word in _TOPOLOGY_WORDS):
    return CheckpointError(
      f"checkpoint {path} could not be placed on this run's devices ({_short(e)}). The "
      "checkpoint is "
      "not known to be damaged; it was left untouched. Pass abstract arrays sharded on the "
      "current mesh to restore() (the trainer does)."
    )
  return CheckpointError(
    f"checkpoint {path} is corrupt: its arrays cannot be read "
    f"({_short(e)}). Steps present: {steps}. Move it away to resume from an "
    "older one; it was left untouched."
  )


def _shape(x: Any) -> tuple[int, ...]:
  return tuple(getattr(x, "shape", None) or np.shape(x))


def tree_differences(
  expected: Any, found: Any, key=jax.tree_util.keystr
) -> tuple[list[str], list[str], list[str]]:
  """(missing, mis-shaped, unexpected) leaf keys of `found` against `expected`, in expected's
  order (then found's); `key` names a leaf from its path. The one tree comparison of the
  project: resumption checks it, and init_from (transfer.plan_init) decides what to load with it."""
  flat_expected = {key(p): v for p, v in jax.tree_util.tree_leaves_with_path(expected)}
  flat_found = {key(p): v for p, v in jax.tree_util.tree_leaves_with_path(found)}
  missing = [k for k in flat_expected if k not in flat_found]
  misshaped = [
    k for k, v in flat_expected.items() if k in flat_found and _shape(flat_found[k]) != _shape(v)
  ]
  unexpected = [k for k in flat_found if k not in flat_expected]
  return missing, misshaped, unexpected


def _shape_mismatches(expected: Any, found: Any) -> list[str]:
  """'path: expected shape vs found shape' for every leaf that differs (or is missing)."""
  missing, misshaped, unexpected = tree_differences(expected, found)
  flat_expected = {
    jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_leaves_with_path(expected)
  }
  flat_found = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_leaves_with_path(found)}
  problems = []
  for key, value in flat_expected.items():
    if key in missing:
      problems.append(f"{key}: missing")
    elif key in misshaped:
      problems.append(f"{key}: expected {_shape(value)}, found {_shape(flat_found[key])}")
  problems += [f"{key}: unexpected" for key in unexpected]
  return problems


class Checkpointer:
  """CheckpointManager for one workdir. `meta` (a JSON dict) is checked on restore: every key
  in `compatible_keys` must match the running configuration."""

  def __init__(
    self,
    workdir: str,
    max_to_keep: int = 3,
    async_save: bool = True,
    compatible_keys: tuple[str, ...] = ("model", "model_overrides", "num_classes"),
    create: bool = True,
  ):
    self.directory = absolute(workdir) / "checkpoints"
    self.compatible_keys = compatible_keys
    options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep,
      create=create,
      enable_async_checkpointing=async_save,
      cleanup_tmp_directories=True,
    )
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=(STATE, META))
    self._stop_requested = False
    self._last_saved: int | None = None
    suffix = "" if jax.process_index() == 0 else f".process{jax.process_index()}"
    # Where a failed restore writes the full error (the message names it).
    self.error_log = self.directory.parent / f"checkpoint_error{suffix}.log"

  # -- Saving -----------------------------------------------------------------------------------
  def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
    """Starts an asynchronous save of `state` at `step` (waits for the previous one first)."""
    if step == self._last_saved or step in self.manager.all_steps():
      return
    self._last_saved = step
    self.manager.save(
      step,
      args=ocp.args.Composite(
        **{
          STATE: ocp.args.StandardSave(flax.serialization.to_state_dict(state)),
          META: ocp.args.JsonSave(meta),
        }
      ),
      force=True,
    )

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()

  # -- Restoring --------------------------------------------------------------------------------
  def latest_step(self) -> int | None:
    self._check_no_unreadable_steps()
    return self.manager.latest_step()

  def _check_no_unreadable_steps(self) -> None:
    """Step folders Orbax does not list (e.g. renamed by hand) would be overwritten: refuse."""
    if not self.directory.exists():
      return
    self.manager.reload()
    listed = set(self.manager.all_steps())
    for child in self.directory.iterdir():
      if child.is_dir() and child.name.isdigit() and int(child.name) not in listed:
        raise CheckpointError(
          f"checkpoint folder {child} is not a valid Orbax checkpoint; "
          "move it away (or repair it) before rerunning in this workdir"
        )

  def restore(
    self, state: Any, meta: dict[str, Any], sharding: jax.sharding.Sharding | None = None
  ) -> tuple[Any, dict[str, Any]] | None:
    """The latest checkpoint restored into `state`'s structure and sharding, or None if the
    workdir has none. Leaves of `state` without a sharding get `sharding` (default: replicated
    over all current devices), so a checkpoint saved on any number of processes and devices
    restores onto the current ones. Raises CheckpointError for a checkpoint that is corrupt or
    incompatible; for one that cannot be read, the message is a few lines and the full error
    (with what Orbax and TensorStore printed) is in `self.error_log`."""
    captured = _CapturedStderr()
    try:
      restored = self._restore(state, meta, sharding)
    except CheckpointError as e:
      if e.__context__ is None:  # incompatible or mis-shaped: nothing was printed but ours
        captured.replay()
        raise
      captured.settle()
      printed = captured.stop()
      detail = (
        f"{e}\n\nThe error of Orbax / TensorStore:\n{e.__context__!r}\n\n"
        f"What they printed to stderr:\n{printed}"
      )
      log = self.error_log
      try:
        log.write_text(detail)
      except OSError:  # a read-only workdir: a local temporary file instead
        with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as f:
          f.write(detail)
        log = f.name
      raise CheckpointError(f"{e}\n(The full error is in {log}.)") from None
    except BaseException:
      captured.replay()
      raise
    captured.replay()
    return restored

  def _restore(
    self, state: Any, meta: dict[str, Any], sharding: jax.sharding.Sharding | None
  ) -> tuple[Any, dict[str, Any]] | None:
    step = self.latest_step()
    if step is None:
      return None
    path = self.directory / str(step)
    try:
      saved_meta = self.manager.restore(
        step, args=ocp.args.Composite(**{META: ocp.args.JsonRestore()})
      )[META]
    except Exception as e:  # noqa: BLE001 - any failure to read is reported with the path
      raise CheckpointError(
        f"checkpoint {path} is corrupt: its metadata cannot be read "
        f"({_short(e)}). "
        f"Steps present: {list(self.manager.all_steps())}. Move it away to "
        "resume from an older one; it was left untouched."
      ) from None
    differences = {
      k: (saved_meta.get(k), meta.get(k))
      for k in self.compatible_keys
      if saved_meta.get(k) != meta.get(k)
    }
    if differences:
      raise CheckpointError(
        f"checkpoint {path} is incompatible with this run: "
        + "; ".join(f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in differences.items())
        + ". Use another workdir, or fix the config; the checkpoint was left untouched."
      )
    template = flax.serialization.to_state_dict(state)
    try:
      stored = self.manager.item_metadata(step)[STATE]
      if stored is None:  # the manager has no handler for the item yet: read the tree directly
        with ocp.StandardCheckpointer() as checkpointer:
          stored = checkpointer.metadata(path / STATE).item_metadata
    except Exception as e:  # noqa: BLE001
      raise CheckpointError(
        f"checkpoint {path} is corrupt: {_short(e)}. Steps present: "
        f"{list(self.manager.all_steps())}. Move it away to resume from an "
        "older one; it was left untouched."
      ) from None
    if stored is not None:
      mismatches = _shape_mismatches(template, stored)
      if mismatches:
        raise CheckpointError(
          f"checkpoint {path} does not match this run's state: "
          + "; ".join(mismatches[:5])
          + ". It was left untouched."
        )
    try:
      restored = self.manager.restore(
        step,
        args=ocp.args.Composite(**{STATE: ocp.args.StandardRestore(_abstract(template, sharding))}),
      )[STATE]
    except Exception as e:  # noqa: BLE001
      raise _unreadable(path, e, list(self.manager.all_steps())) from None
    return flax.serialization.from_state_dict(state, restored), saved_meta

  # -- Preemption -------------------------------------------------------------------------------
  def install_sigterm_handler(self) -> None:
    """SIGTERM (what schedulers send before preemption) requests a save and a clean stop."""

    def handler(signum, frame):
      del frame
      logging.warning("received signal %d: saving a checkpoint and stopping", signum)
      self._stop_requested = True

    signal.signal(signal.SIGTERM, handler)

  def should_stop(self, step: int) -> bool:
    """A SIGTERM arrived, or (multi-host) JAX's coordination service reports a preemption."""
    return self._stop_requested or self.manager.reached_preemption(step)


def load_variables(path: str) -> dict[str, Any]:
  """{'params': ..., 'batch_stats': ...} from a training workdir, one of its step folders, or a
  checkpoint of variables alone (an Orbax pytree folder or a flax .msgpack file, e.g. converted
  weights). Arrays come back as host numpy arrays."""
  p = absolute(path)
  if not p.exists():
    raise CheckpointError(f"init_from checkpoint {path} does not exist")
  try:
    if p.is_file():
      tree = flax.serialization.msgpack_restore(p.read_bytes())
    else:
      if (p / "checkpoints").is_dir():
        p = p / "checkpoints"
      steps = sorted(int(c.name) for c in p.iterdir() if c.is_dir() and c.name.isdigit())
      if steps:
        p = p / str(steps[-1])
      if (p / STATE).is_dir():
        p = p / STATE
      with ocp.StandardCheckpointer() as checkpointer:
        tree = checkpointer.restore(p)
  except Exception as e:  # noqa: BLE001
    raise CheckpointError(
      f"init_from checkpoint {p} cannot be read (truncated or corrupt? copy or "
      f"convert it again): {_short(e)}"
    ) from None
  if not isinstance(tree, dict) or "params" not in tree:
    found = sorted(tree) if isinstance(tree, dict) else type(tree).__name__
    raise CheckpointError(
      f"init_from checkpoint {p} has no 'params' (found {found}): not a checkpoint of variables"
    )
  return {"params": tree["params"], "batch_stats": tree.get("batch_stats") or {}}


def save_variables(path: str | epath.PathLike, variables: dict[str, Any]) -> None:
  """Writes a checkpoint of variables alone ({'params': ..., 'batch_stats': ...}, as host numpy
  arrays) at `path`, a folder that must not exist yet: what `load_variables` reads (converted
  weights are written with it)."""
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(absolute(path), jax.tree.map(np.asarray, variables))
    checkpointer.wait_until_finished()


def _plain(tree: Any) -> Any:
  """Nested plain dicts (Orbax metadata trees are Mapping subclasses)."""
  if isinstance(tree, dict) or hasattr(tree, "items"):
    return {k: _plain(v) for k, v in tree.items()}
  return tree


def variables_metadata(path: str | epath.PathLike) -> dict[str, Any]:
  """The tree a checkpoint of variables holds, with array metadata (.shape, .dtype) as leaves;
  reads no array, so a tree can be checked against a model before anything is restored."""
  with ocp.StandardCheckpointer() as checkpointer:
    stored = checkpointer.metadata(absolute(path)).item_metadata
  if stored is None:
    raise CheckpointError(f"{path} holds no tree metadata: not a checkpoint of variables")
  return _plain(stored)


CONVERT_META = "convert_meta.json"  # beside the state/ folder of converted weights


def read_init_meta(path: str) -> dict[str, Any]:
  """The convert_meta.json of converted weights ({"model", "num_classes", "model_overrides",
  "source", ...}), or {} for a training run's checkpoint or bare variables."""
  p = absolute(path)
  meta_path = p / CONVERT_META
  if not p.is_dir() or not meta_path.exists():
    return {}
  try:
    meta = json.loads(meta_path.read_text())
  except ValueError as e:
    raise CheckpointError(
      f"init_from checkpoint {path}: {meta_path} is not valid JSON ({e}); convert the weights again"
    ) from e
  if not isinstance(meta, dict):
    raise CheckpointError(f"init_from checkpoint {path}: {meta_path} is not a JSON object")
  return meta
