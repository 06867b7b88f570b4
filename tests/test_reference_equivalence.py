"""``method=alm`` through our sampling core against an independent transcription of the authors' loop
(issue 5 point 5; SPEC §1, GitHub ``Hleephilip/ALM_public``, ``alm/inpainting.py``).

The reference below is written from SPEC §1 in the style of the authors' code, sharing nothing with
``alm.steps`` / ``alm.sampling`` / ``alm.methods``: the raw diffusers model is called once per
evaluation and one image at a time, the DDIM step is diffusers' ``DDIMScheduler.step``, the inversion
``DDIMInverseScheduler.step``, sigma_t the scheduler's own DDPM posterior variance, and (for the latent
model) the VAE, tokenizer and text encoder are called directly. Per timestep t (SPEC §1):

    e_Y = eps(Y_t,t,c);  E_t = (1-M) X_t + M Y_t;  e_E = eps(E_t,t,c)            # no CFG
    Y'  = Y_t + sigma_t M ( w1 (e_Y - e_E) - w2 e_E )                            # likelihood move first
    Y_s = DDIM(Y', eps_cfg(Y',t,c)) + w1 sigma_t (1-M) (X_t - Y')                # then DDIM + sync

and Eq. 1 as printed for ``alm_fused`` (w2_eq1 = w1, w3 = w1 + w2, all times sigma_t):

    Y_s = DDIM(Y_t, eps_cfg(Y_t,t,c)) + w1 sigma_t (1-M)(X_t - Y_t) + sigma_t M (w1 e_Y - (w1 + w2) e_E)

Models (random weights, built from config; nothing from the hub): a pixel ``UNet2DConditionModel`` with
per-sample encoder states ("text"), a class-conditional pixel ``UNet2DModel`` with a null class
("class", the embedded backbone's kind), and the tiny Stable Diffusion 1.5 miniature
(``alm.backbones.tiny``, latent space, prompts through its CLIP text encoder). All run in float64, so a
difference is a difference in the math (observed ~1e-12); the tolerance is SPEC's 1e-4. CFG scale 3,
a batch of two samples with different conditions and masks.

``test_the_comparison_is_sensitive`` keeps the test honest: a reference with one sign flipped, one
weight changed or the step order swapped is far outside the tolerance on the same model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

import pytest
import torch
from omegaconf import OmegaConf

from alm.backbones.diffusers_unet import DiffusersUNet
from alm.methods import get_method
from alm.methods.base import Problem
from alm.rng import SampleGenerators
from alm.sampling import reverse
from alm.schedule import make_schedule
from alm.tasks.inpaint import build_problem

B, STEPS, G, SEED, TOL = 2, 6, 3.0, 11, 1e-4
W1, W2 = 0.7, 0.4  # large enough that every term shows far above the tolerance (authors' defaults: 1.0, 0.005)
DT = torch.float64
# Stable Diffusion's DDIM configuration (the authors' setting): scaled-linear betas, leading spacing, offset 1
SD_SCHEDULER = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                    steps_offset=1, set_alpha_to_one=False, clip_sample=False, prediction_type="epsilon")
TASK = OmegaConf.create({"observed": "inversion", "invert": "masked", "hole_value": -1.0})


# --- the reference: the authors' loop, one image and one network call at a time -------------------

def _f64(sched):
    """diffusers computes its alpha tables in float32; cast them (values unchanged) for a float64 run."""
    for attr in ("alphas_cumprod", "final_alpha_cumprod", "initial_alpha_cumprod", "alphas", "betas"):
        if isinstance(getattr(sched, attr, None), torch.Tensor):
            setattr(sched, attr, getattr(sched, attr).to(DT))
    return sched


def reference_inversion(unet: Callable, x0: torch.Tensor, c: Any) -> list[torch.Tensor]:
    """DDIM inversion of ONE latent with the conditional eps, no guidance: X_t for each reverse step."""
    from diffusers import DDIMInverseScheduler

    inverse = _f64(DDIMInverseScheduler(**SD_SCHEDULER))
    inverse.set_timesteps(STEPS)
    x, latents = x0, []
    for t in inverse.timesteps:
        x = inverse.step(unet(x, t, c), t, x).prev_sample
        latents.append(x)
    return latents[::-1]  # index i <-> the i-th timestep of the reverse loop


def reference_alm(unet: Callable, y: torch.Tensor, inverted: list, m: torch.Tensor, c: Any, null: Any,
                  w1: float = W1, w2: float = W2, order: str = "reference", mutation: str = "") -> torch.Tensor:
    """ALM inpainting of ONE image (SPEC §1). ``mutation`` breaks one thing on purpose (sensitivity test)."""
    from diffusers import DDIMScheduler

    scheduler = _f64(DDIMScheduler(**SD_SCHEDULER))
    scheduler.set_timesteps(STEPS)
    step = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    w3 = {"w3 = w2": w2, "joint sign": w1 - w2}.get(mutation, w1 + w2)  # e(E) carries both weights
    sync = -w1 if mutation == "sync sign" else w1
    for i, t in enumerate(scheduler.timesteps):
        sigma = scheduler._get_variance(int(t), int(t) - step) ** 0.5  # DDPM posterior std (Eq. 10)
        if mutation == "no sigma":
            sigma = 1.0
        x_t = inverted[i]
        if order == "reference" and mutation != "order":
            e_y = unet(y, t, c)  # no CFG in the likelihood move
            if mutation == "guided move":
                e_y = unet(y, t, null) + G * (e_y - unet(y, t, null))
            e_e = unet((1 - m) * x_t + m * y, t, c)
            y = y + sigma * m * (w1 * e_y - w3 * e_e)  # the move first
            e_c, e_u = unet(y, t, c), unet(y, t, null)  # then DDIM with CFG at the moved point
            y_prev = scheduler.step(e_u + G * (e_c - e_u), t, y).prev_sample
            y = y_prev + sync * sigma * (1 - m) * (x_t - y)
        else:  # Eq. 1 as printed: every evaluation at Y_t, in one step
            e_y, e_u = unet(y, t, c), unet(y, t, null)
            e_e = unet((1 - m) * x_t + m * y, t, c)
            y_prev = scheduler.step(e_u + G * (e_y - e_u), t, y).prev_sample
            y = y_prev + sync * sigma * (1 - m) * (x_t - y) + sigma * m * (w1 * e_y - w3 * e_e)
    return y


# --- the models ---------------------------------------------------------------------------------------

@dataclass
class Case:
    """Our backbone and, for the reference, the raw pieces the authors' code would call."""

    backbone: Any
    unet: Callable  # (z (1, ...), t, c) -> eps, the raw diffusers model
    images: torch.Tensor  # (B, C, H, W) data space
    masks: torch.Tensor  # (B, 1, H, W), 1 = to generate
    labels: list  # what the data set gives: encoder states, class ids or prompts
    conds: list  # per sample, what the raw model takes
    null: Any
    encode: Callable  # reference data -> diffusion space
    mask_to_latent: Callable


