"""The exact Gaussian-mixture testbed: exact eps, exact posterior, metrics, data set, method=exact."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from alm import gmm_metrics as gm
from alm.backbones.base import Backbone
from alm.backbones.gmm import SCHEDULER_CONFIG, GaussianMixture
from alm.data.gmm import GMMDataset
from alm.errors import ConfigError
from alm.methods.ddim import Plain
from alm.methods.base import Problem
from alm.methods.exact import Exact
from alm.rng import SampleGenerators
from alm.sampling import reverse
from alm.schedule import make_schedule

CONF = Path(__file__).resolve().parents[1] / "conf"
TIMESTEPS = [0, 1, 10, 100, 250, 500, 750, 999]


@pytest.fixture(scope="module")
def gmm() -> GaussianMixture:
    return GaussianMixture()


def _alphas_cumprod() -> torch.Tensor:
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(SCHEDULER_CONFIG).alphas_cumprod.double()


def _reference_eps(mix: GaussianMixture, z: torch.Tensor, t: int, keep: torch.Tensor | None = None) -> torch.Tensor:
    """-sqrt(1-ab) grad log p_t(z), p_t written independently with torch.distributions (float64)."""
    ab = float(_alphas_cumprod()[t])
    logits = mix.log_weights.clone()
    if keep is not None:
        logits = logits.masked_fill(~keep, -math.inf)
    comp = Independent(Normal(ab**0.5 * mix.means, (ab * mix.stds**2 + 1 - ab).sqrt()), 1)
    p_t = MixtureSameFamily(Categorical(logits=logits), comp)
    z = z.reshape(z.shape[0], -1).clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(p_t.log_prob(z).sum(), z)
    return -((1 - ab) ** 0.5) * grad


def _noisy(mix: GaussianMixture, n: int, t: int, seed: int = 0) -> torch.Tensor:
    """Points where p_t has mass: forward-noised prior draws, plus a few far-out points."""
    x0, _ = mix.sample(SampleGenerators(seed, range(n)))
    ab = float(_alphas_cumprod()[t])
    g = torch.Generator().manual_seed(seed + 1)
    z = ab**0.5 * x0.double() + (1 - ab) ** 0.5 * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    z[:2] *= 3  # far from every component: responsibilities are extreme there
    return z


def _center_mask(shape=(1, 8, 8), keep: float = 0.5) -> torch.Tensor:
    """mask=center: the centre square of side keep*H observed (0), the rest unobserved (1)."""
    c, h, w = shape
    s = int(round(keep * h))
    m = torch.ones(1, 1, h, w)
    m[..., (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s] = 0
    return m


def _observations(mix: GaussianMixture, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    data = GMMDataset(mix, size=n, seed=seed)
    items = [data[i] for i in range(n)]
    return torch.stack([it.image for it in items]), torch.tensor([it.meta["component"] for it in items])


# --- eps ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("t", TIMESTEPS)
def test_eps_exact_unconditional(gmm, t):
    z = _noisy(gmm, 64, t)
    out = gmm.eps(z.reshape(-1, 1, 8, 8), torch.full((64,), t), None).reshape(64, -1)
    assert out.dtype == torch.float64
    assert torch.allclose(out, _reference_eps(gmm, z, t), atol=1e-8, rtol=0)


@pytest.mark.parametrize("t", [0, 100, 500, 999])
def test_eps_exact_general_mixture(t):
    """Ungrouped, unequal weights, per-entry stds, 2 channels."""
    g = torch.Generator().manual_seed(3)
    stds = (0.05 + 0.3 * torch.rand(5, 2, 3, 3, generator=g, dtype=torch.float64)).tolist()
    mix = GaussianMixture(shape=[2, 3, 3], groups=0, num_components=5, weights=[1, 2, 3, 4, 5], std=stds, means_seed=7)
    z = _noisy(mix, 32, t)
    out = mix.eps(z.reshape(-1, 2, 3, 3), torch.full((32,), t), None).reshape(32, -1)
    assert torch.allclose(out, _reference_eps(mix, z, t), atol=1e-8, rtol=0)


@pytest.mark.parametrize("t", [0, 100, 500, 999])
def test_eps_exact_class_conditional(t):
    mix = GaussianMixture(num_classes=3)
    assert mix.conditional and mix.component_class.tolist() == [k % 3 for k in range(12)]
    z = _noisy(mix, 16, t)
    for c in (-1, 0, 1, 2):
        cond = mix.make_cond([c] * 16, 16) if c >= 0 else mix.null_cond(16)
        out = mix.eps(z.reshape(-1, 1, 8, 8), torch.full((16,), t), cond).reshape(16, -1)
        keep = None if c < 0 else torch.arange(12) % 3 == c
        assert torch.allclose(out, _reference_eps(mix, z, t, keep), atol=1e-8, rtol=0)
    # a batch mixing labels equals the per-label answers
    labels = torch.tensor([-1, 0, 1, 2] * 4)
    mixed = mix.eps(z.reshape(-1, 1, 8, 8), torch.full((16,), t), labels).reshape(16, -1)
    for c in (-1, 0, 1, 2):
        rows = labels == c
        keep = None if c < 0 else torch.arange(12) % 3 == c
        assert torch.allclose(mixed[rows], _reference_eps(mix, z[rows], t, keep), atol=1e-8, rtol=0)


def test_eps_is_differentiable():
    """Reconstruction guidance differentiates through eps."""
    mix = GaussianMixture(shape=[1, 2, 2], groups=2, shared_size=1)
    z = torch.randn(3, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: mix.eps(z, torch.tensor([100, 100, 500]), None), (z,))


def test_eps_dtype_device_and_cast(gmm):
    z = torch.randn(3, 1, 8, 8)
    out = gmm.eps(z, torch.tensor([10, 10, 10]), None)
    assert out.dtype == torch.float32 and out.shape == z.shape
    mix = GaussianMixture().to(torch.float16)  # a runner's dtype cast must not degrade the mixture
    assert mix.means.dtype == torch.float64
    assert torch.equal(mix.eps(z, torch.tensor([10] * 3), None), out)
    assert GaussianMixture().scheduler_config == SCHEDULER_CONFIG
    sched = make_schedule(gmm.scheduler_config, 50)
    assert torch.allclose(sched.ab, _alphas_cumprod()[sched.timesteps])


# --- exact posterior -----------------------------------------------------------------------------------

def _brute_force_weights(mix: GaussianMixture, x_obs: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Bayes on the observed marginals: w_k ∝ pi_k prod_{d observed} N(x_d; mu_kd, s_kd)."""
    x = x_obs.reshape(x_obs.shape[0], 1, -1).double()
    logn = Normal(mix.means[None], mix.stds[None]).log_prob(x)  # (B, K, D)
    ll = (logn * observed.reshape(observed.shape[0], 1, -1)).sum(-1)
    return torch.softmax(mix.log_weights[None] + ll, dim=-1)


