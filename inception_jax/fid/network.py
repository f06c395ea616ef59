"""Frechet Inception Distance and Inception Score with pytorch-fid's network, in JAX.

```python
from inception_jax import fid
model, variables = fid.from_pytorch_fid("pt_inception-2015-12-05-6726825d.pth")
acts = fid.activations(images, model, variables)     # [N, H, W, 3] in [0, 1] or uint8 -> [N, 2048]
mu, sigma = fid.statistics(acts)                     # float64
score = fid.frechet_distance(mu, sigma, mu_ref, sigma_ref)
is_mean, is_std = fid.inception_score(fid.logits(images, model, variables), splits=10)
```
Command line (docs in README.md, "FID and IS"):
`python -m inception_jax.fid --weights=pt_inception-2015-12-05-6726825d.pth A B`, where A and B are
folders of images or .npz statistics; `--save_stats A OUT.npz` writes A's statistics. Every score
is printed with a protocol card (also written as JSON, `--card`).

What is pytorch-fid's (0.3.0), and reproduced here:
  - the network: `models.InceptionV3FID` (its docstring names each difference from the
    classification Inception-v3), weights converted from `pt_inception-2015-12-05` by
    `convert.from_torchvision`'s layer mapping; features are pool3 (`PreLogits`, 2048);
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

from __future__ import annotations

import collections
import functools
import hashlib
import json
import math
import platform
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from inception_jax import convert, fast_conv, parallel

FEATURE_DIM = 2048
NUM_CLASSES = 1008
IMAGE_SIZE = 299
RESIZES = ("bilinear", "bilinear_antialias", "none")
# pytorch_fid.fid_score.IMAGE_EXTENSIONS; matched as `path.glob("*.ext")` (case-sensitive).
IMAGE_EXTENSIONS = ("bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp")
SINGULAR_EPS = 1e-6
DEFAULT_BATCH_SIZE = 50  # pytorch-fid's

Variables = dict[str, Any]


# ------------------------------------------------------------------------------------------------
# Network
# ------------------------------------------------------------------------------------------------
def from_pytorch_fid(source: Any) -> tuple[nn.Module, Variables]:
  """(model, variables) of pytorch-fid's FID Inception network.

  source: pytorch-fid's `pt_inception-2015-12-05-*.pth` (a path; read with
    `torch.load(weights_only=True)`), its state_dict, or the torch module `fid_inception_v3()`
    returns. Nothing is downloaded: fetch the file yourself
    (pytorch_fid.inception.FID_WEIGHTS_URL).
  Raises convert.ConversionError (a ValueError) naming the first tensor that does not fit.
  """
  model, variables = convert.from_torchvision(source, "inception_v3_fid", transform_input=False)
  if model.num_classes != NUM_CLASSES:
    raise convert.ConversionError(
      f"the weights have a {model.num_classes}-way classifier; the FID Inception network "
      f"(pt_inception-2015-12-05) has {NUM_CLASSES}: these are not pytorch-fid's weights"
    )
  return model, variables


# ------------------------------------------------------------------------------------------------
# Input: range, resize, scaling
# ------------------------------------------------------------------------------------------------
def resize_weights(in_size: int, out_size: int = IMAGE_SIZE) -> np.ndarray:
  """[out_size, in_size] float32 matrix of torch's bilinear interpolation, align_corners=False.

  As ATen's upsample_bilinear2d (no antialiasing) computes it, in float32: source coordinate
  max((i + 0.5) * in / out - 0.5, 0), its floor and the next pixel (clamped to the last), weighted
  by the distances.
  """
  if in_size < 1 or out_size < 1:
    raise ValueError(f"sizes must be positive, got {in_size} -> {out_size}")
  scale = np.float32(in_size) / np.float32(out_size)
  dst = np.arange(out_size, dtype=np.float32)
  src = np.maximum(scale * (dst + np.float32(0.5)) - np.float32(0.5), np.float32(0))
  i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
  i1 = np.minimum(i0 + 1, in_size - 1)
  l1 = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
  w = np.zeros((out_size, in_size), np.float32)
  np.add.at(w, (np.arange(out_size), i0), np.float32(1) - l1)
  np.add.at(w, (np.arange(out_size), i1), l1)
  return w


def resize_numpy(image: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
  """One image [H, W, C] (any real dtype, values kept) -> float32 [size, size, C], as
  `resize(..., "bilinear")` computes it on the device."""
  h, w, c = image.shape
  x = image.astype(np.float32)
  x = np.matmul(resize_weights(h, size), x.reshape(h, w * c)).reshape(size, w, c)  # rows
  return np.matmul(resize_weights(w, size), x)  # columns, batched over the output rows


def resize(images: jax.Array, method: str = "bilinear", size: int = IMAGE_SIZE) -> jax.Array:
  """float [N, H, W, C] -> [N, size, size, C] (traceable). method: one of RESIZES."""
  n, h, w, c = images.shape
  if method == "bilinear":
    hi = jax.lax.Precision.HIGHEST
    x = jnp.einsum("oh,nhwc->nowc", jnp.asarray(resize_weights(h, size)), images, precision=hi)
    return jnp.einsum("pw,nowc->nopc", jnp.asarray(resize_weights(w, size)), x, precision=hi)
  if method == "bilinear_antialias":
    return jax.image.resize(
      images, (n, size, size, c), "linear", antialias=True, precision=jax.lax.Precision.HIGHEST
    )
  if method == "none":
    if (h, w) != (size, size):
      raise ValueError(
        f"resize='none' needs {size}x{size} images, got {h}x{w}; use "
        "resize='bilinear' (pytorch-fid's) or resize the images first"
      )
    return images
  raise ValueError(f"resize must be one of {RESIZES}, got {method!r}")


def check_images(images: Any, what: str = "images") -> np.ndarray:
  """The images as a host array [N, H, W, 3], uint8 or float32 in [0, 1]; else a ValueError."""
  x = np.asarray(images)
  if x.ndim != 4 or x.shape[-1] != 3:
    hint = (
      " (grayscale: repeat the channel, as pytorch-fid's PIL convert('RGB') does)"
      if x.ndim == 3 or (x.ndim == 4 and x.shape[-1] == 1)
      else ""
    )
    raise ValueError(f"{what} must be [N, height, width, 3] (NHWC, RGB), got shape {x.shape}{hint}")
  if x.shape[0] == 0:
    raise ValueError(f"{what} is empty: no images to compute features of")
  if x.dtype == np.uint8:
    return x
  if not np.issubdtype(x.dtype, np.floating):
    raise ValueError(f"{what} must be uint8 (0..255) or float in [0, 1], got dtype {x.dtype}")
  lo, hi = float(x.min()), float(x.max())
  if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -1e-6 or hi > 1 + 1e-6:
    raise ValueError(
      f"{what}: float images must lie in [0, 1] (pytorch-fid's input), found "
      f"values in [{lo:.4g}, {hi:.4g}]; divide 0..255 values by 255, map "
      "[-1, 1] images with (x + 1) / 2"
    )
  return x.astype(np.float32, copy=False)


# ------------------------------------------------------------------------------------------------
# Sharded feature extraction
# ------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _compiled(model: nn.Module, resize_method: str, mesh: Any):
  """One jitted function: (variables, images, mask) -> pool3, logits, unbiased logits, mask."""
  net = model.clone(return_features=True)

  def run(variables, images, mask):
    x = images.astype(jnp.float32)
    if images.dtype == jnp.uint8:
      x = x / 255.0  # torchvision's ToTensor
    x = resize(x, resize_method)
    x = 2.0 * x - 1.0  # pytorch-fid's normalize_input
    out = net.apply(variables, x, train=False)
    pool3 = out["PreLogits"].astype(jnp.float32)
    kernel = variables["params"]["Logits"]["kernel"]
    unbiased = jnp.dot(pool3, kernel, precision=jax.lax.Precision.HIGHEST)
    return {
      "pool3": pool3,
      "logits": out["Logits"].astype(jnp.float32),
      "logits_unbiased": unbiased,
      "mask": mask,
    }

  return jax.jit(
    run,
    in_shardings=(
      parallel.replicated(mesh),
      parallel.batch_sharded(mesh),
      parallel.batch_sharded(mesh),
    ),
    out_shardings=parallel.replicated(mesh),
    compiler_options=fast_conv.compiler_options(),
  )


class FeatureExtractor:
  """pool3 features and logits of batches of images over every device of every host.

  Each host calls `run` with its own images (any count; the counts may differ between hosts, but
  every host must call `run` the same number of times, as for any collective); every host gets
  all hosts' features in one array, each image exactly once: per batch, host 0's images, then
  host 1's, ... (statistics do not depend on the order).
  """

  def __init__(
    self,
    model: nn.Module,
    variables: Variables,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    resize: str = "bilinear",
    mesh: Any = None,
  ):
    if resize not in RESIZES:
      raise ValueError(f"resize must be one of {RESIZES}, got {resize!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
      raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if "Logits" not in variables.get("params", {}):
      raise ValueError("model/variables must be the FID Inception network (fid.from_pytorch_fid)")
    self.mesh = parallel.make_mesh() if mesh is None else mesh
    n = self.mesh.devices.size
    multiple = n * jax.process_count() // math.gcd(n, jax.process_count())
    self.global_batch = -(-batch_size // multiple) * multiple  # rounded up to split evenly
    self.local_batch = self.global_batch // jax.process_count()
    self.resize = resize
    self.variables = jax.device_put(variables, parallel.replicated(self.mesh))
    self._fn = _compiled(model, resize, self.mesh)

  def _padded(self, images: np.ndarray) -> dict[str, np.ndarray]:
    n, pad = len(images), self.local_batch - len(images)
    if pad:
      images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
    return {"image": images, "mask": np.arange(self.local_batch) < n}

  def run_batches(self, batches: Iterable[np.ndarray]) -> dict[str, np.ndarray]:
    """Batches of this host's images (each at most `local_batch`, one size and dtype) ->
    {"pool3": [N, 2048], "logits": [N, 1008], "logits_unbiased": [N, 1008]} of every host."""
    parts: dict[str, list[np.ndarray]] = collections.defaultdict(list)

    def collect(out):
      if out is None:
        return
      out = parallel.fetch(out)
      keep = np.asarray(out.pop("mask"), bool)
      for k, v in out.items():
        parts[k].append(np.asarray(v)[keep])

    pending = None
    for images in batches:
      if len(images) > self.local_batch:
        raise ValueError(
          f"a batch of {len(images)} images exceeds the local batch size {self.local_batch}"
        )
      batch = parallel.shard_batch(self._padded(images), self.mesh)
      out = self._fn(self.variables, batch["image"], batch["mask"])
      collect(pending)  # fetch the previous batch once this one is queued
      pending = out
    collect(pending)
    if not parts:
      raise ValueError("no images: nothing to compute features of")
    return {k: np.concatenate(v) for k, v in parts.items()}

  def run(self, images: Any) -> dict[str, np.ndarray]:
    """This host's images [N, H, W, 3] (uint8, or float in [0, 1]) -> every host's features."""
    x = check_images(images)
    n_batches = _same_on_every_host(-(-len(x) // self.local_batch))
    empty = np.zeros((0, *x.shape[1:]), x.dtype)
    return self.run_batches(
      x[i * self.local_batch : (i + 1) * self.local_batch]
      if i * self.local_batch < len(x)
      else empty
      for i in range(n_batches)
    )


def _same_on_every_host(n: int) -> int:
  """The largest of each host's n (every host runs as many batches)."""
  if jax.process_count() == 1:
    return n
  from jax.experimental import multihost_utils

  return int(np.max(multihost_utils.process_allgather(np.asarray(n, np.int64))))


