"""LaVie's base text-to-video model (Wang et al. 2023; code: github.com/Vchitect/LaVie, ``base/``) as a backbone.

LaVie's base model is Stable Diffusion 1.4's UNet "inflated" to video: every 2-D convolution runs frame by
frame, and each transformer block gains a temporal self-attention (over the frames of each latent pixel)
with rotary position embeddings and a learned T5-style relative position bias. It samples with SD 1.4's
VAE, CLIP ViT-L/14 text encoder and tokenizer, and a DDPM scheduler with LINEAR betas 1e-4 -> 0.02
(``base/configs/sample.yaml``: ``beta_schedule: linear``, ``sample_method: ddpm``, 50 steps, guidance 7.5),
16 frames of 320 x 512 (latents 4 x 16 x 40 x 64).

The UNet here is written anew; its ``state_dict`` has LaVie's parameter names and shapes, so the
released ``lavie_base.pt`` loads strictly. What LaVie's ``base/pipelines/sample.py`` loads: ``torch.load``
of the file, then its ``"ema"`` entry when there is one, else the whole dict (``base/download.py``
``find_model``), into ``UNet3DConditionModel.from_pretrained_2d(<sd1.4>, subfolder="unet")``: SD 1.4's
``unet/config.json`` with the block types replaced by the 3-D ones (``base/models/unet.py``).

| piece (LaVie module)                | here                                   | same computation as                     |
|-------------------------------------|----------------------------------------|-----------------------------------------|
| ``InflatedConv3d``                  | ``InflatedConv``                       | ``nn.Conv2d`` on every frame            |
| ``ResnetBlock3D``                   | ``ResnetBlock3D``                      | diffusers' ``ResnetBlock2D`` EXCEPT its |
|                                     |                                        | GroupNorms see the whole clip (C/G x F x|
|                                     |                                        | H x W), not one frame                   |
| ``Downsample3D`` / ``Upsample3D``   | diffusers ``Downsample2D``/``Upsample2D`` per frame (``FrameDownsample``/``FrameUpsample``) |
| ``Transformer3DModel``              | ``Transformer3D`` (GroupNorm per frame, 1x1 ``proj_in``/``proj_out``)            |
| ``BasicTransformerBlock``           | ``TransformerBlock``: diffusers ``Attention`` (``attn1`` self, ``attn2`` text),   |
|                                     | ``FeedForward`` (GEGLU), plus ``attn_temp`` / ``norm_temp`` (temporal)             |
| ``TemporalAttention``               | ``TemporalAttention``: rotary (first 32 channels of every head, one table shared  |
|                                     | by all blocks: ``rotary_emb.freqs``) + ``time_rel_pos_bias`` (32 buckets, max     |
|                                     | distance 32, one (32, heads) table per block), softmax over frames                |
| time embedding                      | diffusers ``Timesteps`` (flip sin/cos, shift 0) + ``TimestepEmbedding``           |

Not in the checkpoint and so not here: LaVie's UNet-level ``time_rel_pos_bias`` (built only with
``use_relative_position=True``, which SD 1.4's config does not set), training-only paths (``use_image_num``
image-video joint training, gradient checkpointing), xformers / attention slicing (same maths).
"""

from __future__ import annotations

import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping, Optional

import torch
from torch import nn
import torch.nn.functional as F

from alm.backbones.video import VideoDiffusion
from alm.errors import CheckpointError, ConfigError

Tensor = torch.Tensor
CHECKPOINT_FILE = "lavie_base.pt"
CHECKPOINT_REPO = "YaohuiW/LaVie"  # LaVie's README: "Download pre-trained LaVie models" (huggingface.co/YaohuiW/LaVie)
FETCH_HINT = (f"download {CHECKPOINT_FILE} from https://huggingface.co/{CHECKPOINT_REPO} (LaVie's README) "
              f"or run: python scripts/fetch_weights.py lavie")

