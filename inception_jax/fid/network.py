"""pytorch-fid's FID Inception network in JAX: weights, the input (range, resize, scaling) and
the sharded feature extraction (pool3 features and logits over every device of every host)."""

from __future__ import annotations

import collections
import functools
import math
from collections.abc import Iterable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from inception_jax import conversion
from inception_jax.training import parallel
from inception_jax.training.step import compile_step

FEATURE_DIM = 2048
NUM_CLASSES = 1008
IMAGE_SIZE = 299
RESIZES = ("bilinear", "bilinear_antialias", "none")
# pytorch_fid.fid_score.IMAGE_EXTENSIONS; matched as `path.glob("*.ext")` (case-sensitive).
IMAGE_EXTENSIONS = ("bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp")
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
  Raises conversion.ConversionError (a ValueError) naming the first tensor that does not fit.
  """
  model, variables = conversion.from_torchvision(source, "inception_v3_fid", transform_input=False)
  if model.num_classes != NUM_CLASSES:
    raise conversion.ConversionError(
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

  return compile_step(
    run,
    model,
    in_shardings=(
      parallel.replicated(mesh),
      parallel.batch_sharded(mesh),
      parallel.batch_sharded(mesh),
    ),
    out_shardings=parallel.replicated(mesh),
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
    n_batches = same_count_on_every_host(-(-len(x) // self.local_batch))
    empty = np.zeros((0, *x.shape[1:]), x.dtype)
    return self.run_batches(
      x[i * self.local_batch : (i + 1) * self.local_batch]
      if i * self.local_batch < len(x)
      else empty
      for i in range(n_batches)
    )


def same_count_on_every_host(n: int) -> int:
  """The largest of each host's n (every host runs as many batches)."""
  if jax.process_count() == 1:
    return n
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
