"""Optional dependencies: importing one that is missing names the extra that installs it.

torch = extras.require("torch", "parity", "converting torchvision weights")
"""

import importlib
from types import ModuleType

from inception_jax.errors import MissingDependencyError

# setup.cfg's extras: which one installs each optional module.
EXTRA_OF = {"torch": "parity", "torchvision": "parity", "keras": "test", "h5py": "test"}


def require(module: str, extra: str | None = None, purpose: str = "this") -> ModuleType:
  """Imports `module`, or raises MissingDependencyError naming `pip install -e ".[extra]"`."""
  try:
    return importlib.import_module(module)
  except ModuleNotFoundError as e:
    if e.name != module.split(".")[0] and e.name != module:
      raise  # the module is there but one of its own imports failed: that is another problem
    extra = extra or EXTRA_OF.get(module.split(".")[0])
    how = (
      f'pip install -e ".[{extra}]" (from the repository root)'
      if extra
      else f"pip install {module}"
    )
    raise MissingDependencyError(
      f"{purpose} needs {module}, which is not installed. Install it with: {how}", name=module
    ) from None
