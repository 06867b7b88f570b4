"""Every method's update against a hand computation of docs/method.md §1-8 on tiny tensors.

The reference loops below are written from the equations, independently of ``alm.steps``.
"""

from __future__ import annotations

import math

import pytest
import torch

from alm.errors import ConfigError, NumericalError
from alm.config import build_method
from alm.methods.base import Problem
from alm.observation import Trajectory
from alm.rng import SampleGenerators
from alm.sampling import CallCounter, reverse
from alm.schedule import make_schedule
from conftest import LINEAR_SCHEDULER, ToyBackbone

B, SHAPE, STEPS, SEED, G = 3, (1, 4, 4), 6, 7, 2.5


def setup(trajectory=True):
    torch.manual_seed(0)
    net = ToyBackbone(SHAPE)
    sched = make_schedule(LINEAR_SCHEDULER, STEPS)
    x0 = torch.randn(B, *SHAPE)
    mask = (torch.rand(B, *SHAPE) > 0.5).float()
    traj = torch.randn(STEPS, B, *SHAPE) if trajectory else None
    labels = [0.5, -1.0, 2.0]
    problem = Problem(x0=x0, mask=mask, cond=net.make_cond(labels, B), observation=Trajectory(traj) if traj is not None else None)
    return net, sched, problem


def toy_eps(net, z, t, c):
    c = c.view(-1, 1, 1, 1)
    return net.a * z + net.d * z.mean(dim=(1, 2, 3), keepdim=True) + net.b * t / 1000 + c


def cfg_eps(net, z, t, c, g):
    e0 = toy_eps(net, z, t, torch.zeros_like(c))
    return e0 + g * (toy_eps(net, z, t, c) - e0)


def ddim(y, e, ab_t, ab_s):
    x0 = (y - math.sqrt(1 - ab_t) * e) / math.sqrt(ab_t)
    return math.sqrt(ab_s) * x0 + math.sqrt(1 - ab_s) * e


def sigma_of(ab_t, ab_s):
    return math.sqrt((1 - ab_s) / (1 - ab_t)) * math.sqrt(1 - ab_t / ab_s)


def levels(sched, i):
    return int(sched.timesteps[i]), float(sched.ab[i]), float(sched.ab_prev[i])


def run(method, net, sched, problem, guidance=G, counter=None, sampler="ddim"):
    gens = SampleGenerators(SEED, list(range(B)))
    return reverse(net, method, problem, sched, gens, guidance=guidance, sampler=sampler, counter=counter)


def init_noise():
    return SampleGenerators(SEED, list(range(B)))


def test_alm_reference_order_matches_spec():
    net, sched, p = setup()
    w1, w2 = 0.7, 0.3
    out = run(build_method("alm", w1=w1, w2=w2), net, sched, p)
    gens = init_noise()
    y = gens.randn(SHAPE)
    m, c = p.mask, p.cond
    for i in range(STEPS):
        t, ab_t, ab_s = levels(sched, i)
        s, x = sigma_of(ab_t, ab_s), p.observation.trajectory[i]
        e_y = toy_eps(net, y, t, c)
        e_e = toy_eps(net, (1 - m) * x + m * y, t, c)
        y1 = y + s * m * (w1 * (e_y - e_e) - w2 * e_e)
        y = ddim(y1, cfg_eps(net, y1, t, c, G), ab_t, ab_s) + w1 * s * (1 - m) * (x - y1)
    assert torch.allclose(out, y, atol=1e-5)


def test_alm_fused_is_paper_eq1():
    net, sched, p = setup()
    w1, w2 = 0.7, 0.3
    out = run(build_method("alm", w1=w1, w2=w2, order="fused"), net, sched, p)
    y = init_noise().randn(SHAPE)
    m, c = p.mask, p.cond
    for i in range(STEPS):
        t, ab_t, ab_s = levels(sched, i)
        s, x = sigma_of(ab_t, ab_s), p.observation.trajectory[i]
        e_y = toy_eps(net, y, t, c)
        e_e = toy_eps(net, (1 - m) * x + m * y, t, c)
        # Eq. 1 with w2_eq1 = lambda1 = w1 and w3 = lambda1 + lambda2 = w1 + w2, all times sigma_t.
        y = ddim(y, cfg_eps(net, y, t, c, G), ab_t, ab_s) + s * w1 * (1 - m) * (x - y) + m * s * (w1 * e_y - (w1 + w2) * e_e)
    assert torch.allclose(out, y, atol=1e-5)


@pytest.mark.parametrize("n", [2, 3])
def test_alm_iterations_are_eq8(n):
    net, sched, p = setup()
    w1, w2 = 0.7, 0.3
    out = run(build_method("alm", w1=w1, w2=w2, iterations=n), net, sched, p)
    y = init_noise().randn(SHAPE)
    m, c = p.mask, p.cond
    for i in range(STEPS):
        t, ab_t, ab_s = levels(sched, i)
        s, x = sigma_of(ab_t, ab_s), p.observation.trajectory[i]
        l1, l2 = s * w1 / n, s * w2 / n  # w2 = N l1, w3 = N (l1 + l2)
        for _ in range(n):
            e_y = toy_eps(net, y, t, c)
            e_e = toy_eps(net, (1 - m) * x + m * y, t, c)
            y = y + m * (l1 * (e_y - e_e) - l2 * e_e)
        y = ddim(y, cfg_eps(net, y, t, c, G), ab_t, ab_s) + w1 * s * (1 - m) * (x - y)
    assert torch.allclose(out, y, atol=1e-5)