def _masks(h: int, w: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    masks = torch.zeros(B, 1, h, w, dtype=DT)
    masks[0, :, h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 1  # a box
    masks[1] = (torch.rand(1, h, w, generator=g) > 0.6).to(DT)  # scattered pixels
    return masks


def _images(c: int, h: int, w: int) -> torch.Tensor:
    return (torch.rand(B, c, h, w, generator=torch.Generator().manual_seed(2), dtype=DT) * 2 - 1)


def text_case() -> Case:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=3, out_channels=3, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32,
    ).to(DT).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(4)
    states = [torch.randn(7, 32, generator=g, dtype=DT) for _ in range(B)]  # two "prompts"
    null = torch.randn(7, 32, generator=g, dtype=DT)  # the empty prompt's states
    backbone = DiffusersUNet.from_model(copy.deepcopy(unet), SD_SCHEDULER, null_embedding=null, cond_length=7, dtype=DT)

    def call(z, t, c):
        return unet(z, t, encoder_hidden_states=c[None]).sample

    return Case(backbone, call, _images(3, 16, 16), _masks(16, 16), states, states, null, lambda x: x, lambda m: m)


def class_case() -> Case:
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=16, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8, num_class_embeds=11,  # 10 classes + the null class 10
    ).to(DT).eval().requires_grad_(False)
    backbone = DiffusersUNet.from_model(copy.deepcopy(unet), SD_SCHEDULER, dtype=DT)

    def call(z, t, c):
        return unet(z, t, class_labels=torch.tensor([c])).sample

    labels = [3, 7]
    return Case(backbone, call, _images(1, 16, 16), _masks(16, 16), labels, labels, 10, lambda x: x, lambda m: m)


def sd15_tiny_case() -> Case:
    import torch.nn.functional as F

    from alm.backbones.tiny import tiny_backbone

    backbone = tiny_backbone("sd15", dtype="float64")
    # the raw pieces of the pipeline, called as the authors' code calls them
    unet, vae = backbone.denoiser.model, backbone.vae
    tokenizer, text_encoder = backbone.tokenizers[0], backbone.text_encoders[0]

    def embed(prompt: str) -> torch.Tensor:
        ids = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids
        return text_encoder(ids)[0][0]

    def call(z, t, c):
        return unet(z, t, encoder_hidden_states=c[None]).sample

    def encode(x):
        return vae.encode(x).latent_dist.mode() * vae.config.scaling_factor

    size = backbone.sample_shape[-1]
    prompts = ["a photo of a cat", "a painting of a dog in winter"]
    with torch.no_grad():
        conds, null = [embed(p) for p in prompts], embed("")
    h = backbone.data_shape[-1]
    return Case(backbone, call, _images(3, h, h), _masks(h, h), prompts, conds, null, encode,
                lambda m: F.interpolate(m, size=(size, size), mode="nearest"))


