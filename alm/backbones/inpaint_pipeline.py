"""``backbone=sd15-inpaint``: diffusers' ``StableDiffusionInpaintPipeline`` as a backbone for ``method=sd_inpaint``.

The training-based baseline of the paper's Table 6 is a different model (a 9-channel UNet that sees
the mask and the masked image's latent), not a sampler over an ``eps(z, t, c)``: it is run whole by
its own pipeline. This wrapper only loads it and speaks the runner's language, so the runner needs no
special case:

- data space = diffusion space = images (3, R, R) in [-1, 1]; ``encode``/``decode``/``mask_to_sample``
  are the identity, so ``Problem.x0`` is the masked source and ``Problem.mask`` the pixel mask;
- ``make_cond`` gives the prompts themselves (a list of strings; None -> the empty prompt);
- ``eps`` refuses: every other method needs ``backbone=sd15`` (the same VAE and text encoder with the
  4-channel UNet).

Weights: a pipeline folder (``path``), the snapshot of ``repo_id`` at ``revision`` in the local
Hugging Face cache (never downloaded; a missing one is a one-line ``CheckpointError`` naming
``python scripts/fetch_weights.py sd15-inpaint``), or ``tiny: sd15-inpaint``, the random-weight
miniature of ``alm.backbones.tiny``. The safety checker is not loaded: an evaluation must score what
the model made, not a blacked-out image.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Optional, Union

import torch

from alm.backbones.base import Backbone
from alm.backbones.diffusers_unet import _device, _one_line, find_checkpoint_folder, resolve_dtype
from alm.errors import CheckpointError, ConfigError

Tensor = torch.Tensor
ATTENTION = ("sdpa", "eager")


class InpaintPipeline(Backbone):
    """Holds a ``StableDiffusionInpaintPipeline``; ``pipeline(sampler)`` hands it out (module docstring)."""

    conditional = True

    def __init__(
        self,
        path: Optional[str] = None,
        repo_id: Optional[str] = None,
        revision: Optional[str] = None,
        variant: Optional[str] = None,
        dtype: Union[str, torch.dtype] = "auto",
        device: Optional[str] = None,
        resolution: Optional[int] = None,
        attention: str = "sdpa",
        vae_slicing: bool = False,
        tiny: Optional[str] = None,
        cache_dir: Optional[str] = None,
        name: str = "sd15-inpaint",
        missing_hint: Optional[str] = None,
    ):
        """``resolution``: the image side (null = the UNet's sample_size x the VAE factor, 512 for the
        real checkpoint); ``tiny``: build / reuse the named tiny model instead of loading ``path``/``repo_id``."""
        super().__init__()
        from diffusers import StableDiffusionInpaintPipeline

        if attention not in ATTENTION:
            raise ConfigError(f"backbone.attention={attention!r}: expected one of {', '.join(ATTENTION)}")
        self.name = name
        torch_dtype = resolve_dtype(dtype, device)
        if tiny:
            from alm.backbones.tiny import ensure_tiny

            folder = ensure_tiny(str(tiny))
        else:
            folder = find_checkpoint_folder(path, repo_id, revision, cache_dir, missing_hint or (
                "set backbone.path to a local inpainting pipeline folder (unet/ vae/ text_encoder/ tokenizer/ scheduler/)"))
        kwargs: dict[str, Any] = dict(dtype=torch_dtype, local_files_only=True, safety_checker=None,
                                      feature_extractor=None, requires_safety_checker=False, low_cpu_mem_usage=False)
        if variant:
            kwargs["variant"] = variant
        try:
            with _no_progress_bars():
                pipe = StableDiffusionInpaintPipeline.from_pretrained(str(folder), **kwargs)
        except Exception as err:  # OSError / ValueError with long texts
            raise CheckpointError(f"cannot load the inpainting pipeline from {folder}: {_one_line(err)}") from None
        if pipe.unet.config.in_channels != 9:
            raise ConfigError(f"{folder}: the UNet takes {pipe.unet.config.in_channels} input channels, not 9 "
                              f"(latent + mask + masked-image latent): not an inpainting checkpoint")
        # registered as submodules, so that .to(device) / .eval() reach the pipeline's networks
        self.unet, self.vae, self.text_encoder = pipe.unet, pipe.vae, pipe.text_encoder
        for m in (self.unet, self.vae, self.text_encoder):
            m.eval().requires_grad_(False)
        if attention == "sdpa":
            from diffusers.models.attention_processor import AttnProcessor2_0 as processor
        else:
            from diffusers.models.attention_processor import AttnProcessor as processor
        for m in (self.unet, self.vae):
            m.set_attn_processor(processor())
        if vae_slicing:
            self.vae.enable_slicing()
        self._pipe = pipe
        self.scheduler_config = dict(pipe.scheduler.config)

        vae_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        native = int(self.unet.config.sample_size) * vae_factor
        res = native if resolution is None else int(resolution)
        multiple = vae_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)
        if res < 1 or res % multiple:
            raise ConfigError(f"backbone {name}: resolution={resolution} must be a positive multiple of {multiple} "
                              f"(VAE x UNet downsampling); the model's own is {native}")
        self.data_shape = self.sample_shape = (int(self.vae.config.in_channels), res, res)
        if device is not None:
            self.to(_device(device))

    def pipeline(self, sampler: str = "ddim"):
        """The pipeline with a fresh ``DDIMScheduler`` (eta 0) or ``DDPMScheduler`` made from the
        checkpoint's scheduler config (same networks; no state shared between calls)."""
        from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionInpaintPipeline

        schedulers = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler}
        if sampler not in schedulers:
            raise ConfigError(f"sampler {sampler!r}: the inpainting pipeline runs with ddim or ddpm")
        config = {k: v for k, v in self.scheduler_config.items() if k not in ("_class_name", "_diffusers_version")}
        parts = {**self._pipe.components, "scheduler": schedulers[sampler].from_config(config)}
        pipe = StableDiffusionInpaintPipeline(**parts, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    # -- the Backbone interface (identity spaces; prompts as the condition)

    def eps(self, z: Tensor, t: Tensor, cond: Any) -> Tensor:
        raise ConfigError(f"backbone {self.name} only runs method=sd_inpaint (its UNet also needs the mask and the "
                          f"masked image); the other methods run on backbone=sd15")

    def make_cond(self, labels: Any, batch: int) -> list[str]:
        """Prompts (a string, or one per sample; None = the empty prompt)."""
        from alm.backbones.latent import prompt_list

        return prompt_list(labels, batch, self.name)

    def null_cond(self, batch: int) -> list[str]:
        return [""] * batch

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device


@contextmanager
def _no_progress_bars():
    """No "Loading pipeline components" / "Loading weights" bars while loading (restored afterwards)."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    was = dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled()
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        if was[0]:
            dlog.enable_progress_bar()
        if was[1]:
            tlog.enable_progress_bar()
