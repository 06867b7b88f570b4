"""The backbone interface every sampler and method works against.

A backbone wraps a noise-prediction network. Methods never see what is inside: pixel or latent
space, class labels or text, a UNet or an exact Gaussian mixture.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

Cond = Any  # None (unconditional), a tensor with a leading batch dimension, a dict of such tensors,
#             or a list with one entry per sample (the prompts of backbone=sd15-inpaint)


class Backbone(torch.nn.Module):
    """Base class. Subclasses implement ``eps`` and set ``scheduler_config`` and ``sample_shape``."""

    #: diffusers scheduler config (dict) whose beta table the model was trained with
    scheduler_config: Mapping[str, Any]
    #: shape (C, H, W) of the diffusion variable (latent shape for latent models)
    sample_shape: tuple[int, ...]
    #: shape (C, H, W) of the data (image) space
    data_shape: tuple[int, ...]
    #: whether ``eps`` depends on ``cond`` (classifier-free guidance needs this)
    conditional: bool = False
    #: ``eps`` is a closed form costing next to nothing (the Gaussian mixture): caches of its outputs only slow it
    analytic: bool = False

    def eps(self, z: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
        """Noise prediction for ``z`` (B, *sample_shape) at integer timesteps ``t`` (B,)."""
        raise NotImplementedError

    def null_cond(self, batch: int) -> Cond:
        """The unconditional ("empty") condition for a batch, used by classifier-free guidance."""
        return None

    def make_cond(self, labels: Any, batch: int) -> Cond:
        """The condition for a batch from the data set's labels/prompts (None for unconditional)."""
        return None

    # Data space <-> diffusion space. Identity for pixel models; VAE for latent models.
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def mask_to_sample(self, mask: torch.Tensor) -> torch.Tensor:
        """Take a data-space mask (B, 1, H, W) to the diffusion variable's resolution (nearest)."""
        h, w = self.sample_shape[-2:]
        if mask.shape[-2:] == (h, w):
            return mask
        return torch.nn.functional.interpolate(mask, size=(h, w), mode="nearest")

    def input_files(self) -> dict[str, list]:
        """Files (other than checkpoints) that change what ``eps`` computes, for a run's fingerprint
        (see ``CompletionDataset.input_files``)."""
        return {}

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")


def cat_cond(conds: list[Cond]) -> Cond:
    """Concatenate conditions along the batch dimension (None stays None; dicts key by key)."""
    first = conds[0]
    if first is None:
        return None
    if isinstance(first, Mapping):
        return {k: cat_cond([c[k] for c in conds]) for k in first}
    if isinstance(first, list):
        return [v for c in conds for v in c]
    return torch.cat(conds, dim=0)


def index_cond(cond: Cond, idx) -> Cond:
    """Select batch entries of a condition."""
    if cond is None:
        return None
    if isinstance(cond, Mapping):
        return {k: index_cond(v, idx) for k, v in cond.items()}
    if isinstance(cond, list):
        if isinstance(idx, slice):
            return cond[idx]
        idx = torch.as_tensor(idx)
        idx = idx.nonzero().flatten() if idx.dtype == torch.bool else idx.reshape(-1)
        return [cond[i] for i in idx.tolist()]
    return cond[idx]
