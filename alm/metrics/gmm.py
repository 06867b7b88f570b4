"""The Gaussian-mixture testbed's exact metrics as evaluation-stage metrics (``metrics=gmm``, docs/gmm.md).

Each metric scores a run of ``backbone=gmm`` against the exact mixture the run sampled from: it builds
that mixture from the run's config (``bind_run``: the ``backbone`` node of ``<run>/config.yaml``, which the
evaluation stage passes with the sample indices), so a run of any other backbone is a one-line
``ConfigError``. The math is ``alm.gmm_metrics`` (float64); every value judges the *completed* image
(observation outside the hole, completion inside).

Per sample (rows; ``aggregate`` says what goes into the run's summary):

| column             | class              | summary                                            | direction |
|--------------------|--------------------|----------------------------------------------------|-----------|
| ``component``      | ``Component``      | none (an index)                                    | none      |
| ``component_weight`` | ``ComponentWeight`` | mean of the rows                                | none      |
| ``coherent``       | ``Coherent``       | mean of the rows (= ``coherence``)                 | higher    |
| ``posterior_loglik`` | ``PosteriorLogLik`` | mean over the whole set (``compute``)           | none      |
| ``variance_ratio`` | ``VarianceRatio``  | nan-mean over the whole set (``compute``)          | none (best at 1) |

Set metrics (one value per run): ``Coherence`` (higher), ``TotalVariation`` (``tv``, lower),
``EnergyDistance`` (lower), ``VarianceLogError`` (|log variance_ratio|, lower), ``PosteriorLogLikExact``
(the exact draws' mean posterior log-density: a reference, no direction).

The summaries are computed in one float64 pass over all of the run's samples, exactly as the runner's
former ``gmm_metrics.run_summary`` did (same operations in the same order: bitwise the same numbers), so
the committed tables (results/gmm/) reproduce. Per-sample rows are computed per evaluation batch, like the
runner's former rows were per sampling batch (BLAS sums may differ in the last bit between batch sizes;
conf/metrics/gmm.yaml uses batches of 250, the testbed experiment's batch size).

Cost of ``EnergyDistance``: pairwise distances in blocks of bounded size (memory), and above
``max_samples`` = 2,000 observations a seeded subsample of 2,000 of them (time; at most 2,000 completions
and 8,000 draws with ``draws: 4``); up to that size the value is exactly the former one.

Seed of the exact reference draws (``EnergyDistance``, ``PosteriorLogLikExact``): draw k of sample i comes
from ``SampleGenerators(seed, [i], stream=REFERENCE_STREAM + k)`` with ``seed`` the RUN's seed
(``seed`` in its config.yaml) unless the metric's ``seed`` option is set; the former runner summary used
the run's seed too, so every run, seed 0 included, gets exactly its former numbers.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch

from alm import gmm_metrics as gm
from alm.backbones.gmm import GaussianMixture
from alm.errors import ConfigError, DataError
from alm.metrics.base import Metric, _as_batch_mask, run_backbone

#: the ``_target_`` of the run's ``backbone`` node these metrics accept
GMM_TARGET = "alm.backbones.gmm.GaussianMixture"


def run_mixture(run_cfg: Any, what: str = "this metric") -> GaussianMixture:
    """The exact mixture a run sampled from, built from its config's ``backbone`` node (``alm.config.build``)."""
    return run_backbone(run_cfg, GMM_TARGET, GaussianMixture, what, "Gaussian mixture", "gmm")


#: the last mixture ``run_mixture`` built: ``key`` (its node as JSON) and ``mixture`` (on the CPU)


