"""Tiny random-weight models in the exact on-disk layout of the real checkpoints.

Tests and smoke runs cannot download Stable Diffusion, so every real code path is exercised on
these: each builder makes a miniature of a real pipeline from config (seeded, no hub access: the
CLIP tokenizer's ``vocab.json`` and ``merges.txt`` are written here), saves it with diffusers'
``save_pretrained`` into ``<cache>/tiny/<name>`` (``<cache>`` = ``$ALM_CACHE_DIR``, else
``~/.cache/alm``) on first use, and the backbone then loads that folder with the SAME loader as a
real checkpoint (``path=<folder>``).

| name            | mirrors                          | data   | latent   |
|-----------------|----------------------------------|--------|----------|
| ``sd15``        | stable-diffusion-v1-5            | 64 px  | 4x16x16  |
| ``sd21base``    | stable-diffusion-2-1-base        | 64 px  | 4x16x16  |
| ``sdxl``        | stable-diffusion-xl-base-1.0     | 64 px  | 4x16x16  |
| ``sd15-inpaint``| stable-diffusion-inpainting      | 64 px  | 9-ch UNet|
| ``ddpm_celebahq``| google/ddpm-celebahq-256        | 64 px  | (pixel)  |
| ``animatediff`` | sd15 + animatediff-motion-adapter-v1-5-2 (``motion_adapter/``) | 64 px x F | 4xFx16x16 |
| ``modelscope``  | ali-vilab/text-to-video-ms-1.7b (``UNet3DConditionModel``)     | 64 px x F | 4xFx16x16 |

What is mirrored: component classes, folder layout, scheduler configs (copied from the real
``scheduler_config.json`` files), the text encoders' layer choices (SD 2.x / SDXL: linear projections,
per-block head counts, SDXL's two encoders and ``text_time`` added embeddings), tokenizers' pad
tokens, VAE scaling factors. What is not: sizes (channels 32/64, 2 text layers, VAE factor 4).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import torch

from alm.errors import ConfigError

#: bump when a builder changes: cached folders of another version are rebuilt
TINY_VERSION = 2
MARKER = "alm_tiny.json"
RESOLUTION = 64  # data resolution of every tiny model

# The real checkpoints' scheduler configs (diffusers versions dropped).
SD_SCHEDULER = {
    "_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
    "clip_sample": False, "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True,
    "steps_offset": 1, "trained_betas": None,
}
SD21_SCHEDULER = {**SD_SCHEDULER, "prediction_type": "epsilon"}
SDXL_SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
    "clip_sample": False, "interpolation_type": "linear", "num_train_timesteps": 1000, "prediction_type": "epsilon",
    "sample_max_value": 1.0, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
    "timestep_spacing": "leading", "trained_betas": None, "use_karras_sigmas": False,
}
INPAINT_SCHEDULER = {**SD_SCHEDULER, "_class_name": "DDIMScheduler"}
#: ali-vilab/text-to-video-ms-1.7b's scheduler/scheduler_config.json (DDIM, scaled-linear betas)
MODELSCOPE_SCHEDULER = {
    "_class_name": "DDIMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
    "clip_sample": False, "num_train_timesteps": 1000, "prediction_type": "epsilon", "set_alpha_to_one": False,
    "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
}
DDPM_SCHEDULER = {
    "_class_name": "DDPMScheduler", "beta_end": 0.02, "beta_schedule": "linear", "beta_start": 0.0001,
    "clip_sample": True, "num_train_timesteps": 1000, "trained_betas": None, "variance_type": "fixed_small",
}

#: words given BPE merges in the tiny vocabulary (other words fall apart into single characters)
WORDS = ("a", "photo", "of", "the", "cat", "dog", "face", "person", "painting", "landscape", "in", "winter",
         "summer", "spring", "autumn", "high", "quality", "portrait", "by")
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


# --- the cache -------------------------------------------------------------------------------------

def cache_root() -> Path:
    """``$ALM_CACHE_DIR`` or ``~/.cache/alm`` (read at call time)."""
    return Path(os.environ.get("ALM_CACHE_DIR") or "~/.cache/alm").expanduser()


def ensure_tiny(name: str) -> Path:
    """The folder of tiny model ``name``, built on first use (atomic: concurrent callers are safe)."""
    if name not in BUILDERS:
        raise ConfigError(f"unknown tiny model {name!r}: expected one of {', '.join(BUILDERS)}")
    folder = cache_root() / "tiny" / name
    if _is_current(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    from alm.backbones.latent import quiet_transformers

    with torch.random.fork_rng(devices=[]), quiet_transformers():  # seeded builders leave the caller's RNG alone
        BUILDERS[name](tmp)
    (tmp / MARKER).write_text(json.dumps({"name": name, "version": TINY_VERSION}))
    if folder.exists() and not _is_current(folder):  # an old version
        shutil.rmtree(folder, ignore_errors=True)
    try:
        os.rename(tmp, folder)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        if not _is_current(folder):
            raise
    return folder


def tiny_backbone(tiny: str, **kwargs: Any):
    """The backbone of tiny model ``tiny``, loaded from its folder by the real checkpoints' loader."""
    from alm.backbones.diffusers_unet import DiffusersUNet
    from alm.backbones.latent import LatentDiffusion

    from alm.backbones.video import VideoDiffusion

    classes = {"sd15": LatentDiffusion, "sd21base": LatentDiffusion, "sdxl": LatentDiffusion, "ddpm_celebahq": DiffusersUNet,
               "animatediff": VideoDiffusion, "modelscope": VideoDiffusion}
    if tiny not in classes:
        raise ConfigError(f"tiny model {tiny!r} is not a backbone: expected one of {', '.join(classes)}")
    for key in ("path", "repo_id", "revision", "adapter_path", "adapter_repo_id", "adapter_revision"):
        kwargs.pop(key, None)
    if tiny == "animatediff":  # the two real folders: the SD 1.5 base and the motion adapter's repository
        kwargs["adapter_path"] = str(ensure_tiny(tiny) / "motion_adapter")
    return classes[tiny](path=str(ensure_tiny(tiny)), **kwargs)