def features(
  images: Any,
  model: nn.Module,
  variables: Variables,
  *,
  batch_size: int = DEFAULT_BATCH_SIZE,
  resize: str = "bilinear",
  mesh: Any = None,
) -> dict[str, np.ndarray]:
  """{"pool3": [N, 2048], "logits": [N, 1008], "logits_unbiased": [N, 1008]} in one pass."""
  return FeatureExtractor(model, variables, batch_size=batch_size, resize=resize, mesh=mesh).run(
    images
  )


def activations(
  images: Any,
  model: nn.Module,
  variables: Variables,
  *,
  batch_size: int = DEFAULT_BATCH_SIZE,
  resize: str = "bilinear",
  mesh: Any = None,
) -> np.ndarray:
  """pool3 features [N, 2048] (float32) of images [N, H, W, 3] in [0, 1] (or uint8 0..255).

  resize: "bilinear" (pytorch-fid's: align_corners=False, no antialiasing; default),
    "bilinear_antialias" or "none" (299x299 images only). On several hosts, each passes its own
    images and receives everyone's features (FeatureExtractor).
  """
  return features(images, model, variables, batch_size=batch_size, resize=resize, mesh=mesh)[
    "pool3"
  ]


def logits(
  images: Any,
  model: nn.Module,
  variables: Variables,
  *,
  bias: bool = False,
  batch_size: int = DEFAULT_BATCH_SIZE,
  resize: str = "bilinear",
  mesh: Any = None,
) -> np.ndarray:
  """The 1008 logits [N, 1008] (float32).

  bias=False (default): pool3 @ W, as the original Inception Score code computes them (it takes
  the MatMul's weight, not the bias); bias=True: the classifier's full output.
  """
  out = features(images, model, variables, batch_size=batch_size, resize=resize, mesh=mesh)
  return out["logits" if bias else "logits_unbiased"]


