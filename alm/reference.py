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


def reference_motion_alm(model: Callable[[Tensor, int, Any], Tensor], y: Tensor, motion: Tensor, observed: Tensor,
                         c: Any, null: Any, alphas_cumprod: Tensor, *, guidance: float, w1: float, w2: float,
                         draw: Callable[[], Tensor], imputation: bool = False) -> Tensor:
    """ALM motion completion of ONE motion as the authors' CondMDI-based code orders it (docs/method.md §13):
    ancestral DDPM over every training timestep; returns x_0 (the model's normalised space).

    Written in the style of their ``gaussian_diffusion.py`` (``p_mean_variance`` with ``alm``, ``p_sample``):
    the model predicts x_0 (``model(x, t, c)``, batch 1) and the eps of the likelihood move comes from it
    (``_predict_eps_from_xstart``); ``observed`` is THEIR ``inpainting_mask`` (True = observed frame, the
    complement of the project's M); the tables are derived from ``alphas_cumprod`` as their
    ``GaussianDiffusion.__init__`` derives them from the betas (the model's table is passed in, so that a
    float32 table of diffusers and theirs agree bit for bit). Per timestep t (``draw()`` gives fresh noise
    in the order their loop draws it: the forward noise of the observation, then the ancestral noise,
    then, with ``imputation``, the noise of the replaced frames):

        X_t   = q_sample(motion * observed, t)                          # fresh noise
        e_Y   = eps(x, t, c);  E = X_t * observed + x * ~observed;  e_E = eps(E, t, c)   # guidance 1
        x'    = x + sigma_t * ~observed * (w1 (e_Y - e_E) - w2 e_E)     # the likelihood move first
        mean  = posterior_mean(x0_cfg(x'), x') - w1 sigma_t observed (x' - X_t)
        x     = mean + [t > 0] exp(log_var_clipped_t / 2) z
    """
    ab = alphas_cumprod.to(torch.float64)
    ab_prev = torch.cat([ab.new_ones(1), ab[:-1]])
    betas = 1 - ab / ab_prev
    sqrt_recip, sqrt_recipm1 = (1 / ab).sqrt(), (1 / ab - 1).sqrt()
    coef1 = betas * ab_prev.sqrt() / (1 - ab)
    coef2 = (1 - ab_prev) * (1 - betas).sqrt() / (1 - ab)
    post_var = betas * (1 - ab_prev) / (1 - ab)
    log_var_clipped = torch.log(torch.cat([post_var[1:2], post_var[1:]]))
    keep = observed.to(y.dtype)  # their inpainting_mask as a float
    gen = 1 - keep               # ~inpainting_mask

    def q_sample(x0: Tensor, t: int, noise: Tensor) -> Tensor:
        return ab[t].sqrt() * x0 + (1 - ab[t]).sqrt() * noise

    def eps_from_xstart(x: Tensor, t: int, x0: Tensor) -> Tensor:
        return (sqrt_recip[t] * x - x0) / sqrt_recipm1[t]

    x = y
    for t in reversed(range(ab.numel())):
        source_x_t = q_sample(motion * keep, t, draw())
        eps_tgt = eps_from_xstart(x, t, model(x, t, c))  # text_scale forced to 1: no guidance
        e_t = source_x_t * keep + x * gen
        eps_e = eps_from_xstart(e_t, t, model(e_t, t, c))
        sigma_t = ((1 - ab_prev[t]) / (1 - ab[t])).sqrt() * (1 - ab[t] / ab_prev[t]).sqrt()
        x = x + sigma_t * (w1 * (eps_tgt - eps_e) * gen - w2 * eps_e * gen)
        old_x = x
        x0_c, x0_u = model(x, t, c), model(x, t, null)
        x0 = x0_u + guidance * (x0_c - x0_u)  # CondMDI's ClassifierFreeSampleModel, on the x_0 prediction
        mean = coef1[t] * x0 + coef2[t] * x
        mean = mean + w1 * (-1) * keep * (old_x - source_x_t) * sigma_t  # their "preservation" term
        noise = draw()
        x = mean + (1.0 if t > 0 else 0.0) * torch.exp(0.5 * log_var_clipped[t]) * noise
        if imputation:  # MDM's imputation: the observed frames from q(x_{t-1} | x_0), exact at the end
            x = x * gen + keep * (ab_prev[t].sqrt() * motion + (1 - ab_prev[t]).sqrt() * draw())
    return x
