"""The one sampling core: every method runs through ``reverse``; DDIM inversion through ``invert``.

All evaluations a method asks for at one step (one ``yield``) go through a single batched
``backbone.eps`` call (``evaluate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional

import torch

from alm import steps
from alm.backbones.base import Backbone, Cond, cat_cond, index_cond
from alm.errors import NumericalError
from alm.methods.base import Eval, Method, Problem, StepContext
from alm.observation import Observation
from alm.rng import SampleGenerators
from alm.schedule import Schedule

Tensor = torch.Tensor


@dataclass
class CallCounter:
    """Counts batched forward calls and single-sample network evaluations (for benchmarks).

    ``evaluations`` are the evaluations actually made; ``cached_evaluations`` those an inversion cache
    served from disk instead (``alm.inversion_cache``).
    """

    calls: int = 0
    evaluations: int = 0
    cached_evaluations: int = 0


def evaluate(
    backbone: Backbone,
    evals: list[Eval],
    t: int,
    cond: Cond,
    null: Cond,
    counter: Optional[CallCounter] = None,
) -> list[Tensor]:
    """Run all ``evals`` of one step as ONE batched forward call and split the result."""
    zs = [e.z for e in evals]
    sizes = [z.shape[0] for z in zs]
    conds = cat_cond([_rows_of(cond if e.conditional else null, e.rows) for e in evals])
    z = torch.cat(zs, dim=0)
    tt = torch.full((z.shape[0],), int(t), device=z.device, dtype=torch.long)
    with torch.set_grad_enabled(any(e.grad for e in evals)):
        out = backbone.eps(z, tt, conds)
    if counter is not None:
        counter.calls += 1
        counter.evaluations += z.shape[0]
    return list(torch.split(out, sizes, dim=0))


def _rows_of(cond: Cond, rows) -> Cond:
    return cond if rows is None else index_cond(cond, rows)


def _x_t(observation: Optional[Observation], i: int, method: str, y: Tensor) -> Tensor:
    if observation is None:
        raise RuntimeError(f"method {method} reads X_t but the task gave no observation (set reads_x_t = True)")
    return observation.x_t(i, y)


#: a sample whose state leaves [-MAX_ABS, MAX_ABS] at any step has diverged, like one with NaN. A variance
#: preserving state, sqrt(ab_t) x0 + sqrt(1 - ab_t) eps with data in about [-1, 1] (latents: a few units), stays
#: within about +-10, but a method's state may go further and come back: ALM at its tuned w2=5 on backbone=embedded
#: peaks at ~9e2 (500 test sources). Blow-ups pass 1e11 (SyncSDE lam=50 on gmm and embedded, ALM w1=10 on
#: embedded) before any NaN. 1e5 leaves two orders of magnitude on the one side, six on the other.
MAX_ABS = 1e5


def _check_diverged(y: Tensor, i: int, t: int, indices: list[int], method: str) -> None:
    """A one-line NumericalError naming the step and the samples whose state is NaN/inf or beyond MAX_ABS."""
    peak = y.detach().reshape(y.shape[0], -1).abs().amax(dim=1)  # NaN stays NaN
    bad = ~(peak <= MAX_ABS)
    if bool(bad.any()):
        # a batch may hold several rows per sample (the windows of a canvas, window-major: row j*B + b)
        ids = sorted({indices[j % len(indices)] for j in torch.nonzero(bad).flatten().tolist()})
        more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
        worst = peak[bad]
        what = ("NaN/inf" if not bool(torch.isfinite(worst).all())
                else f"values of magnitude {float(worst.max()):.3g} (beyond {MAX_ABS:g})")
        raise NumericalError(f"method {method} produced {what} at step {i} (t={t}) for sample(s) {ids[:10]}{more}")


def reverse(
    backbone: Backbone,
    method: Method,
    problem: Problem,
    schedule: Schedule,
    generators: SampleGenerators,
    guidance: float = 1.0,
    sampler: str = "ddim",
    counter: Optional[CallCounter] = None,
    callback: Optional[Callable[[int], None]] = None,
) -> Tensor:
    """Sample the unobserved content of ``problem`` with ``method``; returns Y_0 (diffusion space)."""
    direct = method.sample_directly(backbone, problem, generators)
    if direct is not None:
        return direct
    batch = problem.x0.shape[0]
    cond = problem.cond
    use_cfg = bool(backbone.conditional and guidance != 1.0)
    null = backbone.null_cond(batch) if use_cfg or cond is None else cond
    if not backbone.conditional:
        cond = null = None
    elif cond is None:  # a conditional model asked for an unconditional sample
        cond = null
    sigma = schedule.sigma
    y = method.init(problem, generators)
    t_first = int(schedule.timesteps[0])
    observation = problem.observation
    groups = list(observation.chain) if observation is not None and observation.chain is not None else [slice(None)]
    for i in range(len(schedule)):
        t = int(schedule.timesteps[i])
        ab_t, ab_s = float(schedule.ab[i]), float(schedule.ab_prev[i])
        if observation is not None:  # the observation's randomness first, then the method's (fixed order)
            observation.begin_step(i, ab_t, generators)
        ctx = StepContext(
            i=i, t=t, ab_t=ab_t, ab_s=ab_s, sigma=float(sigma[i]), t_first=t_first, problem=problem,
            guidance=guidance, use_cfg=use_cfg, generators=generators, sampler=sampler,
            x_t=partial(_x_t, observation, i, method.name), groups=groups,
        )
        gen = method.step(y, ctx)
        try:
            request = next(gen)
            while True:
                request = gen.send(evaluate(backbone, request, t, cond, null, counter))
        except StopIteration as stop:
            y = stop.value.detach()
        _check_diverged(y, i, t, generators.indices, method.name)
        if callback is not None:
            callback(i)
    return y


@torch.no_grad()
def invert(
    backbone: Backbone,
    x0: Tensor,
    schedule: Schedule,
    cond: Cond = None,
    counter: Optional[CallCounter] = None,
) -> Tensor:
    """DDIM inversion (eta 0) of ``x0``: the trajectory X_t for every step of ``schedule``.

    Returns a tensor (n, B, ...) with entry i at level ``schedule.timesteps[i]``. Step k goes from the
    level below (``ab_prev[k]``; the clean level for the first) to t_k using eps(X, t_k, c) with the conditional prediction and
    no guidance (docs/method.md §9), as diffusers' ``DDIMInverseScheduler``.
    """
    if not backbone.conditional:
        cond = None
    n = len(schedule)
    traj = [None] * n
    x = x0
    for k in range(n - 1, -1, -1):  # ascending noise level: from ab_prev[k] up to ab[k]
        t = int(schedule.timesteps[k])
        (e,) = evaluate(backbone, [Eval(x)], t, cond, cond, counter)
        x = steps.ddim_inversion_step(x, e, float(schedule.ab_prev[k]), float(schedule.ab[k]))
        traj[k] = x
    return torch.stack(traj)