CASES = {"text": text_case, "class": class_case, "sd15-tiny": sd15_tiny_case}


@pytest.fixture(scope="module", params=list(CASES))
def case(request) -> Case:
    return CASES[request.param]()


# --- the comparisons ---------------------------------------------------------------------------------

def reference_run(case: Case, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    """The authors' preprocessing and loop, image by image: (trajectories (n, B, ...), outputs (B, ...))."""
    trajs, outs = [], []
    noise = SampleGenerators(SEED, range(B)).randn(case.backbone.sample_shape, dtype=DT)  # our Y_T, handed over
    with torch.no_grad():
        for b in range(B):
            m = case.masks[b : b + 1]
            masked = case.images[b : b + 1] * (1 - m) + (-1.0) * m  # hole set to black
            latents = reference_inversion(case.unet, case.encode(masked), case.conds[b])
            y = reference_alm(case.unet, noise[b : b + 1], latents, case.mask_to_latent(m), case.conds[b], case.null, **kw)
            trajs.append(torch.cat(latents, dim=0))
            outs.append(y[0])
    return torch.stack(trajs, dim=1), torch.stack(outs)


def ours(case: Case, method: str, trajectory=None, **params) -> tuple[Problem, torch.Tensor]:
    """The runner's path: build_problem (encode, latent mask, condition, inversion) then reverse."""
    m = get_method(method, **params)
    schedule = make_schedule(case.backbone.scheduler_config, STEPS)
    with torch.no_grad():
        problem = build_problem(case.backbone, m, case.images, case.masks, case.labels, schedule, TASK)
        if trajectory is not None:
            problem.trajectory = trajectory
        y = reverse(case.backbone, m, problem, schedule, SampleGenerators(SEED, range(B)), guidance=G)
    return problem, y


@pytest.fixture(scope="module")
def reference(case):
    return {order: reference_run(case, order=order) for order in ("reference", "fused")}


def test_inversion_matches_reference(case, reference):
    traj, _ = reference["reference"]
    problem, _ = ours(case, "alm", w1=W1, w2=W2)
    assert problem.trajectory.shape == traj.shape
    assert (problem.trajectory - traj).abs().max() <= TOL


@pytest.mark.parametrize("method,params,order", [
    ("alm", {"w1": W1, "w2": W2}, "reference"),  # conf/method/alm.yaml: the authors' order
    ("alm", {"w1": W1, "w2": W2, "order": "fused"}, "fused"),  # conf/method/alm_fused.yaml: Eq. 1 as printed
])
def test_alm_matches_the_authors_loop(case, reference, method, params, order):
    traj, want = reference[order]
    _, got = ours(case, method, trajectory=traj, **params)  # the same trajectory, mask, noise and model
    assert got.shape == want.shape
    diff = (got - want).abs().max().item()
    assert diff <= TOL, diff
    assert want.abs().max() > 0.1  # a real comparison, not of two zeros


def test_default_weights_match_too(case):
    """The authors' defaults (w1 = 1, w2 = 0.005), end to end through build_problem."""
    _, want = reference_run(case, w1=1.0, w2=0.005)
    _, got = ours(case, "alm", w1=1.0, w2=0.005)
    assert (got - want).abs().max() <= TOL


@pytest.fixture(scope="module")
def sensitivity():
    """The text model, the reference trajectory and our output, shared by the mutations."""
    case = text_case()
    traj, _ = reference_run(case)
    _, good = ours(case, "alm", trajectory=traj, w1=W1, w2=W2)
    return case, traj, good


# (sync at Y_t instead of Y' is no mutation: the move only changes M's entries, the sync only (1-M)'s)
MUTATIONS = ["sync sign", "joint sign", "w3 = w2", "no sigma", "order", "guided move"]


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_the_comparison_is_sensitive(sensitivity, mutation):
    """A one-term change of the reference moves the result far outside the tolerance on this model."""
    case, traj, good = sensitivity
    noise = SampleGenerators(SEED, range(B)).randn(case.backbone.sample_shape, dtype=DT)
    with torch.no_grad():
        b = 0
        m = case.masks[b : b + 1]
        latents = list(traj[:, b : b + 1])
        bad = reference_alm(case.unet, noise[b : b + 1], latents, m, case.conds[b], case.null, mutation=mutation)
    assert (good[b] - bad[0]).abs().max() > 100 * TOL
