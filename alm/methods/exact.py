"""Exact sampling (``method=exact``): the ceiling every sampler is measured against.

Two backbones know the law a run samples from, so the draw is made directly and the reverse process is
skipped:

- ``backbone=gmm`` (inpainting): the posterior p(x_U | x_O), a mixture with the weights p(k | x_O) and the
  components' own marginals on U (``alm.backbones.gmm``). With a class-conditional mixture the draw is from
  the class's posterior (guidance scale 1: classifier-free guidance has no exact counterpart here).
- ``backbone=gp`` with ``task=wide`` (``source: false``): the canvas law. The GP mixture is stationary, so a
  canvas of L entries has the law ``canvas_distribution(L)`` (docs/wide_gp.md). Sample b's canvas is
  ``GaussianProcessMixture.sample(1, generator_b, L)`` (its generator only: one uniform for the component,
  then L float64 normals), returned as the window rows (window-major crops of the canvas, the geometry of
  ``Problem.extra["windows"]``), which the task stitches back into exactly that canvas. The GP's frame layout
  (``backbone=gp_video``, ``task=video``) is the same along the frames: a clip of L frames, ``sample(1,
  generator_b, L)`` (one uniform, then L h w normals), cropped along axis -3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from alm.backbones.gmm import GaussianMixture
from alm.backbones.gp import GaussianProcessMixture
from alm.errors import ConfigError
from alm.methods.base import Method, Problem, StepContext, StepGen
from alm.rng import SampleGenerators


@dataclass
class Exact(Method):
    name: ClassVar[str] = "exact"
    requires_backbone: ClassVar[tuple[str, ...]] = ("alm.backbones.gmm.GaussianMixture",
                                                    "alm.backbones.gp.GaussianProcessMixture")

    def check(self, backbone, task=None) -> None:
        if isinstance(backbone, GaussianMixture):
            return
        if not isinstance(backbone, GaussianProcessMixture):
            raise ConfigError("method=exact needs backbone=gmm (inpainting) or backbone=gp with task=wide "
                              "(the only backbones with a known law)")
        if task is None:  # checked again when sampling (the problem must carry the windows)
            return
        if not hasattr(task, "geometry"):
            raise ConfigError(f"method=exact on backbone=gp draws whole canvases: it needs task=wide, not "
                              f"task={getattr(task, 'name', type(task).__name__)}")
        if getattr(task, "source", False):
            raise ConfigError("method=exact on backbone=gp draws unconditional canvases: task.source=true "
                              "(an observed anchor window) has no exact draw here")

    def sample_directly(self, backbone, problem: Problem, generators: SampleGenerators) -> torch.Tensor:
        self.check(backbone, None)
        if isinstance(backbone, GaussianMixture):
            return backbone.posterior_sample(problem.x0, problem.mask, generators, cond=problem.cond)
        return canvas_rows(backbone, problem, generators)

    def step(self, y, ctx: StepContext) -> StepGen:  # never called: sample_directly always answers
        raise NotImplementedError("method=exact samples directly")


def canvas_rows(gp: GaussianProcessMixture, problem: Problem, generators: SampleGenerators) -> torch.Tensor:
    """Exact canvases of the windowed task, one per sample generator, as the window rows (K * B, 1, 1, n), or
    (K * B, 1, n, h, w) for clips (the GP's frame layout: windows along axis -3)."""
    g = (problem.extra or {}).get("windows")
    if g is None:
        raise ConfigError("method=exact on backbone=gp needs task=wide: the problem has no windows")
    if g.axis != gp.axis or g.size != gp.length:
        raise ConfigError(f"method=exact on backbone=gp: windows of {g.size} entries along axis {g.axis}; "
                          f"the GP's windows are its {gp.length} entries along axis {gp.axis}")
    canvas = torch.cat([gp.sample(1, gen, g.length)[0] for gen in generators.generators])  # (B, 1, 1, L) or (B, 1, L, h, w)
    return g.crops(canvas).to(device=problem.x0.device, dtype=problem.x0.dtype)