#: The real model: SD 1.4's unet/config.json as LaVie's from_pretrained_2d turns it into a 3-D UNet.
#: ``attention_head_dim`` is SD's (diffusers') misnomer: the NUMBER of heads (8); head size = channels / 8.
#: ``rotary_dim``: LaVie's ``RotaryEmbedding(32)`` (fixed in its code; a key here so miniatures can be small).
LAVIE_CONFIG: dict[str, Any] = dict(
    sample_size=64, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
    down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
    up_block_types=("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32, norm_eps=1e-5, flip_sin_to_cos=True, freq_shift=0,
    downsample_padding=1, mid_block_scale_factor=1.0, rotary_dim=32, num_buckets=32, max_distance=32,
)
#: A miniature in the same layout (same block types and counts, so the same parameter NAMES), small sizes;
#: cross_attention_dim 32 = the tiny CLIP text encoder's width (alm/backbones/tiny.py).
TINY_CONFIG: dict[str, Any] = {**LAVIE_CONFIG, "sample_size": 16, "block_out_channels": (16, 32, 64, 64),
                               "cross_attention_dim": 32, "attention_head_dim": 2, "norm_num_groups": 8, "rotary_dim": 8}
#: keys of SD's unet/config.json that LaVie's UNet reads (the block types are always LaVie's)
SD_KEYS = ("sample_size", "in_channels", "out_channels", "block_out_channels", "layers_per_block", "cross_attention_dim",
           "attention_head_dim", "norm_num_groups", "norm_eps", "flip_sin_to_cos", "freq_shift", "downsample_padding",
           "mid_block_scale_factor")
#: SD config values LaVie's code accepts but this implementation does not (not SD 1.4's)
UNSUPPORTED = {"use_linear_projection": False, "only_cross_attention": False, "upcast_attention": False,
               "dual_cross_attention": False, "class_embed_type": None, "num_class_embeds": None,
               "resnet_time_scale_shift": "default", "center_input_sample": False, "act_fn": "silu"}


def lavie_config(sd_unet_config: Mapping[str, Any], overrides: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """LaVie's UNet config from an SD 1.x ``unet/config.json`` (as ``from_pretrained_2d``), plus ``overrides``."""
    for key, want in UNSUPPORTED.items():
        if sd_unet_config.get(key, want) != want:
            raise ConfigError(f"LaVie UNet: unet config {key}={sd_unet_config[key]!r} is not supported (SD 1.4: {want!r})")
    cfg = {**LAVIE_CONFIG, **{k: sd_unet_config[k] for k in SD_KEYS if k in sd_unet_config}, **dict(overrides or {})}
    for k in ("block_out_channels", "down_block_types", "up_block_types"):
        cfg[k] = tuple(cfg[k])
    if isinstance(cfg["attention_head_dim"], (list, tuple)):  # one head count per level
        cfg["attention_head_dim"] = tuple(cfg["attention_head_dim"])
    return cfg


# --- building blocks ---------------------------------------------------------------------------------

def per_frame(fn, x: Tensor, *args: Any) -> Tensor:
    """``fn`` applied to every frame of ``x`` (B, C, F, H, W) as a batch of images (B*F, C, H, W)."""
    b, c, f, h, w = x.shape
    y = fn(x.transpose(1, 2).reshape(b * f, c, h, w), *args)
    return y.reshape(b, f, *y.shape[1:]).transpose(1, 2)


class InflatedConv(nn.Conv2d):
    """A 2-D convolution run frame by frame (LaVie's ``InflatedConv3d``: same ``weight``/``bias``)."""

    def forward(self, x: Tensor) -> Tensor:
        return per_frame(super().forward, x)


def _frame_downsample():
    from diffusers.models.resnet import Downsample2D

    class FrameDownsample(Downsample2D):
        """diffusers' strided-conv downsampler (``conv``) on every frame."""

        def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
            return per_frame(super().forward, x)

    return FrameDownsample


def _frame_upsample():
    from diffusers.models.resnet import Upsample2D

    class FrameUpsample(Upsample2D):
        """diffusers' nearest x2 + conv upsampler (``conv``) on every frame (LaVie: scale (1, 2, 2))."""

        def forward(self, x: Tensor, output_size: Optional[tuple[int, int]] = None, *args: Any, **kwargs: Any) -> Tensor:
            return per_frame(lambda v: super(FrameUpsample, self).forward(v, output_size), x)

    return FrameUpsample


class ResnetBlock3D(nn.Module):
    """SD's residual block on clips: per-frame 3x3 convs, GroupNorms over the WHOLE clip (LaVie applies
    ``nn.GroupNorm`` to the 5-D tensor), the time embedding added after ``conv1``."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, groups: int, eps: float,
                 output_scale_factor: float = 1.0):
        super().__init__()
        self.output_scale_factor = output_scale_factor
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = InflatedConv(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = InflatedConv(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = InflatedConv(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return (skip + h) / self.output_scale_factor


class RotaryEmbedding(nn.Module):
    """Rotary position embedding of frame index over the first ``dim`` channels of each head, with the
    interleaved-pair convention of ``rotary_embedding_torch`` (the package LaVie uses); its frequency table
    is the (non-trained) parameter ``freqs`` = theta^(-2i/dim), i < dim/2, theta 10000."""

    def __init__(self, dim: int, theta: float = 10000.0):
        super().__init__()
        freqs = 1.0 / theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim)
        self.freqs = nn.Parameter(freqs, requires_grad=False)

    def forward(self, t: Tensor) -> Tensor:
        """``t`` (..., F, d) with d >= dim: channel pairs (2i, 2i+1), i < dim/2, of frame n rotated by n * freqs[i]."""
        dim = 2 * self.freqs.shape[0]
        if t.shape[-1] < dim:
            raise ConfigError(f"LaVie UNet: head size {t.shape[-1]} is smaller than the rotary dimension {dim}")
        pos = torch.arange(t.shape[-2], device=t.device, dtype=self.freqs.dtype)
        angles = (pos[:, None] * self.freqs[None, :]).repeat_interleave(2, dim=-1).to(t.dtype)  # (F, dim)
        rot, rest = t[..., :dim], t[..., dim:]
        pairs = rot.unflatten(-1, (-1, 2))
        swapped = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)  # (x0, x1) -> (-x1, x0)
        return torch.cat((rot * angles.cos() + swapped * angles.sin(), rest), dim=-1)


class RelativePositionBias(nn.Module):
    """A learned bias per head and bucketed frame offset (the T5 scheme): offsets -7..7 have their own
    bucket each side, longer ones share log-spaced buckets up to ``max_distance``."""

    def __init__(self, heads: int, num_buckets: int = 32, max_distance: int = 32):
        super().__init__()
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.relative_attention_bias = nn.Embedding(num_buckets, heads)

    def buckets(self, frames: int, device: torch.device) -> Tensor:
        pos = torch.arange(frames, device=device)
        ahead = pos[:, None] - pos[None, :]  # query i, key j: i - j (> 0: the key is earlier)
        half = self.num_buckets // 2
        exact = half // 2
        side = (ahead < 0).long() * half
        n = ahead.abs()
        far = exact + (torch.log(n.float().clamp(min=1) / exact) / math.log(self.max_distance / exact)
                       * (half - exact)).long()
        return side + torch.where(n < exact, n, far.clamp(max=half - 1))

    def forward(self, frames: int, device: torch.device) -> Tensor:
        """(heads, F, F) biases of the attention logits."""
        return self.relative_attention_bias(self.buckets(frames, device)).permute(2, 0, 1)


class TemporalAttention(nn.Module):
    """Self-attention over the frames of each latent pixel: rotary q/k, plus a relative position bias."""

    def __init__(self, dim: int, heads: int, head_dim: int, rotary: RotaryEmbedding, num_buckets: int, max_distance: int):
        super().__init__()
        inner = heads * head_dim
        self.heads, self.scale = heads, head_dim ** -0.5
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(0.0)])
        self.time_rel_pos_bias = RelativePositionBias(heads, num_buckets, max_distance)
        self.rotary_emb = rotary  # one module shared by every block: its ``freqs`` appears under each block's name

    def forward(self, x: Tensor) -> Tensor:
        """``x`` (N, F, C) -> (N, F, C)."""
        q, k, v = (proj(x).unflatten(-1, (self.heads, -1)).transpose(1, 2) for proj in (self.to_q, self.to_k, self.to_v))
        q, k = self.rotary_emb(q * self.scale), self.rotary_emb(k)
        logits = q @ k.transpose(-1, -2) + self.time_rel_pos_bias(x.shape[1], x.device).to(q.dtype)
        out = logits.softmax(dim=-1) @ v  # (N, heads, F, d)
        return self.to_out[1](self.to_out[0](out.transpose(1, 2).flatten(2)))


class TransformerBlock(nn.Module):
    """LaVie's ``BasicTransformerBlock``: spatial self-attention, text cross-attention, temporal attention,
    GEGLU feed-forward, each pre-LayerNormed and residual."""

    def __init__(self, dim: int, heads: int, head_dim: int, cross_attention_dim: int, rotary: RotaryEmbedding,
                 num_buckets: int, max_distance: int):
        from diffusers.models.attention import FeedForward
        from diffusers.models.attention_processor import Attention

        super().__init__()
        self.attn1 = Attention(dim, heads=heads, dim_head=head_dim, bias=False)
        self.norm1 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, cross_attention_dim=cross_attention_dim, heads=heads, dim_head=head_dim, bias=False)
        self.norm2 = nn.LayerNorm(dim)
        self.attn_temp = TemporalAttention(dim, heads, head_dim, rotary, num_buckets, max_distance)
        self.norm_temp = nn.LayerNorm(dim)
        nn.init.zeros_(self.attn_temp.to_out[0].weight)  # LaVie's init: the temporal branch starts as identity
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: Tensor, context: Tensor, frames: int) -> Tensor:
        """``x`` (B*F, HW, C) tokens of every frame, ``context`` (B*F, L, D) the text states."""
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), encoder_hidden_states=context) + x
        bf, n, c = x.shape
        t = x.reshape(bf // frames, frames, n, c).transpose(1, 2).reshape(-1, frames, c)  # (B*HW, F, C)
        t = self.attn_temp(self.norm_temp(t)) + t
        x = t.reshape(bf // frames, n, frames, c).transpose(1, 2).reshape(bf, n, c)
        return self.ff(self.norm3(x)) + x


class Transformer3D(nn.Module):
    """LaVie's ``Transformer3DModel``: per-frame GroupNorm and 1x1 projections around one ``TransformerBlock``."""

    def __init__(self, channels: int, heads: int, cross_attention_dim: int, groups: int, rotary: RotaryEmbedding,
                 num_buckets: int, max_distance: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(channels, heads, channels // heads, cross_attention_dim,
                                                                  rotary, num_buckets, max_distance)])
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        b, c, f, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * f, c, h, w)
        tokens = self.proj_in(self.norm(frames)).flatten(2).transpose(1, 2)  # (B*F, HW, C)
        context = context.repeat_interleave(f, dim=0)  # the clip's text states for each of its frames
        for block in self.transformer_blocks:
            tokens = block(tokens, context, f)
        out = self.proj_out(tokens.transpose(1, 2).reshape(b * f, c, h, w)) + frames
        return out.reshape(b, f, c, h, w).transpose(1, 2)


