"""Plain sampling with the sampler's step (DDIM or DDPM) and CFG; the observation is ignored (a floor)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from alm.methods.base import Method, StepContext, StepGen


@dataclass
class Plain(Method):
    name: ClassVar[str] = "ddim"
    uses_observation: ClassVar[bool] = False

    def step(self, y, ctx: StepContext) -> StepGen:
        e = ctx.guided((yield ctx.guided_evals(y)))
        return ctx.base_step(y, e)
