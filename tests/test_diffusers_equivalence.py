"""Our schedule, steps and sampling core against diffusers' schedulers (STYLE: "compare with a reference").

A tiny random-weight ``UNet2DModel`` (built from config after ``torch.manual_seed(0)``) is the
network; nothing touches the Hugging Face hub. Two DDIM configurations are checked: Stable
Diffusion's (``steps_offset=1``, ``set_alpha_to_one=False``, scaled-linear betas) and the original
DDPM one (``steps_offset=0``, ``set_alpha_to_one=True``, linear betas). ``clip_sample`` is off: our
samplers never clip x0.

Precision. Every comparison runs twice:

- float64 (network, samples AND the schedulers' alpha tables cast to float64): rounding is gone, so
  any difference is a difference in the math; the tolerances are the strict ones (1e-6 per step,
  1e-5 for a whole sampling run) and the observed differences are ~1e-12.
- float32, as samplers run in practice. diffusers computes its coefficients (``alpha ** 0.5``) in
  float32, we in float64, so single steps differ by a few ulp; along a chained trajectory the random
  network amplifies those ulp (its input->output gain is ~10), and a random network is no denoiser, so
  the DDIM trajectory grows to |x| ~ 1e2. The float32 tolerances are therefore relative to the
  trajectory's magnitude (``tol * max(1, max|x|)``) and looser for chained runs.

DDPM noise: ``DDPMScheduler.step`` draws its noise with ``torch.randn(shape, generator=g,
dtype=model_output.dtype)``; we hand it a fresh generator with a known seed and draw the same
tensor for ``alm.steps.ddpm_step`` (its ``noise`` argument).
"""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from diffusers import DDIMInverseScheduler, DDIMScheduler, DDPMScheduler, UNet2DModel  # noqa: E402

from alm import steps  # noqa: E402
from alm.backbones.diffusers_unet import DiffusersUNet  # noqa: E402
from alm.config import build_method  # noqa: E402
from alm.methods.base import Problem  # noqa: E402
from alm.rng import SampleGenerators  # noqa: E402
from alm.sampling import CallCounter, invert, reverse  # noqa: E402
from alm.schedule import make_schedule  # noqa: E402

NUM_STEPS = 20
BATCH = 2
SIZE = 16

SCHEDULERS = {
    "sd": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1, set_alpha_to_one=False),
    "ddpm": dict(beta_schedule="linear", beta_start=0.0001, beta_end=0.02, steps_offset=0, set_alpha_to_one=True),
}
DTYPES = {"float64": torch.float64, "float32": torch.float32}
# (single step, whole sampling run, inversion trajectory); float32 ones are relative, see the docstring
TOL = {torch.float64: (1e-6, 1e-5, 1e-6), torch.float32: (1e-6, 1e-5, 1e-5)}


