"""Exact metrics of completions on the Gaussian-mixture testbed (``backbone=gmm``): the math.

Pure functions of tensors (and the mixture); the evaluation stage computes them through the metric
objects of ``alm.metrics.gmm`` (``metrics=gmm``, conf/metrics/gmm.yaml), which call these functions.
This module imports the backbone, never the other way round.

Notation: ``x`` (B, C, H, W) completions, ``x_obs`` the sources they complete (only the observed
entries are used), ``mask`` 1 = unobserved (broadcastable to the images), U the unobserved entries,
``w_ik`` = p(component k | observed part of x_obs_i) (``GaussianMixture.posterior_weights``),
``k_i`` = ``mixture.assign(x_i)`` the most likely component of the completed full image.

Per sample (rows of a results table):
- ``component``        k_i
- ``component_weight`` w_{i,k_i}
- ``coherent``         1 if w_{i,k_i} >= tau (the completion is a plausible mode given the observation)
- ``posterior_loglik`` log p(x_i[U] | x_obs_i[O]), the exact posterior density
- ``variance_ratio``   mean over U of ((x_i - mu_{k_i}) / s_{k_i})^2  (1 in expectation for exact draws)

Aggregates over a set (one observation per sample; repeated observations are fine):
- ``coherence``        mean of ``coherent``
- ``tv``               0.5 sum_k |freq_k - mean_i w_ik| per stratum of observations (``stratified_tv``),
                       freq_k = the fraction of completions assigned to k
- ``energy_distance``  between the completed full images and exact posterior draws for the same
                       observations (``energy_distance_joint``; ``energy_distance`` is the pooled version on
                       the unobserved entries): 2 E|A-B| - E|A-A'| - E|B-B'| with the UNBIASED (U-statistic)
                       within-set means (pairs i != j). Its expectation is the population energy distance: 0
                       for two exact draw sets, so estimates scatter around 0 and may be slightly negative.
                       Pairwise distances are summed in bounded blocks (``mean_pairwise_distance``); the
                       metric (``alm.metrics.gmm.EnergyDistance``) uses at most ``ENERGY_MAX_SAMPLES``
                       observations (``energy_subsample``), so its time is bounded too.
- ``variance_ratio``   mean of the per-sample ratio: 1 = calibrated, < 1 over-sharpened, > 1 too diffuse;
                       ``variance_log_error`` = |log variance_ratio| (for rankings).
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch

from alm.backbones.base import Cond
from alm.backbones.gmm import GaussianMixture

Tensor = torch.Tensor

#: rng stream of the exact reference draws a run's summary compares against (0 sampler, 1 masks, 2 data)
REFERENCE_STREAM = 3  # the exact reference draws use streams 3, 4, ... (never the sampler's own)
REFERENCE_DRAWS = 4  # exact draws per observation (pooled) for the energy distance
#: the energy distance is quadratic in the number of observations: above this many it uses a seeded
#: subsample of this many (``energy_subsample``), i.e. at most 2,000 completions and 8,000 draws
ENERGY_MAX_SAMPLES = 2000


# --- per sample -------------------------------------------------------------------------------------

def completed(x: Tensor, x_obs: Tensor, mask: Tensor) -> Tensor:
    """The full image a completion stands for: the observation outside the hole, the sample inside.

    Every metric judges this image, not the method's own (possibly drifted or ignored) observed part,
    so a sampler that ignores the observation cannot look like a prior sample that fits.
    """
    m = torch.broadcast_to(mask.to(x.device, x.dtype), x.shape)
    return m * x + (1 - m) * x_obs.to(x.device, x.dtype)


def component(mixture: GaussianMixture, x: Tensor) -> Tensor:
    """The most likely component of each completed full image under the full mixture (B,), long."""
    return mixture.assign(x)


def component_weight(mixture: GaussianMixture, x: Tensor, x_obs: Tensor, mask: Tensor, cond: Cond = None) -> Tensor:
    """Posterior weight, given the observed part of ``x_obs``, of the component ``x`` is assigned to (B,)."""
    w = mixture.posterior_weights(x_obs, mask, cond)
    return w.gather(1, component(mixture, x)[:, None])[:, 0]


def coherent(
    mixture: GaussianMixture, x: Tensor, x_obs: Tensor, mask: Tensor, tau: float = 1e-3, cond: Cond = None
) -> Tensor:
    """1.0 if the completion's component has posterior weight >= ``tau`` given the observation, else 0.0 (B,)."""
    return (component_weight(mixture, x, x_obs, mask, cond) >= tau).double()


def posterior_loglik(mixture: GaussianMixture, x: Tensor, x_obs: Tensor, mask: Tensor, cond: Cond = None) -> Tensor:
    """log p(x[U] | x_obs[O]) under the exact posterior (B,), float64."""
    return mixture.posterior_log_prob(x, x_obs, mask, cond)


