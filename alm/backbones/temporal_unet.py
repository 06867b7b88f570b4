"""CondMDI's motion denoiser (GMD's plain ``TemporalUnet`` inside CondMDI's ``MDM_UNET``), written anew.

Source read for the facts (nothing copied): CondMDI, github.com/setarehc/diffusion-motion-inbetweening at
commit 0c58473 (the copy vendored by the ALM authors is the same file), ``model/mdm_unet.py`` — cited
below as ``L<n>`` — and ``configs/model.py`` (``motion_unet_adagn_xl``: latent 512, dim_mults (2, 2, 2, 2),
``unet_adagn`` and ``unet_zero`` true, arch ``unet``, no attention, no keyframe input channels).

The module tree and every parameter name equal CondMDI's, so ``model000500000.pt``'s ``model_avg`` loads
with ``strict=True`` (CondMDI drops its ``clip_model.*`` keys when saving, ``train/training_loop.py``
``save``; the frozen CLIP text encoder lives outside this module here, in ``alm.backbones.condmdi``).
``layout_rows`` lists every tensor with the lines it comes from (docs/condmdi_layout.md is made from it).

Notation:

| symbol | here                 | meaning                                                         |
|--------|----------------------|-----------------------------------------------------------------|
| B      | batch                |                                                                 |
| J, F   | ``features``, 1      | 263 HumanML3D features, one "feature frame" (CondMDI's njoints, nfeats) |
| L      | frames               | motion length fed in (196), zero-padded on the right to ``pad_frames`` (224) |
| d      | ``latent_dim``       | width of the time/text embedding (512)                          |
| c_k    | ``d * dim_mults[k]`` | channels of U-Net level k (1024 at every level)                 |
| t      | timestep             | integer in [0, 1000): CondMDI does not rescale timesteps        |
| e      | ``emb``              | time embedding + text embedding, (B, d)                         |

Forward (``MDM_UNET.forward_core`` L785-849, ``TemporalUnet.forward`` L314-357), the model predicts x0:

    e   = TimestepEmbedder(pe[t]) + embed_text(text or 0)   # 0 = "uncond": embed_text gives its bias
    x   = pad_right(x reshaped (B, J*F, L), pad_frames)
    c   = unet.time_mlp(e)                                  # Linear(d, 4d), Mish, Linear(4d, d)
    per level k: x = Res(x, c); x = Res(x, c); skip_k = x; x = Down(x)  (no Down at the last level)
    x = mid_block2(mid_block1(x, c), c)
    per up level (3 of them, deepest first): x = Up(Res(Res(cat(x, skip), c), c))
    x0  = final_conv(x)[..., :L]                            # skip_0 (the finest) is never used

with ``Res(x, c) = Mish(AdaGN(GN(conv5(x)), c)) -> Mish(GN(conv5(.))) + conv1(x)`` (the 1x1 conv only
when channels change) and AdaGN ``h * (1 + scale) + shift`` where ``(scale, shift)`` are the two halves,
scale FIRST, of ``Linear(Mish(c))`` (L94-98, L159-160, L181-186). GroupNorm: 8 groups everywhere (L41, L74).

Text dropout: in training CondMDI replaces the text embedding by zeros with probability ``cond_mask_prob`` = 0.1
(``mask_cond`` in train mode, L731-735; ``utils/parser_util.py``), which is what makes classifier-free guidance
with the "uncond" path possible; at sampling nothing is dropped. The unconditioned ("uncond") model has no
keyframe input channels (``keyframe_conditioned`` false, so ``added_input_channels`` = 0, L636-642).

Why ``pad_frames`` must stay 224: GroupNorm statistics are taken over all frames, padding included, so
the output on the valid frames depends on how much zero padding follows (the network was trained on
224 frames, ``configs/model.py``: "all UNETs use 224 as the training max length"). The padded length must
be a multiple of 2 ** (levels - 1) (three stride-2 convolutions, then three x2 transposed convolutions).
"""

from __future__ import annotations

import math
import re
from typing import Iterable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from alm.errors import ConfigError

Tensor = torch.Tensor

#: CondMDI's ``motion_abs_unet_adagn_xl`` (``configs/model.py``, ``utils/model_util.py`` get_model_args)
CONDMDI_CONFIG = dict(features=263, latent_dim=512, dim_mults=(2, 2, 2, 2), clip_dim=512, pad_frames=224,
                      max_period_len=5000, groups=8, kernel_size=5)
