"""The text-to-motion measures on T2M-evaluator embeddings, and the statistics over replications.

As GMD / CondMDI compute them (CondMDI ``eval/eval_humanml_condmdi.py``: ``evaluate_matching_score``,
``evaluate_fid``, ``evaluate_diversity``, ``get_metric_statistics``; ``data_loaders/humanml/utils/metrics.py``).
Pure functions on (N, D) arrays (numpy or torch), computed in float64.

========  ==================================================================================================
t_i, m_i  text and motion embedding of sample i (``alm.motion.evaluator``)
d(a, b)   euclidean distance ||a - b||
mu, C     mean and covariance (unbiased, N - 1) of a set of motion embeddings
R         number of replications (runs with different seeds) of an evaluation
========  ==================================================================================================

- FID (generated vs ground truth)  ||mu_g - mu_r||^2 + tr(C_g + C_r - 2 (C_g C_r)^(1/2))
  (``calculate_frechet_distance``: scipy's ``sqrtm``; eps = 1e-6 on the diagonals if the product is singular);
- Matching score  mean_i d(t_i, m_i)  (the trace of the text-motion distance matrix / N);
- R-precision top-k  the share of samples whose own motion is among the k motions closest to their text, the
  candidates being the motions of the sample's group of ``group`` (32) consecutive samples (the evaluation
  loader's batches of 32: ``calculate_top_k`` on each batch's distance matrix); an incomplete last group is
  dropped (the loaders' ``drop_last=True``);
- Diversity  mean over ``times`` (300) pairs of d(m_a, m_b), a and b two draws of ``times`` distinct indices
  (``calculate_diversity``; drawn here from ``numpy.random.default_rng(seed)``);
- replication statistics  mean and 1.96 std / sqrt(R) (std with ddof 0) over the R replications.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from alm.errors import DataError

Array = Any  # numpy array or torch tensor


def _np(x: Array) -> np.ndarray:
    """(N, D) float64 numpy array of ``x``."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise DataError(f"embeddings must be (N, D), got shape {arr.shape}")
    return arr


def activation_statistics(emb: Array) -> tuple[np.ndarray, np.ndarray]:
    """(mu (D,), C (D, D)): mean and unbiased covariance of a set (``calculate_activation_statistics``)."""
    x = _np(emb)
    if x.shape[0] < 2:
        raise DataError(f"FID needs at least 2 embeddings per set, got {x.shape[0]}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Fréchet distance of two Gaussians (``calculate_frechet_distance``, Dougal J. Sutherland's stable form)."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise DataError(f"FID: statistics of different sizes ({mu1.shape} vs {mu2.shape})")
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():  # a singular product: regularise both covariances
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise DataError(f"FID: imaginary component {np.max(np.abs(covmean.imag)):.3g} in the matrix square root")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid(generated: Array, real: Array) -> float:
    """FID between the generated-motion embeddings and the ground-truth ones (``evaluate_fid``)."""
    mu_r, c_r = activation_statistics(real)
    mu_g, c_g = activation_statistics(generated)
    return frechet_distance(mu_r, c_r, mu_g, c_g)


def distance_matrix(a: Array, b: Array) -> np.ndarray:
    """(N1, N2) euclidean distances d(a_i, b_j) (``euclidean_distance_matrix``; negatives of rounding clipped)."""
    a, b = _np(a), _np(b)
    if a.shape[1] != b.shape[1]:
        raise DataError(f"embeddings of sizes {a.shape[1]} and {b.shape[1]}")
    sq = -2 * a @ b.T + (a * a).sum(1, keepdims=True) + (b * b).sum(1)
    return np.sqrt(np.maximum(sq, 0.0))


def matching_distances(text: Array, motion: Array) -> np.ndarray:
    """(N,) d(t_i, m_i): each sample's text-motion distance; their mean is the matching score."""
    t, m = _np(text), _np(motion)
    if t.shape != m.shape:
        raise DataError(f"text embeddings {t.shape} and motion embeddings {m.shape} differ")
    return np.linalg.norm(t - m, axis=1)


def matching_score(text: Array, motion: Array) -> float:
    """Mean text-motion distance of the samples."""
    return float(matching_distances(text, motion).mean())


def top_k_hits(text: Array, motion: Array, top_k: int = 3) -> np.ndarray:
    """(N, top_k) bool: column k-1 is True when motion i is among the k motions closest to text i, among the
    N motions given (one group; ``calculate_R_precision``). Ties keep the index order (stable sort)."""
    dist = distance_matrix(text, motion)
    order = np.argsort(dist, axis=1, kind="stable")[:, :top_k]
    own = order == np.arange(dist.shape[0])[:, None]
    return np.logical_or.accumulate(own, axis=1)


def r_precision(text: Array, motion: Array, group: int = 32, top_k: int = 3) -> np.ndarray:
    """(top_k,) R-precision top-1 .. top-k over consecutive groups of ``group`` samples (the last incomplete
    group dropped; no complete group is a one-line ``DataError``)."""
    t, m = _np(text), _np(motion)
    n = (t.shape[0] // group) * group
    if n == 0:
        raise DataError(f"R-precision needs at least one group of {group} samples, got {t.shape[0]}")
    hits = np.concatenate([top_k_hits(t[s:s + group], m[s:s + group], top_k) for s in range(0, n, group)])
    return hits.mean(axis=0)


def diversity(emb: Array, times: int = 300, seed: int = 0) -> float:
    """Mean distance of ``times`` random pairs (two draws of ``times`` distinct indices; ``calculate_diversity``)."""
    x = _np(emb)
    if x.shape[0] <= times:
        raise DataError(f"Diversity over {times} pairs needs more than {times} samples, got {x.shape[0]}")
    rng = np.random.default_rng(seed)
    first = rng.choice(x.shape[0], times, replace=False)
    second = rng.choice(x.shape[0], times, replace=False)
    return float(np.linalg.norm(x[first] - x[second], axis=1).mean())


def replication_statistics(values: Sequence[Any]) -> tuple[Any, Any]:
    """(mean, 95% interval half-width 1.96 std / sqrt(R)) of R replications along axis 0 (``get_metric_statistics``;
    std with ddof 0). Scalars per replication give floats; vectors (R-precision top-1..3) give arrays."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 0 or v.shape[0] == 0:
        raise DataError("replication statistics need at least one value")
    mean, std = v.mean(axis=0), v.std(axis=0)
    interval = 1.96 * std / math.sqrt(v.shape[0])
    if np.ndim(mean) == 0:
        return float(mean), float(interval)
    return mean, interval
