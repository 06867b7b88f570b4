"""Latent diffusion backbones: Stable Diffusion 1.5 / 2.1(-base) and SDXL through diffusers.

The diffusion variable is the VAE latent; methods never see the difference (docs/method.md §1 / issue 5).

| piece        | here                                                                              |
|--------------|-----------------------------------------------------------------------------------|
| ``eps``      | the UNet, through ``DiffusersUNet`` (dtype casts, dict conds, v/x0 -> eps)        |
| ``encode``   | ``vae.encode(x).latent_dist.mode() * scaling_factor`` (the authors' code)          |
| ``decode``   | ``vae.decode(z / scaling_factor).sample``, clamped to [-1, 1]                      |
| ``make_cond``| prompts -> text-encoder states (SD: last hidden state; SDXL: the penultimate      |
|              | hidden states of both encoders concatenated, plus pooled ``text_embeds`` and the  |
|              | added time ids (H, W, 0, 0, H, W)), as diffusers' pipelines' ``encode_prompt``    |
| ``null_cond``| the empty prompt's condition; SDXL with ``force_zeros_for_empty_prompt`` (its     |
|              | ``model_index.json``, true for the base model): zeros, as its pipeline does       |

Where the weights come from: a pipeline folder (``save_pretrained`` layout: ``unet/ vae/
text_encoder/ tokenizer/ scheduler/`` [+ ``text_encoder_2/ tokenizer_2/``]) given as ``path``, or
``repo_id`` + ``revision`` in the local Hugging Face cache, read directly (never downloaded). A missing
checkpoint is a one-line ``CheckpointError`` naming it and ``python scripts/fetch_weights.py <name>``.

dtype: ``auto`` = float16 on CUDA, float32 elsewhere. The VAE stays in float32 under float16 when
its config sets ``force_upcast`` (SDXL's VAE overflows in half precision), unless ``upcast_vae``
says otherwise. Latents, masks and every method's arithmetic stay in float32; only the networks
run in the model dtype.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional, Union

import torch

from alm.backbones.base import Backbone, Cond
from alm.backbones.checkpoints import fetch_command
from alm.backbones.diffusers_unet import (
    DiffusersUNet,
    _device,
    _one_line,
    _plain,
    _read_json,
    find_checkpoint_folder,
    resolve_dtype,
)
from alm.errors import CheckpointError, ConfigError

Tensor = torch.Tensor
ATTENTION = ("sdpa", "eager")


def prompt_list(labels: Any, batch: int, backbone: str) -> list[str]:
    """A batch's prompts from its labels: a string or None for all, or one per sample (None = "")."""
    if labels is None or isinstance(labels, str):
        labels = [labels] * batch
    labels = list(labels)
    if len(labels) != batch:
        raise ConfigError(f"{len(labels)} prompts for a batch of {batch}")
    for v in labels:
        if v is not None and not isinstance(v, str):
            raise ConfigError(f"backbone {backbone} takes text prompts, got the label {v!r}; "
                              f"set dataset.prompt (or dataset.labels) to a prompt"[:300])
    return ["" if v is None else v for v in labels]