# ------------------------------------------------------------------------------------------------
# Statistics, distance, score
# ------------------------------------------------------------------------------------------------
def statistics(acts: Any) -> tuple[np.ndarray, np.ndarray]:
  """(mu [D], sigma [D, D]) in float64: the mean and np.cov(rowvar=False), as pytorch-fid."""
  a = np.asarray(acts)
  if a.ndim != 2:
    raise ValueError(f"activations must be [N, features], got shape {a.shape}")
  if a.shape[0] < 2:
    raise ValueError(f"statistics need at least 2 activations (a covariance), got {a.shape[0]}")
  a = a.astype(np.float64)
  return np.mean(a, axis=0), np.cov(a, rowvar=False)


def check_statistics(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> tuple[np.ndarray, ...]:
  """float64 arrays, or a ValueError when the shapes do not belong together."""
  mu1 = np.atleast_1d(np.asarray(mu1, np.float64))
  mu2 = np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  for name, mu, sigma in (("first", mu1, sigma1), ("second", mu2, sigma2)):
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
      raise ValueError(
        f"the {name} statistics do not fit together: mu has shape {mu.shape}, "
        f"sigma {sigma.shape}; expected [D] and [D, D]"
      )
  if mu1.shape != mu2.shape:
    raise ValueError(
      f"the statistics have different dimensions: {mu1.shape[0]} and "
      f"{mu2.shape[0]}; both must come from the same features (pool3: "
      f"{FEATURE_DIM}, pytorch-fid's default --dims)"
    )
  return mu1, sigma1, mu2, sigma2


def frechet_distance(
  mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, eps: float = SINGULAR_EPS
) -> float:
  """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2)), as pytorch-fid computes it.

  scipy.linalg.sqrtm of sigma1 @ sigma2; if that is not finite, eps is added to both diagonals
  and the root taken again (both with a warning, as pytorch-fid prints one); an imaginary part
  whose diagonal is within 1e-3 of 0 is dropped. One addition: where the diagonal's imaginary
  part exceeds 1e-3, pytorch-fid raises and gives no score; here the eps fallback is tried first
  (with a warning), and only if that root is still imaginary is the ValueError raised. With
  fewer samples than dimensions (N < 2048) the product is singular and that imaginary part is
  rounding noise around 1e-3 that decides by chance whether pytorch-fid raises; the real part
  and the score are stable (docs/FIDELITY.md).
  """
  from scipy import linalg

  mu1, sigma1, mu2, sigma2 = check_statistics(mu1, sigma1, mu2, sigma2)
  diff = mu1 - mu2
  offset = np.eye(sigma1.shape[0]) * eps
  covmean = linalg.sqrtm(sigma1.dot(sigma2))
  if not np.isfinite(covmean).all():
    warnings.warn(
      f"fid calculation produces singular product; adding {eps} to diagonal of cov estimates",
      RuntimeWarning,
      stacklevel=2,
    )
    covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
  if np.iscomplexobj(covmean) and not _imaginary_negligible(covmean):
    warnings.warn(
      f"the matrix square root has an imaginary diagonal component "
      f"{np.max(np.abs(np.diagonal(covmean).imag)):.3g} > 1e-3 (pytorch-fid "
      f"raises here); adding {eps} to diagonal of cov estimates",
      RuntimeWarning,
      stacklevel=2,
    )
    covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
  if np.iscomplexobj(covmean):
    if not _imaginary_negligible(covmean):
      m = np.max(np.abs(covmean.imag))
      raise ValueError(f"the matrix square root has an imaginary component {m}")
    covmean = covmean.real
  return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def _imaginary_negligible(covmean: np.ndarray) -> bool:
  return bool(np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3))


