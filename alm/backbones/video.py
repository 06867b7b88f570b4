"""Latent text-to-video backbones through diffusers: AnimateDiff and ModelScope text-to-video.

A sample is a clip of ``frames`` VAE latents, ``sample_shape = (4, F, h, w)``; the data is the clip of
frames, ``data_shape = (3, F, H, W)``, values in [-1, 1]. A long video is a canvas along the FRAME axis
(``task=wide task.axis=-3``: windows of ``frames`` frames, all windows of all samples rows of one batch).

| model        | ``unet/``                                   | text encoder            | scheduler (the pipeline's)       |
|--------------|---------------------------------------------|-------------------------|----------------------------------|
| AnimateDiff  | ``UNetMotionModel`` = an SD 1.5 UNet plus a | SD 1.5's CLIP ViT-L/14  | DDIM, **linear** betas 0.00085 ->|
|              | ``MotionAdapter`` (``from_unet2d``)         |                         | 0.012 (AnimateDiff's training)   |
| ModelScope   | ``UNet3DConditionModel``                    | OpenCLIP ViT-H (SD 2.x) | DDIM, scaled-linear (its config) |

Both UNets take ``(B, C, F, h, w)``; the condition is one prompt state ``(B, L, D)`` per clip, which
``UNet3DConditionModel`` repeats over frames itself and ``UNetMotionModel`` is given repeated
(``(B * F, L, D)``, as ``AnimateDiffPipeline`` does), so the text encoding, prompt cache, null condition and VAE code are ``LatentDiffusion``'s, unchanged.
``encode`` / ``decode`` run frame by frame as the pipelines' ``decode_latents`` do: the clip's frames
become a batch of images, ``decode_chunk_size`` frames per VAE call (``vae_slicing``: one at a time).

Where the weights come from (local only, never downloaded at run time):

- ModelScope: a pipeline folder (``path``) or ``ali-vilab/text-to-video-ms-1.7b`` in the HF cache.
- AnimateDiff: an SD 1.5 pipeline folder (``path`` or ``repo_id``, the sd15 checkpoint by default)
  plus a motion adapter folder (``adapter_path``, or ``adapter_repo_id`` =
  ``guoyww/animatediff-motion-adapter-v1-5-2`` in the HF cache: ``config.json`` + weights at its root);
  or a saved ``AnimateDiffPipeline`` folder whose ``unet/`` is already a ``UNetMotionModel`` (no adapter).

A missing checkpoint is one ``CheckpointError`` line naming ``python scripts/fetch_weights.py <name>``.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional

import torch

from alm.backbones.diffusers_unet import (
    _device,
    _one_line,
    _read_json,
    find_checkpoint_folder,
    set_prediction,
    to_eps,
)
from alm.backbones.latent import LatentDiffusion, _load
from alm.errors import CheckpointError, ConfigError

Tensor = torch.Tensor
VIDEO_UNETS = ("UNetMotionModel", "UNet3DConditionModel")


class VideoUNet(torch.nn.Module):
    """``eps`` of a video UNet (``UNetMotionModel`` / ``UNet3DConditionModel``): dtype casts, the
    clip's prompt states, v / x0 predictions converted to eps (as ``DiffusersUNet`` does for images)."""

    def __init__(self, model: torch.nn.Module, sched_cfg: Mapping[str, Any], prediction_type: Optional[str], name: str):
        super().__init__()
        self.name, self.kind = name, type(model).__name__
        set_prediction(self, sched_cfg, prediction_type, name)
        self.model = model.eval().requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def eps(self, z: Tensor, t: Tensor, cond: Any) -> Tensor:
        """``z`` (B, C, F, h, w), ``t`` (B,), ``cond`` the prompt states (B, L, D) -> eps like ``z``."""
        if z.dim() != 5:
            raise ConfigError(f"backbone {self.name}: expected latents (B, C, frames, h, w), got shape {tuple(z.shape)}")
        dev, mdt = self.device, next(self.model.parameters()).dtype
        tt = torch.as_tensor(t, device=dev).long().reshape(-1).expand(z.shape[0])
        states = cond["encoder_hidden_states"] if isinstance(cond, Mapping) else cond
        if self.kind == "UNetMotionModel":  # it takes one state per frame (AnimateDiffPipeline repeats them)
            states = states.repeat_interleave(z.shape[2], dim=0)
        out = self.model(z.to(device=dev, dtype=mdt), tt, encoder_hidden_states=states.to(device=dev, dtype=mdt)).sample
        return to_eps(self, out.to(z.dtype), z, tt)