def test_posterior_weights_brute_force(gmm):
    x_obs, _ = _observations(gmm, 32)
    centre = _center_mask()
    w = gmm.posterior_weights(x_obs, centre)
    observed = (1 - centre).expand(32, 1, 8, 8)
    assert torch.allclose(w, _brute_force_weights(gmm, x_obs, observed), atol=1e-12)
    # per-sample random masks, and the class-conditional restriction
    g = torch.Generator().manual_seed(0)
    masks = (torch.rand(32, 1, 8, 8, generator=g) < 0.8).float()
    w = gmm.posterior_weights(x_obs, masks)
    assert torch.allclose(w, _brute_force_weights(gmm, x_obs, 1 - masks), atol=1e-12)
    mix = GaussianMixture(num_classes=4)
    wc = mix.posterior_weights(x_obs, centre, mix.make_cond([1] * 32, 32))
    ref = _brute_force_weights(mix, x_obs, observed) * (torch.arange(12) % 4 == 1)
    assert torch.allclose(wc, ref / ref.sum(1, keepdim=True), atol=1e-12)


def test_posterior_log_prob_brute_force(gmm):
    x_obs, _ = _observations(gmm, 8)
    mask = _center_mask()
    x = gmm.posterior_sample(x_obs, mask, SampleGenerators(1, range(8)))
    w = _brute_force_weights(gmm, x_obs, (1 - mask).expand(8, 1, 8, 8))
    logn = Normal(gmm.means[None], gmm.stds[None]).log_prob(x.reshape(8, 1, -1).double())
    ll = (logn * mask.reshape(1, 1, -1)).sum(-1)
    ref = torch.logsumexp(w.log() + ll, dim=-1)
    assert torch.allclose(gmm.posterior_log_prob(x, x_obs, mask), ref, atol=1e-9)
    # full-image helpers agree with torch.distributions
    full = MixtureSameFamily(Categorical(logits=gmm.log_weights), Independent(Normal(gmm.means, gmm.stds), 1))
    assert torch.allclose(gmm.log_prob(x), full.log_prob(x.reshape(8, -1).double()), atol=1e-9)


def test_exact_posterior_samples_one_observation(gmm):
    """Many exact draws for ONE observation: component frequencies and variances are right."""
    n = 4000
    x_obs, _ = _observations(gmm, 1)
    x_obs = x_obs.expand(n, -1, -1, -1)
    mask = _center_mask()
    x = gmm.posterior_sample(x_obs, mask, SampleGenerators(5, range(n)))
    assert torch.equal(x * (1 - mask), x_obs * (1 - mask))  # observed entries copied
    w = gmm.posterior_weights(x_obs[:1], mask)[0]
    counts = torch.bincount(gmm.assign(x), minlength=12).double()
    support = w * n > 5
    chi2 = float(((counts[support] - n * w[support]) ** 2 / (n * w[support])).sum())
    assert chi2 < 30, chi2  # ~chi-square with < 12 degrees of freedom
    assert counts[~support].sum() <= 5
    assert abs(gm.variance_ratio(gmm, x, mask) - 1) < 0.02
    assert gm.coherence(gmm, x, x_obs, mask) == 1.0