class DownBlock(nn.Module):
    """``CrossAttnDownBlock3D`` (``attention``) or ``DownBlock3D``: resnets [+ transformers], a downsampler."""

    def __init__(self, cin: int, cout: int, layers: int, temb: int, cfg: Mapping[str, Any], heads: int, attention: bool,
                 downsample: bool, rotary: RotaryEmbedding):
        super().__init__()
        groups, eps = cfg["norm_num_groups"], cfg["norm_eps"]
        if attention:  # registered first, as in LaVie (the checkpoint's key order)
            self.attentions = nn.ModuleList([_transformer(cout, heads, cfg, rotary) for _ in range(layers)])
        self.resnets = nn.ModuleList([ResnetBlock3D(cin if i == 0 else cout, cout, temb, groups, eps) for i in range(layers)])
        self.downsamplers = nn.ModuleList([_frame_downsample()(cout, use_conv=True, out_channels=cout,
                                                                padding=cfg["downsample_padding"], name="op")]) if downsample else None

    def forward(self, x: Tensor, temb: Tensor, context: Tensor) -> tuple[Tensor, list[Tensor]]:
        skips = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, temb)
            if hasattr(self, "attentions"):
                x = self.attentions[i](x, context)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class UpBlock(nn.Module):
    """``CrossAttnUpBlock3D`` (``attention``) or ``UpBlock3D``: resnets on [x, skip] [+ transformers], an upsampler."""

    def __init__(self, cin: int, cprev: int, cout: int, layers: int, temb: int, cfg: Mapping[str, Any], heads: int,
                 attention: bool, upsample: bool, rotary: RotaryEmbedding):
        super().__init__()
        groups, eps = cfg["norm_num_groups"], cfg["norm_eps"]
        if attention:
            self.attentions = nn.ModuleList([_transformer(cout, heads, cfg, rotary) for _ in range(layers)])
        self.resnets = nn.ModuleList([
            ResnetBlock3D((cprev if i == 0 else cout) + (cin if i == layers - 1 else cout), cout, temb, groups, eps)
            for i in range(layers)])
        self.upsamplers = nn.ModuleList([_frame_upsample()(cout, use_conv=True, out_channels=cout)]) if upsample else None

    def forward(self, x: Tensor, skips: list[Tensor], temb: Tensor, context: Tensor, size=None) -> Tensor:
        for i, resnet in enumerate(self.resnets):
            x = resnet(torch.cat([x, skips.pop()], dim=1), temb)
            if hasattr(self, "attentions"):
                x = self.attentions[i](x, context)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, size)
        return x


