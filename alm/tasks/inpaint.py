"""Inpainting: the observed content is the source outside the mask; X_t comes from DDIM inversion
(paper §4.2.1) or from forward noise."""

from __future__ import annotations

from typing import Any

import torch

from alm.backbones.base import Backbone
from alm.errors import ConfigError
from alm.inversion_cache import InversionCache
from alm.methods.base import Method, Problem
from alm.sampling import CallCounter, invert
from alm.schedule import Schedule

OBSERVED = ("inversion", "forward")
INVERT = ("masked", "full")


def check_task(task_cfg: Any) -> None:
    """Refuse unknown task options before any work starts."""
    if task_cfg.observed not in OBSERVED:
        raise ConfigError(f"task.observed={task_cfg.observed!r}: expected one of {', '.join(OBSERVED)}")
    if task_cfg.invert not in INVERT:
        raise ConfigError(f"task.invert={task_cfg.invert!r}: expected one of {', '.join(INVERT)}")
    if not isinstance(task_cfg.get("inversion_cache", False), bool):
        raise ConfigError(f"task.inversion_cache={task_cfg.inversion_cache!r}: expected true or false")
    k = int(task_cfg.get("blend_kernel", 21))
    if task_cfg.get("blend", False) and (k % 2 == 0 or k < 1):
        raise ConfigError(f"task.blend_kernel={k}: expected an odd positive size")


def masked_source(images: torch.Tensor, masks: torch.Tensor, hole_value: float) -> torch.Tensor:
    """The source with the hole filled by ``hole_value`` (data space)."""
    return images * (1 - masks) + hole_value * masks


def blend_weights(masks: torch.Tensor, kernel: int = 21) -> torch.Tensor:
    """b = 1 - (1-m)(1 - GaussianBlur_k(m)): 1 in the hole, fading to 0 around it (the "*" rows, SPEC §1).

    As the authors' code: a k x k Gaussian with OpenCV's sigma for sigma=0, 0.3((k-1)/2 - 1) + 0.8
    (3.5 for k = 21), reflect-101 borders. ``masks`` (B, 1, H, W), 1 = hole.
    """
    from torchvision.transforms.functional import gaussian_blur

    if kernel % 2 == 0 or kernel < 1:
        raise ConfigError(f"task.blend_kernel={kernel}: expected an odd positive size")
    if kernel // 2 >= min(masks.shape[-2:]):
        raise ConfigError(f"task.blend_kernel={kernel} is too large for {tuple(masks.shape[-2:])} images")
    sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
    blurred = gaussian_blur(masks.float(), [kernel, kernel], [sigma, sigma])
    return 1 - (1 - masks) * (1 - blurred)


def blend_output(output: torch.Tensor, source: torch.Tensor, masks: torch.Tensor, kernel: int = 21) -> torch.Tensor:
    """Paste the generated content into the source with the blurred-mask weights (pixel space)."""
    b = blend_weights(masks, kernel).to(output.dtype)
    return b * output + (1 - b) * source


def build_problem(
    backbone: Backbone,
    method: Method,
    images: torch.Tensor,
    masks: torch.Tensor,
    labels: list,
    schedule: Schedule,
    task_cfg: Any,
    counter: CallCounter | None = None,
    cache: InversionCache | None = None,
) -> Problem:
    """A batch of inpainting problems in the backbone's diffusion space.

    ``images`` (B, C, H, W) in [-1, 1]; ``masks`` (B, 1, H, W) with 1 = unobserved. With an inversion
    ``cache`` each sample's trajectory is read from disk when stored, else computed and stored
    (``alm.inversion_cache``; the outputs are the same).
    """
    masks = (masks > 0.5).to(images.dtype)
    source = masked_source(images, masks, float(task_cfg.hole_value))
    x0 = backbone.encode(source)
    mask = backbone.mask_to_sample(masks).to(x0.dtype)
    cond = backbone.make_cond(labels, images.shape[0])
    trajectory = None
    if method.needs_trajectory and task_cfg.observed == "inversion":
        inverted = source if task_cfg.invert == "masked" else images  # data space
        to_invert = x0 if task_cfg.invert == "masked" else backbone.encode(images)
        if cache is None:
            trajectory = invert(backbone, to_invert, schedule, cond, counter)
        else:
            keys = cache.keys(backbone, schedule, inverted, masks, labels, to_invert)
            trajectory = cache.invert(backbone, to_invert, schedule, cond, keys, counter)
    return Problem(x0=x0, mask=mask, cond=cond, trajectory=trajectory)
