"""GoogLeNet (Inception v1) and Inception v2/v3 in JAX/Flax.

See docs/DESIGN.md for how the modules fit together.
"""

__version__ = "0.1.0"