class LatentDiffusion(Backbone):
    """``eps(z, t, cond)`` of a Stable Diffusion (1.x / 2.x / XL) pipeline over VAE latents."""

    #: the ``unet/`` classes this backbone loads (``alm.backbones.video`` adds the video UNets)
    unet_classes: ClassVar[tuple[str, ...]] = ("UNet2DConditionModel",)

    def __init__(
        self,
        path: Optional[str] = None,
        repo_id: Optional[str] = None,
        revision: Optional[str] = None,
        dtype: Union[str, torch.dtype] = "auto",
        device: Optional[str] = None,
        resolution: Optional[int] = None,
        scheduler: Optional[Mapping[str, Any]] = None,
        prediction_type: Optional[str] = None,
        variant: Optional[str] = None,
        cache_dir: Optional[str] = None,
        vae_slicing: bool = False,
        vae_tiling: bool = False,
        upcast_vae: Optional[bool] = None,
        attention: str = "sdpa",
        name: str = "sd",
        missing_hint: Optional[str] = None,
    ):
        """Load a pipeline from ``path`` or from the local HF cache (``repo_id``, ``revision``).

        ``resolution``: the image side (null = the UNet's ``sample_size`` x the VAE factor: 512 for
        SD 1.5 / 2.1-base, 1024 for SDXL). ``scheduler`` / ``prediction_type``: overrides of the
        checkpoint's scheduler config. ``variant``: weights variant (``fp16`` files). ``attention``:
        ``sdpa`` (torch's scaled-dot-product attention, diffusers' ``AttnProcessor2_0``) or ``eager``.
        """
        super().__init__()
        if attention not in ATTENTION:
            raise ConfigError(f"backbone.attention={attention!r}: expected one of {', '.join(ATTENTION)}")
        self.name = name
        torch_dtype = resolve_dtype(dtype, device)
        how = missing_hint or "set backbone.path to a local pipeline folder (unet/ vae/ text_encoder/ tokenizer/ scheduler/)"
        if repo_id:  # named in the config even when path overrides it: say how to get the real one
            how += f"; {fetch_command(str(repo_id))} fetches {repo_id}"
        folder = find_checkpoint_folder(path, repo_id, revision, cache_dir, how)
        unet_cfg = _check_layout(folder, how, self.unet_classes)
        self.xl = unet_cfg.get("addition_embed_type") == "text_time"
        index = _read_json(folder / "model_index.json", "pipeline index") if (folder / "model_index.json").is_file() else {}
        self.force_zeros_for_empty_prompt = bool(index.get("force_zeros_for_empty_prompt", True)) and self.xl

        vae_cfg = _read_json(folder / "vae" / "config.json", "VAE config")
        upcast = bool(vae_cfg.get("force_upcast", False)) if upcast_vae is None else bool(upcast_vae)
        self.vae_dtype = torch.float32 if (upcast and torch_dtype == torch.float16) else torch_dtype
        unet = self._load_unet(folder, torch_dtype, variant)
        unet, self.vae, encoders, self.tokenizers = load_components(folder, torch_dtype, self.vae_dtype, variant, self.xl,
                                                                    unet=unet)
        self.text_encoders = torch.nn.ModuleList(encoders)
        _set_attention((unet, self.vae), attention)
        if vae_slicing:
            self.vae.enable_slicing()
        if vae_tiling:
            self.vae.enable_tiling()

        sched_cfg = _read_json(folder / "scheduler" / "scheduler_config.json", "scheduler config")
        if scheduler:
            sched_cfg.update(_plain(scheduler))
        self.denoiser = self._make_denoiser(unet, sched_cfg, prediction_type, name)
        self.scheduler_config = self.denoiser.scheduler_config
        self.model_prediction_type = self.denoiser.model_prediction_type
        self.conditional = True

        self.data_shape, self.sample_shape = _shapes(unet, self.vae, resolution, name)
        self.scaling_factor = float(self.vae.config.scaling_factor)
        self.shift_factor = float(getattr(self.vae.config, "shift_factor", None) or 0.0)
        if self.xl:
            self._check_xl(unet)
        self._prompts: dict[str, Cond] = {}  # prompt -> condition of one sample (computed once)
        if device is not None:
            self.to(_device(device))

    @property
    def device(self) -> torch.device:
        return self.denoiser.device

    def _check_xl(self, unet) -> None:
        want = unet.add_embedding.linear_1.in_features
        got = unet.config.addition_time_embed_dim * 6 + self.text_encoders[-1].config.projection_dim
        if want != got:
            raise CheckpointError(f"backbone {self.name}: the UNet expects added embeddings of size {want}, the text "
                                  f"encoder and 6 time ids give {got} (mismatched SDXL components)")

    # -- hooks of the video backbones (alm.backbones.video)

    def _load_unet(self, folder: Path, dtype: torch.dtype, variant: Optional[str]):
        """The denoising network of a pipeline folder (None: ``load_components`` loads the UNet)."""
        return None

    def _make_denoiser(self, unet, sched_cfg: dict, prediction_type: Optional[str], name: str):
        """The wrapper whose ``eps`` calls ``unet`` (with ``device``, ``scheduler_config``, ``model_prediction_type``)."""
        return DiffusersUNet.from_model(unet, sched_cfg, prediction_type=prediction_type, name=name)

    # -- the Backbone interface

    def eps(self, z: Tensor, t: Tensor, cond: Cond) -> Tensor:
        return self.denoiser.eps(z, t, self.null_cond(z.shape[0]) if cond is None else cond)

    def encode(self, x: Tensor) -> Tensor:
        """Images (B, 3, H, W) in [-1, 1] -> latents: the posterior's mode x the scaling factor."""
        h = x.to(device=self.device, dtype=self.vae_dtype)
        z = (self.vae.encode(h).latent_dist.mode() - self.shift_factor) * self.scaling_factor
        return z.to(x.dtype)

    def decode(self, z: Tensor) -> Tensor:
        """Latents -> images in [-1, 1]."""
        h = (z / self.scaling_factor + self.shift_factor).to(device=self.device, dtype=self.vae_dtype)
        return self.vae.decode(h).sample.clamp(-1, 1).to(z.dtype).contiguous()

    def null_cond(self, batch: int) -> Cond:
        return _repeat(self._prompt_cond(None), batch)

    def make_cond(self, labels: Any, batch: int) -> Cond:
        """Prompts (a string, or one string per sample; None = the empty prompt) -> the condition."""
        return _stack([self._prompt_cond(v) for v in prompt_list(labels, batch, self.name)])

    # -- text encoding (diffusers' encode_prompt, clip_skip None)

    def _prompt_cond(self, prompt: Optional[str]) -> Cond:
        """The condition of one sample for ``prompt`` (None = the null condition), cached."""
        key = "\0null" if prompt is None else prompt
        if key not in self._prompts:
            with torch.no_grad():
                if prompt is None and not self.force_zeros_for_empty_prompt:
                    cond = self._encode_prompt("")
                elif prompt is None:
                    cond = _zeros_like(self._encode_prompt(""))
                else:
                    cond = self._encode_prompt(prompt)
            self._prompts[key] = cond
        return _to_device(self._prompts[key], self.device)

    def _encode_prompt(self, prompt: str) -> Cond:
        states, pooled = [], None
        for tokenizer, encoder in zip(self.tokenizers, self.text_encoders):
            ids = tokenizer([prompt], padding="max_length", max_length=tokenizer.model_max_length,
                            truncation=True, return_tensors="pt").input_ids.to(self.device)
            if not self.xl:
                mask = None
                if getattr(encoder.config, "use_attention_mask", False):
                    mask = (ids != tokenizer.pad_token_id).long()
                return encoder(ids, attention_mask=mask)[0]
            out = encoder(ids, output_hidden_states=True)
            pooled = out[0]  # the last encoder's projected pooled output ("text_embeds")
            states.append(out.hidden_states[-2])
        h, w = self.data_shape[-2:]
        time_ids = torch.tensor([[h, w, 0, 0, h, w]], dtype=pooled.dtype, device=pooled.device)
        return {"encoder_hidden_states": torch.cat(states, dim=-1), "text_embeds": pooled, "time_ids": time_ids}