class MixtureMetric(Metric):
    """Base of the mixture metrics: the run's mixture (``bind_run``), its seed and sample indices, and (for
    metrics with a set-level value) the inputs of every update, concatenated at ``compute()``."""

    regions = ("full",)  # a mixture metric judges the completed image, not a region of it
    higher_is_better: Optional[bool] = None
    #: keep every update's inputs for a set-level ``compute()``
    keeps_set: bool = False

    def __init__(self, region: str = "full") -> None:
        super().__init__(region)
        self.mixture: Optional[GaussianMixture] = None
        self.run_seed: Optional[int] = None
        self.indices: Optional[list[int]] = None
        self._inputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._labels: list[Any] = []

    # -- the run ------------------------------------------------------------------------------------
    def bind_run(self, run_cfg: Any, indices: Optional[Sequence[int]] = None) -> None:
        self.mixture = run_mixture(run_cfg, self.title).to(self.device)
        seed = run_cfg.get("seed")
        self.run_seed = None if seed is None else int(seed)
        self.indices = None if indices is None else [int(i) for i in indices]

    def setup(self, device: torch.device) -> None:
        super().setup(device)
        if self.mixture is not None:
            self.mixture.to(self.device)

    def _mix(self) -> GaussianMixture:
        if self.mixture is None:
            raise ConfigError(f"{self.title} needs the run it scores (bind_run(run_config, indices); "
                              "the evaluation stage does this)")
        return self.mixture

    def _cond(self, labels: Optional[Sequence[Any]], batch: int):
        return gm.labels_to_cond(self._mix(), labels, batch)

    # -- streaming ----------------------------------------------------------------------------------
    @torch.no_grad()
    def update(self, output: torch.Tensor, source: torch.Tensor, mask: torch.Tensor,
               labels: Optional[Sequence[Any]] = None, metas: Optional[Sequence[dict]] = None) -> Optional[torch.Tensor]:
        self._mix()
        n = output.shape[0]
        labels = list(labels) if labels is not None else [None] * n
        if self.keeps_set:
            self._inputs.append((output.float(), source.float(), _as_batch_mask(mask, output)))
            self._labels += labels
        if self.per_sample:
            return super().update(output, source, mask, labels, metas)
        return None

    def values(self, output, source, mask, labels, metas) -> torch.Tensor:
        return self.sample_values(self._mix(), gm.completed(output, source, mask), source, mask,
                                  self._cond(labels, output.shape[0]))

    def sample_values(self, mixture: GaussianMixture, x: torch.Tensor, x_obs: torch.Tensor, mask: torch.Tensor,
                      cond) -> torch.Tensor:
        """Per-sample values of completed images ``x`` (per-sample metrics)."""
        raise NotImplementedError

    def _whole_set(self):
        """(outputs, sources, masks, cond) of every update so far, as one batch (as the runner's summary had)."""
        x = torch.cat([a for a, _, _ in self._inputs])
        x_obs = torch.cat([b for _, b, _ in self._inputs])
        mask = torch.cat([c for _, _, c in self._inputs])
        return x, x_obs, mask, self._cond(self._labels, x.shape[0])

    def compute(self) -> float:
        if not self.keeps_set:
            return super().compute()
        if not self._inputs:
            return math.nan
        return self.set_value(self._mix(), *self._whole_set())

    def set_value(self, mixture: GaussianMixture, x: torch.Tensor, x_obs: torch.Tensor, mask: torch.Tensor,
                  cond) -> float:
        """The summary value of outputs ``x`` (NOT completed) of the whole set."""
        raise NotImplementedError

    def reset(self) -> None:
        super().reset()
        self._inputs, self._labels = [], []


# -- per sample ------------------------------------------------------------------------------------------
class Component(MixtureMetric):
    """The most likely component of the completed image (an index: rows only, no summary value)."""

    title = "component of the completion"
    aggregate = None

    def sample_values(self, mixture, x, x_obs, mask, cond):
        return gm.component(mixture, x)


class ComponentWeight(MixtureMetric):
    """The exact posterior weight, given the observation, of the completion's component."""

    title = "posterior weight of the completion's component"

    def sample_values(self, mixture, x, x_obs, mask, cond):
        return gm.component_weight(mixture, x, x_obs, mask, cond)


class Coherent(MixtureMetric):
    """1 if the completion's component has posterior weight >= ``tau`` given the observation, else 0."""

    title = "coherent"
    higher_is_better = True

    def __init__(self, tau: float = 1e-3, region: str = "full") -> None:
        super().__init__(region)
        self.tau = float(tau)

    def sample_values(self, mixture, x, x_obs, mask, cond):
        return gm.coherent(mixture, x, x_obs, mask, self.tau, cond)


class PosteriorLogLik(MixtureMetric):
    """log p(x[U] | x_obs[O]) under the exact posterior; summary: its mean over the whole set. No direction:
    over-sharpened completions score above exact draws (compare with ``posterior_loglik_exact``)."""

    title = "exact posterior log-density"
    aggregate = "compute"
    keeps_set = True

    def sample_values(self, mixture, x, x_obs, mask, cond):
        return gm.posterior_loglik(mixture, x, x_obs, mask, cond)

    def set_value(self, mixture, x, x_obs, mask, cond):
        xc = gm.completed(x, x_obs, mask)
        return float(gm.posterior_loglik(mixture, xc, x_obs, mask, cond).cpu().mean())


def _set_variance_ratio(mixture, x, x_obs, mask) -> float:
    return float(gm.sample_variance_ratio(mixture, gm.completed(x, x_obs, mask), mask).cpu().nanmean())


class VarianceRatio(MixtureMetric):
    """Mean over the hole of ((x - mu_k) / s_k)^2 for the completion's component k; summary: the nan-mean
    over the whole set (1 = calibrated, < 1 over-sharpened; best at 1: see ``VarianceLogError``)."""

    title = "variance ratio (best at 1)"
    aggregate = "compute"
    keeps_set = True

    def sample_values(self, mixture, x, x_obs, mask, cond):
        return gm.sample_variance_ratio(mixture, x, mask)

    def set_value(self, mixture, x, x_obs, mask, cond):
        return _set_variance_ratio(mixture, x, x_obs, mask)


# -- set metrics ---------------------------------------------------------------------------------------
class SetMixtureMetric(MixtureMetric):
    per_sample = False
    keeps_set = True