@pytest.fixture(scope="module")
def unet32() -> UNet2DModel:
    torch.manual_seed(0)
    model = UNet2DModel(
        sample_size=SIZE, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def unets(unet32) -> dict:
    import copy

    return {torch.float32: unet32, torch.float64: copy.deepcopy(unet32).double()}


def _tables_to(sched, dtype: torch.dtype):
    """Cast a diffusers scheduler's alpha tables (computed in float32) to ``dtype``, values unchanged."""
    for attr in ("alphas_cumprod", "final_alpha_cumprod", "initial_alpha_cumprod", "one", "alphas", "betas"):
        value = getattr(sched, attr, None)
        if isinstance(value, torch.Tensor):
            setattr(sched, attr, value.to(dtype))
    return sched


def _ddim(kind: str, dtype: torch.dtype) -> DDIMScheduler:
    return _tables_to(DDIMScheduler(num_train_timesteps=1000, clip_sample=False, **SCHEDULERS[kind]), dtype)


def _scale(dtype: torch.dtype, *tensors: torch.Tensor) -> float:
    """1 in float64; max(1, max|x|) in float32 (tolerances relative to the trajectory's magnitude)."""
    if dtype == torch.float64:
        return 1.0
    return max([1.0] + [t.abs().max().item() for t in tensors])


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("kind", sorted(SCHEDULERS))
def test_ddim_step_matches_scheduler(unets, kind, dtype):
    unet = unets[dtype]
    sched = _ddim(kind, dtype)
    sched.set_timesteps(NUM_STEPS)
    schedule = make_schedule(sched.config, NUM_STEPS)
    assert torch.equal(schedule.timesteps, sched.timesteps.long())
    x = torch.randn(BATCH, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1), dtype=dtype)
    worst = 0.0
    with torch.no_grad():
        for i, t in enumerate(sched.timesteps):
            e = unet(x, t).sample
            ours = steps.ddim_step(x, e, schedule.ab[i], schedule.ab_prev[i])
            theirs = sched.step(e, t, x).prev_sample
            worst = max(worst, (ours - theirs).abs().max().item() / _scale(dtype, theirs))
            x = theirs
    assert worst <= TOL[dtype][0], worst


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("kind", sorted(SCHEDULERS))
def test_reverse_matches_diffusers_loop(unets, kind, dtype):
    unet = unets[dtype]
    sched = _ddim(kind, dtype)
    sched.set_timesteps(NUM_STEPS)
    schedule = make_schedule(sched.config, NUM_STEPS)
    backbone = DiffusersUNet.from_model(unet, sched.config)
    problem = Problem(x0=torch.zeros(BATCH, 3, SIZE, SIZE, dtype=dtype), mask=torch.ones(BATCH, 1, SIZE, SIZE, dtype=dtype))
    counter = CallCounter()
    with torch.no_grad():
        ours = reverse(backbone, build_method("ddim"), problem, schedule, SampleGenerators(0, range(BATCH)), counter=counter)
        x = SampleGenerators(0, range(BATCH)).randn((3, SIZE, SIZE), dtype=dtype)  # the same Y_T as Method.init
        for t in sched.timesteps:
            x = sched.step(unet(x, t).sample, t, x).prev_sample
    assert counter.calls == NUM_STEPS and counter.evaluations == NUM_STEPS * BATCH
    assert ours.dtype == dtype
    diff = (ours - x).abs().max().item()
    assert diff <= TOL[dtype][1] * _scale(dtype, x), diff


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("kind", sorted(SCHEDULERS))
def test_invert_matches_inverse_scheduler(unets, kind, dtype):
    unet = unets[dtype]
    sched = _ddim(kind, dtype)
    schedule = make_schedule(sched.config, NUM_STEPS)
    inv = _tables_to(DDIMInverseScheduler.from_config(sched.config), dtype)
    inv.set_timesteps(NUM_STEPS)
    # the inverse scheduler visits our timesteps in the opposite order
    assert torch.equal(inv.timesteps.long().flip(0), schedule.timesteps)
    backbone = DiffusersUNet.from_model(unet, sched.config)
    x0 = torch.rand(BATCH, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2), dtype=dtype) * 2 - 1
    traj = invert(backbone, x0, schedule)
    recorded = []
    x = x0
    with torch.no_grad():
        for t in inv.timesteps:
            x = inv.step(unet(x, t).sample, t, x).prev_sample
            recorded.append(x)
    theirs = torch.stack(recorded[::-1])  # entry i at schedule.timesteps[i]
    assert traj.shape == theirs.shape
    diff = (traj - theirs).abs().max().item()
    assert diff <= TOL[dtype][2] * _scale(dtype, theirs), diff


def _ddpm() -> DDPMScheduler:
    ddpm = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False, variance_type="fixed_small")
    return _tables_to(ddpm, torch.float64)


def _ddpm_run(ddpm: DDPMScheduler, schedule, seed: int) -> float:
    """Max |ours - DDPMScheduler.step| along a trajectory, the same noise given to both."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, 3, 8, 8, generator=gen, dtype=torch.float64)
    worst = 0.0
    for i, t in enumerate(ddpm.timesteps):
        e = torch.randn(x.shape, generator=gen, dtype=x.dtype)  # the step is a function of e: any prediction will do
        theirs = ddpm.step(e, t, x, generator=torch.Generator().manual_seed(i)).prev_sample
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(i), dtype=x.dtype)  # DDPMScheduler's draw
        ours = steps.ddpm_step(x, e, schedule.ab[i], schedule.ab_prev[i], noise)
        worst = max(worst, (ours - theirs).abs().max().item())
        x = theirs
    return worst


def test_ddpm_step_matches_scheduler_1000_steps():
    ddpm = _ddpm()
    ddpm.set_timesteps(1000)
    schedule = make_schedule(ddpm.config, 1000, kind="ddpm")
    assert torch.equal(schedule.timesteps, ddpm.timesteps.long())
    worst = _ddpm_run(ddpm, schedule, seed=3)
    assert worst <= 1e-6, worst


def test_ddpm_strided_posterior_std():
    ddpm = _ddpm()
    ddpm.set_timesteps(50)
    schedule = make_schedule(ddpm.config, 50, kind="ddpm")
    assert torch.equal(schedule.timesteps, ddpm.timesteps.long())
    worst_std = 0.0
    for i, t in enumerate(ddpm.timesteps):
        # _get_variance clamps the last step's variance 0 to 1e-20: a std of 1e-10, still within tolerance
        theirs = ddpm._get_variance(int(t)).sqrt().item()
        worst_std = max(worst_std, abs(float(schedule.sigma[i]) - theirs),
                        abs(steps.posterior_std(schedule.ab[i], schedule.ab_prev[i]) - theirs))
    assert worst_std <= 1e-6, worst_std
    assert _ddpm_run(ddpm, schedule, seed=4) <= 1e-6