def _is_current(folder: Path) -> bool:
    try:
        return json.loads((folder / MARKER).read_text()).get("version") == TINY_VERSION
    except (OSError, ValueError):
        return False


# --- components ------------------------------------------------------------------------------------

def write_clip_tokenizer(folder: Path, pad_token: str = EOS) -> None:
    """A byte-level BPE CLIP tokenizer as real SD checkpoints ship it: vocab.json, merges.txt and
    the two small JSON configs. Vocabulary: the 256 byte symbols, each also with ``</w>``, the
    merges of ``WORDS``, then the two special tokens (last, as in CLIP)."""
    symbols = _byte_symbols()
    vocab: dict[str, int] = {}
    for s in symbols + [s + "</w>" for s in symbols]:
        vocab.setdefault(s, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in WORDS:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            pair = (parts[0], parts[1])
            if pair not in merges:
                merges.append(pair)
            parts = [parts[0] + parts[1]] + parts[2:]
            vocab.setdefault(parts[0], len(vocab))
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": pad_token}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {**special, "add_prefix_space": False, "do_lower_case": True, "errors": "replace", "model_max_length": 77,
         "tokenizer_class": "CLIPTokenizer"}, indent=2))


def _byte_symbols() -> list[str]:
    """GPT-2 / CLIP's reversible byte -> printable character table, in CLIP's vocabulary order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def _tokenizer(folder: Path, pad_token: str = EOS):
    from transformers import CLIPTokenizer

    write_clip_tokenizer(folder, pad_token)
    return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)


def _text_encoder(tokenizer, seed: int, hidden_act: str = "quick_gelu", projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, projection_dim=32, hidden_act=hidden_act, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg).eval()


def _vae(seed: int, scaling_factor: float = 0.18215, force_upcast: bool = False):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 32, 64), layers_per_block=1, latent_channels=4, norm_num_groups=32,
        sample_size=RESOLUTION, scaling_factor=scaling_factor, force_upcast=force_upcast,
    ).eval()


def _unet(seed: int, **kw):
    from diffusers import UNet2DConditionModel

    cfg = dict(sample_size=RESOLUTION // 4, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
               down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
               cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32)
    cfg.update(kw)
    torch.manual_seed(seed)
    return UNet2DConditionModel(**cfg).eval()


def _scheduler(config: dict):
    import diffusers

    return getattr(diffusers, config["_class_name"]).from_config(config)


def _finish(folder: Path, scheduler: dict, tokenizers: dict[str, str]) -> None:
    """Replace what ``save_pretrained`` wrote by the real checkpoints' files: the scheduler config and
    the tokenizers (transformers 5 writes tokenizer.json; SD repositories ship vocab.json + merges.txt)."""
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler, indent=2))
    for sub, pad in tokenizers.items():
        shutil.rmtree(folder / sub)
        write_clip_tokenizer(folder / sub, pad)


# --- the builders ----------------------------------------------------------------------------------

def _build_sd(folder: Path, *, unet_kw: dict, scheduler: dict, pad: str, hidden_act: str, inpaint: bool = False) -> None:
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

    tokenizer = _tokenizer(folder / ".tok", pad)
    cls = StableDiffusionInpaintPipeline if inpaint else StableDiffusionPipeline
    pipe = cls(vae=_vae(1), text_encoder=_text_encoder(tokenizer, 2, hidden_act), tokenizer=tokenizer,
               unet=_unet(0, **unet_kw), scheduler=_scheduler(scheduler), safety_checker=None, feature_extractor=None,
               requires_safety_checker=False)
    pipe.save_pretrained(str(folder))
    shutil.rmtree(folder / ".tok")
    _finish(folder, scheduler, {"tokenizer": pad})


def build_sd15(folder: Path) -> None:
    _build_sd(folder, unet_kw={}, scheduler=SD_SCHEDULER, pad=EOS, hidden_act="quick_gelu")


def build_sd21base(folder: Path) -> None:
    # SD 2.x: OpenCLIP-H text encoder (gelu, pad "!"), per-block head counts, linear projections
    _build_sd(folder, unet_kw=dict(attention_head_dim=(2, 4), use_linear_projection=True), scheduler=SD21_SCHEDULER,
              pad="!", hidden_act="gelu")


def build_sd15_inpaint(folder: Path) -> None:
    # the UNet sees [latent (4), mask (1), masked-image latent (4)]
    _build_sd(folder, unet_kw=dict(in_channels=9), scheduler=INPAINT_SCHEDULER, pad=EOS, hidden_act="quick_gelu", inpaint=True)


def build_sdxl(folder: Path) -> None:
    from diffusers import StableDiffusionXLPipeline

    tok1, tok2 = _tokenizer(folder / ".tok1", EOS), _tokenizer(folder / ".tok2", "!")
    unet = _unet(
        0, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, transformer_layers_per_block=(1, 2),
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 32,
        cross_attention_dim=64,  # the two encoders' hidden states concatenated: 32 + 32
    )
    pipe = StableDiffusionXLPipeline(
        vae=_vae(1, scaling_factor=0.13025, force_upcast=True), text_encoder=_text_encoder(tok1, 2, "quick_gelu"),
        text_encoder_2=_text_encoder(tok2, 3, "gelu", projection=True), tokenizer=tok1, tokenizer_2=tok2, unet=unet,
        scheduler=_scheduler(SDXL_SCHEDULER), force_zeros_for_empty_prompt=True, add_watermarker=False,
    )
    pipe.save_pretrained(str(folder))
    shutil.rmtree(folder / ".tok1")
    shutil.rmtree(folder / ".tok2")
    _finish(folder, SDXL_SCHEDULER, {"tokenizer": EOS, "tokenizer_2": "!"})


def build_ddpm_celebahq(folder: Path) -> None:
    from diffusers import DDPMPipeline, UNet2DModel

    # the google/ddpm-*-256 UNets' flags (converted from Ho et al.'s TF code): attention at one low
    # resolution, no sin/cos flip, frequency shift 1, eps 1e-6; their weights are .bin files only
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=RESOLUTION, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(32, 32, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), norm_num_groups=32, norm_eps=1e-6,
        flip_sin_to_cos=False, freq_shift=1, downsample_padding=0, mid_block_scale_factor=1,
    ).eval()
    DDPMPipeline(unet=unet, scheduler=_scheduler(DDPM_SCHEDULER)).save_pretrained(str(folder), safe_serialization=False)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(DDPM_SCHEDULER, indent=2))


def build_animatediff(folder: Path) -> None:
    # the SD 1.5 base (the tiny sd15, same seeds) plus motion_adapter/ in the adapter repository's layout
    # (config.json + diffusion_pytorch_model.safetensors at its root); v1-5-2's flags: a motion mid block,
    # 32 frame positions, motion layers per block = the UNet's layers per block
    from diffusers import MotionAdapter

    build_sd15(folder)
    torch.manual_seed(4)
    adapter = MotionAdapter(block_out_channels=(32, 64), motion_layers_per_block=1, motion_num_attention_heads=4,
                            motion_norm_num_groups=32, motion_max_seq_length=32, use_motion_mid_block=True).eval()
    with torch.no_grad():  # diffusers zero-initialises the temporal output projections: make them matter
        for name, p in adapter.named_parameters():
            if "proj_out" in name:
                p.copy_(torch.randn_like(p) * 0.05)
    adapter.save_pretrained(str(folder / "motion_adapter"))


def build_modelscope(folder: Path) -> None:
    # ModelScope: OpenCLIP-H text encoder (SD 2.x style: gelu, pad "!"), UNet3DConditionModel, DDIM
    from diffusers import TextToVideoSDPipeline, UNet3DConditionModel

    tokenizer = _tokenizer(folder / ".tok", "!")
    torch.manual_seed(0)
    unet = UNet3DConditionModel(
        sample_size=RESOLUTION // 4, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"), up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32,
    ).eval()
    pipe = TextToVideoSDPipeline(vae=_vae(1), text_encoder=_text_encoder(tokenizer, 2, "gelu"), tokenizer=tokenizer,
                                 unet=unet, scheduler=_scheduler(MODELSCOPE_SCHEDULER))
    pipe.save_pretrained(str(folder))
    shutil.rmtree(folder / ".tok")
    _finish(folder, MODELSCOPE_SCHEDULER, {"tokenizer": "!"})


BUILDERS: dict[str, Callable[[Path], None]] = {
    "sd15": build_sd15,
    "sd21base": build_sd21base,
    "sdxl": build_sdxl,
    "sd15-inpaint": build_sd15_inpaint,
    "ddpm_celebahq": build_ddpm_celebahq,
    "animatediff": build_animatediff,
    "modelscope": build_modelscope,
}
