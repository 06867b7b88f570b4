"""Blended Latent Diffusion (Avrahami et al. 2023): plain reverse steps, then after each step the
observed region is replaced by the source noised to the new level with fresh noise:
Y_s <- M Y_s + (1-M) q_sample(X_0, ab_s)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from alm import steps
from alm.methods.base import Method, StepContext, StepGen


@dataclass
class BLD(Method):
    name: ClassVar[str] = "bld"

    def step(self, y, ctx: StepContext) -> StepGen:
        e = ctx.guided((yield ctx.guided_evals(y)))
        y_next = ctx.base_step(y, e)
        x0 = ctx.problem.x0
        return steps.impute(y_next, steps.q_sample(x0, ctx.ab_s, ctx.noise(x0)), ctx.mask)
