"""Weight import from torchvision, Keras and tf-slim, and the Orbax checkpoints it writes.

```python
from inception_jax import conversion
model, variables = conversion.from_torchvision(state_dict_or_path_or_module, "inception_v3")
model, variables = conversion.from_keras(model_or_weights_path, "inception_v3")
model, variables = conversion.from_slim("inception_v3.ckpt", "inception_v3")
conversion.save(directory, model_name, model, variables)  # Orbax checkpoint + convert_meta.json
model, variables = conversion.load(directory)             # validated against the architecture
```
Command line: `python -m inception_jax.conversion --from=torchvision|keras|slim --model=NAME
--input=FILE --output=DIR`. The returned model reproduces the source network's eval-mode logits
(torchvision: on its own mean/std-normalised input when transform_input is on; Keras: on [-1, 1]
input, before the softmax; slim: on [-1, 1] input, 1001 classes unless the background is dropped).
docs/CONVERT.md lists the conventions handled and the measured errors.

Modules: `mapping` (the layer order of each architecture and the checks every source shares),
`torchvision`, `keras`, `slim` (one per source), `store` (save / load) and `__main__` (the CLI).

Layers are matched by an explicit order written down for each architecture (torchvision's module
registration order, which is also the order in which Keras's `inception_v3.py` creates its
Conv2D/BatchNormalization pairs; slim's variable scopes by name), never by the order of a dict.
Every source tensor must be used exactly once and have the expected shape; otherwise a
`ConversionError` (a ValueError) names the first mismatching tensor and both shapes.

Checkpoint layout written by `save` (what `config.init_from` and `checkpoint.load_variables` read):
    DIR/state/              checkpoint.save_variables: {"params": ..., "batch_stats": ...}
    DIR/convert_meta.json   {"model", "num_classes", "model_overrides", "source", ...}
"""

from inception_jax.conversion.keras import from_keras, keras_creation_order
from inception_jax.conversion.mapping import (
  CONVENTION_FIELDS,
  KERAS_MODELS,
  META_FILE,
  SOURCES,
  STATE_DIR,
  TORCHVISION_MODELS,
  ConversionError,
)
from inception_jax.conversion.slim import SLIM_CLASSES, SLIM_MODELS, from_slim, slim_layers
from inception_jax.conversion.store import load, save
from inception_jax.conversion.torchvision import from_torchvision

__all__ = [
  "CONVENTION_FIELDS",
  "KERAS_MODELS",
  "META_FILE",
  "SLIM_CLASSES",
  "SLIM_MODELS",
  "SOURCES",
  "STATE_DIR",
  "TORCHVISION_MODELS",
  "ConversionError",
  "from_keras",
  "from_slim",
  "from_torchvision",
  "keras_creation_order",
  "load",
  "save",
  "slim_layers",
]
