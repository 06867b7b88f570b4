"""Inpainting: the observed content is the source outside the mask; X_t comes from DDIM inversion
(paper §4.2.1) or from forward noise."""

from __future__ import annotations

from typing import Any

import torch

from alm.backbones.base import Backbone
from alm.errors import ConfigError
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


def masked_source(images: torch.Tensor, masks: torch.Tensor, hole_value: float) -> torch.Tensor:
    """The source with the hole filled by ``hole_value`` (data space)."""
    return images * (1 - masks) + hole_value * masks


def build_problem(
    backbone: Backbone,
    method: Method,
    images: torch.Tensor,
    masks: torch.Tensor,
    labels: list,
    schedule: Schedule,
    task_cfg: Any,
    counter: CallCounter | None = None,
) -> Problem:
    """A batch of inpainting problems in the backbone's diffusion space.

    ``images`` (B, C, H, W) in [-1, 1]; ``masks`` (B, 1, H, W) with 1 = unobserved.
    """
    masks = (masks > 0.5).to(images.dtype)
    source = masked_source(images, masks, float(task_cfg.hole_value))
    x0 = backbone.encode(source)
    mask = backbone.mask_to_sample(masks).to(x0.dtype)
    cond = backbone.make_cond(labels, images.shape[0])
    trajectory = None
    if method.needs_trajectory and task_cfg.observed == "inversion":
        to_invert = x0 if task_cfg.invert == "masked" else backbone.encode(images)
        trajectory = invert(backbone, to_invert, schedule, cond, counter)
    return Problem(x0=x0, mask=mask, cond=cond, trajectory=trajectory)
