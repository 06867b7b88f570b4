"""ALM: Accelerated Likelihood Maximization (paper Eq. 1, 8-10; docs/method.md §2-5).

Weights (all multiplied by sigma_t, paper Eq. 10):

| config          | paper            | role                                                         |
|-----------------|------------------|--------------------------------------------------------------|
| ``method.w1``     | w1               | observed-region sync, Eq. 3                                  |
| ``method.w_cond`` | w2 (= N lambda1) | conditional likelihood on e(Y); ``None`` = tied to w1 as in the authors' code |
| ``method.w2``     | w3 - w2 (= N lambda2) | joint likelihood: e(E) gets w_cond + w2 (so w3 = w_cond + w2); the authors' ``w2`` |

The paper's w2 is ``method.w_cond``, NOT ``method.w2`` (docs/method.md §3, the symbol table).

``order="reference"`` is the authors' public code: the likelihood move first, then DDIM + sync at
the moved point (4 evaluations with CFG, in two dependent batched calls). ``order="fused"`` is Eq. 1
as printed: one batched call of e(Y,c), e(Y,∅), e(E,c) (3 evaluations). ``iterations=N`` replaces
the one-step move by N moves of weight 1/N each (the non-accelerated Eq. 5/8); N = 1 is the default
accelerated form.

Rows in groups (``ctx.groups``, from the task's observation, ``alm.observation``): the windows of a canvas
observe their neighbour's state. ``sequential=True`` moves the groups one after the other, each from its
neighbour's MOVED state (the authors' wide-image order; 2 evaluations per window, one call per group);
``sequential=False`` moves every group at once from the pre-move state (one call). Rows outside every
group (the canvas's first window) are not moved. Inpainting has one group, every row: the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import torch

from alm import steps
from alm.errors import ConfigError
from alm.methods.base import Eval, Method, StepContext, StepGen


@dataclass
class ALM(Method):
    """ALM and its ablations (``likelihood=False`` is "w/o ALM", ``w_cond=0`` "w/o cond.", ``w2=0`` "w/o joint");
    ``imputation=True`` is the "*" variant of the motion tables ("Ours*")."""

    name: ClassVar[str] = "alm"
    reads_x_t: ClassVar[bool] = True

    w1: float = 1.0
    w2: float = 0.005
    w_cond: Optional[float] = None
    order: str = "reference"
    iterations: int = 1
    likelihood: bool = True
    sequential: bool = True
    imputation: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.order not in ("reference", "fused"):
            raise ConfigError(f"method.order={self.order!r}: expected 'reference' or 'fused'")
        if int(self.iterations) < 1:
            raise ConfigError(f"method.iterations={self.iterations}: expected a positive integer")
        if self.order == "fused" and self.iterations != 1:
            raise ConfigError("method.iterations>1 needs order=reference (the fused order is one step by construction)")

    @property
    def lam1(self) -> float:
        return self.w1 if self.w_cond is None else self.w_cond

    def step(self, y, ctx: StepContext) -> StepGen:
        if self.order == "fused":
            return (yield from self._fused(y, ctx))
        return (yield from self._reference(y, ctx))

    def _reference(self, y, ctx: StepContext) -> StepGen:
        m, s = ctx.mask, ctx.sigma
        if self.likelihood:
            n = int(self.iterations)
            groups = ctx.groups if self.sequential else [merge_groups(ctx.groups)]
            for _ in range(n):  # Eq. 5/8 iterations; n = 1 is the one-step approximation, Eq. 9
                for rows in groups:  # one group (every row) unless the task chains rows (alm.observation)
                    x = ctx.x_t(y)  # E = (1-M) X_t + M Y with the current state (a neighbour may have moved)
                    sel = None if _every(rows) else rows
                    e_y, e_e = yield [Eval(y[rows], rows=sel), Eval(steps.blend(x, y, m)[rows], rows=sel)]
                    y = _add_rows(y, rows, (s / n) * steps.alm_move(_rows(m, rows), e_y, e_e, self.lam1, self.w2))
        x = ctx.x_t(y)
        e = ctx.guided((yield ctx.guided_evals(y)))
        return self._imputed(ctx.base_step(y, e) + steps.sync_term(x, y, m, s * self.w1), ctx)

    def _fused(self, y, ctx: StepContext) -> StepGen:
        # Eq. 1: DDIM(Y, e_cfg(Y)) + w1 (1-M)(X - Y) + M (w2 e(Y,c) - w3 e(E,c)); e(Y,c) is shared.
        m, x, s = ctx.mask, ctx.x_t(y), ctx.sigma
        rows = merge_groups(ctx.groups)  # every row, unless the task leaves some unmoved (a canvas's first window)
        evals = ctx.guided_evals(y)
        if self.likelihood:
            sel = None if _every(rows) else rows
            evals.append(Eval(steps.blend(x, y, m)[rows], rows=sel))  # e(E) only for the rows that move
        outs = yield evals
        y_next = ctx.base_step(y, ctx.guided(outs)) + steps.sync_term(x, y, m, s * self.w1)
        if self.likelihood:
            move = s * steps.alm_move(_rows(m, rows), outs[0][rows], outs[-1], self.lam1, self.w2)
            y_next = _add_rows(y_next, rows, move)
        return self._imputed(y_next, ctx)

    def _imputed(self, y_next, ctx: StepContext):
        """The "*" rows (``imputation=True``): the observed region replaced by a fresh forward-noised copy of the
        observation at the next level, q(X_s | X_0), as MDM's imputation (paper Tables 4/7, "Ours*")."""
        if not self.imputation:
            return y_next
        x0 = ctx.problem.x0
        return steps.impute(y_next, steps.q_sample(x0, ctx.ab_s, ctx.noise(x0)), ctx.mask)


def _rows(t, rows):
    """``t`` restricted to ``rows`` (a tensor with batch dimension 1 broadcasts to every row)."""
    return t if t.shape[0] == 1 else t[rows]


def merge_groups(groups):
    """One group holding the rows of every group (a slice if that is every row or a single group)."""
    groups = list(groups)
    if len(groups) == 1 or any(_every(g) for g in groups):
        return groups[0] if len(groups) == 1 else slice(None)
    return torch.cat([torch.arange(g.start, g.stop) if isinstance(g, slice) else torch.as_tensor(g).reshape(-1)
                      for g in groups])


def _every(rows) -> bool:
    return isinstance(rows, slice) and rows == slice(None)


def _add_rows(y, rows, delta):
    """``y`` with ``delta`` added to ``rows`` (every row: a plain sum, bit for bit the unchained update)."""
    if _every(rows):
        return y + delta
    y = y.clone()
    y[rows] = y[rows] + delta
    return y