class MidBlock(nn.Module):
    """``UNetMidBlock3DCrossAttn``: resnet, transformer, resnet."""

    def __init__(self, channels: int, temb: int, cfg: Mapping[str, Any], heads: int, rotary: RotaryEmbedding):
        super().__init__()
        groups, eps, scale = cfg["norm_num_groups"], cfg["norm_eps"], cfg["mid_block_scale_factor"]
        self.attentions = nn.ModuleList([_transformer(channels, heads, cfg, rotary)])
        self.resnets = nn.ModuleList([ResnetBlock3D(channels, channels, temb, groups, eps, scale) for _ in range(2)])

    def forward(self, x: Tensor, temb: Tensor, context: Tensor) -> Tensor:
        x = self.resnets[0](x, temb)
        return self.resnets[1](self.attentions[0](x, context), temb)


def _transformer(channels: int, heads: int, cfg: Mapping[str, Any], rotary: RotaryEmbedding) -> Transformer3D:
    return Transformer3D(channels, heads, cfg["cross_attention_dim"], cfg["norm_num_groups"], rotary,
                         cfg["num_buckets"], cfg["max_distance"])


@dataclass
class LaVieOutput:
    sample: Tensor


class LaVieUNet3D(nn.Module):
    """LaVie's base UNet: ``forward(sample (B, 4, F, h, w), timestep, encoder_hidden_states (B, L, D))``."""

    def __init__(self, config: Optional[Mapping[str, Any]] = None):
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps

        super().__init__()
        cfg = dict(LAVIE_CONFIG if config is None else config)
        if tuple(cfg["down_block_types"]) != LAVIE_CONFIG["down_block_types"] or \
                tuple(cfg["up_block_types"]) != LAVIE_CONFIG["up_block_types"]:
            raise ConfigError("LaVie UNet: the block types are LaVie's (3 cross-attention levels, one plain one)")
        self.config = SimpleNamespace(**cfg)
        chans, layers = list(cfg["block_out_channels"]), int(cfg["layers_per_block"])
        heads = cfg["attention_head_dim"]
        heads = list(heads) if isinstance(heads, (list, tuple)) else [heads] * len(chans)
        temb = chans[0] * 4
        levels = len(chans)
        rotary = RotaryEmbedding(cfg["rotary_dim"])  # one table for every temporal attention (LaVie's UNet makes one)

        self.conv_in = InflatedConv(cfg["in_channels"], chans[0], 3, padding=1)
        self.time_proj = Timesteps(chans[0], cfg["flip_sin_to_cos"], cfg["freq_shift"])
        self.time_embedding = TimestepEmbedding(chans[0], temb)
        self.down_blocks = nn.ModuleList([
            DownBlock(chans[max(i - 1, 0)], chans[i], layers, temb, cfg, heads[i],
                      attention=cfg["down_block_types"][i].startswith("CrossAttn"), downsample=i < levels - 1, rotary=rotary)
            for i in range(levels)])
        # LaVie registers up_blocks before assigning mid_block: the same order keeps the checkpoint's key order
        rev, rheads = chans[::-1], heads[::-1]
        self.up_blocks = nn.ModuleList([
            UpBlock(rev[min(i + 1, levels - 1)], rev[max(i - 1, 0)], rev[i], layers + 1, temb, cfg, rheads[i],
                    attention=cfg["up_block_types"][i].startswith("CrossAttn"), upsample=i < levels - 1, rotary=rotary)
            for i in range(levels)])
        self.mid_block = MidBlock(chans[-1], temb, cfg, heads[-1], rotary)
        self.conv_norm_out = nn.GroupNorm(cfg["norm_num_groups"], chans[0], eps=cfg["norm_eps"])
        self.conv_act = nn.SiLU()
        self.conv_out = InflatedConv(chans[0], cfg["out_channels"], 3, padding=1)

    def set_attn_processor(self, processor: Any) -> None:
        """diffusers' attention processor for the spatial and text attentions (the temporal one is explicit)."""
        from diffusers.models.attention_processor import Attention

        for m in self.modules():
            if isinstance(m, Attention):
                m.set_processor(processor)

    def forward(self, sample: Tensor, timestep: Any, encoder_hidden_states: Tensor, return_dict: bool = True):
        t = torch.as_tensor(timestep, device=sample.device)
        t = t.reshape(-1).expand(sample.shape[0]) if t.numel() == 1 else t.reshape(-1)
        emb = self.time_embedding(self.time_proj(t).to(dtype=sample.dtype))
        factor = 2 ** (len(self.up_blocks) - 1)
        force_size = any(s % factor for s in sample.shape[-2:])

        x = self.conv_in(sample)
        skips = [x]
        for block in self.down_blocks:
            x, more = block(x, emb, encoder_hidden_states)
            skips += more
        x = self.mid_block(x, emb, encoder_hidden_states)
        for i, block in enumerate(self.up_blocks):
            mine, skips = skips[-len(block.resnets):], skips[:-len(block.resnets)]
            size = tuple(skips[-1].shape[-2:]) if force_size and i < len(self.up_blocks) - 1 else None
            x = block(x, mine, emb, encoder_hidden_states, size)
        out = self.conv_out(self.conv_act(self.conv_norm_out(x)))
        return LaVieOutput(out) if return_dict else (out,)


