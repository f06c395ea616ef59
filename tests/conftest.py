"""Test-session setup shared by every test file."""

import importlib.util

# torchvision imports torch._dynamo, which loads triton's bundled LLVM. Loaded after jaxlib's and
# TensorFlow's LLVM (as happens when an xdist worker runs data tests before the parity tests), that
# segfaults (seen with torch 2.14.1 / torchvision 0.29.1). Loading it first is safe, so the parity
# extra, where installed, is imported before anything else.
if importlib.util.find_spec("torchvision") is not None:
  import torchvision  # noqa: F401


def pytest_collection_modifyitems(config, items):
  """Tests marked `cpu_only` (XLA:CPU compiler options, compiled HLO text) are skipped on other
  backends, saying so."""
  import jax
  import pytest

  backend = jax.default_backend()
  if backend == "cpu":
    return
  skip = pytest.mark.skip(reason=f"cpu_only: tests XLA:CPU, and JAX's backend is {backend}")
  for item in items:
    if "cpu_only" in item.keywords:
      item.add_marker(skip)
