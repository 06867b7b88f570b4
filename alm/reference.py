"""The authors' ALM loop, one image at a time: the yardstick for equivalence tests and the benchmark.

Written from docs/method.md §4 in the style of the authors' public code (GitHub ``Hleephilip/ALM_public``,
``alm/inpainting.py``) and sharing nothing with ``alm.steps`` / ``alm.sampling`` / ``alm.methods``:
the raw diffusers model is called once per network call on ONE image, the DDIM step is diffusers'
``DDIMScheduler.step``, the inversion ``DDIMInverseScheduler.step``, sigma_t the scheduler's own DDPM
posterior variance. Used by ``tests/test_reference_equivalence.py`` (our ``method=alm`` must match it)
and ``scripts/bench.py`` (our batched core against this loop's speed).

Per timestep t (docs/method.md §4), three UNet calls as in the authors' code: e(Y), e(E), then one call of
batch 2 for classifier-free guidance at the moved point (their ``predict_noise_with_cfg``):

    e_Y = eps(Y_t,t,c);  E_t = (1-M) X_t + M Y_t;  e_E = eps(E_t,t,c)            # no CFG
    Y'  = Y_t + sigma_t M ( w1 (e_Y - e_E) - w2 e_E )                            # likelihood move first
    Y_s = DDIM(Y', eps_cfg(Y',t,c)) + w1 sigma_t (1-M) (X_t - Y')                # then DDIM + sync

``order="fused"``: Eq. 1 as printed (w2_eq1 = w1, w3 = w1 + w2, all times sigma_t), every
evaluation at Y_t (the CFG pair in one call, then e(E)):

    Y_s = DDIM(Y_t, eps_cfg(Y_t,t,c)) + w1 sigma_t (1-M)(X_t - Y_t) + sigma_t M (w1 e_Y - (w1 + w2) e_E)

| here        | docs/method.md §1 / paper               |
|-------------|-----------------------------------------|
| ``y``       | Y_t, the sampled latent (batch of 1)    |
| ``inverted``| X_t per reverse step (DDIM inversion)   |
| ``m``       | M, 1 = unobserved (to generate)         |
| ``c``/``null`` | the prompt's / empty prompt's condition |

A ``UNetCall`` is ``(z (k, ...), t (0-d), conds: list of k per-sample conditions) -> eps`` around the
raw model: it decides how the model takes a condition (text states, SDXL's added embeddings, a class).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import torch

Tensor = torch.Tensor
UNetCall = Callable[[Tensor, Tensor, list], Tensor]

#: deliberate one-term errors, for the test that shows the comparison with this loop is sensitive
MUTATIONS = ("sync sign", "joint sign", "w3 = w2", "no sigma", "order", "guided move")


def _cast(sched, dtype: Optional[torch.dtype]):
    """diffusers computes its alpha tables in float32; cast them (values unchanged) for a float64 run."""
    if dtype is None:
        return sched
    for attr in ("alphas_cumprod", "final_alpha_cumprod", "initial_alpha_cumprod", "alphas", "betas"):
        if isinstance(getattr(sched, attr, None), torch.Tensor):
            setattr(sched, attr, getattr(sched, attr).to(dtype))
    return sched


def _plain_config(config: Mapping[str, Any]) -> dict:
    return {k: v for k, v in dict(config).items() if k not in ("_class_name", "_diffusers_version")}


def ddim_scheduler(config: Mapping[str, Any], steps: int, dtype: Optional[torch.dtype] = None):
    """A diffusers ``DDIMScheduler`` on the model's beta table with ``steps`` timesteps set (as the authors)."""
    from diffusers import DDIMScheduler

    scheduler = _cast(DDIMScheduler.from_config(_plain_config(config)), dtype)
    scheduler.set_timesteps(steps)
    return scheduler


def reference_inversion(unet: UNetCall, x0: Tensor, c: Any, config: Mapping[str, Any], steps: int,
                        dtype: Optional[torch.dtype] = None) -> list[Tensor]:
    """DDIM inversion of ONE latent with the conditional eps, no guidance: X_t for each reverse step."""
    from diffusers import DDIMInverseScheduler

    inverse = _cast(DDIMInverseScheduler.from_config(_plain_config(config)), dtype)
    inverse.set_timesteps(steps)
    x, latents = x0, []
    for t in inverse.timesteps:
        x = inverse.step(unet(x, t, [c]), t, x).prev_sample
        latents.append(x)
    return latents[::-1]  # index i <-> the i-th timestep of the reverse loop


