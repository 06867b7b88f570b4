"""Exact posterior sampling (``method=exact``): the ceiling every sampler is measured against.

Only ``backbone=gmm`` knows its inpainting posterior p(x_U | x_O) (a mixture with the weights
p(k | x_O) and the components' own marginals on U, see ``alm.backbones.gmm``), so the draw is made
directly and the reverse process is skipped. With a class-conditional mixture the draw is from the
class's posterior (guidance scale 1: classifier-free guidance has no exact counterpart here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from alm.backbones.gmm import GaussianMixture
from alm.errors import ConfigError
from alm.methods.base import Method, Problem, StepContext, StepGen
from alm.rng import SampleGenerators


@dataclass
class Exact(Method):
    name: ClassVar[str] = "exact"
    requires_backbone: ClassVar[str] = "alm.backbones.gmm.GaussianMixture"

    def check(self, backbone, task=None) -> None:
        if not isinstance(backbone, GaussianMixture):
            raise ConfigError("method=exact needs backbone=gmm (the only backbone with a known posterior)")

    def sample_directly(self, backbone, problem: Problem, generators: SampleGenerators) -> torch.Tensor:
        self.check(backbone, None)
        return backbone.posterior_sample(problem.x0, problem.mask, generators, cond=problem.cond)

    def step(self, y, ctx: StepContext) -> StepGen:  # never called: sample_directly always answers
        raise NotImplementedError("method=exact samples directly")