def sample_variance_ratio(mixture: GaussianMixture, x: Tensor, mask: Tensor) -> Tensor:
    """Mean over the unobserved entries of ((x - mu_k) / s_k)^2 with k = the assigned component (B,)."""
    k = component(mixture, x)
    xf = x.reshape(x.shape[0], -1).to(mixture.means)
    unobs = 1.0 - mixture.observed_entries(mask, x)
    z2 = ((xf - mixture.means[k]) / mixture.stds[k]) ** 2
    return (z2 * unobs).sum(1) / unobs.sum(1)


def per_sample(
    mixture: GaussianMixture, x: Tensor, x_obs: Tensor, mask: Tensor, tau: float = 1e-3, cond: Cond = None
) -> dict[str, Tensor]:
    """All per-sample metrics as (B,) CPU tensors (one results-table row per sample)."""
    x = completed(x, x_obs, mask)
    k = component(mixture, x)
    w = mixture.posterior_weights(x_obs, mask, cond).gather(1, k[:, None])[:, 0]
    return {
        "component": k.cpu(),
        "component_weight": w.cpu(),
        "coherent": (w >= tau).double().cpu(),
        "posterior_loglik": posterior_loglik(mixture, x, x_obs, mask, cond).cpu(),
        "variance_ratio": sample_variance_ratio(mixture, x, mask).cpu(),
    }


# --- aggregates ---------------------------------------------------------------------------------------

def coherence(
    mixture: GaussianMixture, x: Tensor, x_obs: Tensor, mask: Tensor, tau: float = 1e-3, cond: Cond = None
) -> float:
    """Fraction of completions that are coherent with their observation."""
    return float(coherent(mixture, x, x_obs, mask, tau, cond).mean())


def component_tv(freq: Tensor, mean_weights: Tensor) -> float:
    """0.5 sum_k |freq_k - mean_weights_k|."""
    return float(0.5 * (freq - mean_weights).abs().sum())


def stratified_tv(assigned: Tensor, weights: Tensor) -> float:
    """Total variation between completions' component frequencies and the posterior weights, per stratum.

    Observations are grouped by their most probable component (argmax of the posterior weights);
    within a stratum the assigned components' frequencies are compared with the stratum's mean
    posterior weights, and the strata's TVs are averaged with their sizes. Pooling all observations
    instead would only compare with the prior, which a sampler that ignores the observation matches.
    """
    assigned, weights = assigned.cpu(), weights.cpu().double()
    strata = weights.argmax(dim=1)
    total = 0.0
    for s in strata.unique():
        rows = strata == s
        freq = torch.bincount(assigned[rows], minlength=weights.shape[1]).double() / int(rows.sum())
        total += int(rows.sum()) * component_tv(freq, weights[rows].mean(0))
    return total / assigned.numel()


def tv(mixture: GaussianMixture, x: Tensor, x_obs: Tensor, mask: Tensor, cond: Cond = None) -> float:
    """``stratified_tv`` of the completions ``x`` of the observations ``x_obs``."""
    return stratified_tv(component(mixture, x), mixture.posterior_weights(x_obs, mask, cond))


def _unobserved_rows(x: Tensor, mask: Tensor) -> Tensor:
    m = torch.broadcast_to(mask.to(x.device), x.shape) > 0.5
    return (x * m).reshape(x.shape[0], -1).double()


def mean_pairwise_distance(a: Tensor, b: Tensor, exclude_diagonal: bool = False, chunk: int = 1024,
                           cols: int = 8192) -> float:
    """Mean Euclidean distance over pairs (a_i, b_j); over i != j if ``exclude_diagonal`` (a is b).

    Computed in blocks of at most ``chunk`` x ``cols`` distances (64 MiB in float64), whatever the sizes;
    with ``b`` of at most ``cols`` rows the blocks are whole rows of ``chunk`` (the sums of the former code,
    bit for bit)."""
    total = 0.0
    for start in range(0, a.shape[0], chunk):
        for col in range(0, b.shape[0], cols):  # the diagonal of a set with itself is 0
            total += float(torch.cdist(a[start : start + chunk], b[col : col + cols]).sum())
    pairs = a.shape[0] * (b.shape[0] - 1) if exclude_diagonal else a.shape[0] * b.shape[0]
    return total / pairs


def energy_distance_rows(a: Tensor, b: Tensor) -> float:
    """Unbiased energy distance between two sets of row vectors: 2E|A-B| - E|A-A'| - E|B-B'| (i != j)."""
    if a.shape[0] < 2 or b.shape[0] < 2:
        return math.nan
    return 2 * mean_pairwise_distance(a, b) - mean_pairwise_distance(a, a, True) - mean_pairwise_distance(b, b, True)