def test_exact_posterior_metrics_many_observations(gmm):
    n = 2048
    x_obs, _ = _observations(gmm, n)
    mask = _center_mask()
    a = gmm.posterior_sample(x_obs, mask, SampleGenerators(1, range(n)))
    b = gmm.posterior_sample(x_obs, mask, SampleGenerators(2, range(n)))
    assert gm.coherence(gmm, a, x_obs, mask) == 1.0
    assert gm.tv(gmm, a, x_obs, mask) < 0.06  # its sampling noise is ~0.023 +- 0.008 at n = 2048
    assert abs(gm.variance_ratio(gmm, a, mask) - 1) < 0.02
    ed_same = gm.energy_distance(a, b, mask)
    shifted = b + 0.1 * mask  # every unobserved entry moved by 2/3 of a std
    ed_shift = gm.energy_distance(a, shifted, mask)
    assert abs(ed_same) < 0.02 and ed_shift > 0.1, (ed_same, ed_shift)
    assert gm.variance_ratio(gmm, gmm.means[gm.component(gmm, a)].reshape(a.shape).float(), mask) < 1e-6
    summary = gm.gmm_summary(gmm, a, x_obs, mask, b)
    assert summary["coherence"] == 1.0 and summary["energy_distance"] == pytest.approx(gm.energy_distance_joint(a, b))
    assert {"coherence", "tv", "energy_distance", "variance_ratio", "variance_log_error", "posterior_loglik"} <= set(summary)
    rows = gm.per_sample(gmm, a, x_obs, mask)
    assert all(v.shape == (n,) for v in rows.values())
    assert torch.allclose(rows["posterior_loglik"], gm.posterior_loglik(gmm, a, x_obs, mask))


def test_metrics_detect_bad_samplers(gmm):
    """Ignoring the observation breaks coherence; always taking the heaviest member breaks tv/variance."""
    n = 512
    x_obs, _ = _observations(gmm, n)
    mask = _center_mask()
    prior, _ = gmm.sample(SampleGenerators(9, range(n)))
    blind = mask * prior + (1 - mask) * x_obs
    assert gm.coherence(gmm, blind, x_obs, mask) < 0.5
    # pooled over observations the blind sampler matches the prior; the stratified TV does not
    pooled = torch.bincount(gm.component(gmm, blind), minlength=12).double() / n
    assert gm.component_tv(pooled, gmm.posterior_weights(x_obs, mask).mean(0)) < 0.15
    assert gm.tv(gmm, blind, x_obs, mask) > 0.5
    w = gmm.posterior_weights(x_obs, mask)
    mode = gmm.image(gmm.means[w.argmax(1)]).float()
    greedy = mask * mode + (1 - mask) * x_obs
    assert gm.coherence(gmm, greedy, x_obs, mask) == 1.0
    assert gm.tv(gmm, greedy, x_obs, mask) > 0.3
    assert gm.variance_ratio(gmm, greedy, mask) < 0.01


def test_joint_energy_distance_sees_what_pooling_hides(gmm):
    """Full-image energy distance: ~0 for exact draws, > 0 for observation-blind and mode completions."""
    n = 1000
    x_obs, _ = _observations(gmm, n)
    mask = _center_mask()
    draws = gmm.posterior_sample(x_obs, mask, SampleGenerators(20, range(n)))
    exact = gmm.posterior_sample(x_obs, mask, SampleGenerators(1, range(n)))
    prior, _ = gmm.sample(SampleGenerators(9, range(n)))
    blind = mask * prior + (1 - mask) * x_obs
    mode = mask * gmm.image(gmm.means[gmm.posterior_weights(x_obs, mask).argmax(1)]).float() + (1 - mask) * x_obs
    ed = {name: gm.energy_distance_joint(x, draws) for name, x in (("exact", exact), ("blind", blind), ("mode", mode))}
    assert abs(ed["exact"]) < 0.006 and ed["blind"] > 0.012 and ed["mode"] > 0.2, ed
    assert abs(gm.energy_distance(blind, draws, mask)) < 0.006  # the pooled version is blind to it


def test_energy_distance_matches_definition():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, 1, 2, 2, generator=g), torch.randn(5, 1, 2, 2, generator=g) + 1
    mask = torch.ones(1, 1, 2, 2)
    A, B = a.reshape(7, -1).double(), b.reshape(5, -1).double()
    d = lambda u, v: (u[:, None] - v[None]).norm(dim=-1)  # noqa: E731
    ref = 2 * d(A, B).mean() - d(A, A).sum() / (7 * 6) - d(B, B).sum() / (5 * 4)
    assert gm.energy_distance(a, b, mask) == pytest.approx(float(ref), abs=1e-12)


# --- the default mixture is hard -------------------------------------------------------------------------