# --- loading ---------------------------------------------------------------------------------------

def load_components(folder: Path, dtype: torch.dtype, vae_dtype: torch.dtype, variant: Optional[str], xl: bool,
                    unet=None):
    """(unet, vae, text encoders, tokenizers) of a pipeline folder, in eval mode without gradients
    (``unet``: an already-loaded denoising network, e.g. a video UNet)."""
    import diffusers
    import transformers

    if unet is None:
        unet = _load(diffusers.UNet2DConditionModel, folder, "unet", dtype, variant)
    vae = _load(diffusers.AutoencoderKL, folder, "vae", vae_dtype, variant)
    if unet.config.in_channels != vae.config.latent_channels:
        raise ConfigError(f"{folder}: the UNet takes {unet.config.in_channels} input channels, the VAE makes "
                          f"{vae.config.latent_channels} (an inpainting UNet? use method=sd_inpaint)")
    names = [("text_encoder", "tokenizer", transformers.CLIPTextModel)]
    if xl:
        names.append(("text_encoder_2", "tokenizer_2", transformers.CLIPTextModelWithProjection))
    encoders = [_load(cls, folder, enc, dtype, variant, transformers=True) for enc, _, cls in names]
    tokenizers = [_load_tokenizer(transformers.CLIPTokenizer, folder, tok) for _, tok, _ in names]
    for m in (unet, vae, *encoders):
        m.eval().requires_grad_(False)
    return unet, vae, encoders, tokenizers


def _set_attention(models, kind: str) -> None:
    if kind == "sdpa":
        from diffusers.models.attention_processor import AttnProcessor2_0 as processor
    else:
        from diffusers.models.attention_processor import AttnProcessor as processor
    for m in models:
        m.set_attn_processor(processor())


