"""FID statistics, the Frechet distance and the Inception Score, as pytorch-fid and the original
Inception Score code compute them (float64)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from inception_jax.fid.network import FEATURE_DIM

SINGULAR_EPS = 1e-6


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