def test_default_mixture_is_hard(gmm):
    assert gmm.num_components == 12 and gmm.sample_shape == (1, 8, 8)
    assert torch.allclose(gmm.weights, torch.tensor([0.5, 0.3, 0.2] * 4, dtype=torch.float64) / 4)
    centre = _center_mask()
    assert torch.equal(gmm.shared_mask(), centre)  # shared region = what mask=center keeps
    obs = (centre.flatten() == 0)
    for g in range(4):
        members = gmm.group == g
        # identical observed marginals inside a group, different means elsewhere
        assert (gmm.means[members][:, obs] == gmm.means[members][0, obs]).all()
        assert (gmm.stds[members][:, obs] == gmm.stds[members][0, obs]).all()
        out = gmm.means[members][:, ~obs]
        assert torch.pdist(out).min() > 10 * 0.15
    # groups differ on the observed centre, but the closest pair only by group_gap = 6 stds
    centres = gmm.means[::3][:, obs]
    assert torch.pdist(centres).min() / 0.15 == pytest.approx(6.0)
    assert float(gmm.means.abs().max()) < 1.25
    # a default observation leaves >= 2 components with weight > 0.1, and identifies the group
    x_obs, comps = _observations(gmm, 256)
    w = gmm.posterior_weights(x_obs, centre)
    assert ((w > 0.1).sum(1) >= 2).all()
    group_mass = w.reshape(256, 4, 3).sum(-1)
    assert (group_mass.argmax(1) == gmm.group[comps]).double().mean() > 0.97


# --- the exact eps drives the shared core -----------------------------------------------------------------

def test_ddim_on_exact_eps_samples_the_prior(gmm):
    n = 2000
    problem = Problem(x0=torch.zeros(n, 1, 8, 8), mask=torch.ones(1, 1, 8, 8))
    x = reverse(gmm, Plain(), problem, make_schedule(gmm.scheduler_config, 50), SampleGenerators(0, range(n)))
    freq = torch.bincount(gmm.assign(x), minlength=12).double() / n
    assert gm.component_tv(freq, gmm.weights) < 0.06, freq
    assert gmm.log_prob(x).mean() > gmm.log_prob(gmm.sample(SampleGenerators(1, range(n)))[0]).mean() - 20


# --- data set and configs ------------------------------------------------------------------------------

def test_dataset_items(gmm):
    data = GMMDataset(gmm, size=16, seed=3)
    again = GMMDataset({"std": 0.15}, size=100, seed=3)
    item = data[5]
    assert item.image.shape == (1, 8, 8) and item.image.dtype == torch.float32 and item.label is None
    assert torch.equal(item.image, again[5].image) and item.meta == again[5].meta
    assert not torch.equal(item.image, GMMDataset(gmm, size=16, seed=4)[5].image)
    assert int(gmm.assign(item.image[None])) == item.meta["component"]
    with pytest.raises(IndexError):
        data[16]
    # item i equals the backbone's batch draw with the data stream's generators
    x, k = gmm.sample(SampleGenerators(3, [5], stream=2))
    assert torch.equal(x[0], item.image) and int(k) == item.meta["component"]
    cond = GMMDataset(GaussianMixture(num_classes=4), size=8, seed=0)
    assert all(cond[i].label == cond[i].meta["component"] % 4 for i in range(8))


def test_dataset_refuses_other_backbones(gmm):
    with pytest.raises(ConfigError):
        GMMDataset(None)
    data = GMMDataset(gmm, size=4)
    data.check(GaussianMixture())
    with pytest.raises(ConfigError):
        data.check(GaussianMixture(std=0.2))

    class Other(Backbone):
        pass

    with pytest.raises(ConfigError):
        data.check(Other())


def test_yaml_configs_instantiate():
    backbone = OmegaConf.load(CONF / "backbone" / "gmm.yaml")
    dataset = OmegaConf.load(CONF / "dataset" / "gmm.yaml")
    cfg = OmegaConf.create({"backbone": backbone, "dataset": dataset})
    mix = instantiate(cfg.backbone)
    data = instantiate(cfg.dataset)
    assert isinstance(mix, GaussianMixture) and mix.same_parameters(GaussianMixture())
    assert len(data) == 256 and data.mixture.same_parameters(mix) and cfg.dataset.name == "gmm"
    data.check(mix)
    cfg.backbone.mixture.num_classes = 4  # the data set follows the backbone's node
    assert instantiate(cfg.dataset).mixture.conditional
    other = OmegaConf.create({"backbone": {"name": "sd15"}, "dataset": dataset})
    with pytest.raises(Exception) as err:  # hydra wraps the ConfigError in an InstantiationException
        instantiate(other.dataset)
    assert isinstance(err.value.__cause__, ConfigError) and "backbone=gmm" in str(err.value.__cause__)