def test_ablations():
    net, sched, p = setup()
    wo_alm = run(build_method("alm", likelihood=False), net, sched, p)
    zero = run(build_method("alm", w_cond=0.0, w2=0.0), net, sched, p)
    assert torch.allclose(wo_alm, zero, atol=1e-6)
    # w/o ALM is Eq. 3 with the ALM schedule
    y = init_noise().randn(SHAPE)
    m, c = p.mask, p.cond
    for i in range(STEPS):
        t, ab_t, ab_s = levels(sched, i)
        s, x = sigma_of(ab_t, ab_s), p.observation.trajectory[i]
        y = ddim(y, cfg_eps(net, y, t, c, G), ab_t, ab_s) + 1.0 * s * (1 - m) * (x - y)
    assert torch.allclose(wo_alm, y, atol=1e-5)
    full = run(build_method("alm"), net, sched, p)
    wo_cond = run(build_method("alm", w_cond=0.0), net, sched, p)
    wo_joint = run(build_method("alm", w2=0.0), net, sched, p)
    for other in (wo_alm, wo_cond, wo_joint):
        assert not torch.allclose(full, other, atol=1e-6)


def test_syncsde_own_schedule():
    net, sched, p = setup()
    lam = 5.0
    out = run(build_method("syncsde", lam=lam), net, sched, p)
    y = init_noise().randn(SHAPE)
    m, c = p.mask, p.cond
    T = int(sched.timesteps[0])
    for i in range(STEPS):
        t, ab_t, ab_s = levels(sched, i)
        gamma = math.sqrt(ab_s / ab_t) - math.sqrt((1 - ab_s) / (1 - ab_t))
        y = ddim(y, cfg_eps(net, y, t, c, G), ab_t, ab_s) - gamma * lam * (t / T) * (1 - m) * (y - p.observation.trajectory[i])
    assert torch.allclose(out, y, atol=1e-5)


def test_bld_blends_noised_source_and_ends_on_it():
    net, sched, p = setup(trajectory=False)
    out = run(build_method("bld"), net, sched, p)
    gens = init_noise()
    y = gens.randn(SHAPE)
    m, c = p.mask, p.cond
    for i in range(STEPS):
        t, ab_t, ab_s = levels(sched, i)
        y = ddim(y, cfg_eps(net, y, t, c, G), ab_t, ab_s)
        noised = math.sqrt(ab_s) * p.x0 + math.sqrt(1 - ab_s) * gens.randn(SHAPE)
        y = m * y + (1 - m) * noised
    assert torch.allclose(out, y, atol=1e-5)
    assert torch.allclose((1 - m) * out, (1 - m) * p.x0, atol=1e-6)  # ab_s = 1 at the last step


@pytest.mark.parametrize("imputation", [False, True])
def test_reconstruction_guidance_gradient_through_network(imputation):
    net, sched, p = setup(trajectory=False)
    w_r = 5.0
    out = run(build_method("recon_guidance", w_r=w_r, imputation=imputation), net, sched, p)
    gens = init_noise()
    y = gens.randn(SHAPE)
    m, c, x0 = p.mask, p.cond, p.x0
    D = int(torch.tensor(SHAPE).prod())
    eye = torch.eye(D)
    for i in range(STEPS):
        t, ab_t, ab_s = levels(sched, i)
        sa, s1 = math.sqrt(ab_t), math.sqrt(1 - ab_t)
        e = cfg_eps(net, y, t, c, G)
        x0_hat = (y - s1 * e) / sa
        # d x0_hat / d y = (I - s1 (a I + d/D 11^T)) / sa   (the toy network's Jacobian)
        J = (eye - s1 * (net.a * eye + net.d / D * torch.ones(D, D))) / sa
        r = (-2 * (1 - m) * (x0 - x0_hat)).reshape(B, D)
        grad = (r @ J).reshape(B, *SHAPE)
        x0_t = x0_hat - (w_r * sa / 2) * m * grad
        e_t = (y - sa * x0_t) / s1
        y = math.sqrt(ab_s) * x0_t + math.sqrt(1 - ab_s) * e_t
        if imputation:
            y = m * y + (1 - m) * (math.sqrt(ab_s) * x0 + math.sqrt(1 - ab_s) * gens.randn(SHAPE))
    assert torch.allclose(out, y, atol=1e-4)


def test_plain_ddim_ignores_observation():
    net, sched, p = setup(trajectory=False)
    out = run(build_method("ddim"), net, sched, p)
    p2 = Problem(x0=torch.randn_like(p.x0), mask=1 - p.mask, cond=p.cond)
    assert torch.equal(out, run(build_method("ddim"), net, sched, p2))


