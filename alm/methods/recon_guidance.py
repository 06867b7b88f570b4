"""Reconstruction guidance (Ho et al. 2022, as in CondMDI; docs/method.md §8.3).

    x0~ = x0_hat - (w_r sqrt(ab_t) / 2) * M * grad_{Y_t} ||(1-M)(X_0 - x0_hat(Y_t))||^2

with the gradient taken through the network; the sampler's step is then taken from x0~.
``imputation=True`` (the "*" rows) also replaces the observed region by the forward-noised
observation after each step, as in MDM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from alm import steps
from alm.methods.base import Method, StepContext, StepGen


@dataclass
class ReconGuidance(Method):
    name: ClassVar[str] = "recon_guidance"

    w_r: float = 5.0
    imputation: bool = False

    def step(self, y, ctx: StepContext) -> StepGen:
        m, x0 = ctx.mask, ctx.problem.x0
        y_leaf = y.detach().requires_grad_(True)
        outs = yield ctx.guided_evals(y_leaf, grad=True)
        with torch.enable_grad():
            e = ctx.guided(outs)
            x0_hat = steps.predict_x0(y_leaf, e, ctx.ab_t)
            loss = ((1 - m) * (x0 - x0_hat)).pow(2).sum()
            (grad,) = torch.autograd.grad(loss, y_leaf)
        x0_tilde = steps.reconstruction_x0(x0_hat.detach(), grad, m, self.w_r, ctx.ab_t)
        y_next = ctx.step_from_x0(y, x0_tilde)
        if self.imputation:
            y_next = steps.impute(y_next, steps.q_sample(x0, ctx.ab_s, ctx.noise(x0)), m)
        return y_next