def test_means_and_std_from_files(tmp_path, gmm):
    means = gmm.image(gmm.means).numpy()
    np.save(tmp_path / "m.npy", means)
    torch.save(torch.from_numpy(means).float(), tmp_path / "m.pt")
    a = GaussianMixture(means=str(tmp_path / "m.npy"))
    b = GaussianMixture(means=str(tmp_path / "m.pt"), std=[0.1] * 12)
    assert torch.equal(a.means, gmm.means) and a.same_parameters(gmm)
    assert torch.allclose(b.means, gmm.means, atol=1e-6) and (b.stds == 0.1).all()
    with pytest.raises(ConfigError):
        GaussianMixture(means="m.npy")  # relative: never the working directory
    with pytest.raises(ConfigError):
        GaussianMixture(means=str(tmp_path / "m.npy"), groups=5)  # 12 means for 5 x 3 components
    with pytest.raises(ConfigError):
        GaussianMixture(stds=0.1)  # unknown parameter


# --- method=exact ------------------------------------------------------------------------------------

def test_exact_method(gmm):
    class Other(Backbone):
        pass

    with pytest.raises(ConfigError, match="backbone=gmm"):
        Exact().check(Other(), None)
    Exact().check(gmm, None)
    x_obs, _ = _observations(gmm, 6)
    mask = _center_mask()
    problem = Problem(x0=x_obs, mask=mask)
    out = reverse(gmm, Exact(), problem, make_schedule(gmm.scheduler_config, 50), SampleGenerators(0, range(6)))
    assert torch.equal(out, gmm.posterior_sample(x_obs, mask, SampleGenerators(0, range(6))))
    # a sample depends on its own generator only, not on the batch
    alone = Exact().sample_directly(gmm, Problem(x0=x_obs[4:5], mask=mask), SampleGenerators(0, [4]))
    assert torch.equal(alone[0], out[4])


# --- the evaluation stage's metrics (metrics=gmm): see the end of this file -------------------------------


def test_metrics_judge_the_observation_plus_the_completion(gmm):
    """A prior sample whose own observed part differs from the observation must not score as exact."""
    n = 1000
    x_obs, _ = _observations(gmm, n)
    mask = _center_mask()
    prior, _ = gmm.sample(SampleGenerators(9, range(n)))  # what method=ddim produces: observation ignored
    draws = gmm.posterior_sample(x_obs, mask, SampleGenerators(20, range(n)))
    s = gm.gmm_summary(gmm, prior, x_obs, mask, draws)
    blind = gm.gmm_summary(gmm, mask * prior + (1 - mask) * x_obs, x_obs, mask, draws)
    assert s["energy_distance"] == pytest.approx(blind["energy_distance"]) and s["energy_distance"] > 0.012
    assert s["coherence"] == blind["coherence"] < 0.5


# --- the evaluation stage's metrics (metrics=gmm) = the former runner path, bitwise ---------------------
# A frozen copy of the former runner hooks (``GaussianMixture.sample_metrics`` / ``summary_metrics``, i.e.
# alm/gmm_metrics.py ``sample_rows`` / ``run_summary`` at commit 53a5980), self-contained so that a later
# change of alm.gmm_metrics (issue 10: a faster energy distance) cannot move both sides at once.

def _old_completed(x, x_obs, mask):
    m = torch.broadcast_to(mask.to(x.device, x.dtype), x.shape)
    return m * x + (1 - m) * x_obs.to(x.device, x.dtype)


def _old_variance_ratio(mixture, x, mask):
    k = mixture.assign(x)
    xf = x.reshape(x.shape[0], -1).to(mixture.means)
    unobs = 1.0 - mixture.observed_entries(mask, x)
    z2 = ((xf - mixture.means[k]) / mixture.stds[k]) ** 2
    return (z2 * unobs).sum(1) / unobs.sum(1)


def _old_per_sample(mixture, x, x_obs, mask, tau=1e-3, cond=None):
    x = _old_completed(x, x_obs, mask)
    k = mixture.assign(x)
    w = mixture.posterior_weights(x_obs, mask, cond).gather(1, k[:, None])[:, 0]
    return {"component": k.cpu(), "component_weight": w.cpu(), "coherent": (w >= tau).double().cpu(),
            "posterior_loglik": mixture.posterior_log_prob(x, x_obs, mask, cond).cpu(),
            "variance_ratio": _old_variance_ratio(mixture, x, mask).cpu()}


def _old_stratified_tv(assigned, weights):
    assigned, weights = assigned.cpu(), weights.cpu().double()
    strata = weights.argmax(dim=1)
    total = 0.0
    for s in strata.unique():
        rows = strata == s
        freq = torch.bincount(assigned[rows], minlength=weights.shape[1]).double() / int(rows.sum())
        total += int(rows.sum()) * float(0.5 * (freq - weights[rows].mean(0)).abs().sum())
    return total / assigned.numel()


def _old_mean_pairwise_distance(a, b, exclude_diagonal=False, chunk=1024):
    total = 0.0
    for start in range(0, a.shape[0], chunk):
        total += float(torch.cdist(a[start : start + chunk], b).sum())
    pairs = a.shape[0] * (b.shape[0] - 1) if exclude_diagonal else a.shape[0] * b.shape[0]
    return total / pairs