@pytest.mark.parametrize(
    "name,params,calls,evals",
    [
        ("alm", {}, 2, 4),  # reference order: [e(Y), e(E)] then [e(Y',c), e(Y',∅)]
        ("alm", {"order": "fused"}, 1, 3),  # Eq. 1: e(Y,c), e(Y,∅), e(E,c) in one call
        ("alm", {"iterations": 3}, 4, 8),
        ("syncsde", {}, 1, 2),
        ("bld", {}, 1, 2),
        ("ddim", {}, 1, 2),
    ],
)
def test_evaluations_per_step_in_batched_calls(name, params, calls, evals):
    net, sched, p = setup()
    counter = CallCounter()
    run(build_method(name, **params), net, sched, p, counter=counter)
    assert counter.calls == calls * STEPS
    assert counter.evaluations == evals * STEPS * B


def test_no_cfg_when_guidance_is_one():
    net, sched, p = setup()
    counter = CallCounter()
    run(build_method("alm", order="fused"), net, sched, p, guidance=1.0, counter=counter)
    assert counter.evaluations == 2 * STEPS * B


@pytest.mark.parametrize("name,params", [("alm", {}), ("alm", {"order": "fused"}), ("syncsde", {}), ("bld", {}), ("recon_guidance", {"imputation": True})])
def test_output_does_not_depend_on_batch(name, params):
    net, sched, p = setup()
    full = run(build_method(name, **params), net, sched, p)
    for j in range(B):
        sub = Problem(x0=p.x0[j : j + 1], mask=p.mask[j : j + 1], cond=p.cond[j : j + 1], observation=Trajectory(p.observation.trajectory[:, j : j + 1]))
        one = reverse(net, build_method(name, **params), sub, sched, SampleGenerators(SEED, [j]), guidance=G)
        assert torch.allclose(one[0], full[j], atol=1e-6)


def test_ddpm_sampler_adds_the_same_terms():
    net, sched, p = setup()
    out = run(build_method("alm", likelihood=False), net, sched, p, sampler="ddpm")
    gens = init_noise()
    y = gens.randn(SHAPE)
    m, c = p.mask, p.cond
    for i in range(STEPS):
        t, ab_t, ab_s = levels(sched, i)
        s, x = sigma_of(ab_t, ab_s), p.observation.trajectory[i]
        e = cfg_eps(net, y, t, c, G)
        x0 = (y - math.sqrt(1 - ab_t) * e) / math.sqrt(ab_t)
        alpha = ab_t / ab_s
        mean = math.sqrt(ab_s) * (1 - alpha) / (1 - ab_t) * x0 + math.sqrt(alpha) * (1 - ab_s) / (1 - ab_t) * y
        y = mean + s * gens.randn(SHAPE) + s * (1 - m) * (x - y)
    assert torch.allclose(out, y, atol=1e-5)


def test_nan_reports_sample_ids():
    net, sched, p = setup()
    net.nan_for = -1.0  # the label of sample 1
    with pytest.raises(NumericalError, match=r"sample\(s\) \[1\]"):
        run(build_method("alm"), net, sched, p)


def test_bad_method_parameters():
    with pytest.raises(ConfigError, match=r"method/nope.*choices: alm, alm_fused"):
        build_method("nope")
    with pytest.raises(ConfigError, match=r"no parameter\(s\) w9; it takes: imputation, iterations, likelihood, order, sequential, w1, w2, w_cond"):
        build_method("alm", w9=1)
    with pytest.raises(ConfigError, match=r"w2='abc' is not a valid float"):
        build_method("alm", w2="abc")
    with pytest.raises(ConfigError, match=r"iterations=1.5 is not a valid int"):
        build_method("alm", iterations=1.5)
    with pytest.raises(ConfigError, match=r"likelihood=1 is not a valid bool"):
        build_method("alm", likelihood=1)
    assert build_method("syncsde", lam=50).lam == 50.0 and isinstance(build_method("syncsde", lam=50).lam, float)
    with pytest.raises(ConfigError, match="order"):
        build_method("alm", order="sideways")
    with pytest.raises(ConfigError, match="iterations"):
        build_method("alm", iterations=0)


def test_schedule_with_every_training_timestep():
    sd_like = {**LINEAR_SCHEDULER, "steps_offset": 1, "set_alpha_to_one": False}
    sched = make_schedule(sd_like, 1000)
    assert sched.timesteps[0] == 999 and sched.timesteps[-1] == 0 and len(sched) == 1000
    with pytest.raises(ConfigError, match="sampler.steps"):
        make_schedule(sd_like, 1001)


def test_conditional_backbone_without_condition_samples_unconditionally():
    net, sched, p = setup()
    p.cond = None
    out = run(build_method("alm", order="fused"), net, sched, p)
    p.cond = net.null_cond(B)
    assert torch.allclose(out, run(build_method("alm", order="fused"), net, sched, p))
