"""Joint denoising of the windows of one canvas: MultiDiffusion and SyncTweedies (docs/method.md §12).

Both read the windows' geometry from the task (``Problem.extra["windows"]``, ``alm.windows``) and map the
windows to the canvas by averaging every position over the windows that cover it (``average``), then
back (``crops``). Neither reads an observation: the windows are tied by the averaging alone.

MultiDiffusion (Bar-Tal et al. 2023; diffusers' ``StableDiffusionPanoramaPipeline``): each window takes
its own sampler step, and the next states are averaged on the canvas:

    Y_s = crops(average(DDIM(Y_t^j, e_cfg(Y_t^j))))

SyncTweedies (Kim et al. 2024, "case 2"): the Tweedie estimates are averaged on the canvas, and every
window steps from the averaged estimate:

    x0_j = (Y_t^j - sqrt(1-ab_t) e_cfg(Y_t^j)) / sqrt(ab_t);   x0~ = crops(average(x0_j))
    Y_s^j = sqrt(ab_s) x0~_j + sqrt(1-ab_s) (Y_t^j - sqrt(ab_t) x0~_j) / sqrt(1-ab_t)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from alm import steps
from alm.errors import ConfigError
from alm.methods.base import Method, StepContext, StepGen


class CanvasMethod(Method):
    """A method that needs the task's windows (``task=wide``)."""

    uses_observation: ClassVar[bool] = False
    requires_task: ClassVar[Optional[str]] = "wide"

    def check(self, backbone, task) -> None:
        if not hasattr(task, "geometry"):
            raise ConfigError(f"method={self.name} averages the windows of a canvas: it needs task=wide "
                              f"(or another windowed task), not task={getattr(task, 'name', type(task).__name__)}")

    @staticmethod
    def windows(ctx: StepContext):
        extra = ctx.problem.extra or {}
        if "windows" not in extra:
            raise ConfigError("this method averages the windows of a canvas: the task gave no windows")
        return extra["windows"]


@dataclass
class MultiDiffusion(CanvasMethod):
    name: ClassVar[str] = "multidiffusion"

    def step(self, y, ctx: StepContext) -> StepGen:
        e = ctx.guided((yield ctx.guided_evals(y)))
        return self.windows(ctx).synced(ctx.base_step(y, e))


@dataclass
class SyncTweedies(CanvasMethod):
    name: ClassVar[str] = "synctweedies"

    def step(self, y, ctx: StepContext) -> StepGen:
        e = ctx.guided((yield ctx.guided_evals(y)))
        x0 = self.windows(ctx).synced(steps.predict_x0(y, e, ctx.ab_t))
        return ctx.step_from_x0(y, x0)