def _old_energy_distance_joint(x, y):
    a, b = x.reshape(x.shape[0], -1).double(), y.reshape(y.shape[0], -1).double()
    if a.shape[0] < 2 or b.shape[0] < 2:
        return math.nan
    mpd = _old_mean_pairwise_distance
    return 2 * mpd(a, b) - mpd(a, a, True) - mpd(b, b, True)


def _old_cond(mixture, labels, batch):
    if labels is None or not mixture.conditional or any(l is None for l in labels):
        return None
    return mixture.make_cond(list(labels), batch)


def _old_sample_rows(mixture, outputs, sources, masks, labels=None, tau=1e-3):
    rows = _old_per_sample(mixture, outputs, sources, masks, tau, _old_cond(mixture, labels, outputs.shape[0]))
    return [{k: (int(v[i]) if k == "component" else float(v[i])) for k, v in rows.items()} for i in range(outputs.shape[0])]


def _old_run_summary(mixture, run_dir, seed, indices, tau=1e-3):
    files = [torch.load(Path(run_dir) / "samples" / f"{int(i):05d}.pt", weights_only=False) for i in indices]
    device = mixture.means.device
    outputs = torch.stack([f["output"] for f in files]).to(device)
    sources = torch.stack([f["source"] for f in files]).to(device)
    masks = torch.stack([f["mask"] for f in files]).to(device)
    cond = _old_cond(mixture, [f.get("label") for f in files], len(files))
    draws = torch.stack([
        mixture.posterior_sample(sources, masks, SampleGenerators(seed, indices, stream=3 + k), cond=cond)
        for k in range(4)
    ])
    rows = _old_per_sample(mixture, outputs, sources, masks, tau, cond)
    ratio = float(rows["variance_ratio"].nanmean())
    return {
        "coherence": float(rows["coherent"].mean()),
        "tv": _old_stratified_tv(rows["component"], mixture.posterior_weights(sources, masks, cond)),
        "variance_ratio": ratio,
        "variance_log_error": abs(math.log(ratio)) if ratio > 0 else math.inf,
        "posterior_loglik": float(rows["posterior_loglik"].mean()),
        "energy_distance": _old_energy_distance_joint(_old_completed(outputs, sources, masks), torch.cat(list(draws))),
        "posterior_loglik_exact": float(mixture.posterior_log_prob(draws[0], sources, masks, cond).mean()),
    }


GMM_SUMMARY_KEYS = ["coherence", "tv", "energy_distance", "variance_ratio", "variance_log_error", "posterior_loglik",
                    "posterior_loglik_exact"]
GMM_ROW_KEYS = ["component", "component_weight", "coherent", "posterior_loglik", "variance_ratio"]


def _gmm_run_folder(run_dir: Path, overrides: list[str], n: int, completions: str = "mixed"):
    """A hand-made run folder of ``backbone=gmm`` (config.yaml + samples/), as the runner writes one.

    Completions: exact posterior draws, observation-blind prior draws, noisy sources and component means
    in turn (``mixed``), or the exact sampler's output (``exact``: what ``method=exact`` produces)."""
    from alm.config import build, compose
    from alm.run_folder import save_sample

    cfg = compose(["backbone=gmm", "dataset=gmm", "mask=center", f"num_samples={n}", *overrides])
    mix, data, masks = build(cfg.backbone), build(cfg.dataset), build(cfg.mask)
    items = [data[i] for i in range(n)]
    x_obs = torch.stack([it.image for it in items])
    size = tuple(x_obs.shape[-2:])
    mask = torch.stack([masks.get(i, size) for i in range(n)])
    labels = [it.label for it in items]
    cond = mix.make_cond(labels, n) if mix.conditional else None
    exact = mix.posterior_sample(x_obs, mask, SampleGenerators(int(cfg.seed), range(n)), cond=cond)
    if completions == "exact":
        out = exact
    else:
        prior, _ = mix.sample(SampleGenerators(11, range(n)), cond=cond)
        g = torch.Generator().manual_seed(12)
        noisy = x_obs + 0.2 * torch.randn(x_obs.shape, generator=g)
        means = mix.image(mix.means[mix.posterior_weights(x_obs, mask, cond).argmax(1)]).float()
        out = torch.stack([(exact, prior, noisy, means)[i % 4][i] for i in range(n)])
    (run_dir / "samples").mkdir(parents=True)
    from omegaconf import OmegaConf

    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    for i in range(n):
        save_sample(run_dir, i, {"source": x_obs[i], "mask": mask[i], "masked": x_obs[i] * (1 - mask[i]),
                                 "output": out[i].float(), "label": labels[i], "meta": items[i].meta,
                                 "cost": {"seconds": 0.0, "evaluations": 0.0, "cached_evaluations": 0.0}})
    return cfg, mix, x_obs, mask, out.float(), labels


def _gmm_metric_set(batch_size: int | None = None, overrides: list[str] = ()):
    from alm.evaluate import compose_evaluate
    from alm.metrics import prepare_metrics

    mset = prepare_metrics(compose_evaluate(["metrics=gmm", *[f"metrics.{o}" for o in overrides]]).metrics)
    if batch_size is not None:
        mset.batch_size = batch_size
    return mset


