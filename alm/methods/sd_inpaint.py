"""Stable Diffusion Inpainting (``method=sd_inpaint``): the training-based baseline of the paper's Table 6.

diffusers' ``StableDiffusionInpaintPipeline`` runs on ``backbone=sd15-inpaint`` (the 9-channel
``stable-diffusion-inpainting`` checkpoint; ``alm.backbones.inpaint_pipeline``) with the source,
the mask and the prompt of each sample, as ``exact`` does for the Gaussian mixture: the reverse process
is the pipeline's own, so ``sample_directly`` answers and ``step`` is never called.

- Steps, guidance and scheduler come from the sampler group (``conf/method/sd_inpaint.yaml``
  interpolates ``${sampler.steps}``, ``${sampler.guidance}``, ``${sampler.name}``): ``ddim`` = the
  pipeline with a ``DDIMScheduler`` (eta 0) made from the checkpoint's scheduler config, ``ddpm`` = a
  ``DDPMScheduler``. Guidance > 1 is the pipeline's classifier-free guidance with the empty negative prompt.
- Randomness: the pipeline gets the run's per-sample generators (``generator=[g_0, ..., g_B-1]``),
  so sample i's initial latent, its VAE posterior draw of the masked image and (ddpm) its step noise
  come from ``(seed, i)`` only: an output does not depend on the batch size (tested).
- The pipeline decodes every pixel, the known region included (it is not pasted back); the "*" rows
  (``task.blend=true``) paste the output into the source with the blurred mask, as for every method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from alm.errors import ConfigError
from alm.methods.base import Method, Problem, StepContext, StepGen
from alm.rng import SampleGenerators

SAMPLERS = ("ddim", "ddpm")


@dataclass
class SDInpaint(Method):
    name: ClassVar[str] = "sd_inpaint"
    requires_backbone: ClassVar[str] = "alm.backbones.inpaint_pipeline.InpaintPipeline"

    steps: int = 50
    guidance: float = 7.5
    sampler: str = "ddim"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"method=sd_inpaint runs with sampler=ddim or ddpm, not {self.sampler!r}")
        if self.steps < 1:
            raise ConfigError(f"method=sd_inpaint: steps={self.steps} must be positive")
        if self.guidance < 1:
            raise ConfigError(f"method=sd_inpaint: guidance={self.guidance} must be >= 1 (1 = no classifier-free guidance)")

    def check(self, backbone, task=None) -> None:
        from alm.backbones.inpaint_pipeline import InpaintPipeline

        if not isinstance(backbone, InpaintPipeline):
            raise ConfigError("method=sd_inpaint needs backbone=sd15-inpaint (the Stable Diffusion inpainting pipeline)")

    def sample_directly(self, backbone, problem: Problem, generators: SampleGenerators) -> torch.Tensor:
        self.check(backbone, None)
        source = ((problem.x0.float() + 1) / 2).clamp(0, 1)  # the masked source in [0, 1]; the pipeline masks it again
        mask = (problem.mask > 0.5).float()  # (B, 1, H, W), 1 = to generate, as the pipeline's mask_image
        h, w = source.shape[-2:]
        prompts = backbone.make_cond(problem.cond, source.shape[0])  # a list of strings already: kept
        images = backbone.pipeline(self.sampler)(
            prompt=prompts, image=source, mask_image=mask, height=h, width=w,
            num_inference_steps=int(self.steps), guidance_scale=float(self.guidance), eta=0.0,
            generator=list(generators.generators), output_type="pt",
        ).images
        return (images.to(device=problem.x0.device, dtype=problem.x0.dtype) * 2 - 1).clamp(-1, 1)

    def step(self, y, ctx: StepContext) -> StepGen:  # never called: sample_directly always answers
        raise NotImplementedError("method=sd_inpaint samples with the diffusers pipeline")
