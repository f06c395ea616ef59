"""Frechet Inception Distance and Inception Score with pytorch-fid's network, in JAX.

```python
from inception_jax import fid
model, variables = fid.from_pytorch_fid("pt_inception-2015-12-05-6726825d.pth")
acts = fid.activations(images, model, variables)     # [N, H, W, 3] in [0, 1] or uint8 -> [N, 2048]
mu, sigma = fid.statistics(acts)                     # float64
score = fid.frechet_distance(mu, sigma, mu_ref, sigma_ref)
is_mean, is_std = fid.inception_score(fid.logits(images, model, variables), splits=10)
```
Modules: `network` (pytorch-fid's network, the input, sharded feature extraction), `scores`
(statistics, Frechet distance, Inception Score), `folders` (image folders, .npz statistics), `card`
(the protocol card), `compute` (`run`: the command line's work) and `__main__` (its flags).

Command line (docs in README.md, "FID and IS"):
`python -m inception_jax.fid --weights=pt_inception-2015-12-05-6726825d.pth A B`, where A and B are
folders of images or .npz statistics; `--save_stats A OUT.npz` writes A's statistics. Every score
is printed with a protocol card (also written as JSON, `--card`).

What is pytorch-fid's (0.3.0), and reproduced here:
  - the network: `models.InceptionV3FID` (its docstring names each difference from the
    classification Inception-v3), weights converted from `pt_inception-2015-12-05` by
    `conversion.from_torchvision`'s layer mapping; features are pool3 (`PreLogits`, 2048);
  - the input: images in [0, 1] (uint8 / 255, as torchvision's ToTensor), resized to 299x299 by
    bilinear interpolation with align_corners=False and no antialiasing (torch's
    `F.interpolate(..., mode="bilinear")`: source pixel (i + 0.5) * in / out - 0.5, clamped at 0),
    then scaled by 2 * x - 1. `resize="bilinear_antialias"` (jax.image.resize, triangle filter
    widened when downsampling) and `resize="none"` (299x299 input only) are explicit other choices;
  - the statistics: mean and `np.cov(rowvar=False)` of the activations in float64;
  - the distance: scipy.linalg.sqrtm of sigma1 @ sigma2; if that is not finite, 1e-6 is added to
    both diagonals and the root taken again; an imaginary part is dropped if the diagonal's is
    below 1e-3 (where pytorch-fid raises instead, the 1e-6 fallback is tried first:
    `frechet_distance`);
  - folders: files whose names end in pytorch-fid's lower-case extensions (bmp jpg jpeg pgm png ppm
    tif tiff webp), not recursive, sorted; each read with PIL and converted to RGB (grayscale,
    palette, RGBA...), which the card counts.
The Inception Score is the original code's (openai/improved-gan inception_score/model.py): the
1008-way softmax of pool3 @ W without the layer's bias (torch-fidelity's and torchmetrics'
`logits_unbiased`), `splits` consecutive parts [i * N // splits, (i + 1) * N // splits), and the
mean and standard deviation over the parts of exp(mean KL(p(y|x) || p(y))); computed in float64.

Sharding: the network runs in one jitted function over a one-axis mesh of every device of every
host (`parallel.make_mesh`); each host passes its own images, the batch is split over the devices,
the last batch is padded and carries a mask, and every host receives every image's activations
exactly once (the outputs are replicated). Folder images are resized on the host with the same
interpolation weights as the in-graph resize (`resize_weights`), so images of any mix of sizes
share one compiled function.
"""

from inception_jax.fid.card import (
  array_sha256,
  file_sha256,
  protocol_card,
  software_versions,
)
from inception_jax.fid.compute import run
from inception_jax.fid.folders import (
  FolderReport,
  folder_batches,
  folder_features,
  list_images,
  load_statistics,
  read_image,
)
from inception_jax.fid.network import (
  DEFAULT_BATCH_SIZE,
  FEATURE_DIM,
  IMAGE_EXTENSIONS,
  IMAGE_SIZE,
  NUM_CLASSES,
  RESIZES,
  FeatureExtractor,
  activations,
  check_images,
  features,
  from_pytorch_fid,
  logits,
  resize,
  resize_numpy,
  resize_weights,
)
from inception_jax.fid.scores import (
  SINGULAR_EPS,
  check_statistics,
  frechet_distance,
  inception_score,
  statistics,
)

__all__ = [
  "DEFAULT_BATCH_SIZE",
  "FEATURE_DIM",
  "FeatureExtractor",
  "FolderReport",
  "IMAGE_EXTENSIONS",
  "IMAGE_SIZE",
  "NUM_CLASSES",
  "RESIZES",
  "SINGULAR_EPS",
  "activations",
  "array_sha256",
  "check_images",
  "check_statistics",
  "features",
  "file_sha256",
  "folder_batches",
  "folder_features",
  "frechet_distance",
  "from_pytorch_fid",
  "inception_score",
  "list_images",
  "load_statistics",
  "logits",
  "protocol_card",
  "read_image",
  "resize",
  "resize_numpy",
  "resize_weights",
  "run",
  "software_versions",
  "statistics",
]
