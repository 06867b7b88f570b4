"""A clip model whose UNet takes the clip's frames as its channels: the moving-digits backbone.

``scripts/train_embedded.py --data moving_digits --arch video`` trains a diffusers ``UNet2DModel`` on
16-frame clips (1, 16, 32, 32) reshaped to (16, 32, 32): its first convolution sees every frame of
the window at once, and one 2-D UNet call denoises a whole clip. This backbone is ``DiffusersUNet``
(the class conditioning, null class, v -> eps conversion) with the sample seen as a clip:
``sample_shape = (1, F, H, W)`` with F = the UNet's channels, so a long video is a canvas along
axis -3 (``task=video``), the layout of the latent video backbones.
"""

from __future__ import annotations

import torch

from alm.backbones.base import Cond
from alm.backbones.diffusers_unet import DiffusersUNet

Tensor = torch.Tensor


class FramesAsChannels(DiffusersUNet):
    """``DiffusersUNet`` on clips (B, 1, F, H, W): the F frames are the UNet's F channels."""

    def _setup(self, model, sched_cfg: dict, **kwargs) -> None:
        super()._setup(model, sched_cfg, **kwargs)
        frames, h, w = self.sample_shape
        self.frames = int(frames)
        self.sample_shape = self.data_shape = (1, self.frames, int(h), int(w))

    def eps(self, z: Tensor, t: Tensor, cond: Cond) -> Tensor:
        """``z`` (B, 1, F, H, W) -> eps of the same shape (one UNet call on (B, F, H, W))."""
        return super().eps(z.flatten(1, 2), t, cond).view_as(z)

    def mask_to_sample(self, mask: Tensor) -> Tensor:
        return mask  # a clip's mask is already in the sample's space (pixel model)