@pytest.mark.parametrize("overrides", [["seed=0"], ["seed=3", "backbone.mixture.num_classes=4", "mask=random_pixels"]],
                         ids=["seed0", "seed3-conditional-random-masks"])
def test_gmm_metric_set_equals_the_former_runner_path_bitwise(tmp_path, overrides):
    """metrics=gmm through the evaluation stage == the former runner hooks, compared with == (not allclose):
    per-sample rows (same batches), the row means the runner reported, and the run summary."""
    from alm.evaluate import evaluate_run

    n, batch = 38, 16
    cfg, mix, x_obs, mask, out, labels = _gmm_run_folder(tmp_path / "run", overrides, n)
    mset = _gmm_metric_set(batch)
    ev = evaluate_run(tmp_path / "run", mset, torch.device("cpu"), progress=False)

    chunks = [slice(s, s + batch) for s in range(0, n, batch)]
    old_rows = [r for c in chunks for r in _old_sample_rows(mix, out[c], x_obs[c], mask[c], labels[c])]
    assert [r["sample"] for r in ev.rows] == list(range(n))
    for new, old in zip(ev.rows, old_rows):
        assert {k: new[k] for k in GMM_ROW_KEYS} == old
    old_summary = _old_run_summary(mix, tmp_path / "run", int(cfg.seed), list(range(n)))
    assert {k: ev.summary[k] for k in GMM_SUMMARY_KEYS} == old_summary
    for k in ("component_weight", "coherent"):  # the runner's former means of its per-sample rows
        assert ev.summary[k] == sum(r[k] for r in old_rows) / n
    assert "component" not in ev.summary  # an index: rows only
    assert 0 < old_summary["coherence"] < 1 and old_summary["tv"] > 0  # the completions are not all good
    if mix.conditional:
        assert old_summary != _old_run_summary(GaussianMixture(), tmp_path / "run", int(cfg.seed), list(range(n)))
    # the cached values (eval/per_sample.csv, eval/values.json) give the same numbers again
    again = evaluate_run(tmp_path / "run", _gmm_metric_set(batch), torch.device("cpu"), progress=False)
    assert again.rows == ev.rows and again.summary == ev.summary


def test_gmm_reference_draws_use_the_runs_seed_unless_the_metric_sets_one(tmp_path):
    from alm.evaluate import evaluate_run

    n = 12
    _, mix, *_ = _gmm_run_folder(tmp_path / "run", ["seed=2"], n)
    run_seed = evaluate_run(tmp_path / "run", _gmm_metric_set(), torch.device("cpu"), progress=False).summary
    assert run_seed["energy_distance"] == _old_run_summary(mix, tmp_path / "run", 2, list(range(n)))["energy_distance"]
    fixed = evaluate_run(tmp_path / "run", _gmm_metric_set(overrides=["energy_distance.seed=5", "posterior_loglik_exact.seed=5"]),
                         torch.device("cpu"), progress=False).summary
    old5 = _old_run_summary(mix, tmp_path / "run", 5, list(range(n)))
    assert fixed["energy_distance"] == old5["energy_distance"] != run_seed["energy_distance"]
    assert fixed["posterior_loglik_exact"] == old5["posterior_loglik_exact"]


def test_gmm_metrics_need_a_gmm_run(tmp_path):
    """Another backbone, or a folder without config.yaml, is a one-line ConfigError before any update."""
    from omegaconf import OmegaConf

    from alm.config import compose
    from alm.evaluate import evaluate_run

    _gmm_run_folder(tmp_path / "run", [], 4)
    other = compose(["backbone=sd15-tiny", "dataset=gmm"])
    (tmp_path / "run" / "config.yaml").write_text(OmegaConf.to_yaml(other, resolve=False))
    with pytest.raises(ConfigError) as err:
        evaluate_run(tmp_path / "run", _gmm_metric_set(), torch.device("cpu"), progress=False)
    msg = str(err.value)
    assert msg.startswith("metrics.component: ") and "backbone=gmm" in msg and "\n" not in msg
    (tmp_path / "run" / "config.yaml").unlink()
    with pytest.raises(ConfigError, match="config.yaml"):
        evaluate_run(tmp_path / "run", _gmm_metric_set(), torch.device("cpu"), progress=False)
    # only the pixel columns of the set: no run needed
    mset = _gmm_metric_set()
    for k in [k for k in mset.metrics if not k.startswith(("mse", "psnr", "ssim"))]:
        del mset.metrics[k], mset.configs[k], mset.ranked[k]
    assert set(evaluate_run(tmp_path / "run", mset, torch.device("cpu"), progress=False).summary) >= {"mse_hole", "ssim"}