# --- the checkpoint ------------------------------------------------------------------------------------

def read_lavie_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """The UNet weights of a LaVie checkpoint as LaVie's ``find_model`` reads them: ``["ema"]`` if present."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"LaVie UNet checkpoint {path} not found; {FETCH_HINT}")
    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:  # more than tensors pickled (e.g. training args): LaVie's own full load
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - a torn download, not a torch file
        raise CheckpointError(f"cannot read the LaVie UNet checkpoint {path}: {type(err).__name__}: "
                              f"{(str(err).strip().splitlines() or [''])[0][:200]}; {FETCH_HINT}") from None
    state = ckpt.get("ema", ckpt) if isinstance(ckpt, Mapping) else None
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path} is not a LaVie UNet checkpoint (no state dict); {FETCH_HINT}")
    return dict(state)


def load_lavie_unet(path: str | os.PathLike, config: Optional[Mapping[str, Any]] = None,
                    dtype: torch.dtype = torch.float32) -> LaVieUNet3D:
    """``LaVieUNet3D(config)`` (default: the real model) with the weights of ``path`` loaded strictly."""
    state = read_lavie_state_dict(path)
    with torch.device("meta"):
        model = LaVieUNet3D(config)
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    if missing or unexpected:
        first = "; ".join(f"{len(ks)} {what} (first: {ks[0]})" for what, ks in (("missing", missing), ("unexpected", unexpected)) if ks)
        raise CheckpointError(f"{path} does not fit the LaVie base UNet: {first}; {FETCH_HINT}")
    bad = [k for k in want if tuple(state[k].shape) != tuple(want[k].shape)]
    if bad:
        raise CheckpointError(f"{path} does not fit the LaVie base UNet: {len(bad)} shape mismatches (first: {bad[0]} "
                              f"{tuple(state[bad[0]].shape)} vs {tuple(want[bad[0]].shape)}); {FETCH_HINT}")
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
    return model.eval().requires_grad_(False)


# --- the backbone ------------------------------------------------------------------------------------

class LaVieDiffusion(VideoDiffusion):
    """LaVie base: SD 1.4's VAE / CLIP text encoder / tokenizer (``path`` or ``repo_id`` in the HF cache) and
    LaVie's UNet from ``lavie_base.pt`` (``unet_checkpoint``, or ``unet_repo_id`` in the HF cache); clips of
    ``frames`` frames of ``height`` x ``resolution`` (LaVie: 16 x 320 x 512)."""

    def __init__(
        self,
        path: Optional[str] = None,
        repo_id: Optional[str] = "CompVis/stable-diffusion-v1-4",
        revision: Optional[str] = "main",
        unet_checkpoint: Optional[str] = None,
        unet_repo_id: Optional[str] = CHECKPOINT_REPO,
        unet_revision: Optional[str] = "main",
        unet_config: Optional[Mapping[str, Any]] = None,
        frames: int = 16,
        height: int = 320,
        resolution: int = 512,
        cache_dir: Optional[str] = None,
        name: str = "lavie",
        device: Optional[str] = None,
        **kwargs: Any,
    ):
        """``resolution``: the frame WIDTH, ``height`` its height (both multiples of 64 for the real model).
        ``unet_config``: overrides of the UNet config built from SD's ``unet/config.json`` (miniatures).
        Every other key is ``VideoDiffusion``'s (``dtype``, ``scheduler``, ``decode_chunk_size`` ...)."""
        from alm.backbones.diffusers_unet import _device, _plain

        self._lavie = (unet_checkpoint, unet_repo_id, unet_revision, cache_dir,
                       _plain(unet_config) if unet_config is not None else None)
        super().__init__(path=path, repo_id=repo_id, revision=revision, frames=frames, resolution=resolution,
                         cache_dir=cache_dir, name=name, device=None, **kwargs)
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        multiple = factor * 2 ** (len(self.denoiser.model.config.block_out_channels) - 1)
        if isinstance(height, bool) or not isinstance(height, int) or height < 1 or height % multiple:
            raise ConfigError(f"backbone {name}: height={height!r} must be a positive multiple of {multiple}")
        (c, f, _, w), (k, _, _, lw) = self.data_shape, self.sample_shape
        self.data_shape, self.sample_shape = (c, f, height, w), (k, f, height // factor, lw)
        self._shapes_2d = ((c, height, w), (k, height // factor, lw))
        if device is not None:
            self.to(_device(device))

    def _load_unet(self, folder: Path, dtype: torch.dtype, variant: Optional[str]):
        from alm.backbones.diffusers_unet import _read_json, resolve_cached_repo

        ckpt, repo_id, revision, cache_dir, overrides = self._lavie
        cfg = lavie_config(_read_json(folder / "unet" / "config.json", "UNet config"), overrides)
        if not ckpt:
            if not repo_id:
                raise ConfigError(f"backbone {self.name}: set backbone.unet_checkpoint to {CHECKPOINT_FILE} "
                                  f"(or backbone.unet_repo_id to a repository in the HF cache)")
            try:
                ckpt = resolve_cached_repo(str(repo_id), revision, cache_dir) / CHECKPOINT_FILE
            except CheckpointError:
                raise CheckpointError(f"LaVie UNet checkpoint {CHECKPOINT_FILE} ({repo_id}) not in the local Hugging Face "
                                      f"cache; {FETCH_HINT}, or set backbone.unet_checkpoint") from None
        return load_lavie_unet(ckpt, cfg, dtype)


# --- the miniature -------------------------------------------------------------------------------------

def ensure_tiny_lavie() -> Path:
    """``<cache>/tiny/lavie/lavie_base.pt``: a seeded random ``TINY_CONFIG`` UNet saved as LaVie's file
    (``{"ema": state_dict}``), temporal output projections non-zero so the temporal branch matters."""
    import json

    from alm.backbones.tiny import MARKER, cache_root

    path = cache_root() / "tiny" / "lavie" / CHECKPOINT_FILE
    marker, stamp = path.with_name(MARKER), json.dumps({"name": "lavie", "config": repr(sorted(TINY_CONFIG.items()))})
    if path.is_file() and marker.is_file() and marker.read_text() == stamp:  # built from this TINY_CONFIG
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        model = LaVieUNet3D(TINY_CONFIG)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "attn_temp.to_out.0.weight" in n or "relative_attention_bias" in n:
                    p.copy_(torch.randn_like(p) * 0.2)
    tmp = path.with_name(f".{CHECKPOINT_FILE}.tmp-{os.getpid()}")
    torch.save({"ema": model.state_dict()}, tmp)
    os.replace(tmp, path)
    marker.write_text(stamp)
    return path


def tiny_lavie_backbone(**kwargs: Any) -> LaVieDiffusion:
    """The LaVie miniature: the tiny SD 1.x pipeline (``alm/backbones/tiny.py``'s ``sd15``: SD 1.4 and 1.5 share
    their architecture and configs) for VAE / text / tokenizer, and ``ensure_tiny_lavie()`` for the UNet."""
    from alm.backbones.tiny import ensure_tiny

    for key in ("path", "repo_id", "revision", "unet_checkpoint", "unet_repo_id", "unet_revision", "unet_config"):
        kwargs.pop(key, None)
    return LaVieDiffusion(path=str(ensure_tiny("sd15")), unet_checkpoint=str(ensure_tiny_lavie()),
                          unet_config={k: TINY_CONFIG[k] for k in ("block_out_channels", "layers_per_block", "attention_head_dim",
                                                                   "norm_num_groups", "rotary_dim")},
                          **kwargs)
