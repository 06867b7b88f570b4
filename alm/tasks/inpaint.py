"""Image inpainting: fill the unobserved region (mask = 1) of a source image (paper §4.2.1).

The observed content is the source outside the mask, in the backbone's diffusion space. X_t comes from
DDIM inversion of the (masked) source, computed once per sample and optionally kept on disk
(``alm.inversion_cache``), or from forward noise (``observed: forward``). The "*" rows paste the output
into the source with a blurred mask (``blend``, ``alm.blend``; docs/method.md §10).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import torch

from alm import io
from alm.blend import BLEND_MODES, blend_output
from alm.errors import ConfigError, DataError
from alm.masks import validate_mask
from alm.methods.base import Method, Problem
from alm.observation import ForwardNoise, Trajectory
from alm.sampling import CallCounter, invert
from alm.schedule import Schedule
from alm.tasks.base import Batch, Task

OBSERVED = ("inversion", "forward")
INVERT = ("masked", "full")


def masked_source(images: torch.Tensor, masks: torch.Tensor, hole_value: float) -> torch.Tensor:
    """The source with the hole filled by ``hole_value`` (data space)."""
    return images * (1 - masks) + hole_value * masks


@dataclass
class Inpaint(Task):
    """Inpainting (``conf/task/inpaint.yaml``); the fields are its config keys."""

    name: ClassVar[str] = "inpaint"
    non_output_keys: ClassVar[tuple[str, ...]] = ("inversion_cache", "cache_dir")
    postprocess_keys: ClassVar[tuple[str, ...]] = ("blend", "blend_kernel", "blend_mode")

    observed: str = "inversion"     # X_t: DDIM inversion of the source, or fresh forward noise per step
    invert: str = "masked"          # invert the masked source (the authors' code) or the full one
    inversion_cache: Any = "auto"   # keep each sample's inversion on disk (outputs unchanged); auto: not for
                                    # an analytic backbone (the mixture), where recomputing is faster
    cache_dir: Optional[str] = None  # the inversion cache's folder (paths.inversion_cache)
    hole_value: float = -1.0        # the hole's value in the masked source ([-1, 1]; -1 = black)
    blend: bool = False             # the "*" rows: paste the output into the source with a blurred mask
    blend_kernel: int = 21          # that blur's kernel (the authors' 21 at 512 px)
    blend_mode: str = "authors"     # "authors": uint8 rounding before and after, as their code; "float"

    def __post_init__(self) -> None:
        if self.observed not in OBSERVED:
            raise ConfigError(f"task.observed={self.observed!r}: expected one of {', '.join(OBSERVED)}")
        if self.invert not in INVERT:
            raise ConfigError(f"task.invert={self.invert!r}: expected one of {', '.join(INVERT)}")
        if not (isinstance(self.inversion_cache, bool) or self.inversion_cache == "auto"):
            raise ConfigError(f"task.inversion_cache={self.inversion_cache!r}: expected true, false or auto")
        if not isinstance(self.blend, bool):
            raise ConfigError(f"task.blend={self.blend!r}: expected true or false")
        if self.blend and (self.blend_kernel % 2 == 0 or self.blend_kernel < 1):
            raise ConfigError(f"task.blend_kernel={self.blend_kernel}: expected an odd positive size")
        if self.blend_mode not in BLEND_MODES:
            raise ConfigError(f"task.blend_mode={self.blend_mode!r}: expected one of {', '.join(BLEND_MODES)}")
        self._cache = None

    def check(self, backbone: Any, dataset: Any, method: Method) -> None:
        use_cache = (not backbone.analytic) if self.inversion_cache == "auto" else self.inversion_cache
        if use_cache and self.cache_dir:
            from alm.inversion_cache import InversionCache

            self._cache = InversionCache(self.cache_dir)
        if tuple(dataset.shape) != tuple(backbone.data_shape):
            raise ConfigError(
                f"dataset {getattr(dataset, 'name', type(dataset).__name__)} gives images of shape {tuple(dataset.shape)} "
                f"but backbone {getattr(backbone, 'name', type(backbone).__name__)} works on {tuple(backbone.data_shape)}"
            )

    def load(self, dataset: Any, masks: Any, indices: list[int], device: torch.device) -> Batch:
        items = [dataset[i] for i in indices]
        images = torch.stack([it.image for it in items]).to(device)
        size = tuple(images.shape[-2:])
        ms = []
        for i in indices:
            m = masks.get(i, size)
            if tuple(m.shape[-2:]) != size:
                raise DataError(f"mask for sample {i} has size {tuple(m.shape[-2:])}, images have {size}")
            validate_mask(m, f"sample {i}")
            ms.append(m)
        return Batch(list(indices), images, torch.stack(ms).to(device), [it.label for it in items],
                     [it.meta for it in items])

    def problem(self, backbone: Any, method: Method, batch: Batch, schedule: Schedule,
                counter: Optional[CallCounter] = None) -> Problem:
        """The batch in the backbone's diffusion space, with X_t from inversion or forward noise."""
        with torch.no_grad():
            return inpainting_problem(backbone, method, batch.sources, batch.masks, batch.labels, schedule,
                                      observed=self.observed, invert_what=self.invert, hole_value=self.hole_value,
                                      counter=counter, cache=self._cache)

    def postprocess(self, backbone: Any, batch: Batch, outputs: torch.Tensor) -> torch.Tensor:
        if not self.blend:
            return outputs
        # the authors round the decoded image to 8-bit levels in their VAE's dtype (fp16 by default)
        return blend_output(outputs, batch.sources, batch.masks, int(self.blend_kernel), mode=self.blend_mode,
                            quantize_dtype=getattr(backbone, "vae_dtype", None))

    def record(self, batch: Batch, j: int, output: torch.Tensor) -> dict[str, Any]:
        masked = masked_source(batch.sources[j], batch.masks[j], float(self.hole_value))
        return {**super().record(batch, j, output), "masked": masked.cpu().clone()}

    def pictures(self, record: dict) -> dict[str, torch.Tensor]:
        return {"source": record["source"], "masked": io.shown_masked(record["source"], record["mask"]),
                "output": record["output"]}

    def panels(self, record: dict) -> list[torch.Tensor]:
        return [record["source"], io.shown_masked(record["source"], record["mask"]), record["output"].clamp(-1, 1)]


