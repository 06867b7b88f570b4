"""``method=alm`` through our sampling core against an independent transcription of the authors' loop
(issue 5 point 5; docs/method.md §4, GitHub ``Hleephilip/ALM_public``, ``alm/inpainting.py``).

The reference is ``alm.reference`` (also the baseline of ``scripts/bench.py``): written from
docs/method.md §4 in the style of the authors' code, sharing nothing with ``alm.steps`` / ``alm.sampling`` /
``alm.methods``: the raw diffusers model is called one image at a time (e(Y), e(E), then the CFG pair
in one call, as the authors), the DDIM step is diffusers' ``DDIMScheduler.step``, the inversion
``DDIMInverseScheduler.step``, sigma_t the scheduler's own DDPM posterior variance; here (for the
latent model) the VAE, tokenizer and text encoder are called directly. ``alm`` must match its
``order="reference"`` (the authors' step: likelihood move first, then DDIM + sync), ``alm_fused`` its
``order="fused"`` (Eq. 1 as printed).

Models (random weights, built from config; nothing from the hub): a pixel ``UNet2DConditionModel`` with
per-sample encoder states ("text"), a class-conditional pixel ``UNet2DModel`` with a null class
("class", the embedded backbone's kind), and the tiny Stable Diffusion 1.5 miniature
(``alm.backbones.tiny``, latent space, prompts through its CLIP text encoder). All run in float64, so a
difference is a difference in the math (observed ~1e-12); the tolerance is 1e-4. CFG scale 3,
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

from alm import reference as authors
from alm.backbones.diffusers_unet import DiffusersUNet
from alm.config import build_method
from alm.methods.base import Problem
from alm.observation import Trajectory
from alm.reference import UNetCall
from alm.rng import SampleGenerators
from alm.sampling import reverse
from alm.schedule import make_schedule
from alm.tasks.inpaint import inpainting_problem

B, STEPS, G, SEED, TOL = 2, 6, 3.0, 11, 1e-4
W1, W2 = 0.7, 0.4  # large enough that every term shows far above the tolerance (authors' defaults: 1.0, 0.005)
DT = torch.float64
# Stable Diffusion's DDIM configuration (the authors' setting): scaled-linear betas, leading spacing, offset 1
SD_SCHEDULER = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                    steps_offset=1, set_alpha_to_one=False, clip_sample=False, prediction_type="epsilon")
TASK = OmegaConf.create({"observed": "inversion", "invert": "masked", "hole_value": -1.0})


# --- the reference: the authors' loop (alm.reference), with this file's settings -------------------

def reference_inversion(unet: UNetCall, x0: torch.Tensor, c: Any) -> list[torch.Tensor]:
    return authors.reference_inversion(unet, x0, c, SD_SCHEDULER, STEPS, dtype=DT)


def reference_alm(unet: UNetCall, y: torch.Tensor, inverted: list, m: torch.Tensor, c: Any, null: Any,
                  w1: float = W1, w2: float = W2, order: str = "reference", mutation: str = "") -> torch.Tensor:
    scheduler = authors.ddim_scheduler(SD_SCHEDULER, STEPS, dtype=DT)
    return authors.reference_alm(unet, y, inverted, m, c, null, scheduler, guidance=G, w1=w1, w2=w2,
                                 order=order, mutation=mutation)


# --- the models ---------------------------------------------------------------------------------------

@dataclass
class Case:
    """Our backbone and, for the reference, the raw pieces the authors' code would call."""

    backbone: Any
    unet: UNetCall  # (z (k, ...), t, k per-sample conditions) -> eps, the raw diffusers model
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

    def call(z, t, cs):
        return unet(z, t, encoder_hidden_states=torch.stack(cs)).sample

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

    def call(z, t, cs):
        return unet(z, t, class_labels=torch.tensor(cs)).sample

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

    def call(z, t, cs):
        return unet(z, t, encoder_hidden_states=torch.stack(cs)).sample

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
    """The runner's path: inpainting_problem (encode, latent mask, condition, inversion) then reverse."""
    m = build_method(method, **params)
    schedule = make_schedule(case.backbone.scheduler_config, STEPS)
    with torch.no_grad():
        problem = inpainting_problem(case.backbone, m, case.images, case.masks, case.labels, schedule)
        if trajectory is not None:
            problem.observation = Trajectory(trajectory)
        y = reverse(case.backbone, m, problem, schedule, SampleGenerators(SEED, range(B)), guidance=G)
    return problem, y


@pytest.fixture(scope="module")
def reference(case):
    return {order: reference_run(case, order=order) for order in ("reference", "fused")}


def test_inversion_matches_reference(case, reference):
    traj, _ = reference["reference"]
    problem, _ = ours(case, "alm", w1=W1, w2=W2)
    assert problem.observation.trajectory.shape == traj.shape
    assert (problem.observation.trajectory - traj).abs().max() <= TOL


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
    """The authors' defaults (w1 = 1, w2 = 0.005), end to end through inpainting_problem."""
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
MUTATIONS = authors.MUTATIONS


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
