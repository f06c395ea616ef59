"""One error family: every error inception_jax raises on purpose is an `InceptionJaxError` that
keeps the built-in base its callers catch, and the modules raise these very classes."""

import inspect

import pytest

from inception_jax import cli, data, errors, extras
from inception_jax.training import checkpoint

BUILTIN_BASE = {
  errors.ConfigError: ValueError,
  errors.NonFiniteLossError: FloatingPointError,
  errors.CheckpointError: RuntimeError,
  errors.DatasetNotFoundError: FileNotFoundError,
  errors.DatasetError: ValueError,
  errors.CorruptImageError: ValueError,
  errors.ConversionError: ValueError,
  errors.MissingDependencyError: ModuleNotFoundError,
  errors.PeerNotFoundError: FileNotFoundError,
  errors.SweepInterrupted: RuntimeError,
}


def test_every_error_is_in_the_family_and_keeps_its_builtin_base():
  defined = {
    c for _, c in inspect.getmembers(errors, inspect.isclass) if c is not errors.InceptionJaxError
  }
  assert defined == set(BUILTIN_BASE)
  for cls, base in BUILTIN_BASE.items():
    assert issubclass(cls, errors.InceptionJaxError) and issubclass(cls, base), cls
    with pytest.raises(base):
      raise cls("message")


def test_modules_raise_the_family_s_classes():
  assert data.DatasetError is errors.DatasetError
  assert data.DatasetNotFoundError is errors.DatasetNotFoundError
  assert data.CorruptImageError is errors.CorruptImageError
  assert checkpoint.CheckpointError is errors.CheckpointError
  assert extras.MissingDependencyError is errors.MissingDependencyError
  with pytest.raises(errors.MissingDependencyError, match="pip install"):
    extras.require("inception_jax_no_such_module")
  assert errors.CorruptImageError("unreadable", "a.jpg").name == "a.jpg"


def test_cli_ends_on_the_family_s_input_errors(capsys):
  with pytest.raises(SystemExit) as exit_info, cli.user_errors():
    raise errors.ConfigError("set num_train_steps > 0")
  assert exit_info.value.code == 1
  assert "error (ConfigError): set num_train_steps > 0" in capsys.readouterr().err
  with pytest.raises(errors.NonFiniteLossError), cli.user_errors():  # a bug, not an input error
    raise errors.NonFiniteLossError("loss is nan")