def energy_distance(x: Tensor, y: Tensor, mask: Tensor, mask_y: Optional[Tensor] = None) -> float:
    """Energy distance between completions ``x`` and exact draws ``y`` on the unobserved entries (pooled).

    ``mask`` broadcasts to ``x`` (and to ``y`` unless ``mask_y`` is given); observed entries are zeroed.
    Pooled over observations this only compares marginals; see ``energy_distance_joint``/``energy_score``.
    """
    return energy_distance_rows(_unobserved_rows(x, mask), _unobserved_rows(y, mask if mask_y is None else mask_y))


def energy_distance_joint(x: Tensor, y: Tensor) -> float:
    """Energy distance between full images (observed + completed) of two sets with the same observations.

    Compares joint distributions, so a completion that does not fit its own observation counts.
    (A per-observation energy score with one completion per observation would reward the spatial
    median of the posterior, i.e. mode-seeking; the joint energy distance has no such bias.)
    """
    return energy_distance_rows(x.reshape(x.shape[0], -1).double(), y.reshape(y.shape[0], -1).double())


def energy_subsample(n: int, seed: int, limit: Optional[int] = ENERGY_MAX_SAMPLES) -> Optional[Tensor]:
    """The observations an energy distance of ``n`` uses: None (all of them) if ``limit`` is None or
    ``n <= limit``, else ``limit`` positions, sorted: the first ``limit`` of ``torch.randperm(n)`` drawn with
    a CPU generator seeded with ``seed`` (the reference draws' seed)."""
    if limit is None or n <= limit:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))[: int(limit)].sort().values


def variance_ratio(mixture: GaussianMixture, x: Tensor, mask: Tensor) -> float:
    """Mean over samples of ``sample_variance_ratio``: 1 = calibrated, < 1 over-sharpened."""
    return float(sample_variance_ratio(mixture, x, mask).nanmean())


def gmm_summary(
    mixture: GaussianMixture,
    completions: Tensor,
    x_obs: Tensor,
    mask: Tensor,
    exact_draws: Optional[Tensor] = None,
    tau: float = 1e-3,
    cond: Cond = None,
) -> dict[str, float]:
    """Every aggregate in one call.

    ``exact_draws``: posterior draws for the same ``x_obs``, (N, ...) or K sets (K, N, ...), or None;
    ``energy_distance`` compares full images (joint distributions) against all of them, pooled.
    """
    rows = per_sample(mixture, completions, x_obs, mask, tau, cond)
    ratio = float(rows["variance_ratio"].nanmean())
    out = {
        "coherence": float(rows["coherent"].mean()),
        "tv": stratified_tv(rows["component"], mixture.posterior_weights(x_obs, mask, cond)),
        "variance_ratio": ratio,
        "variance_log_error": abs(math.log(ratio)) if ratio > 0 else math.inf,
        "posterior_loglik": float(rows["posterior_loglik"].mean()),
        "energy_distance": math.nan,
        "num_samples": float(completions.shape[0]),
    }
    if exact_draws is not None:
        draws = exact_draws if exact_draws.dim() == completions.dim() + 1 else exact_draws.unsqueeze(0)
        out["energy_distance"] = energy_distance_joint(completed(completions, x_obs, mask), torch.cat(list(draws)))
        out["posterior_loglik_exact"] = float(posterior_loglik(mixture, draws[0], x_obs, mask, cond).mean())
    return out


# --- inputs of the set-level metrics ----------------------------------------------------------------

def labels_to_cond(mixture: GaussianMixture, labels: Optional[Sequence[Any]], batch: int) -> Cond:
    """The condition of a batch of stored labels: None for an unconditional mixture or a missing label."""
    if labels is None or not mixture.conditional or any(l is None for l in labels):
        return None
    return mixture.make_cond(list(labels), batch)


def reference_draws(
    mixture: GaussianMixture, x_obs: Tensor, mask: Tensor, seed: int, indices: Sequence[int],
    cond: Cond = None, draws: int = REFERENCE_DRAWS,
) -> Tensor:
    """``draws`` exact posterior draws per observation, (draws, N, ...): draw k of sample ``indices[i]``
    uses ``SampleGenerators(seed, indices, stream=REFERENCE_STREAM + k)``, independent of the run's own
    sampler noise (stream 0), so ``method=exact`` scores an energy distance around 0, not below it."""
    from alm.rng import SampleGenerators

    return torch.stack([
        mixture.posterior_sample(x_obs, mask, SampleGenerators(seed, indices, stream=REFERENCE_STREAM + k), cond=cond)
        for k in range(draws)
    ])
