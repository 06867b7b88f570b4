"""The exact Gaussian-process testbed (backbone=gp, docs/wide_gp.md): exact eps, exact canvas law, draws."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from alm import steps
from alm.backbones.gp import GaussianProcessMixture, kernel_matrix, kernel_values
from alm.errors import ConfigError, DataError
from alm.schedule import make_schedule

CONF = Path(__file__).resolve().parents[1] / "conf"
TIMESTEPS = [0, 1, 10, 100, 250, 500, 750, 999]

TINY = [  # both kernels, three components, unequal weights: every branch of eps on 6 entries
    {"weight": 0.2, "mean": -0.5, "kernel": "matern52", "length_scale": 1.5, "variance": 0.09},
    {"weight": 0.5, "mean": 0.3, "kernel": "se", "length_scale": 2.5, "variance": 0.04},
    {"weight": 0.3, "mean": 0.0, "kernel": "se", "length_scale": 0.7, "variance": 0.25},
]


@pytest.fixture(scope="module")
def gp() -> GaussianProcessMixture:
    return GaussianProcessMixture()


@pytest.fixture(scope="module")
def tiny() -> GaussianProcessMixture:
    return GaussianProcessMixture(length=6, components=TINY, nugget=1e-3)


def _reference_eps(gp: GaussianProcessMixture, z: torch.Tensor, t: int) -> torch.Tensor:
    """-sqrt(1-ab) grad log p_t(z), p_t written independently with torch.distributions (float64)."""
    ab = float(gp.alphas_cumprod[t])
    d = gp.canvas_distribution()
    eye = torch.eye(gp.length, dtype=torch.float64)
    comp = MultivariateNormal(ab**0.5 * d["means"], covariance_matrix=ab * d["covs"] + (1 - ab) * eye)
    p_t = MixtureSameFamily(Categorical(probs=d["weights"]), comp)
    zf = z.reshape(z.shape[0], -1).clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(p_t.log_prob(zf).sum(), zf)
    return -((1 - ab) ** 0.5) * grad


def _noisy(gp: GaussianProcessMixture, n: int, t: int, seed: int = 0) -> torch.Tensor:
    """Forward-noised exact draws at level t, plus two far-out points (extreme responsibilities)."""
    g = torch.Generator().manual_seed(seed)
    x0, _ = gp.sample(n, g)
    ab = float(gp.alphas_cumprod[t])
    z = ab**0.5 * x0 + (1 - ab) ** 0.5 * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    z[:2] *= 3
    return z


# --- eps -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", TIMESTEPS)
def test_eps_is_the_score_of_the_noised_mixture(tiny, t):
    z = _noisy(tiny, 64, t)
    got = tiny.eps(z, torch.full((z.shape[0],), t), None).reshape(z.shape[0], -1)
    torch.testing.assert_close(got, _reference_eps(tiny, z, t), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("t", [0, 300, 999])
def test_eps_of_the_default_window_is_exact_too(gp, t):
    z = _noisy(gp, 16, t, seed=3)
    got = gp.eps(z, torch.full((16,), t), None).reshape(16, -1)
    torch.testing.assert_close(got, _reference_eps(gp, z, t), rtol=1e-8, atol=1e-9)


def test_eps_rows_are_independent_of_the_batch_and_of_mixed_timesteps(tiny):
    z = _noisy(tiny, 12, 400)
    t = torch.tensor([0, 400, 999] * 4)
    batch = tiny.eps(z, t, None)
    rows = torch.cat([tiny.eps(z[i : i + 1], t[i : i + 1], None) for i in range(12)])
    torch.testing.assert_close(batch, rows, rtol=0, atol=1e-13)


def test_eps_keeps_the_input_dtype_and_the_process_stays_float64():
    gp = GaussianProcessMixture(length=8).float()  # a runner casting backbones must not cast the process
    assert gp.log_weights.dtype == torch.float64 and gp.window_covs.dtype == torch.float64
    z = torch.randn(3, 1, 1, 8)
    out = gp.eps(z, torch.full((3,), 500), None)
    assert out.dtype == torch.float32 and out.shape == z.shape
    torch.testing.assert_close(out.double(), gp.eps(z.double(), torch.full((3,), 500), None), rtol=1e-5, atol=1e-6)


def test_kernels():
    d = torch.arange(5, dtype=torch.float64)
    torch.testing.assert_close(kernel_values("se", d, 2.0, 0.5), 0.5 * torch.exp(-d**2 / 8))
    r = math.sqrt(5) * d / 2.0
    torch.testing.assert_close(kernel_values("matern52", d, 2.0, 0.5), 0.5 * (1 + r + r**2 / 3) * torch.exp(-r))
    gp = GaussianProcessMixture()
    for c in gp.components:  # stationary: a Toeplitz matrix, variance + nugget on the diagonal
        k = kernel_matrix(c, 10, gp.nugget)
        assert torch.allclose(k.diagonal(), torch.full((10,), c.variance + gp.nugget, dtype=torch.float64))
        assert torch.allclose(k[1:, 1:], k[:-1, :-1])


# --- the canvas law ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [32, 56, 128, 200])
def test_every_window_of_the_canvas_is_the_window_process(gp, length):
    win = gp.canvas_distribution()
    can = gp.canvas_distribution(length)
    assert torch.equal(can["weights"], win["weights"])
    for a in range(0, length - gp.length + 1):
        sl = slice(a, a + gp.length)
        assert torch.equal(can["means"][:, sl], win["means"])
        torch.testing.assert_close(can["covs"][:, sl, sl], win["covs"], rtol=0, atol=1e-15)


def test_moments_are_those_of_the_mixture(gp):
    mean, cov = gp.moments(40)
    d = gp.canvas_distribution(40)
    w = d["weights"]
    torch.testing.assert_close(mean, w @ d["means"])
    second = sum(w[k] * (d["covs"][k] + torch.outer(d["means"][k], d["means"][k])) for k in range(len(w)))
    torch.testing.assert_close(cov, second - torch.outer(mean, mean))
    # default: equal weights, means -0.5 / +0.5, variance 0.0625 (+ nugget): marginal variance 0.3126
    assert abs(float(cov[0, 0]) - (0.0625 + 1e-4 + 0.25)) < 1e-12


def test_exact_draws_have_the_canvas_law(gp):
    g = torch.Generator().manual_seed(0)
    x, k = gp.sample(4000, g, 80)
    assert x.shape == (4000, 1, 1, 80) and x.dtype == torch.float64
    assert abs(float(k.double().mean()) - 0.5) < 0.03
    d = gp.canvas_distribution(80)
    flat = x.reshape(4000, -1)
    for c in range(2):
        xc = flat[k == c]
        assert float((xc.mean(0) - d["means"][c]).abs().max()) < 0.05
        emp = torch.cov(xc.T)  # entry-wise sampling std about 0.0625 * sqrt(2 / 2000) = 0.002
        assert float((emp - d["covs"][c]).abs().max()) < 0.012
        lags = torch.stack([torch.diagonal(emp, h).mean() - torch.diagonal(d["covs"][c], h).mean() for h in range(20)])
        assert float(lags.abs().max()) < 0.006  # the covariance at each lag, averaged along the canvas
    # the same generator state gives the same draws; the window is the default
    assert torch.equal(gp.sample(3, torch.Generator().manual_seed(1))[0], gp.sample(3, torch.Generator().manual_seed(1))[0])
    assert gp.sample(2, g)[0].shape == (2, 1, 1, 32)


def test_a_window_tells_the_default_components_apart(gp):
    g = torch.Generator().manual_seed(2)
    x, k = gp.sample(3000, g, 32)
    assert torch.equal(gp.assign(x), k)  # one window: every draw assigned to its own component
    lr = gp.log_responsibilities(x[..., :8])  # the 8 entries a window of stride 24 observes
    assert float((lr.argmax(-1) == k).double().mean()) > 0.995
    torch.testing.assert_close(gp.log_prob(x), torch.logsumexp(lr.new_zeros(1) + gp.log_weights + gp.component_log_likelihoods(x), -1))


def test_ddim_with_the_exact_eps_reproduces_the_window_law(gp):
    """50 DDIM steps on the exact eps: a loose check (DDIM's own discretisation loses ~5% of the variance)."""
    sched = make_schedule(gp.scheduler_config, 50)
    g = torch.Generator().manual_seed(1)
    B = 2000
    y = torch.randn(B, 1, 1, gp.length, generator=g, dtype=torch.float64)
    for i in range(len(sched)):
        e = gp.eps(y, sched.timesteps[i : i + 1].expand(B), None)
        y = steps.ddim_step(y, e, sched.ab[i], sched.ab_prev[i])
    x = y.reshape(B, -1)
    mean, cov = gp.moments()
    emp = torch.cov(x.T)
    assert float((x.mean(0) - mean).abs().max()) < 0.05
    assert float((emp - cov).norm() / cov.norm()) < 0.1
    ratio = float((emp.diagonal() / cov.diagonal()).mean())
    assert 0.9 < ratio < 1.03
    assert abs(float(gp.assign(x).double().mean()) - 0.5) < 0.04


# --- config --------------------------------------------------------------------------------------------------
def test_the_yaml_builds_the_default_process(gp):
    node = OmegaConf.load(CONF / "backbone" / "gp.yaml")
    built = instantiate(node)
    assert isinstance(built, GaussianProcessMixture) and built.same_parameters(gp)
    assert built.sample_shape == built.data_shape == (1, 1, 32) and built.analytic and not built.conditional
    assert built.scheduler_config["num_train_timesteps"] == 1000


def test_bad_configs_are_one_line_errors():
    with pytest.raises(ConfigError, match="kernel"):
        GaussianProcessMixture(components=[{"kernel": "rbf"}])
    with pytest.raises(ConfigError, match="unknown key"):
        GaussianProcessMixture(components=[{"lengthscale": 3}])
    with pytest.raises(ConfigError, match="positive"):
        GaussianProcessMixture(components=[{"variance": 0}])
    with pytest.raises(ConfigError, match="resolution"):
        GaussianProcessMixture(length=16, resolution=32)
    with pytest.raises(DataError, match="expects"):
        GaussianProcessMixture(length=8).eps(torch.zeros(2, 1, 1, 9), torch.tensor([0, 0]), None)