def inpainting_problem(
    backbone: Any,
    method: Method,
    images: torch.Tensor,
    masks: torch.Tensor,
    labels: list,
    schedule: Schedule,
    observed: str = "inversion",
    invert_what: str = "masked",
    hole_value: float = -1.0,
    counter: Optional[CallCounter] = None,
    cache: Any = None,
) -> Problem:
    """A batch of inpainting problems in the backbone's diffusion space (a pure function of its inputs).

    ``images`` (B, C, H, W) in [-1, 1]; ``masks`` (B, 1, H, W) with 1 = unobserved. X_t (only for a method
    that reads it): DDIM inversion of the masked (or full) source, read from / written to an inversion
    ``cache`` when given (the outputs are the same), or fresh forward noise at every step.
    """
    masks = (masks > 0.5).to(images.dtype)
    source = masked_source(images, masks, float(hole_value))
    x0 = backbone.encode(source)
    mask = backbone.mask_to_sample(masks).to(x0.dtype)
    cond = backbone.make_cond(labels, images.shape[0])
    observation = None
    if method.reads_x_t and observed == "forward":
        observation = ForwardNoise(x0)
    elif method.reads_x_t:
        inverted = source if invert_what == "masked" else images  # data space
        to_invert = x0 if invert_what == "masked" else backbone.encode(images)
        if cache is None:
            trajectory = invert(backbone, to_invert, schedule, cond, counter)
        else:
            keys = cache.keys(backbone, schedule, inverted, masks, labels, to_invert)
            trajectory = cache.invert(backbone, to_invert, schedule, cond, keys, counter)
        observation = Trajectory(trajectory)
    return Problem(x0=x0, mask=mask, cond=cond, observation=observation)