def test_gmm_metric_set_directions_match_the_experiment():
    """conf/metrics/gmm.yaml ranks what experiments/gmm.yaml ranks, and has every column of its table."""
    exp = OmegaConf.load(Path(__file__).resolve().parents[1] / "experiments" / "gmm.yaml")
    assert "metrics=gmm" in list(exp.overrides)
    mset = _gmm_metric_set()
    assert mset.directions() == {k: v == "higher" for k, v in exp.rank.items()}
    cost = {"method", "evaluations", "seconds"}
    assert set(exp.columns) - cost <= {k for k, m in mset.metrics.items() if not m.per_sample or m.aggregate}
    assert set(exp.rank) | set(exp.sweep_columns) <= set(mset.metrics)
    assert [k for k, m in mset.metrics.items() if m.per_sample][:5] == GMM_ROW_KEYS
    assert [k for k, m in mset.metrics.items() if not m.per_sample] == [k for k in GMM_SUMMARY_KEYS if k not in GMM_ROW_KEYS]


def _table_row(path: Path, label: str) -> dict[str, str]:
    lines = [l for l in path.read_text().splitlines() if l.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == label:
            return dict(zip(header, cells))
    raise AssertionError(f"no row {label!r} in {path}")


def test_committed_table_exact_row_reproduces(tmp_path):
    """results/gmm/table.md, row "exact" (seed 0, 1,000 sources), to the last printed digit: method=exact's
    outputs are exact posterior draws from the run's generators, so no sampling is needed."""
    from alm.evaluate import evaluate_run
    from alm.tables import fmt

    overrides = ["task=inpaint", "sampler=ddim", "sampler.steps=50", "dataset.size=1000", "batch_size=250", "seed=0",
                 "method=exact", "metrics=gmm"]
    _gmm_run_folder(tmp_path / "run", overrides, 1000, completions="exact")
    summary = evaluate_run(tmp_path / "run", _gmm_metric_set(), torch.device("cpu"), progress=False).summary
    row = _table_row(Path(__file__).resolve().parents[1] / "results" / "gmm" / "table.md", "exact")
    for col in ("coherence", "tv", "energy_distance", "variance_ratio", "posterior_loglik", "mse_hole"):
        assert fmt(summary[col]) == row[col], (col, summary[col], row[col])


# --- the energy distance's cost is bounded ---------------------------------------------------------------

def test_pairwise_distances_are_summed_in_bounded_blocks(monkeypatch):
    """Memory: no distance matrix larger than chunk x cols, whatever the sizes (same mean)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, 6, generator=g, dtype=torch.float64), torch.randn(130, 6, generator=g, dtype=torch.float64)
    blocks, cdist = [], torch.cdist
    monkeypatch.setattr(torch, "cdist", lambda x, y, *args, **kw: blocks.append((x.shape[0], y.shape[0])) or cdist(x, y))
    assert gm.mean_pairwise_distance(a, b, chunk=16, cols=40) == pytest.approx(float(cdist(a, b).mean()), rel=1e-12)
    assert max(r for r, _ in blocks) == 16 and max(c for _, c in blocks) == 40 and len(blocks) == 4 * 4
    blocks.clear()
    gm.mean_pairwise_distance(torch.zeros(3000, 2), torch.zeros(9000, 2))  # the defaults: 1024 x 8192 at most
    assert max(r * c for r, c in blocks) <= 1024 * 8192


def test_energy_distance_uses_a_seeded_subsample_above_2000_observations(gmm, monkeypatch):
    """Time: above ENERGY_MAX_SAMPLES = 2,000 observations the metric uses a seeded subsample of 2,000
    observations and their 4 draws each (rows passed to the pairwise distance are counted)."""
    from alm.config import compose
    from alm.metrics.gmm import EnergyDistance

    n = 2100
    x_obs, _ = _observations(gmm, n)
    mask = _center_mask().expand(n, -1, -1, -1)
    prior, _ = gmm.sample(SampleGenerators(1, range(n)))
    run_cfg = OmegaConf.create(OmegaConf.to_container(compose(["backbone=gmm", "dataset=gmm", "seed=0"]), resolve=True))
    calls, mpd = [], gm.mean_pairwise_distance
    monkeypatch.setattr(gm, "mean_pairwise_distance", lambda a, b, *args, **kw: calls.append((a.shape[0], b.shape[0]))
                        or mpd(a, b, *args, **kw))

    def value(**options) -> float:
        metric = EnergyDistance(**options)
        metric.bind_run(run_cfg, list(range(100, 100 + n)))
        for s in range(0, n, 700):
            metric.update(prior[s : s + 700].float(), x_obs[s : s + 700], mask[s : s + 700])
        return metric.compute()

    first = value()
    assert gm.ENERGY_MAX_SAMPLES == 2000 and calls == [(2000, 8000), (2000, 2000), (8000, 8000)]
    assert value() == first  # seeded: the same subsample again
    keep = gm.energy_subsample(n, 0)
    assert keep.tolist() == sorted(set(keep.tolist())) and len(keep) == 2000 and gm.energy_subsample(2000, 0) is None
    assert not torch.equal(keep, gm.energy_subsample(n, 1))  # the seed (the reference draws' seed) chooses it
    calls.clear()
    small = value(max_samples=None)  # every observation (quadratic)
    assert calls[0] == (n, 4 * n) and abs(small - first) < 0.01