class VideoDiffusion(LatentDiffusion):
    """``eps(z, t, cond)`` of a text-to-video latent diffusion model; clips of ``frames`` frames."""

    unet_classes: ClassVar[tuple[str, ...]] = ("UNet2DConditionModel", *VIDEO_UNETS)

    def __init__(
        self,
        path: Optional[str] = None,
        repo_id: Optional[str] = None,
        revision: Optional[str] = None,
        frames: int = 16,
        adapter_path: Optional[str] = None,
        adapter_repo_id: Optional[str] = None,
        adapter_revision: Optional[str] = None,
        decode_chunk_size: int = 16,
        clips_per_call: Optional[int] = None,
        cache_dir: Optional[str] = None,
        name: str = "video",
        device: Optional[str] = None,
        **kwargs: Any,
    ):
        """``frames``: the clip length (AnimateDiff / ModelScope: 16). ``adapter_*``: AnimateDiff's motion
        adapter (see the module docstring). ``decode_chunk_size``: frames per VAE call (encode and decode).
        Every other key is ``LatentDiffusion``'s (``resolution``, ``dtype``, ``scheduler``, ``vae_slicing`` ...)."""
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise ConfigError(f"backbone {name}: frames={frames!r}: expected a positive integer")
        if clips_per_call is not None and (isinstance(clips_per_call, bool) or not isinstance(clips_per_call, int)
                                           or clips_per_call < 1):
            raise ConfigError(f"backbone {name}: clips_per_call={clips_per_call!r}: expected a positive integer or null")
        self.clips_per_call = clips_per_call
        if isinstance(decode_chunk_size, bool) or not isinstance(decode_chunk_size, int) or decode_chunk_size < 1:
            raise ConfigError(f"backbone {name}: decode_chunk_size={decode_chunk_size!r}: expected a positive integer")
        self._adapter = (adapter_path, adapter_repo_id, adapter_revision, cache_dir)  # read by _load_unet
        super().__init__(path=path, repo_id=repo_id, revision=revision, cache_dir=cache_dir, name=name, device=None, **kwargs)
        model = self.denoiser.model
        max_frames = getattr(model.config, "motion_max_seq_length", None)
        if max_frames is not None and frames > int(max_frames):
            raise ConfigError(f"backbone {name}: frames={frames} exceeds the motion modules' {max_frames} positions")
        self.frames, self.decode_chunk_size = int(frames), int(decode_chunk_size)
        (c, H, W), (k, h, w) = self.data_shape, self.sample_shape
        self.data_shape, self.sample_shape = (c, self.frames, H, W), (k, self.frames, h, w)
        self._shapes_2d = ((c, H, W), (k, h, w))
        if device is not None:
            self.to(_device(device))

    # -- hooks of LatentDiffusion

    def _load_unet(self, folder: Path, dtype: torch.dtype, variant: Optional[str]):
        import diffusers

        kind = _read_json(folder / "unet" / "config.json", "UNet config").get("_class_name")
        if kind in VIDEO_UNETS:
            unet = _load(getattr(diffusers, kind), folder, "unet", dtype, variant)
        else:  # an SD 1.5 image UNet: AnimateDiff adds the motion adapter's temporal layers
            adapter = self._load_adapter(dtype, variant)
            image_unet = _load(diffusers.UNet2DConditionModel, folder, "unet", dtype, variant)
            try:
                with _quiet_diffusers():  # from_unet2d warns about its own dtype cast
                    unet = diffusers.UNetMotionModel.from_unet2d(image_unet, adapter)
            except Exception as err:  # an adapter of another UNet (block counts, layers per block)
                raise CheckpointError(f"backbone {self.name}: the motion adapter does not fit {folder / 'unet'}: "
                                      f"{_one_line(err)}") from None
            del image_unet, adapter
        return unet.eval().requires_grad_(False)

    def _load_adapter(self, dtype: torch.dtype, variant: Optional[str]):
        import diffusers

        path, repo_id, revision, cache_dir = self._adapter
        if not path and not repo_id:
            raise ConfigError(f"backbone {self.name}: unet/ is an image UNet (UNet2DConditionModel); set "
                              f"backbone.adapter_path or backbone.adapter_repo_id to a motion adapter (AnimateDiff)")
        folder = find_checkpoint_folder(path, repo_id, revision, cache_dir,
                                        "set backbone.adapter_path to a MotionAdapter folder (config.json + weights)")
        cfg = _read_json(folder / "config.json", "motion adapter config")
        if cfg.get("_class_name") != "MotionAdapter":
            raise CheckpointError(f"{folder} holds a {cfg.get('_class_name')}, not a MotionAdapter")
        kwargs: dict[str, Any] = {"torch_dtype": dtype, "local_files_only": True, "low_cpu_mem_usage": False}
        if variant:
            kwargs["variant"] = variant
        try:
            return diffusers.MotionAdapter.from_pretrained(str(folder), **kwargs)
        except Exception as err:
            raise CheckpointError(f"cannot load the motion adapter from {folder}: {_one_line(err)}") from None

    def _make_denoiser(self, unet, sched_cfg: dict, prediction_type: Optional[str], name: str):
        return VideoUNet(unet, sched_cfg, prediction_type, name)

    # -- the Backbone interface

    def eps(self, z: Tensor, t: Tensor, cond: Any) -> Tensor:
        """One batched evaluation; with ``clips_per_call`` the UNet sees at most that many clips at a time
        (a long video's windows x CFG may not fit a GPU in one call; the numbers do not change)."""
        n = self.clips_per_call
        if not n or z.shape[0] <= n:
            return super().eps(z, t, cond)
        from alm.backbones.base import index_cond

        cond = self.null_cond(z.shape[0]) if cond is None else cond
        tt = torch.as_tensor(t, device=z.device).reshape(-1).expand(z.shape[0])
        return torch.cat([super(VideoDiffusion, self).eps(z[i:i + n], tt[i:i + n], index_cond(cond, slice(i, i + n)))
                          for i in range(0, z.shape[0], n)])

    def encode(self, x: Tensor) -> Tensor:
        """Clips (B, 3, F, H, W) in [-1, 1] -> latents (B, 4, F, h, w), frame by frame."""
        return self._per_frame(x, super().encode)

    def decode(self, z: Tensor) -> Tensor:
        """Latents (B, 4, F, h, w) -> clips (B, 3, F, H, W) in [-1, 1], frame by frame."""
        return self._per_frame(z, super().decode)

    def mask_to_sample(self, mask: Tensor) -> Tensor:
        """A data-space mask (B, 1, F, H, W) to the latents' (F, h, w) (nearest)."""
        size = tuple(self.sample_shape[1:])
        if mask.dim() == 4:  # one mask for every frame
            mask = mask.unsqueeze(2).expand(-1, -1, size[0], -1, -1)
        if tuple(mask.shape[2:]) == size:
            return mask
        return torch.nn.functional.interpolate(mask, size=size, mode="nearest")

    def _per_frame(self, v: Tensor, fn) -> Tensor:
        if v.dim() != 5:
            raise ConfigError(f"backbone {self.name}: expected clips (B, C, frames, H, W), got shape {tuple(v.shape)}")
        b, _, f = v.shape[:3]
        frames = v.transpose(1, 2).reshape(b * f, *v.shape[1:2], *v.shape[3:])
        out = torch.cat([fn(frames[i: i + self.decode_chunk_size]) for i in range(0, b * f, self.decode_chunk_size)])
        return out.reshape(b, f, *out.shape[1:]).transpose(1, 2).contiguous()


@contextmanager
def _quiet_diffusers():
    """diffusers' warnings off (restored afterwards)."""
    from diffusers.utils import logging as dlog

    level = dlog.get_verbosity()
    dlog.set_verbosity_error()
    try:
        yield
    finally:
        dlog.set_verbosity(level)