def _shapes(unet, vae, resolution: Optional[int], name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(data shape, latent shape) at ``resolution`` (None = the model's own)."""
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    native = int(unet.config.sample_size) * factor
    res = native if resolution is None else int(resolution)
    multiple = factor * 2 ** (len(unet.config.block_out_channels) - 1)
    if res < 1 or res % multiple:
        raise ConfigError(f"backbone {name}: resolution={resolution} must be a positive multiple of {multiple} "
                          f"(VAE x UNet downsampling); the model's own is {native}")
    return (int(vae.config.in_channels), res, res), (int(vae.config.latent_channels), res // factor, res // factor)


def _check_layout(folder: Path, how: str, classes: tuple[str, ...] = ("UNet2DConditionModel",)) -> dict:
    """The UNet config of a pipeline folder, after checking that its components are there."""
    if not any((folder / c).exists() for c in ("unet", "vae", "text_encoder", "scheduler")):
        raise CheckpointError(f"{folder} is not a diffusers pipeline folder (no unet/ vae/ text_encoder/ tokenizer/ "
                              f"scheduler/); {how}")
    required = ["unet/config.json", "vae/config.json", "text_encoder/config.json", "tokenizer", "scheduler/scheduler_config.json"]
    unet_cfg = _read_json(folder / "unet" / "config.json", "UNet config") if (folder / required[0]).is_file() else {}
    if unet_cfg.get("addition_embed_type") == "text_time":
        required += ["text_encoder_2/config.json", "tokenizer_2"]
    missing = [r for r in required if not (folder / r).exists()]
    if missing:
        raise CheckpointError(f"{folder} is missing {', '.join(missing)} (an incomplete download?); {how}")
    if unet_cfg.get("_class_name") not in classes:
        raise CheckpointError(f"{folder / 'unet'} holds a {unet_cfg.get('_class_name')}, not a {' or '.join(classes)}")
    return unet_cfg


def _load(cls, folder: Path, subfolder: str, dtype: torch.dtype, variant: Optional[str], transformers: bool = False):
    """``cls.from_pretrained`` of one component, local files only; errors become one line."""
    kwargs: dict[str, Any] = {"subfolder": subfolder, "local_files_only": True}
    if transformers:
        kwargs["dtype"] = dtype
    else:  # low_cpu_mem_usage=False: the default path wants `accelerate` and warns at every load without it
        kwargs.update(torch_dtype=dtype, low_cpu_mem_usage=False)
    if variant:
        kwargs["variant"] = variant
    try:
        with quiet_transformers():
            return cls.from_pretrained(str(folder), **kwargs)
    except Exception as err:  # OSError/ValueError/EnvironmentError with long texts
        hint = "" if variant else " (weights fetched with --variant fp16 need backbone.variant=fp16)"
        raise CheckpointError(f"cannot load the {subfolder} weights from {folder}: {_one_line(err)}{hint}") from None


@contextmanager
def quiet_transformers():
    """No "Loading weights" progress bar per text encoder (restored afterwards)."""
    from transformers.utils import logging as tlog

    was = tlog.is_progress_bar_enabled()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            tlog.enable_progress_bar()


def _load_tokenizer(cls, folder: Path, subfolder: str):
    try:
        return cls.from_pretrained(str(folder), subfolder=subfolder, local_files_only=True)
    except Exception as err:
        raise CheckpointError(f"cannot load the {subfolder} from {folder}: {_one_line(err)}") from None


def _repeat(cond: Cond, batch: int) -> Cond:
    if isinstance(cond, Mapping):
        return {k: _repeat(v, batch) for k, v in cond.items()}
    return cond.expand(batch, *cond.shape[1:])


def _stack(conds: list[Cond]) -> Cond:
    if isinstance(conds[0], Mapping):
        return {k: _stack([c[k] for c in conds]) for k in conds[0]}
    return torch.cat(conds, dim=0)


def _zeros_like(cond: Cond) -> Cond:
    if isinstance(cond, Mapping):  # zero text, but the time ids stay (the pipeline's negative_add_time_ids)
        return {k: v if k == "time_ids" else torch.zeros_like(v) for k, v in cond.items()}
    return torch.zeros_like(cond)


def _to_device(cond: Cond, device: torch.device) -> Cond:
    if isinstance(cond, Mapping):
        return {k: v.to(device) for k, v in cond.items()}
    return cond.to(device)
