"""Test-session setup shared by every test file."""

import importlib.util

# torchvision imports torch._dynamo, which loads triton's bundled LLVM. Loaded after jaxlib's and
# TensorFlow's LLVM (as happens when an xdist worker runs data tests before the parity tests), that
# segfaults (seen with torch 2.14.1 / torchvision 0.29.1). Loading it first is safe, so the parity
# extra, where installed, is imported before anything else.
if importlib.util.find_spec("torchvision") is not None:
  import torchvision  # noqa: F401
