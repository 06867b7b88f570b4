"""The real checkpoints the project knows by name: where they live on the Hugging Face hub, which
files a run needs, and the command that fetches them (``scripts/fetch_weights.py <name>``).

Nothing here touches the network; ``scripts/fetch_weights.py`` does, on a machine with internet.
Revisions are pinned to the commit the project was written against where it is known (the same
commits are widely used pins); ``main`` otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

#: pipeline components that are model weights: component -> weights file stem
WEIGHTS_STEM = {
    "unet": "diffusion_pytorch_model",
    "vae": "diffusion_pytorch_model",
    "text_encoder": "model",
    "text_encoder_2": "model",
}
SD_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
SDXL_COMPONENTS = (*SD_COMPONENTS, "text_encoder_2", "tokenizer_2")
PIXEL_COMPONENTS = ("unet", "scheduler")
#: a repository holding one model at its root (config.json + diffusion_pytorch_model.*): a motion adapter
ROOT = "."
ADAPTER_COMPONENTS = (ROOT,)


@dataclass(frozen=True)
class Checkpoint:
    """A named checkpoint: hub repository, pinned revision, the pipeline components a run loads."""

    name: str
    repo_id: str
    revision: str
    components: tuple[str, ...]
    about: str
    #: other named checkpoints a run of this one also loads (fetched with it)
    requires: tuple[str, ...] = ()


CHECKPOINTS: dict[str, Checkpoint] = {c.name: c for c in (
    Checkpoint("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", "451f4fe16113bff5a5d2269ed5ad43b0592e9a14",
               SD_COMPONENTS, "Stable Diffusion v1-5, 512 px (paper Tables 1, 2, 6); the mirror of runwayml's repository"),
    Checkpoint("sd15-inpaint", "stable-diffusion-v1-5/stable-diffusion-inpainting", "8a4288a76071f7280aedbdb3253bdb9e9d5d84bb",
               SD_COMPONENTS, "Stable Diffusion v1-5 inpainting (9-channel UNet), the training-based baseline of Table 6"),
    Checkpoint("sd21base", "stabilityai/stable-diffusion-2-1-base", "5ede9e4bf3e3fd1cb0ef2f7a3fff13ee514fdf06",
               SD_COMPONENTS, "Stable Diffusion v2-1-base, 512 px (paper Table 3, wide images)"),
    Checkpoint("sdxl", "stabilityai/stable-diffusion-xl-base-1.0", "462165984030d82259a11f4367a4eed129e94a7b",
               SDXL_COMPONENTS, "Stable Diffusion XL base 1.0, 1024 px (paper Fig. 4, backbone robustness)"),
    Checkpoint("ddpm_celebahq", "google/ddpm-celebahq-256", "main",
               PIXEL_COMPONENTS, "Ho et al.'s unconditional pixel DDPM on CelebA-HQ 256 px (paper Fig. 4)"),
    Checkpoint("ddpm_cifar10", "google/ddpm-cifar10-32", "main",
               PIXEL_COMPONENTS, "Ho et al.'s unconditional pixel DDPM on CIFAR-10 32 px"),
    Checkpoint("animatediff", "guoyww/animatediff-motion-adapter-v1-5-2", "main",
               ADAPTER_COMPONENTS, "AnimateDiff motion adapter v1-5-2 on the sd15 base (text-to-video, 16 frames, 512 px)",
               requires=("sd15",)),
    Checkpoint("modelscope", "ali-vilab/text-to-video-ms-1.7b", "main",
               SD_COMPONENTS, "ModelScope text-to-video 1.7B (UNet3DConditionModel, 16 frames, 256 px)"),
    # LaVie (alm/backbones/lavie.py): its UNet is one file of YaohuiW/LaVie (LaVie's README); SD 1.4 gives the VAE, text
    # encoder, tokenizer, scheduler and unet/config.json, not its UNet weights. A component naming a file is fetched as is.
    Checkpoint("lavie-sd14", "CompVis/stable-diffusion-v1-4", "main",
               ("vae", "text_encoder", "tokenizer", "scheduler", "unet/config.json"),
               "Stable Diffusion v1-4 without its UNet weights (LaVie's VAE, text encoder, tokenizer, UNet config)"),
    Checkpoint("lavie", "YaohuiW/LaVie", "main", ("lavie_base.pt",),
               "LaVie base text-to-video UNet (SD 1.4 inflated; 16 frames, 320 x 512; paper Fig. 7 / 11)",
               requires=("lavie-sd14",)),
    # backbone=condmdi (alm/backbones/condmdi.py): its text encoder, OpenAI CLIP ViT-B/32 in open_clip's layout (one
    # file). CondMDI's U-Net itself is a Google Drive download, not on the hub (conf/backbone/condmdi.yaml missing_hint).
    Checkpoint("condmdi-clip", "timm/vit_base_patch32_clip_224.openai", "ab5b8ef490e86faa07d3523926b842c765de1de5",
               ("open_clip_model.safetensors",), "OpenAI CLIP ViT-B/32 for open_clip, the text encoder of backbone=condmdi"),
)}


def checkpoint_for_repo(repo_id: str) -> Optional[Checkpoint]:
    """The named checkpoint stored in ``repo_id``, if the project knows it."""
    for ckpt in CHECKPOINTS.values():
        if ckpt.repo_id == repo_id:
            return ckpt
    return None


def fetch_command(repo_id: str) -> str:
    """The command that puts ``repo_id`` into the local Hugging Face cache."""
    ckpt = checkpoint_for_repo(repo_id)
    if ckpt is not None:
        return f"python scripts/fetch_weights.py {ckpt.name}"
    return f"hf download {repo_id}"


def select_files(files: list[str], components: tuple[str, ...], variant: Optional[str] = None) -> list[str]:
    """The files of a repository listing that a run needs (``model_index.json``, configs, tokenizers,
    one weights format per component: ``variant`` safetensors, else safetensors, else ``.bin``).

    Raises ``ValueError`` (one line) when a component is missing or has no weights of ``variant``.
    """
    chosen = [f for f in files if f == "model_index.json"]
    for comp in components:
        if comp == ROOT:  # one model at the repository's root: its config and one weights format
            chosen += [f for f in files if f == "config.json"]
            chosen += _weights([f for f in files if "/" not in f], comp, "diffusion_pytorch_model", variant)
            continue
        inside = [f for f in files if f.startswith(comp + "/")]
        if not inside:
            raise ValueError(f"the repository has no {comp}/ folder")
        if comp not in WEIGHTS_STEM:  # tokenizer / scheduler: every (small) file
            chosen += inside
            continue
        chosen += [f for f in inside if f == f"{comp}/config.json"]
        chosen += _weights(inside, comp, WEIGHTS_STEM[comp], variant)
    return sorted(dict.fromkeys(chosen))


def _weights(files: list[str], comp: str, stem: str, variant: Optional[str]) -> list[str]:
    """One format of ``comp``'s weights: a single file or all shards with their index."""
    prefix = "" if comp == ROOT else re.escape(comp) + "/"
    pattern = re.compile(rf"^{prefix}{re.escape(stem)}(\.(?P<var>[A-Za-z0-9_]+))?"
                         rf"(-\d+-of-\d+)?\.(?P<ext>safetensors|bin)(\.index(\.(?P<ivar>[A-Za-z0-9_]+))?\.json)?$")
    groups: dict[tuple[Optional[str], str], list[str]] = {}
    for f in files:
        m = pattern.match(f)
        if m:
            groups.setdefault((m.group("var") or m.group("ivar"), m.group("ext")), []).append(f)
    order = [(variant, "safetensors"), (variant, "bin")] if variant else [(None, "safetensors"), (None, "bin")]
    for key in order:
        if key in groups:
            return groups[key]
    what = f"{variant} weights" if variant else "weights without a variant"
    raise ValueError(f"the repository has no {what} for {comp}/ (found: {', '.join(sorted(set(k[0] or 'plain' for k in groups))) or 'none'})")
