"""The method plug-in protocol.

A method's ``step`` is a generator: each ``yield`` hands the core a list of network evaluations
(``Eval``) that the core runs as ONE batched forward call, and receives their noise predictions back
in the same order; the generator's ``return`` value is the next sample. A method therefore says
which evaluations it needs per step and how it combines them, and nothing else.

    def step(self, y, ctx):
        e_c, e_u = yield [Eval(y), Eval(y, conditional=False)]
        return ctx.base_step(y, cfg(e_c, e_u, ctx.guidance))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Generator, Optional

import torch

from alm import steps
from alm.rng import SampleGenerators

Tensor = torch.Tensor


@dataclass
class Eval:
    """One network evaluation: eps(z, t, c) with the sample's condition, or ∅ if not ``conditional``."""

    z: Tensor
    conditional: bool = True
    grad: bool = False  # evaluate with autograd enabled (z must require grad)


StepGen = Generator[list, list, Tensor]


@dataclass
class Problem:
    """A batch of completion problems, in the diffusion variable's space.

    ``x0``: the observed content (B, *sample_shape); only ``(1-mask)`` of it may be used by a method.
    ``mask``: 1 = unobserved (to generate), broadcastable to ``x0``.
    ``trajectory``: X_t for each step i (n, B, ...) when the task provides it (DDIM inversion or the
    previous patch's trajectory); None means X_t is the forward-noised observation.
    ``cond``: the batch's condition (see ``Backbone.make_cond``).
    """

    x0: Tensor
    mask: Tensor
    cond: Any = None
    trajectory: Optional[Tensor] = None
    extra: Optional[dict] = None


@dataclass
class StepContext:
    """Everything a method may read at step i."""

    i: int
    t: int
    ab_t: float
    ab_s: float
    sigma: float
    t_first: int  # the first (largest) timestep of the schedule, SyncSDE's T
    problem: Problem
    guidance: float
    use_cfg: bool
    generators: SampleGenerators
    sampler: str  # "ddim" or "ddpm"
    x_t: Callable[[], Tensor]  # X_t at this step (lazy: forward noise is drawn only if asked for)

    @property
    def mask(self) -> Tensor:
        return self.problem.mask

    def noise(self, like: Tensor) -> Tensor:
        """Fresh per-sample standard normal noise shaped like ``like``."""
        return self.generators.randn(like.shape[1:], device=like.device, dtype=like.dtype)

    def guided_evals(self, z: Tensor, grad: bool = False) -> list[Eval]:
        """The evaluations classifier-free guidance needs at ``z`` (one if guidance is off)."""
        evals = [Eval(z, True, grad)]
        if self.use_cfg:
            evals.append(Eval(z, False, grad))
        return evals

    def guided(self, outs: list[Tensor]) -> Tensor:
        """Combine the outputs of ``guided_evals`` into the CFG prediction."""
        return steps.cfg(outs[0], outs[1], self.guidance) if self.use_cfg else outs[0]

    def step_from_x0(self, y: Tensor, x0: Tensor) -> Tensor:
        """The sampler's update (DDIM or ancestral DDPM) given an x0 estimate."""
        if self.sampler == "ddpm":
            return steps.ddpm_posterior_mean(y, x0, self.ab_t, self.ab_s) + self.sigma * self.noise(y)
        return steps.ddim_from_x0(x0, steps.eps_from_x0(y, x0, self.ab_t), self.ab_s)

    def base_step(self, y: Tensor, e: Tensor) -> Tensor:
        """The sampler's update given a noise prediction: DDIM(Y_t, e), or the DDPM ancestral step."""
        if self.sampler == "ddpm":
            return steps.ddpm_step(y, e, self.ab_t, self.ab_s, self.noise(y))
        return steps.ddim_step(y, e, self.ab_t, self.ab_s)


class Method:
    """Base class of the sampling methods. Subclasses set ``name`` and implement ``step``."""

    name: ClassVar[str] = "method"
    #: needs X_t for every step (DDIM inversion or the previous patch's trajectory)
    needs_trajectory: ClassVar[bool] = False
    #: uses the observation at all (``ddim`` ignores the mask)
    uses_observation: ClassVar[bool] = True
    #: the backbone class (``_target_``) this method is limited to, checked before anything is built
    requires_backbone: ClassVar[Optional[str]] = None

    def init(self, problem: Problem, generators: SampleGenerators) -> Tensor:
        """Y_T: fresh per-sample Gaussian noise."""
        x0 = problem.x0
        return generators.randn(x0.shape[1:], device=x0.device, dtype=x0.dtype)

    def step(self, y: Tensor, ctx: StepContext) -> StepGen:
        raise NotImplementedError

    def sample_directly(self, backbone, problem: Problem, generators: SampleGenerators) -> Optional[Tensor]:
        """Methods that do not run the reverse process (``exact``) return their sample here."""
        return None

    def check(self, backbone, task_cfg) -> None:
        """Refuse invalid combinations before any work starts (raise ConfigError)."""