class Coherence(SetMixtureMetric):
    """Share of the completions that are coherent with their observation (weight >= ``tau``)."""

    title = "coherence"
    higher_is_better = True

    def __init__(self, tau: float = 1e-3, region: str = "full") -> None:
        super().__init__(region)
        self.tau = float(tau)

    def set_value(self, mixture, x, x_obs, mask, cond):
        return float(gm.coherent(mixture, gm.completed(x, x_obs, mask), x_obs, mask, self.tau, cond).cpu().mean())


class TotalVariation(SetMixtureMetric):
    """Stratified total variation between the completions' component frequencies and the exact posterior
    weights (``gmm_metrics.stratified_tv``)."""

    title = "component total variation"
    higher_is_better = False

    def set_value(self, mixture, x, x_obs, mask, cond):
        k = gm.component(mixture, gm.completed(x, x_obs, mask)).cpu()
        return gm.stratified_tv(k, mixture.posterior_weights(x_obs, mask, cond))


class VarianceLogError(SetMixtureMetric):
    """|log variance_ratio| of the whole set (0 = calibrated)."""

    title = "|log variance ratio|"
    higher_is_better = False

    def set_value(self, mixture, x, x_obs, mask, cond):
        ratio = _set_variance_ratio(mixture, x, x_obs, mask)
        return abs(math.log(ratio)) if ratio > 0 else math.inf


class ReferenceDrawMetric(SetMixtureMetric):
    """A set metric against exact posterior draws for the run's own observations (see the module doc:
    ``seed`` None = the run's seed)."""

    def __init__(self, seed: Optional[int] = None, region: str = "full") -> None:
        super().__init__(region)
        self.seed = None if seed is None else int(seed)

    def bind_run(self, run_cfg: Any, indices: Optional[Sequence[int]] = None) -> None:
        super().bind_run(run_cfg, indices)
        if self.seed is None and self.run_seed is None:
            raise ConfigError(f"{self.title}: the run's config has no seed; set the metric's seed option")

    def _seed(self) -> int:
        return int(self.seed if self.seed is not None else self.run_seed)

    def _indices(self, n: int) -> list[int]:
        """The bound sample indices, checked against the ``n`` samples seen."""
        if self.indices is None:
            raise ConfigError(f"{self.title} needs the run's sample indices (bind_run(run_config, indices))")
        if len(self.indices) != n:
            raise DataError(f"{self.title}: bound to {len(self.indices)} sample indices but got {n} samples")
        return self.indices

    def _draws(self, mixture, x_obs, mask, cond, draws: int, indices: Optional[list[int]] = None) -> torch.Tensor:
        indices = self._indices(x_obs.shape[0]) if indices is None else indices
        return gm.reference_draws(mixture, x_obs, mask, self._seed(), indices, cond, draws)


class EnergyDistance(ReferenceDrawMetric):
    """Energy distance between the completed full images and ``draws`` exact posterior draws per observation
    (pooled; unbiased U-statistic form, ~0 for exact draws, may be slightly negative).

    Quadratic in the number of observations: above ``max_samples`` (default 2,000; None = all) it uses a
    seeded subsample of ``max_samples`` observations (``gmm_metrics.energy_subsample``, the reference draws'
    seed), their completions and their draws only."""

    title = "energy distance to exact draws"
    higher_is_better = False
    version = 2  # 2: at most max_samples observations (the same value as version 1 up to 2,000)

    def __init__(self, seed: Optional[int] = None, draws: int = gm.REFERENCE_DRAWS,
                 max_samples: Optional[int] = gm.ENERGY_MAX_SAMPLES, region: str = "full") -> None:
        super().__init__(seed, region)
        self.draws = int(draws)
        if self.draws < 1:
            raise ConfigError(f"{self.title}: draws={draws} must be at least 1")
        self.max_samples = None if max_samples is None else int(max_samples)
        if self.max_samples is not None and self.max_samples < 2:
            raise ConfigError(f"{self.title}: max_samples={max_samples} must be at least 2 (or null: all)")

    def set_value(self, mixture, x, x_obs, mask, cond):
        indices = self._indices(x.shape[0])
        keep = gm.energy_subsample(len(indices), self._seed(), self.max_samples)
        if keep is not None:
            x, x_obs, mask = x[keep], x_obs[keep], mask[keep]
            cond = None if cond is None else cond[keep]
            indices = [indices[i] for i in keep.tolist()]
        draws = self._draws(mixture, x_obs, mask, cond, self.draws, indices)
        return gm.energy_distance_joint(gm.completed(x, x_obs, mask), torch.cat(list(draws)))


class PosteriorLogLikExact(ReferenceDrawMetric):
    """Mean exact posterior log-density of one exact draw per observation (reference draw 0): what
    ``posterior_loglik`` is for the exact sampler on these observations (a reference, no direction)."""

    title = "exact draws' posterior log-density"

    def set_value(self, mixture, x, x_obs, mask, cond):
        first = self._draws(mixture, x_obs, mask, cond, 1)[0]  # = draw 0 of the energy distance's draws
        return float(gm.posterior_loglik(mixture, first, x_obs, mask, cond).mean())