SOURCE = "CondMDI `model/mdm_unet.py`"


# --- building blocks ---------------------------------------------------------------------------------

class ConvNorm(nn.Module):
    """Conv1d (kernel k, 'same' padding) then GroupNorm, under CondMDI's ``nn.Sequential`` indices ``0`` and
    ``2`` (index 1 and 3 are einops ``Rearrange`` adding/removing a height-1 axis around the GroupNorm,
    which changes nothing: L45-55, L77-86)."""

    def __init__(self, cin: int, cout: int, kernel_size: int, groups: int):
        super().__init__()
        self.add_module("0", nn.Conv1d(cin, cout, kernel_size, padding=kernel_size // 2))
        self.add_module("2", nn.GroupNorm(groups, cout))

    def forward(self, x: Tensor) -> Tensor:
        return self._modules["2"](self._modules["0"](x))


class ConvBlock(nn.Module):
    """``Conv1dBlock`` (L33-67): conv -> GroupNorm -> Mish."""

    def __init__(self, cin: int, cout: int, kernel_size: int, groups: int):
        super().__init__()
        self.block = ConvNorm(cin, cout, kernel_size, groups)

    def forward(self, x: Tensor) -> Tensor:
        return F.mish(self.block(x))


class AdaGNConvBlock(nn.Module):
    """``Conv1dAdaGNBlock`` (L70-99): conv -> GroupNorm -> ``h * (1 + scale) + shift`` -> Mish, with
    ``scale, shift = c.chunk(2, dim=1)`` (scale first, L94; ``ada_shift_scale`` L159-160)."""

    def __init__(self, cin: int, cout: int, kernel_size: int, groups: int):
        super().__init__()
        self.block1 = ConvNorm(cin, cout, kernel_size, groups)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        scale, shift = c.chunk(2, dim=1)
        return F.mish(self.block1(x) * (1 + scale) + shift)


class TimeMLP(nn.Module):
    """A block's conditioning head ``nn.Sequential(Mish, Linear(d, 2 * cout), Rearrange)`` (L181-186):
    the Linear is index ``1``; the output gets a trailing frame axis."""

    def __init__(self, dim: int, cout: int):
        super().__init__()
        self.add_module("1", nn.Linear(dim, 2 * cout))

    def forward(self, c: Tensor) -> Tensor:
        return self._modules["1"](F.mish(c)).unsqueeze(-1)


class ResidualTemporalBlock(nn.Module):
    """``ResidualTemporalBlock`` with ``adagn=True`` (L163-211): AdaGN conv block, plain conv block, plus
    the input (through a 1x1 ``residual_conv`` when the channel count changes)."""

    def __init__(self, cin: int, cout: int, dim: int, kernel_size: int = 5, groups: int = 8):
        super().__init__()
        self.blocks = nn.ModuleList([AdaGNConvBlock(cin, cout, kernel_size, groups),
                                     ConvBlock(cout, cout, kernel_size, groups)])
        self.time_mlp = TimeMLP(dim, cout)
        self.residual_conv = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        h = self.blocks[1](self.blocks[0](x, self.time_mlp(c)))
        return h + self.residual_conv(x)


class Downsample(nn.Module):
    """``Downsample1d`` (L15-21): Conv1d(k=3, stride 2, padding 1), frames -> ceil(frames / 2)."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, 3, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """``Upsample1d`` (L24-30): ConvTranspose1d(k=4, stride 2, padding 1), frames -> 2 * frames."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.ConvTranspose1d(dim, dim, 4, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class TemporalUNet(nn.Module):
    """GMD's plain ``TemporalUnet`` (L214-358) without attention and without extra input channels (CondMDI's
    unconditioned model: ``keyframe_conditioned`` false, so ``added_input_channels`` 0)."""

    def __init__(self, features: int, dim: int, dim_mults: Sequence[float], kernel_size: int = 5, groups: int = 8):
        super().__init__()
        dims = [features, *(int(dim * m) for m in dim_mults)]  # L228
        in_out = list(zip(dims[:-1], dims[1:]))
        levels = len(in_out)
        self.time_mlp = nn.Sequential(nn.Linear(dim, dim * 4), nn.Mish(), nn.Linear(dim * 4, dim))  # L234-239
        block = dict(dim=dim, kernel_size=kernel_size, groups=groups)
        self.downs = nn.ModuleList()
        self.ups = nn.ModuleList()  # registered before the middle blocks, as in L242-243 (the state-dict order)
        for k, (cin, cout) in enumerate(in_out):  # L246-265; index 2 is the (absent) attention
            last = k == levels - 1
            self.downs.append(nn.ModuleList([ResidualTemporalBlock(cin, cout, **block),
                                             ResidualTemporalBlock(cout, cout, **block), nn.Identity(),
                                             nn.Identity() if last else Downsample(cout)]))
        mid = dims[-1]
        self.mid_block1 = ResidualTemporalBlock(mid, mid, **block)  # L268-281
        self.mid_attn = nn.Identity()
        self.mid_block2 = ResidualTemporalBlock(mid, mid, **block)
        for k, (cin, cout) in enumerate(reversed(in_out[1:])):  # L283-301: never "last", always an Upsample
            self.ups.append(nn.ModuleList([ResidualTemporalBlock(cout * 2, cin, **block),
                                           ResidualTemporalBlock(cin, cin, **block), nn.Identity(), Upsample(cin)]))
        final = dims[1]  # the up loop's last ``dim_in`` (L303-306)
        self.final_conv = nn.Sequential(ConvBlock(final, final, kernel_size, groups), nn.Conv1d(final, features, 1))
        self.multiple = 2 ** (levels - 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """``x`` (B, features, frames), frames a multiple of ``self.multiple``; ``emb`` (B, dim)."""
        c = self.time_mlp(emb)
        skips = []
        for res1, res2, _, down in self.downs:
            x = res2(res1(x, c), c)
            skips.append(x)
            x = down(x)
        x = self.mid_block2(self.mid_block1(x, c), c)
        for res1, res2, _, up in self.ups:
            x = up(res2(res1(torch.cat((x, skips.pop()), dim=1), c), c))
        return self.final_conv(x)


def sinusoid_table(length: int, dim: int) -> Tensor:
    """``PositionalEncoding.pe`` (L860-873): (length, 1, dim), sin on even channels, cos on odd, frequencies
    10000^(-2i/dim), in float32 as CondMDI computes it."""
    position = torch.arange(0, length, dtype=torch.float).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2).float() * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe.unsqueeze(1)


class PositionalEncoding(nn.Module):
    """Holds the sinusoid table as the persistent buffer ``pe`` (CondMDI's checkpoint carries it)."""

    def __init__(self, dim: int, length: int = 5000):
        super().__init__()
        self.register_buffer("pe", sinusoid_table(length, dim))


class TimestepEmbedder(nn.Module):
    """``TimestepEmbedder`` (L881-896): ``Linear(d, d), SiLU, Linear(d, d)`` on ``pe[t]``; it keeps the SAME
    ``PositionalEncoding`` module as its parent, so the buffer appears twice in the state dict."""

    def __init__(self, dim: int, positions: PositionalEncoding):
        super().__init__()
        self.sequence_pos_encoder = positions
        self.time_embed = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        return self.time_embed(self.sequence_pos_encoder.pe[t, 0])


class CondMDINetwork(nn.Module):
    """``MDM_UNET`` for HumanML3D text-to-motion (L561-849) minus CLIP: x0 = f(x_t, t, text embedding)."""

    def __init__(self, features: int = 263, latent_dim: int = 512, dim_mults: Sequence[float] = (2, 2, 2, 2),
                 clip_dim: int = 512, pad_frames: int = 224, max_period_len: int = 5000, groups: int = 8,
                 kernel_size: int = 5):
        super().__init__()
        if len(dim_mults) < 2:
            raise ConfigError(f"CondMDI U-Net: dim_mults={tuple(dim_mults)} needs at least two levels")
        for cin in [int(latent_dim * m) for m in dim_mults]:
            if cin < 1 or cin % groups:
                raise ConfigError(f"CondMDI U-Net: channels {cin} (latent_dim {latent_dim} x dim_mults) must be a "
                                  f"positive multiple of the {groups} GroupNorm groups")
        # registration order = CondMDI's (L654, L661, L684, L694), so state_dict() lists keys as its file does
        self.sequence_pos_encoder = PositionalEncoding(latent_dim, max_period_len)
        self.unet = TemporalUNet(features, latent_dim, dim_mults, kernel_size, groups)
        self.embed_timestep = TimestepEmbedder(latent_dim, self.sequence_pos_encoder)
        self.embed_text = nn.Linear(clip_dim, latent_dim)
        self.features, self.latent_dim, self.clip_dim = int(features), int(latent_dim), int(clip_dim)
        self.pad_frames = int(pad_frames)
        if self.pad_frames < 1 or self.pad_frames % self.unet.multiple:
            raise ConfigError(f"CondMDI U-Net: pad_frames={pad_frames} must be a positive multiple of "
                              f"{self.unet.multiple} (2 ** (len(dim_mults) - 1))")

    def embedding(self, t: Tensor, text: Tensor, uncond: Tensor) -> Tensor:
        """e = time embedding + ``embed_text`` of the text embedding, or of zeros where ``uncond`` (CondMDI's
        ``mask_cond(force_mask=True)`` returns ``zeros_like``, L727-730, so the null text is ``embed_text.bias``)."""
        text = torch.where(uncond.reshape(-1, 1), torch.zeros_like(text), text)
        return self.embed_timestep(t) + self.embed_text(text)

    def forward(self, x: Tensor, t: Tensor, text: Tensor, uncond: Optional[Tensor] = None) -> Tensor:
        """x0 prediction (B, J, F, L) for x_t ``x`` (B, J, F, L), timesteps ``t`` (B,), text embeddings
        ``text`` (B, clip_dim), ``uncond`` (B,) bool (True = the unconditional path)."""
        b, j, f, frames = x.shape
        if j * f != self.features:
            raise ConfigError(f"CondMDI U-Net takes {self.features} features, got {j} x {f}")
        if frames > self.pad_frames:
            raise ConfigError(f"CondMDI U-Net: {frames} frames exceed pad_frames={self.pad_frames}")
        if uncond is None:
            uncond = torch.zeros(b, dtype=torch.bool, device=x.device)
        emb = self.embedding(t.reshape(-1).long(), text.to(x.dtype), uncond.to(x.device))
        h = F.pad(x.reshape(b, j * f, frames), (0, self.pad_frames - frames))  # right padding (L820)
        out = self.unet(h, emb)[..., :frames]  # crop (L826)
        out = out.reshape(b, j, f, frames)
        return out if out.dtype == torch.float64 else out.float()  # CondMDI: float32 (L848), also under autocast


# --- the layout: every tensor and where it comes from ---------------------------------------------------

#: the line of CondMDI's file defining each kind of tensor, by the name's ending (first match wins)
LEAF_SOURCES: list[tuple[str, str]] = [
    (r"^sequence_pos_encoder\.pe$", "L873 `register_buffer('pe')` (L860-873; L654)"),
    (r"^embed_timestep\.sequence_pos_encoder\.pe$", "L885 (the same buffer, a second name; L873)"),
    (r"^embed_timestep\.time_embed\.0\.", "L889 `nn.Linear(latent_dim, latent_dim)`"),
    (r"^embed_timestep\.time_embed\.2\.", "L891 `nn.Linear(latent_dim, latent_dim)`"),
    (r"^embed_text\.", "L694 `nn.Linear(clip_dim, latent_dim)`"),
    (r"^unet\.time_mlp\.0\.", "L236 `nn.Linear(cond_dim, dim * 4)`"),
    (r"^unet\.time_mlp\.2\.", "L238 `nn.Linear(dim * 4, dim)`"),
    (r"\.blocks\.0\.block1\.0\.", "L78 `Conv1dAdaGNBlock` conv (k 5)"),
    (r"\.blocks\.0\.block1\.2\.", "L84 `Conv1dAdaGNBlock` GroupNorm(8)"),
    (r"\.blocks\.1\.block\.0\.", "L46 `Conv1dBlock` conv (k 5)"),
    (r"\.blocks\.1\.block\.2\.", "L52 `Conv1dBlock` GroupNorm(8)"),
    (r"\.time_mlp\.1\.", "L184 `nn.Linear(embed_dim, out_channels * 2)`"),
    (r"\.residual_conv\.", "L193 `nn.Conv1d(inp_channels, out_channels, 1)`"),
    (r"^unet\.downs\.\d+\.3\.conv\.", "L18 `Downsample1d` `nn.Conv1d(dim, dim, 3, 2, 1)`"),
    (r"^unet\.ups\.\d+\.3\.conv\.", "L27 `Upsample1d` `nn.ConvTranspose1d(dim, dim, 4, 2, 1)`"),
    (r"^unet\.final_conv\.0\.block\.0\.", "L46 `Conv1dBlock` conv (k 5)"),
    (r"^unet\.final_conv\.0\.block\.2\.", "L52 `Conv1dBlock` GroupNorm(8)"),
    (r"^unet\.final_conv\.1\.", "L306 `nn.Conv1d(dim_in, input_dim, 1)`"),
]
#: the line building the enclosing block, by the name's beginning
BLOCK_SOURCES: list[tuple[str, str]] = [
    (r"^unet\.downs\.\d+\.0\.", "L252"), (r"^unet\.downs\.\d+\.1\.", "L257"), (r"^unet\.downs\.\d+\.3\.", "L264"),
    (r"^unet\.mid_block1\.", "L268"), (r"^unet\.mid_block2\.", "L276"),
    (r"^unet\.ups\.\d+\.0\.", "L288"), (r"^unet\.ups\.\d+\.1\.", "L293"), (r"^unet\.ups\.\d+\.3\.", "L300"),
    (r"^unet\.final_conv\.0\.", "L305"), (r"^unet\.time_mlp\.", "L234"), (r"^unet\.final_conv\.1\.", "L304"),
]


def source_of(name: str) -> str:
    """Where tensor ``name`` comes from in CondMDI's ``model/mdm_unet.py`` (ConfigError if unknown)."""
    leaf = next((src for pattern, src in LEAF_SOURCES if re.search(pattern, name)), None)
    if leaf is None:
        raise ConfigError(f"no source line known for CondMDI tensor {name!r}")
    block = next((src for pattern, src in BLOCK_SOURCES if re.search(pattern, name)), None)
    return f"{block} -> {leaf}" if block and not leaf.startswith(block) else leaf


def layout_rows(model: nn.Module) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, source) of every tensor of ``model.state_dict()`` in order (works on the meta device)."""
    return [(name, tuple(v.shape), source_of(name)) for name, v in model.state_dict().items()]


def count(rows: Iterable[tuple[str, tuple[int, ...], str]], buffers: bool = True) -> int:
    """Number of entries of the listed tensors (``buffers=False``: without the two ``pe`` tables)."""
    return sum(math.prod(shape) for name, shape, _ in rows if buffers or not name.endswith(".pe"))


def layout_markdown(model: Optional[nn.Module] = None) -> str:
    """docs/condmdi_layout.md: the real model's tensors (built on the meta device) as a table."""
    if model is None:
        with torch.device("meta"):
            model = CondMDINetwork(**{k: v for k, v in CONDMDI_CONFIG.items()})
    rows = layout_rows(model)
    params = sum(p.numel() for p in model.parameters())
    lines = [
        "# CondMDI's motion U-Net: every tensor of the checkpoint",
        "",
        "Generated by `alm.backbones.temporal_unet.layout_markdown()` (tests/test_condmdi.py checks that this",
        "file equals its output). The network is written anew in `alm/backbones/temporal_unet.py`; the names,",
        "shapes and order are those of `model_avg` in CondMDI's `condmdi_uncond/model000500000.pt` (config",
        "`motion_abs_unet_adagn_xl`: latent 512, dim_mults (2, 2, 2, 2), AdaGN, 263 features, CLIP width 512).",
        f"Source: {SOURCE} of github.com/setarehc/diffusion-motion-inbetweening at commit 0c58473",
        "(\"L<n>\" = line n; \"block -> leaf\" = the line building the enclosing block, then the line of the layer).",
        "",
        f"- tensors: {len(rows)} ({sum(1 for _ in model.parameters())} parameters + the sinusoid table `pe` under two names)",
        f"- parameters: {params:,} ({params / 1e6:.2f} M); with the two `pe` buffers "
        f"({count(rows) - count(rows, buffers=False):,} entries): {count(rows):,} ({count(rows) / 1e6:.2f} M)",
        "- not in the file: CondMDI's `clip_model.*` (its frozen CLIP ViT-B/32, dropped when saving); here the",
        "  text encoder is open_clip `ViT-B-32` loaded separately (`alm/backbones/condmdi.py`)",
        "",
        "| # | name | shape | source |",
        "|---|------|-------|--------|",
    ]
    lines += [f"| {i} | `{name}` | {tuple(shape)} | {src} |" for i, (name, shape, src) in enumerate(rows)]
    return "\n".join(lines) + "\n"
