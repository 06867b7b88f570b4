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

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Generator, Optional, Sequence

import torch

from alm import steps
from alm.errors import ConfigError
from alm.observation import Observation
from alm.rng import SampleGenerators

Tensor = torch.Tensor


@dataclass
class Eval:
    """One network evaluation: eps(z, t, c) with the sample's condition, or ∅ if not ``conditional``."""

    z: Tensor
    conditional: bool = True
    grad: bool = False  # evaluate with autograd enabled (z must require grad)
    rows: Any = None  # the batch rows ``z`` holds (an index tensor or slice); None = every row


StepGen = Generator[list, list, Tensor]


@dataclass
class Problem:
    """A batch of completion problems, in the diffusion variable's space.

    ``x0``: the observed content (B, *sample_shape); only ``(1-mask)`` of it may be used by a method.
    ``mask``: 1 = unobserved (to generate), broadcastable to ``x0``.
    ``cond``: the batch's condition (see ``Backbone.make_cond``).
    ``observation``: where X_t comes from (``alm.observation``: a stored trajectory, forward noise, or the
    batch's own current state); None when the method reads no X_t.
    ``initial_noise``: Y_T for the batch from its generators (None: i.i.d. Gaussian per sample), e.g. the
    crops of one canvas noise so that overlapping windows start equal.
    """

    x0: Tensor
    mask: Tensor
    cond: Any = None
    observation: Optional[Observation] = None
    initial_noise: Optional[Callable[[SampleGenerators], Tensor]] = None
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
    x_t: Callable[[Tensor], Tensor]  # X_t at this step given the current state y (alm.observation)
    groups: Sequence[Any] = (slice(None),)  # rows moved one group after the other (Observation.chain)

    @property
    def mask(self) -> Tensor:
        return self.problem.mask

    def noise(self, like: Tensor) -> Tensor:
        """Fresh per-sample standard normal noise shaped like ``like``."""
        return self.generators.randn_rows(like.shape[0], like.shape[1:], device=like.device, dtype=like.dtype)

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
    """Base class of the sampling methods: a dataclass whose fields are the config keys of
    ``conf/method/<name>.yaml`` (built from its ``_target_``). Subclasses set ``name`` and implement ``step``;
    their ``__post_init__`` checks their values (call ``super().__post_init__()`` first)."""

    name: ClassVar[str] = "method"
    #: reads X_t (``ctx.x_t``): the task then provides an observation (inversion, forward noise, ...)
    reads_x_t: ClassVar[bool] = False
    #: uses the observation at all (``ddim`` ignores the mask)
    uses_observation: ClassVar[bool] = True
    #: the backbone class (``_target_``, or a tuple of them) this method is limited to, checked before anything is built
    requires_backbone: ClassVar[Optional[str | tuple[str, ...]]] = None
    #: the kind of task this method is limited to (``"wide"``: windows of a canvas), checked by ``check``
    requires_task: ClassVar[Optional[str]] = None

    def __post_init__(self) -> None:
        check_field_types(self)

    def init(self, problem: Problem, generators: SampleGenerators) -> Tensor:
        """Y_T: the task's initial noise, else fresh per-sample Gaussian noise."""
        if problem.initial_noise is not None:
            return problem.initial_noise(generators)
        x0 = problem.x0
        return generators.randn_rows(x0.shape[0], x0.shape[1:], device=x0.device, dtype=x0.dtype)

    def step(self, y: Tensor, ctx: StepContext) -> StepGen:
        raise NotImplementedError

    def sample_directly(self, backbone, problem: Problem, generators: SampleGenerators) -> Optional[Tensor]:
        """Methods that do not run the reverse process (``exact``) return their sample here."""
        return None

    def check(self, backbone, task) -> None:
        """Refuse invalid combinations with a backbone or task before any work starts (raise ConfigError)."""


def check_field_types(obj: Any) -> None:
    """Check (and normalise int -> float) a dataclass's field values against their type hints.

    Config values arrive from YAML and the command line: ``method.w2=abc`` or ``method.iterations=1.5``
    is a one-line ConfigError naming the key, not a failure deep inside a step.
    """
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value, hint = getattr(obj, f.name), hints.get(f.name)
        args = typing.get_args(hint)
        optional = typing.get_origin(hint) is typing.Union and type(None) in args
        if optional:
            if value is None:
                continue
            hint = next(a for a in args if a is not type(None))
        ok = True
        if hint is bool:
            ok = isinstance(value, bool)
        elif hint is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok:
                object.__setattr__(obj, f.name, float(value))
        elif hint is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif hint is str:
            ok = isinstance(value, str)
        if not ok:
            kind = getattr(hint, "__name__", str(hint))
            raise ConfigError(f"method {getattr(obj, 'name', type(obj).__name__)}: {f.name}={value!r} is not a valid {kind}")
