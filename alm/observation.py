"""Where X_t comes from: the observed content at the noise level of step i (docs/method.md §9).

A task hands the sampling core one ``Observation`` per batch (``Problem.observation``); a method reads
X_t through ``ctx.x_t(y)`` and never knows which provider answered:

| provider          | X_t at step i                                             | used by                          |
|-------------------|-----------------------------------------------------------|----------------------------------|
| ``Trajectory``    | a stored trajectory, ``traj[i]`` (DDIM inversion)         | image inpainting (paper §4.2.1)  |
| ``ForwardNoise``  | ``q_sample(x0, ab_t, z_i)``, fresh noise z_i at each step | motion (CondMDI), ``observed=forward`` |
| ``FromState``     | a function of the batch's CURRENT state ``y``             | windows of a canvas / of a video |

Randomness has one fixed order per step, whatever the method does: the core calls ``begin_step``
first (a provider that needs noise draws it there, from the per-sample generators), then the method
runs and draws its own noise. So two methods see the same X_t for the same seed.

``FromState`` may also name ``chain``: groups of rows updated one after the other inside a step (a
window observes its neighbour's state AFTER the neighbour moved, as the authors' wide-image code does).
A method that moves rows (ALM's likelihood move) visits ``ctx.groups`` in order and asks ``ctx.x_t(y)``
again before each group; without a chain there is one group, every row.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from alm import steps
from alm.rng import SampleGenerators

Tensor = torch.Tensor


class Observation:
    """Base class: ``x_t(i, y)`` is X_t at step i given the current state ``y`` (B, *sample_shape)."""

    #: row groups updated in sequence within a step (None: all rows at once)
    chain: Optional[Sequence[Tensor]] = None

    def begin_step(self, i: int, ab_t: float, generators: SampleGenerators) -> None:
        """Called by the core at the start of step i, before the method: draw this step's randomness."""

    def x_t(self, i: int, y: Tensor) -> Tensor:
        raise NotImplementedError


class Trajectory(Observation):
    """A stored trajectory (n, B, *sample_shape): entry i is X_t at ``schedule.timesteps[i]``."""

    def __init__(self, trajectory: Tensor):
        self.trajectory = trajectory

    def x_t(self, i: int, y: Tensor) -> Tensor:
        return self.trajectory[i]


class ForwardNoise(Observation):
    """X_t = sqrt(ab_t) x0 + sqrt(1-ab_t) z, with z drawn afresh at every step (before the method's draws)."""

    def __init__(self, x0: Tensor):
        self.x0 = x0
        self._current: Optional[Tensor] = None

    def begin_step(self, i: int, ab_t: float, generators: SampleGenerators) -> None:
        x0 = self.x0
        z = generators.randn_rows(x0.shape[0], x0.shape[1:], device=x0.device, dtype=x0.dtype)
        self._current = steps.q_sample(x0, ab_t, z)

    def x_t(self, i: int, y: Tensor) -> Tensor:
        if self._current is None:
            raise RuntimeError("ForwardNoise.x_t before begin_step")
        return self._current


class FromState(Observation):
    """X_t as a function of the batch's current state: ``fn(i, y)`` (e.g. a window's neighbour's columns)."""

    def __init__(self, fn: Callable[[int, Tensor], Tensor], chain: Optional[Sequence[Tensor]] = None):
        self.fn = fn
        self.chain = chain

    def x_t(self, i: int, y: Tensor) -> Tensor:
        return self.fn(i, y)
