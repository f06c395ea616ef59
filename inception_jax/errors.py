"""The project's one error family: every error it raises on purpose is an `InceptionJaxError`.

Each class also keeps the built-in base its callers catch (`except ValueError` still catches a
`ConfigError`), and each message says what was wrong and how to fix it. Raised before anything is
compiled wherever the problem can be seen that early.

| error | built-in base | raised for |
|---|---|---|
| `ConfigError` | ValueError | a training / evaluation config that cannot run |
| `NonFiniteLossError` | FloatingPointError | the training loss became NaN or infinite |
| `CheckpointError` | RuntimeError | a checkpoint that exists but cannot be used by this run |
| `DatasetNotFoundError` | FileNotFoundError | a dataset that is not where it was looked for |
| `DatasetError` | ValueError | a dataset that exists but cannot be used as asked |
| `CorruptImageError` | ValueError | an image that cannot be read or decoded (`.name` names it) |
| `ConversionError` | ValueError | a source that is not a checkpoint of the requested network |
| `MissingDependencyError` | ModuleNotFoundError | an optional dependency that is not installed |
| `PeerNotFoundError` | FileNotFoundError | an unknown peer benchmark, or its missing script |
| `SweepInterrupted` | RuntimeError | a sweep variant stopped before its last step |
"""


class InceptionJaxError(Exception):
  """Base of every error inception_jax raises on purpose."""


class ConfigError(InceptionJaxError, ValueError):
  """A configuration that cannot run; raised before anything is compiled."""


class NonFiniteLossError(InceptionJaxError, FloatingPointError):
  """The training loss became NaN or infinite."""


class CheckpointError(InceptionJaxError, RuntimeError):
  """A checkpoint that exists but cannot be used by this run."""


class DatasetNotFoundError(InceptionJaxError, FileNotFoundError):
  """The dataset is not where it was looked for; the message says what to put where."""


class DatasetError(InceptionJaxError, ValueError):
  """The dataset exists but cannot be used as asked (a missing split, empty or mismatched
  classes); the message says how to fix it."""


class CorruptImageError(InceptionJaxError, ValueError):
  """An image could not be read or decoded; the message names it (and `.name` holds it)."""

  def __init__(self, message: str, name: str | None = None):
    super().__init__(message)
    self.name = name


class ConversionError(InceptionJaxError, ValueError):
  """The source is not a checkpoint of the requested architecture (or not a checkpoint at all)."""


class MissingDependencyError(InceptionJaxError, ModuleNotFoundError):
  """An optional dependency is not installed; the message says which extra installs it."""


class PeerNotFoundError(InceptionJaxError, FileNotFoundError):
  """A requested peer is unknown or its script is missing; raised before anything runs."""


class SweepInterrupted(InceptionJaxError, RuntimeError):
  """A variant's training stopped before its last step (e.g. SIGTERM); rerun to resume."""