def inception_score(logits_: Any, splits: int = 10) -> tuple[float, float]:
  """(mean, std) over `splits` parts of exp(E_x KL(p(y|x) || p(y))), p the softmax of logits.

  As openai/improved-gan's get_inception_score, in float64; pass `logits(..., bias=False)`.
  """
  z = np.asarray(logits_, np.float64)
  if z.ndim != 2:
    raise ValueError(f"logits must be [N, classes], got shape {z.shape}")
  if not isinstance(splits, int) or splits < 1:
    raise ValueError(f"splits must be a positive int, got {splits!r}")
  if z.shape[0] < splits:
    raise ValueError(
      f"{z.shape[0]} logits cannot be split in {splits} parts; use fewer splits or more images"
    )
  z = z - z.max(axis=1, keepdims=True)
  preds = np.exp(z)
  preds /= preds.sum(axis=1, keepdims=True)
  scores = []
  for i in range(splits):
    part = preds[(i * preds.shape[0] // splits) : ((i + 1) * preds.shape[0] // splits), :]
    kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
    scores.append(np.exp(np.mean(np.sum(kl, 1))))
  return float(np.mean(scores)), float(np.std(scores))


# ------------------------------------------------------------------------------------------------
# Folders and statistics files
# ------------------------------------------------------------------------------------------------
def list_images(folder: str | Path) -> tuple[list[Path], list[Path]]:
  """(images pytorch-fid reads, files it ignores that look like images: other-case extensions)."""
  folder = Path(folder)
  files = sorted(f for ext in IMAGE_EXTENSIONS for f in folder.glob(f"*.{ext}"))
  wanted = set(files)
  ignored = sorted(
    f
    for f in folder.iterdir()
    if f.is_file() and f not in wanted and f.suffix[1:].lower() in IMAGE_EXTENSIONS
  )
  return files, ignored


class FolderReport:
  """What reading a folder found: sizes, colour modes converted, unreadable files."""

  def __init__(self) -> None:
    self.sizes: collections.Counter = collections.Counter()
    self.modes: collections.Counter = collections.Counter()
    self.unreadable: list[str] = []

  def summary(self) -> dict[str, Any]:
    sizes = {f"{h}x{w}": n for (h, w), n in self.sizes.most_common()}
    areas = sorted(self.sizes, key=lambda s: s[0] * s[1])
    return {
      "image_sizes_hxw": {
        "distinct": len(self.sizes),
        "most_common": dict(list(sizes.items())[:5]),
        "smallest": "{}x{}".format(*areas[0]) if areas else None,
        "largest": "{}x{}".format(*areas[-1]) if areas else None,
      },
      "color_modes_read": dict(self.modes),
      "converted_to_rgb": sum(n for m, n in self.modes.items() if m != "RGB"),
      "unreadable_skipped": list(self.unreadable),
    }


def read_image(path: Path, report: FolderReport, skip_unreadable: bool) -> np.ndarray | None:
  """uint8 [H, W, 3] as pytorch-fid reads it (PIL, convert('RGB')), or None if skipped."""
  from PIL import Image

  try:
    with Image.open(path) as img:
      mode = img.mode
      rgb = np.asarray(img.convert("RGB"), np.uint8)
  except Exception as e:
    if skip_unreadable:
      report.unreadable.append(str(path))
      return None
    raise ValueError(
      f"cannot read image {path}: {e}; remove it, or pass --skip_unreadable "
      "to skip (and count) unreadable files"
    ) from e
  report.modes[mode] += 1
  report.sizes[rgb.shape[:2]] += 1
  return rgb


def folder_batches(
  files: Sequence[Path],
  local_batch: int,
  report: FolderReport,
  skip_unreadable: bool = False,
  resize: str = "bilinear",
) -> Iterator[np.ndarray]:
  """float32 [<=local_batch, 299, 299, 3] in [0, 1], each image resized on the host as
  resize('bilinear') does, so that images of any size share one compiled function.
  resize="none": the images must be 299x299 already."""
  if resize not in ("bilinear", "none"):
    raise ValueError(
      f"folders are resized on the host with pytorch-fid's bilinear resize "
      f"(or not at all: 'none'); resize={resize!r} is available for arrays "
      "(fid.activations)"
    )
  batch: list[np.ndarray] = []
  for path in files:
    rgb = read_image(path, report, skip_unreadable)
    if rgb is None:
      continue
    x = rgb.astype(np.float32) / np.float32(255.0)
    if resize == "bilinear":
      x = resize_numpy(x)
    elif x.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):
      raise ValueError(
        f"{path} is {x.shape[0]}x{x.shape[1]}; resize='none' needs "
        f"{IMAGE_SIZE}x{IMAGE_SIZE} images (use resize='bilinear')"
      )
    batch.append(x)
    if len(batch) == local_batch:
      yield np.stack(batch)
      batch = []
  if batch:
    yield np.stack(batch)


def folder_features(
  folder: str | Path, extractor: Any, skip_unreadable: bool = False, resize: str = "bilinear"
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Features of every image of a folder (split over the hosts) and the folder's report.

  extractor: a FeatureExtractor with resize="none" (images arrive resized), or a function
  returning one (called once the folder is known to hold images)."""
  folder = Path(folder)
  if not folder.is_dir():
    raise ValueError(f"{folder} is not a folder of images or an .npz of statistics")
  files, ignored = list_images(folder)
  if not files:
    raise ValueError(
      f"{folder} holds no images with the extensions pytorch-fid reads "
      f"({', '.join(IMAGE_EXTENSIONS)}, lower case)"
      + (
        f"; {len(ignored)} file(s) such as {ignored[0].name} have them in another case: rename them"
        if ignored
        else ""
      )
    )
  if not isinstance(extractor, FeatureExtractor):
    extractor = extractor()
  if extractor.resize != "none":
    raise ValueError(
      "folder images are resized on the host: pass a FeatureExtractor with resize='none'"
    )
  mine = files[jax.process_index() :: jax.process_count()]
  report = FolderReport()
  n_batches = _same_on_every_host(-(-len(mine) // extractor.local_batch))
  batches = folder_batches(mine, extractor.local_batch, report, skip_unreadable, resize)
  empty = np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
  padded = (next(batches, empty) for _ in range(n_batches))
  try:
    out = extractor.run_batches(padded)
  except ValueError as e:
    if report.unreadable and "no images" in str(e):
      raise ValueError(f"{folder}: every image was unreadable ({len(report.unreadable)})") from e
    raise
  info = {
    "path": str(folder),
    "kind": "folder",
    "files": len(files),
    "n": len(out["pool3"]),
    "ignored_other_case_extensions": [f.name for f in ignored],
    **report.summary(),
  }
  return out, info


def load_statistics(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
  """(mu, sigma, info) from an .npz with `mu` and `sigma` (pytorch-fid's --save-stats format)."""
  path = Path(path)
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except (OSError, EOFError, ValueError, AttributeError) as e:
    raise ValueError(f"{path} cannot be read as an .npz of statistics: {e}") from e
  missing = [k for k in ("mu", "sigma") if k not in arrays]
  if missing:
    raise ValueError(
      f"{path} has no {' or '.join(missing)} array (found {sorted(arrays)}); "
      "expected statistics written by --save_stats or pytorch-fid"
    )
  mu, sigma = np.asarray(arrays["mu"], np.float64), np.asarray(arrays["sigma"], np.float64)
  card = json.loads(str(arrays["card"])) if "card" in arrays else None
  n = int(arrays["n"]) if "n" in arrays else None
  if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
    raise ValueError(f"{path}: mu {mu.shape} and sigma {sigma.shape} are not [D] and [D, D]")
  if mu.shape[0] != FEATURE_DIM:
    raise ValueError(
      f"{path} holds statistics of dimension {mu.shape[0]}, not the "
      f"{FEATURE_DIM} pool3 features of the FID network (pytorch-fid --dims "
      f"{mu.shape[0]}?); recompute them with --dims 2048 / this tool"
    )
  info = {"path": str(path), "kind": "statistics", "n": n, "saved_with_card": card is not None}
  if card is not None:
    info["saved_card"] = card
  return mu, sigma, info


def array_sha256(a: np.ndarray) -> str:
  return hashlib.sha256(np.ascontiguousarray(a, dtype="<f8").tobytes()).hexdigest()


def file_sha256(path: str | Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def software_versions() -> dict[str, str]:
  import importlib.metadata as md

  versions = {"python": platform.python_version()}
  for name in ("inception_jax", "jax", "jaxlib", "flax", "numpy", "scipy", "pillow"):
    try:
      versions[name] = md.version(name)
    except md.PackageNotFoundError:
      if name == "inception_jax":
        import inception_jax

        versions[name] = inception_jax.__version__
  versions["backend"] = (
    f"{jax.default_backend()} x{jax.device_count()} ({jax.process_count()} process(es))"
  )
  return versions


def n_warning(n: int | None, where: str) -> str | None:
  if n is not None and n < FEATURE_DIM:
    return (
      f"{where}: N={n} < {FEATURE_DIM} (the feature dimension): the covariance is rank "
      f"deficient and FID is biased upwards at this N; compare scores only at equal N "
      "(the usual protocol is 50,000 samples)"
    )
  return None


def protocol_card(
  weights_path: str | None,
  weights_sha256: str | None,
  resize_method: str,
  sides: Sequence[dict[str, Any]],
  batch_size: int,
  fid: float | None = None,
) -> dict[str, Any]:
  """What a score depends on, so that two scores can be checked for comparability."""
  card: dict[str, Any] = {}
  if fid is not None:
    card["fid"] = fid
  card.update(
    {
      "weights": {
        "path": weights_path,
        "sha256": weights_sha256,
        "network": "inception_v3_fid (pytorch-fid FIDInceptionA/C/E_1/E_2, 1008 "
        "classes), pool3 features (2048)",
      },
      "preprocessing": {
        "resize": resize_method,
        "to": f"{IMAGE_SIZE}x{IMAGE_SIZE}",
        "antialias": resize_method == "bilinear_antialias",
        "align_corners": False if resize_method != "none" else None,
        "input_scaling": "x in [0, 1] (uint8 / 255, PIL RGB) -> 2 * x - 1",
        "resized_on": "host (float32, torch's bilinear weights)",
      },
      "sides": list(sides),
      "batch_size": batch_size,
      "software": software_versions(),
    }
  )
  card["warnings"] = [w for s in sides if (w := n_warning(s.get("n"), s["path"]))]
  return card


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------
def _define_flags() -> None:
  from absl import flags

  flags.DEFINE_string(
    "weights",
    None,
    "pytorch-fid's pt_inception-2015-12-05-*.pth (download it yourself; nothing is downloaded)",
  )
  flags.DEFINE_bool(
    "save_stats",
    False,
    "Write the statistics of the first path (a folder) to "
    "the second (an .npz: mu, sigma as pytorch-fid, plus n and the card)",
  )
  flags.DEFINE_integer(
    "batch_size",
    DEFAULT_BATCH_SIZE,
    "Global batch size (rounded up to a multiple of the device count)",
  )
  flags.DEFINE_enum(
    "resize",
    "bilinear",
    ["bilinear", "none"],
    "bilinear: pytorch-fid's (align_corners=False, no antialiasing); none: 299x299 images only",
  )
  flags.DEFINE_string("card", "fid_card.json", "Where the protocol card is written as JSON")
  flags.DEFINE_bool(
    "skip_unreadable",
    False,
    "Skip (and count on the card) files that cannot "
    "be read, instead of stopping (pytorch-fid stops)",
  )
  flags.DEFINE_integer(
    "splits", 10, "Inception Score splits (printed for folders of at least that many images)"
  )
  flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process runs)")
  flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process runs)")
  flags.DEFINE_integer("process_id", None, "This process's index (multi-process runs)")


def _side(path: str, get_extractor, skip_unreadable: bool, splits: int, resize_method: str):
  """(mu, sigma, info) of a folder or an .npz."""
  if path.endswith(".npz"):
    return load_statistics(path)
  out, info = folder_features(path, get_extractor, skip_unreadable, resize_method)
  mu, sigma = statistics(out["pool3"]) if info["n"] >= 2 else (None, None)
  if mu is None:
    raise ValueError(f"{path}: statistics need at least 2 images, found {info['n']}")
  if info["n"] >= splits:
    m, s = inception_score(out["logits_unbiased"], splits)
    info["inception_score"] = {"mean": m, "std": s, "splits": splits}
  return mu, sigma, info


def run(
  paths: Sequence[str],
  weights: str | None,
  *,
  save_stats: bool = False,
  batch_size: int = DEFAULT_BATCH_SIZE,
  resize_method: str = "bilinear",
  card_path: str | None = "fid_card.json",
  skip_unreadable: bool = False,
  splits: int = 10,
) -> dict[str, Any]:
  """The command line's work; returns the protocol card (with "fid" unless save_stats)."""
  if len(paths) != 2:
    raise ValueError(
      f"expected two paths (A B, or with --save_stats FOLDER OUT.npz), got "
      f"{len(paths)}: {list(paths)}"
    )
  if save_stats:
    if paths[0].endswith(".npz") or not paths[1].endswith(".npz"):
      raise ValueError("--save_stats reads a folder and writes an .npz: FOLDER OUT.npz")
    if Path(paths[1]).exists():
      raise ValueError(f"{paths[1]} exists; not overwriting it")
  for p in paths[:1] if save_stats else paths:
    if not Path(p).exists():
      raise ValueError(f"{p} does not exist (expected a folder of images or an .npz)")
  needs_network = save_stats or any(not p.endswith(".npz") for p in paths)
  if needs_network and not weights:
    raise ValueError("--weights=pt_inception-2015-12-05-*.pth is needed to read folders")
  if weights and not Path(weights).is_file():
    raise ValueError(f"--weights: {weights} is not a file")
  weights_sha = file_sha256(weights) if weights else None

  @functools.lru_cache(maxsize=1)
  def get_extractor():
    model, variables = from_pytorch_fid(weights)
    return FeatureExtractor(model, variables, batch_size=batch_size, resize="none")

  side_paths = paths[:1] if save_stats else paths
  stats, sides = [], []
  for p in side_paths:
    mu, sigma, info = _side(p, get_extractor, skip_unreadable, splits, resize_method)
    info["mu_sha256"], info["sigma_sha256"] = array_sha256(mu), array_sha256(sigma)
    stats.append((mu, sigma))
    sides.append(info)
  score = None if save_stats else frechet_distance(*stats[0], *stats[1])
  card = protocol_card(
    weights,
    weights_sha,
    resize_method,
    sides,
    get_extractor().global_batch if needs_network else batch_size,
    score,
  )
  if save_stats and jax.process_index() == 0:
    np.savez_compressed(
      paths[1], mu=stats[0][0], sigma=stats[0][1], n=sides[0]["n"], card=json.dumps(card)
    )
    card["saved_statistics"] = paths[1]
  if card_path and jax.process_index() == 0:
    Path(card_path).write_text(json.dumps(card, indent=2) + "\n")
  return card


def main(argv: Sequence[str]) -> int:
  from absl import flags

  f = flags.FLAGS
  if f.coordinator_address or f.num_processes:
    parallel.initialize_distributed(f.coordinator_address, f.num_processes, f.process_id)
  try:
    card = run(
      list(argv[1:]),
      f.weights,
      save_stats=f.save_stats,
      batch_size=f.batch_size,
      resize_method=f.resize,
      card_path=f.card,
      skip_unreadable=f.skip_unreadable,
      splits=f.splits,
    )
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if jax.process_index() == 0:
    print("protocol card:")
    print(json.dumps(card, indent=2))
    for w in card["warnings"]:
      print(f"WARNING: {w}", file=sys.stderr)
    for side in card["sides"]:
      if "inception_score" in side:
        s = side["inception_score"]
        print(f"IS ({side['path']}): {s['mean']:.4f} +- {s['std']:.4f}")
    if "fid" in card:
      print(f"FID: {card['fid']}")
    else:
      print(f"statistics of {card['sides'][0]['path']} written to {card['saved_statistics']}")
    if f.card:
      print(f"card written to {f.card}")
  return 0


if __name__ == "__main__":
  from absl import app

  _define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
