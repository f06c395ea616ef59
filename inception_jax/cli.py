"""What the entry points share. Every one uses absl flags, spelled in snake_case.

- `parse(define, argv)` and `run(main)`: the entry points without `--config` (conversion, sweeps,
  speed, data.samples, data.check, experiments.benchmark, ...). `define(fv)` declares the flags on
  a FlagValues of their own that `main(argv)` parses with `parse`, so a test can call
  `main(["prog", "--flag=..."])` in process, and two entry points with a flag of the same name
  (`--batch_size`) can live in one process; `run(main)` is their `app.run`;
- `parse_flags`, the flags parser for `absl.app.run`: an unknown `--config.FIELD=...` ends the
  command with a message listing the valid fields and the closest match, not a traceback;
- `user_errors()`, a context that ends the command with the message alone for the project's
  errors about inputs (config, dataset, checkpoint, corrupt image, missing optional dependency),
  whose messages say what to fix.
"""

from __future__ import annotations

import contextlib
import difflib
import re
import sys
from collections.abc import Callable, Iterator, Sequence

import ml_collections
from absl import app, flags

from inception_jax import errors


def parse(
  define: Callable[[flags.FlagValues], None], argv: Sequence[str], doc: str = ""
) -> tuple[flags.FlagValues, list[str]]:
  """(flags, positional arguments) of argv (argv[0]: the program) for the flags `define` declares
  on a new FlagValues. `--help` prints `doc` and the flags and exits 0; a bad flag exits 2 with
  absl's message and the usage line."""
  values = flags.FlagValues()
  define(values)
  argv = list(argv) or ["prog"]
  if any(a in ("--help", "-h", "--helpfull", "-?") for a in argv[1:]):
    print((doc.strip() + "\n\n" if doc else "") + values.get_help())
    sys.exit(0)
  try:
    rest = values(argv)
  except flags.Error as e:
    print(f"error: {e}\nRun {argv[0]} --help for the flags.", file=sys.stderr)
    sys.exit(2)
  return values, rest[1:]


def run(main: Callable[[Sequence[str]], int | None]) -> None:
  """`app.run` for an entry point whose `main(argv)` parses its own flags with `parse`: absl's
  start-up (logging, exit status from main's return value) without absl's global flags parser."""

  def own_flags(argv: list[str]) -> list[str]:
    flags.FLAGS(argv[:1])  # absl's own flags at their defaults
    return argv

  app.run(main, flags_parser=own_flags)


def _fields(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """Every field path of a config: 'model', 'model_overrides.width_multiplier', ..."""
  paths = []
  for key, value in config.items():
    paths.append(prefix + key)
    if isinstance(value, ml_collections.ConfigDict):
      paths += _fields(value, prefix + key + ".")
  return paths


def unknown_field_message(
  config: ml_collections.ConfigDict, path: str, flag: str = "config"
) -> str | None:
  """None if `path` ('a.b.c') names a field of `config`; otherwise what is wrong: the valid
  fields where the path leaves the config, and the closest match."""
  node, parts = config, path.split(".")
  for i, part in enumerate(parts):
    if not isinstance(node, ml_collections.ConfigDict):
      return None  # below a leaf (a tuple, a dict value): ml_collections' own checks apply
    if part in node:
      node = node[part]
      continue
    parent = ".".join(parts[:i])
    valid = sorted(node.keys())
    candidates = [f for f in _fields(config) if f.split(".")[-1] == parts[-1]]
    if not candidates:
      close = difflib.get_close_matches(part, valid, n=1, cutoff=0.6)
      candidates = [f"{parent}.{c}" if parent else c for c in close]
    if not candidates:
      close = difflib.get_close_matches(path, _fields(config), n=1, cutoff=0.6)
      candidates = close
    lines = [
      f"unknown config field {path!r} in --{flag}.{path}: "
      f"{(flag + '.' + parent) if parent else flag} has no field {part!r}."
    ]
    if candidates:
      lines.append(f"Did you mean --{flag}.{candidates[0]}?")
    where = f"{flag}.{parent}" if parent else flag
    lines.append(f"Valid fields of {where}: {', '.join(valid) if valid else '(none)'}")
    return "\n".join(lines)
  return None


def _config_file(argv: Sequence[str], flag: str) -> str | None:
  for i, arg in enumerate(argv):
    match = re.match(rf"^--?{flag}=(.*)$", arg)
    if match:
      return match.group(1)
    if arg in (f"--{flag}", f"-{flag}") and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _overrides(argv: Sequence[str], flag: str) -> list[str]:
  found = []
  for arg in argv:
    match = re.match(rf"^--?{flag}\.([^=]+)", arg)
    if match:
      found.append(match.group(1))
  return found


def explain_config_overrides(argv: Sequence[str], flag: str = "config") -> str | None:
  """The message for the first `--config.FIELD` of argv that the config file lacks, or None."""
  path = _config_file(argv, flag)
  if path is None:
    return None
  try:
    from ml_collections.config_flags import config_flags  # the module: its parser class

    config = config_flags.ConfigFileFlagParser(name=flag).parse(path)
  except Exception:  # noqa: BLE001 - the config itself is broken: absl's own error says how
    return None
  for override in _overrides(argv, flag):
    message = unknown_field_message(config, override, flag)
    if message:
      return message
  return None


def parse_flags(argv: list[str]) -> list[str]:
  """absl flags parser (`app.run(main, flags_parser=cli.parse_flags)`): absl's own, except that
  an unknown --config.FIELD exits with `unknown_field_message` instead of a traceback."""
  try:
    return app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError, flags.Error) as e:
    message = explain_config_overrides(argv)
    if message is None:
      raise
    del e
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


# The project's input errors: the message alone says what to fix.
USER_ERRORS = (
  errors.ConfigError,
  errors.CheckpointError,
  errors.DatasetNotFoundError,
  errors.DatasetError,
  errors.CorruptImageError,
  errors.MissingDependencyError,
)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
  """Ends the command with its message (exit status 1) on the project's input errors."""
  try:
    yield
  except Exception as e:  # noqa: BLE001 - filtered just below
    if not isinstance(e, USER_ERRORS):
      raise
    print(f"error ({type(e).__name__}): {e}", file=sys.stderr)
    sys.exit(1)