def reference_alm(unet: UNetCall, y: Tensor, inverted: list, m: Tensor, c: Any, null: Any, scheduler, *,
                  guidance: float, w1: float, w2: float, order: str = "reference", mutation: str = "") -> Tensor:
    """ALM inpainting of ONE image (docs/method.md §4) on ``scheduler`` (``ddim_scheduler``); returns Y_0.

    ``mutation`` (one of ``MUTATIONS``) breaks one thing on purpose, for the sensitivity test.
    """
    g = guidance
    step = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    w3 = {"w3 = w2": w2, "joint sign": w1 - w2}.get(mutation, w1 + w2)  # e(E) carries both weights
    sync = -w1 if mutation == "sync sign" else w1

    def eps_cfg(z, t):  # one call of batch 2, as the authors' predict_noise_with_cfg: (guided, conditional)
        e_c, e_u = unet(torch.cat([z, z]), t, [c, null]).chunk(2)
        return e_u + g * (e_c - e_u), e_c

    for i, t in enumerate(scheduler.timesteps):
        sigma = 1.0 if mutation == "no sigma" else scheduler._get_variance(int(t), int(t) - step) ** 0.5  # Eq. 10
        x_t = inverted[i]
        if order == "reference" and mutation != "order":
            e_y = eps_cfg(y, t)[0] if mutation == "guided move" else unet(y, t, [c])  # no CFG in the move
            e_e = unet((1 - m) * x_t + m * y, t, [c])
            y = y + sigma * m * (w1 * e_y - w3 * e_e)  # the move first
            e, _ = eps_cfg(y, t)  # then DDIM with CFG at the moved point
            y = scheduler.step(e, t, y).prev_sample + sync * sigma * (1 - m) * (x_t - y)
        else:  # Eq. 1 as printed: every evaluation at Y_t, in one step
            e, e_y = eps_cfg(y, t)
            e_e = unet((1 - m) * x_t + m * y, t, [c])
            y_prev = scheduler.step(e, t, y).prev_sample
            y = y_prev + sync * sigma * (1 - m) * (x_t - y) + sigma * m * (w1 * e_y - w3 * e_e)
    return y


def text_unet_call(model) -> UNetCall:
    """The raw ``UNet2DConditionModel`` called as the authors' code calls it, conditions concatenated.

    A condition is a (1, L, D) tensor of text states, or SDXL's dict of ``encoder_hidden_states``,
    ``text_embeds`` and ``time_ids`` (passed as ``added_cond_kwargs``, as diffusers' SDXL pipeline does).
    """

    def call(z: Tensor, t: Tensor, conds: list) -> Tensor:
        if isinstance(conds[0], Mapping):
            cat = {k: torch.cat([c[k] for c in conds]) for k in conds[0]}
            states = cat.pop("encoder_hidden_states")
            return model(z, t, encoder_hidden_states=states, added_cond_kwargs=cat).sample
        return model(z, t, encoder_hidden_states=torch.cat(conds)).sample

    return call


def reference_wide_alm(unet: UNetCall, canvas_noise: Tensor, c: Any, null: Any, scheduler, *, size: int, stride: int,
                       count: int, guidance: float, w1: float, w2: float, axis: int = -1) -> Tensor:
    """ALM wide-image generation of ONE canvas in the authors' order (docs/method.md §12); returns the
    stitched canvas latent (1, C, H, size + (count-1) * stride), the windows along ``axis`` (-1: the width;
    a long video's frames: -3, as the paper's video extension runs the same loop along time).

    Window j's latent starts as its crop of ``canvas_noise``. Per timestep: e(Y) for all windows in one call
    (no CFG); then for j = 1..count-1 in turn, E_j = window j with its first size-stride columns taken from
    window j-1's CURRENT (already moved) latent, e(E_j) in a single-window call, and the move
    Y_j += sigma_t M (w1 (e_Y[j] - e_E) - w2 e_E); then CFG + DDIM for all windows in one call (batch 2K);
    then Y_j -= w1 sigma_t (1-M)(Y'_j - E_j) with Y'_j the moved latent before the DDIM step.
    """
    g = guidance
    step = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    overlap = size - stride

    def part(x: Tensor, start: int, length: int) -> Tensor:  # x[..., start:start + length] along ``axis``
        return x.narrow(axis, start, length)

    latents = [part(canvas_noise, j * stride, size).clone() for j in range(count)]
    m = torch.ones_like(latents[0])
    part(m, 0, overlap).zero_()  # 0 = observed: the columns shared with window j-1
    for t in scheduler.timesteps:
        sigma = scheduler._get_variance(int(t), int(t) - step) ** 0.5  # Eq. 10
        e_y = unet(torch.cat(latents), t, [c] * count)
        blended = [None] * count
        for j in range(1, count):
            x_t = latents[j].clone()
            part(x_t, 0, overlap).copy_(part(latents[j - 1], stride, overlap))
            blended[j] = (1 - m) * x_t + m * latents[j]
            e_e = unet(blended[j], t, [c])
            latents[j] = latents[j] + sigma * m * (w1 * (e_y[j: j + 1] - e_e) - w2 * e_e)
        moved = torch.cat(latents)
        e_c, e_u = unet(torch.cat([moved, moved]), t, [c] * count + [null] * count).chunk(2)
        stepped = scheduler.step(e_u + g * (e_c - e_u), t, moved).prev_sample
        latents = [stepped[j: j + 1] for j in range(count)]
        for j in range(1, count):
            latents[j] = latents[j] - w1 * sigma * (1 - m) * (moved[j: j + 1] - blended[j])
    shape = list(latents[0].shape)
    shape[axis] = size + (count - 1) * stride
    canvas = latents[0].new_zeros(shape)
    for j in reversed(range(count)):  # the last window first: the earlier window wins on each overlap
        part(canvas, j * stride, size).copy_(latents[j])
    return canvas
