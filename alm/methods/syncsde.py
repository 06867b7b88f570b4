"""SyncSDE (Lee et al. 2025) with its own sync schedule (GitHub hjl1013/SyncSDE; docs/method.md §8.1).

    Y_s = DDIM(Y_t, e_cfg(Y_t)) - gamma_t * lam * (t/T) * (1-M) (Y_t - X_t),
    gamma_t = sqrt(ab_s/ab_t) - sqrt((1-ab_s)/(1-ab_t)),  T = the first timestep of the schedule.

The ALM paper's Eq. 3 form (ALM schedule, no likelihood move) is the ablation ``alm_wo_alm``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from alm import steps
from alm.methods.base import Method, StepContext, StepGen


@dataclass
class SyncSDE(Method):
    name: ClassVar[str] = "syncsde"
    reads_x_t: ClassVar[bool] = True

    lam: float = 5.0

    def step(self, y, ctx: StepContext) -> StepGen:
        x = ctx.x_t(y)  # X_t and Y_t before the step, as SyncSDE's code
        e = ctx.guided((yield ctx.guided_evals(y)))
        weight = steps.syncsde_gamma(ctx.ab_t, ctx.ab_s) * self.lam * ctx.t / max(ctx.t_first, 1)
        return ctx.base_step(y, e) + steps.sync_term(x, y, ctx.mask, weight)
