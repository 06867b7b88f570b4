"""CondMDI's text-conditioned human-motion model (Cohan et al. 2024) as a backbone: the paper's motion network.

CondMDI (github.com/setarehc/diffusion-motion-inbetweening, commit 0c58473) trains GMD's 1-D convolutional
U-Net on HumanML3D in its absolute-root representation. The paper's checkpoint is the one CondMDI calls
"unconditionally (no keyframes) trained", ``condmdi_uncond/model000500000.pt`` (config
``motion_abs_unet_adagn_xl``). The network is written anew in ``alm/backbones/temporal_unet.py`` with the
checkpoint's parameter names; the CLIP ViT-B/32 text encoder comes from open_clip.

| piece                  | CondMDI                                                     | here                                   |
|------------------------|-------------------------------------------------------------|----------------------------------------|
| weights                | ``model_avg`` of the file (``utils/model_util.py``          | the same, ``strict=True``              |
|                        | ``load_saved_model``: the EMA model when present)           |                                        |
| text                   | ``clip.tokenize(context_length=22, truncate=True)`` padded  | open_clip's tokenizer (same BPE, same  |
|                        | with zeros to 77, ``encode_text`` in fp16, ``.float()``     | truncation), ``precision=fp16``        |
|                        | (``model/mdm_unet.py`` ``encode_text``, L739-765)           | (``clip_precision``)                   |
| null text (CFG)        | ``y['uncond']`` -> ``embed_text(zeros)`` = its bias         | ``cond["uncond"]`` True (per sample)   |
| guidance               | ``out_u + y['text_scale'] * (out_c - out_u)`` on x0, 2.5    | the runner's CFG on eps (equal: below) |
| schedule               | cosine (Nichol & Dhariwal), 1000 steps, max beta 0.999      | ``squaredcos_cap_v2`` (the same table) |
| prediction             | x0 (``predict_xstart``)                                     | ``eps`` converts x0 -> eps             |
| normalisation          | ``(x - Mean_abs_3d) / Std_abs_3d`` (data loader)            | ``encode`` / ``decode``                |
| precision              | U-Net under fp16 autocast on CUDA (``use_fp16``)            | ``dtype`` (default float32)            |

Notation: ``ab_t`` = alphas_cumprod[t] of the cosine table; x0 = the network's prediction; z = x_t.

    eps = (z - sqrt(ab_t) x0) / sqrt(1 - ab_t)        (CondMDI ``_predict_eps_from_xstart``)

Guidance: eps is affine in x0 with coefficients that do not depend on the condition, so guiding eps,
``eps_u + g (eps_c - eps_u)``, is exactly eps of the guided x0, ``x0_u + g (x0_c - x0_u)`` (tested).

Data: a motion is the RAW 263-feature array (263, 1, L), L = ``resolution`` = 196 frames; ``encode``
normalises it. CondMDI pads a motion with zeros AFTER normalising (``Text2MotionDatasetV2.__getitem__``),
while ``encode`` of raw zero frames gives ``-mean / std``: frames beyond a motion's length are the task's
business. The U-Net always sees the L frames padded on the right to ``pad_frames`` = 224 (its GroupNorms
average over all frames, so this padding changes every output frame; CondMDI ``forward_core`` L820).
"""

from __future__ import annotations

import json
import math
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from alm.backbones.base import Backbone, Cond
from alm.backbones.checkpoints import CHECKPOINTS
from alm.backbones.temporal_unet import CondMDINetwork
from alm.errors import CheckpointError, ConfigError, DataError

Tensor = torch.Tensor

CHECKPOINT_NAME = "condmdi_uncond/model000500000.pt"
#: CondMDI's README, "Download the pretrained models": "Unconditionally (no keyframes) trained"
CHECKPOINT_URL = "https://drive.google.com/file/d/1B0PYpmCXXwV0a5mhkgea_J2pOwhYy-k5/view?usp=sharing"
FETCH_HINT = (f"download CondMDI's 'Unconditionally (no keyframes) trained' zip from {CHECKPOINT_URL} (CondMDI's README), "
              f"unzip it and set backbone.checkpoint=<folder>/{CHECKPOINT_NAME}")
CLIP_MODEL = "ViT-B-32"  # CondMDI's clip_version 'ViT-B/32' (utils/model_util.py get_model_args)
CLIP = CHECKPOINTS["condmdi-clip"]  # OpenAI's ViT-B/32 weights in open_clip's layout, one file on the hub
CLIP_FILE = CLIP.components[0]
CLIP_HINT = (f"fetch it on a machine with internet: python scripts/fetch_weights.py {CLIP.name} ({CLIP.repo_id}), copy "
             f"the Hugging Face cache over, or set backbone.clip_path to an open_clip ViT-B-32 checkpoint file")
STATS_FILES = ("Mean_abs_3d.npy", "Std_abs_3d.npy")
STATS_HINT = ("CondMDI ships them in dataset/HumanML3D_abs/ of github.com/setarehc/diffusion-motion-inbetweening; "
              "set backbone.stats_dir to their folder")
CONTEXT_LENGTH = 77  # CLIP's; CondMDI pads its 22 tokens with zeros to this length
#: CondMDI's config values (args.json beside the checkpoint) this backbone relies on
EXPECTED_ARGS = {"dataset": "humanml", "arch": "unet", "abs_3d": True, "predict_xstart": True, "noise_schedule": "cosine",
                 "diffusion_steps": 1000, "unet_adagn": True, "keyframe_conditioned": False, "use_random_proj": False,
                 "traj_only": False, "xz_only": False, "drop_redundant": False}

#: the scheduler the model was trained with, as diffusers names it (the methods read only the beta table);
#: ``eps`` returns eps, so the prediction type the methods see is epsilon (``model_prediction_type``: sample)
SCHEDULER_CONFIG: dict[str, Any] = {
    "_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2",
    "prediction_type": "epsilon", "clip_sample": False, "variance_type": "fixed_small", "set_alpha_to_one": True,
    "steps_offset": 0, "trained_betas": None,
}


# --- the schedule and the x0 <-> eps conversion ----------------------------------------------------------

def cosine_betas(steps: int = 1000, max_beta: float = 0.999) -> Tensor:
    """Nichol & Dhariwal's cosine betas, float64: beta_i = min(1 - f((i+1)/T) / f(i/T), max_beta) with
    f(u) = cos((u + 0.008) / 1.008 * pi / 2) ** 2, the constants written as CondMDI writes them
    (``diffusion/gaussian_diffusion.py`` ``get_named_beta_schedule('cosine')``, ``betas_for_alpha_bar``)."""
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    return torch.tensor([min(1 - f((i + 1) / steps) / f(i / steps), max_beta) for i in range(steps)], dtype=torch.float64)


def cosine_alphas_cumprod(steps: int = 1000) -> Tensor:
    """ab_t = prod_{i <= t} (1 - beta_i), float64 (CondMDI ``GaussianDiffusion.__init__``)."""
    return torch.cumprod(1 - cosine_betas(steps), dim=0)


def x0_to_eps(x0: Tensor, z: Tensor, ab: Tensor) -> Tensor:
    """eps = (z - sqrt(ab) x0) / sqrt(1 - ab); ``ab`` broadcasts against ``z``."""
    return (z - ab.sqrt() * x0) / (1 - ab).sqrt()


def eps_to_x0(eps: Tensor, z: Tensor, ab: Tensor) -> Tensor:
    """x0 = (z - sqrt(1 - ab) eps) / sqrt(ab), the inverse of ``x0_to_eps``."""
    return (z - (1 - ab).sqrt() * eps) / ab.sqrt()


# --- files ----------------------------------------------------------------------------------------------

def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200] if text else ''}".rstrip(": ")


def read_condmdi_state_dict(path: Union[str, Path], hint: str = FETCH_HINT) -> dict[str, Tensor]:
    """The network weights of a CondMDI checkpoint as CondMDI's ``load_saved_model`` picks them: ``model_avg``
    if present, else ``model``, else the file itself; ``clip_model.*`` keys dropped (``load_model_wo_clip``)."""
    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise CheckpointError(f"CondMDI checkpoint {path} not found; {hint}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a torn download, not a torch file
        raise CheckpointError(f"cannot read the CondMDI checkpoint {path}: {_one_line(err)}; {hint}") from None
    state = ckpt
    if isinstance(ckpt, Mapping):
        state = ckpt.get("model_avg", ckpt.get("model", ckpt))
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a CondMDI checkpoint (no state dict under 'model_avg' or 'model'); {hint}")
    return {k: v for k, v in state.items() if not k.startswith("clip_model.")}


def check_args_json(folder: Path, expected: Mapping[str, Any]) -> None:
    """CondMDI's ``args.json`` beside the checkpoint, when there is one, must have the ``expected`` values."""
    path = folder / "args.json"
    if not path.is_file():
        return
    try:
        args = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read {path}: {_one_line(err)}") from None
    bad = [f"{k}={args[k]!r} (expected {v!r})" for k, v in expected.items()
           if k in args and (list(args[k]) if isinstance(args[k], (list, tuple)) else args[k]) != v]
    if bad:
        raise CheckpointError(f"{path}: this is not the checkpoint backbone=condmdi expects: {'; '.join(bad)}")


def load_network(path: Union[str, Path], config: Mapping[str, Any], dtype: torch.dtype = torch.float32,
                 hint: str = FETCH_HINT) -> CondMDINetwork:
    """``CondMDINetwork(**config)`` with the weights of checkpoint ``path`` loaded strictly (built on the
    meta device first: no random initialisation of 233 M parameters)."""
    state = read_condmdi_state_dict(path, hint)
    with torch.device("meta"):
        model = CondMDINetwork(**config)
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    if missing or unexpected:
        first = "; ".join(f"{len(ks)} {what} (first: {ks[0]})"
                          for what, ks in (("missing", missing), ("unexpected", unexpected)) if ks)
        raise CheckpointError(f"{path} does not fit the CondMDI U-Net: {first}; {hint}")
    bad = [k for k in want if tuple(state[k].shape) != tuple(want[k].shape)]
    if bad:
        raise CheckpointError(f"{path} does not fit the CondMDI U-Net: {len(bad)} shape mismatches (first: {bad[0]} "
                              f"{tuple(state[bad[0]].shape)} vs {tuple(want[bad[0]].shape)}); {hint}")
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def load_stats(folder: Union[str, Path], features: int) -> tuple[Tensor, Tensor, list[Path]]:
    """CondMDI's ``Mean_abs_3d.npy`` and ``Std_abs_3d.npy`` (float32, (features,)) and their paths."""
    folder = Path(str(folder)).expanduser()
    files = [folder / name for name in STATS_FILES]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise DataError(f"HumanML3D statistics {', '.join(missing)} not found in {folder}; {STATS_HINT}")
    arrays = []
    for f in files:
        try:
            a = np.load(f)
        except Exception as err:  # noqa: BLE001
            raise DataError(f"cannot read {f}: {_one_line(err)}") from None
        if a.shape != (features,) or not np.isfinite(a).all():
            raise DataError(f"{f} holds {a.shape} values (finite: {bool(np.isfinite(a).all())}); expected {features} finite values")
        arrays.append(torch.from_numpy(a.astype(np.float32)))
    if not bool((arrays[1] > 0).all()):
        raise DataError(f"{files[1]} has a std <= 0")
    return arrays[0], arrays[1], files


def fake_stats(features: int, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded stand-in statistics for the miniature: mean ~ N(0, 0.1^2), std ~ U(0.5, 1.5)."""
    g = torch.Generator().manual_seed(int(seed) + 1)
    return 0.1 * torch.randn(features, generator=g), 0.5 + torch.rand(features, generator=g)


# --- the text encoder -----------------------------------------------------------------------------------

class TextEncoder(torch.nn.Module):
    """A CLIP text tower and its tokenizer, used as CondMDI's ``encode_text``: captions tokenized to
    ``tokens + 2`` positions (start, at most ``tokens`` BPE tokens, end; longer captions are cut and end with
    the end token), zero-padded to 77, encoded, returned in float32."""

    def __init__(self, clip: torch.nn.Module, tokens: int = 20):
        super().__init__()
        import open_clip

        clip.visual = None  # the image tower is never used
        self.clip = clip.eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(CLIP_MODEL)
        self.tokens = int(tokens)
        if not 1 <= self.tokens <= CONTEXT_LENGTH - 2:
            raise ConfigError(f"text_tokens={tokens}: expected 1..{CONTEXT_LENGTH - 2}")
        self.dim = int(clip.text_projection.shape[1])

    def tokenize(self, captions: Sequence[str]) -> Tensor:
        ids = self.tokenizer(list(captions), context_length=self.tokens + 2)
        return torch.nn.functional.pad(ids, (0, CONTEXT_LENGTH - ids.shape[1]))

    @torch.no_grad()
    def forward(self, captions: Sequence[str]) -> Tensor:
        device = self.clip.token_embedding.weight.device
        return self.clip.encode_text(self.tokenize(captions).to(device)).float()


def _precision(clip_precision: str) -> str:
    if clip_precision not in ("fp16", "fp32"):
        raise ConfigError(f"backbone.clip_precision={clip_precision!r}: expected fp16 (CondMDI's) or fp32")
    return clip_precision


def load_clip(path: Union[str, Path], precision: str = "fp16") -> torch.nn.Module:
    """open_clip ``ViT-B-32`` (QuickGELU, as OpenAI's) with the weights of a local file; ``fp16`` casts it as
    OpenAI's ``clip.model.convert_weights`` does (CondMDI's ``load_and_freeze_clip``)."""
    import open_clip

    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise CheckpointError(f"CLIP checkpoint {path} not found; {CLIP_HINT}")
    try:
        return open_clip.create_model(CLIP_MODEL, pretrained=str(path), precision=_precision(precision),
                                      force_quick_gelu=True, device="cpu")
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"cannot load open_clip {CLIP_MODEL} from {path}: {_one_line(err)}; {CLIP_HINT}") from None


def tiny_clip(config: Mapping[str, Any], precision: str = "fp32", seed: int = 0) -> torch.nn.Module:
    """A seeded random open_clip CLIP with a small text tower (``embed_dim``, ``width``, ``layers``, ``heads``)
    on CLIP's real vocabulary (the tokenizer needs no file), and a token image tower."""
    from open_clip.model import CLIP, convert_weights_to_lp

    known = {"embed_dim", "width", "layers", "heads"}
    if set(config) - known:
        raise ConfigError(f"backbone.text_encoder has unknown key(s) {', '.join(sorted(set(config) - known))}; "
                          f"it takes {', '.join(sorted(known))}")
    cfg = {"embed_dim": 32, "width": 32, "layers": 2, "heads": 2, **dict(config)}
    cast = torch.float16 if _precision(precision) == "fp16" else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed) + 2)
        model = CLIP(embed_dim=int(cfg["embed_dim"]), quick_gelu=True, cast_dtype=cast,
                     vision_cfg={"layers": 1, "width": 16, "head_width": 8, "patch_size": 16, "image_size": 32},
                     text_cfg={"context_length": CONTEXT_LENGTH, "vocab_size": 49408, "width": int(cfg["width"]),
                               "heads": int(cfg["heads"]), "layers": int(cfg["layers"])})
    if cast is not None:
        convert_weights_to_lp(model, cast)
    return model


def find_clip_file(clip_path: Optional[str], repo_id: Optional[str], revision: Optional[str],
                   cache_dir: Optional[str]) -> Path:
    """``clip_path``, else ``open_clip_model.safetensors`` of ``repo_id`` in the local Hugging Face cache."""
    if clip_path:
        return Path(str(clip_path)).expanduser()
    if not repo_id:
        raise ConfigError("backbone=condmdi needs backbone.clip_path or backbone.clip_repo_id (in the local HF cache)")
    from alm.backbones.diffusers_unet import resolve_cached_repo

    try:
        folder = resolve_cached_repo(str(repo_id), revision, cache_dir)
    except CheckpointError:
        raise CheckpointError(f"CLIP ViT-B/32 ({repo_id}) not in the local Hugging Face cache; {CLIP_HINT}") from None
    return folder / CLIP_FILE


# --- the backbone ---------------------------------------------------------------------------------------

class CondMDIMotion(Backbone):
    """CondMDI: ``eps(z, t, cond)`` on normalised HumanML3D motions (B, 263, 1, L) from the U-Net's x0.

    ``cond`` is ``{"text": (B, clip_dim) CLIP embeddings, "uncond": (B,) bool}``; ``uncond`` True is CondMDI's
    unconditional path (``make_cond``: a caption None; ``null_cond``: all of them)."""

    conditional = True
    model_prediction_type = "sample"

    def __init__(
        self,
        checkpoint: Optional[str] = None,
        clip_path: Optional[str] = None,
        clip_repo_id: Optional[str] = CLIP.repo_id,
        clip_revision: Optional[str] = CLIP.revision,
        stats_dir: Optional[str] = None,
        resolution: int = 196,
        pad_frames: int = 224,
        features: int = 263,
        latent_dim: int = 512,
        dim_mults: Sequence[float] = (2, 2, 2, 2),
        text_tokens: int = 20,
        clip_precision: str = "fp16",
        dtype: Union[str, torch.dtype] = "float32",
        random_weights: bool = False,
        seed: int = 0,
        text_encoder: Optional[Mapping[str, Any]] = None,
        cache_dir: Optional[str] = None,
        device: Optional[str] = None,
        name: str = "condmdi",
        missing_hint: Optional[str] = None,
    ):
        """Real model: ``checkpoint`` (CondMDI's ``model000500000.pt``), ``clip_path`` (or ``clip_repo_id`` in
        the HF cache) and ``stats_dir`` (``Mean_abs_3d.npy``, ``Std_abs_3d.npy``). ``random_weights``: a seeded
        random text tower of size ``text_encoder``, stand-in statistics unless ``stats_dir`` is given and, unless
        ``checkpoint`` is given, a seeded random network in the real layout (the miniature: no file at all).
        ``resolution``: the frames L of a motion. ``dtype``: float32, float16 / bfloat16 (the U-Net under
        autocast, weights in float32, as CondMDI samples on CUDA), auto (float16 on CUDA), float64 (tests)."""
        super().__init__()
        from alm.backbones.diffusers_unet import _device, resolve_dtype

        self.name = name
        self.frames = int(resolution)
        if isinstance(resolution, bool) or self.frames < 1 or self.frames > int(pad_frames):
            raise ConfigError(f"backbone {name}: resolution={resolution!r} (frames) must be in 1..pad_frames={pad_frames}")
        self.sample_shape = self.data_shape = (int(features), 1, self.frames)
        self.scheduler_config = dict(SCHEDULER_CONFIG)
        self.alphas_cumprod = cosine_alphas_cumprod(int(SCHEDULER_CONFIG["num_train_timesteps"]))
        run_dtype = resolve_dtype(dtype, device)
        self.autocast_dtype = run_dtype if run_dtype in (torch.float16, torch.bfloat16) else None
        weights_dtype = torch.float64 if run_dtype == torch.float64 else torch.float32
        hint = missing_hint or FETCH_HINT

        # every file is found before anything is loaded (the network is 0.9 GB, CLIP 0.6 GB)
        path = Path(str(checkpoint)).expanduser() if checkpoint else None
        if path is not None and not path.is_file():
            raise CheckpointError(f"CondMDI checkpoint {path} not found; {hint}")
        clip_file = None
        if not random_weights:
            if text_encoder:
                raise ConfigError(f"backbone {name}: text_encoder (a random text tower) needs random_weights=true")
            if path is None:
                raise ConfigError(f"backbone {name}: set backbone.checkpoint to CondMDI's {CHECKPOINT_NAME}; {hint}")
            if not stats_dir:
                raise ConfigError(f"backbone {name}: set backbone.stats_dir to the folder of {' and '.join(STATS_FILES)}; {STATS_HINT}")
        self._stats_files: list[Path] = []
        if stats_dir:
            mean, std, self._stats_files = load_stats(stats_dir, int(features))
        else:
            mean, std = fake_stats(int(features), seed)
        if not random_weights:
            clip_file = find_clip_file(clip_path, clip_repo_id, clip_revision, cache_dir)
            if not clip_file.is_file():
                raise CheckpointError(f"CLIP checkpoint {clip_file} not found; {CLIP_HINT}")

        # the text encoder first: its width is the network's clip_dim
        clip = tiny_clip(text_encoder or {}, clip_precision, seed) if random_weights else load_clip(clip_file, clip_precision)
        self.text_encoder = TextEncoder(clip, text_tokens)
        self.config = dict(features=int(features), latent_dim=int(latent_dim), dim_mults=tuple(dim_mults),
                           clip_dim=self.text_encoder.dim, pad_frames=int(pad_frames))
        if path is None:  # random_weights
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed))
                self.net = CondMDINetwork(**self.config).to(weights_dtype).eval().requires_grad_(False)
        else:
            check_args_json(path.parent, {**EXPECTED_ARGS, "latent_dim": int(latent_dim), "dim_mults": list(dim_mults)})
            self.net = load_network(path, self.config, weights_dtype, hint)
        self.register_buffer("mean", mean.reshape(-1, 1, 1), persistent=False)
        self.register_buffer("std", std.reshape(-1, 1, 1), persistent=False)
        if device is not None:
            self.to(_device(device))

    # -- conditions

    @property
    def clip_dim(self) -> int:
        return self.text_encoder.dim

    def null_cond(self, batch: int) -> Cond:
        """CondMDI's unconditional path for every sample (the text embedding is then unused)."""
        return {"text": torch.zeros(batch, self.clip_dim, device=self.device),
                "uncond": torch.ones(batch, dtype=torch.bool, device=self.device)}

    def make_cond(self, labels: Any, batch: int) -> Cond:
        """Captions (a list of str or None, or one str for all) -> CLIP embeddings; None -> unconditional."""
        if labels is None:
            return self.null_cond(batch)
        captions = [labels] * batch if isinstance(labels, str) else list(labels)
        if len(captions) != batch:
            raise DataError(f"backbone {self.name}: {len(captions)} captions for a batch of {batch}")
        bad = [c for c in captions if c is not None and not isinstance(c, str)]
        if bad:
            raise ConfigError(f"backbone {self.name} takes captions (str or None), got {bad[0]!r}"[:200])
        cond = self.null_cond(batch)
        given = [i for i, c in enumerate(captions) if c is not None]
        if given:
            cond["text"][given] = self.text_encoder([captions[i] for i in given]).to(self.device)
            cond["uncond"][given] = False
        return cond

    # -- the network

    def _ab(self, t: Tensor, like: Tensor) -> Tensor:
        ab = self.alphas_cumprod[t.detach().cpu().long()].to(like.device)
        return ab.view(-1, *([1] * (like.dim() - 1)))

    def predict_x0(self, z: Tensor, t: Tensor, cond: Cond) -> Tensor:
        """The network's x0 prediction for ``z`` (B, 263, 1, L) at timesteps ``t``, in ``z``'s dtype."""
        cond = self.null_cond(z.shape[0]) if cond is None else cond
        dev = self.device
        tt = torch.as_tensor(t, device=dev).long().reshape(-1).expand(z.shape[0])
        wdt = self.net.embed_text.weight.dtype
        autocast = (torch.autocast(device_type=dev.type, dtype=self.autocast_dtype)
                    if self.autocast_dtype is not None else nullcontext())
        with autocast:
            x0 = self.net(z.to(dev, wdt), tt, cond["text"].to(dev, wdt), cond["uncond"].to(dev))
        return x0.to(z.dtype)

    def eps(self, z: Tensor, t: Tensor, cond: Cond) -> Tensor:
        """eps implied by the x0 prediction (computed in float64, returned in ``z``'s dtype)."""
        x0 = self.predict_x0(z, t, cond)
        tt = torch.as_tensor(t).reshape(-1).expand(z.shape[0])
        return x0_to_eps(x0.double(), z.double(), self._ab(tt, z)).to(z.dtype)

    # -- data space

    def encode(self, x: Tensor) -> Tensor:
        """Raw HumanML3D features -> the model's normalised space: (x - mean) / std per feature."""
        return (x - self.mean.to(x)) / self.std.to(x)

    def decode(self, z: Tensor) -> Tensor:
        return z * self.std.to(z) + self.mean.to(z)

    def mask_to_sample(self, mask: Tensor) -> Tensor:
        """Frame masks (B, 1, 1, L) (or per-feature masks (B, 263, 1, L)) broadcast over the features: unchanged."""
        if mask.dim() != 4 or mask.shape[1] not in (1, self.sample_shape[0]) or tuple(mask.shape[2:]) != (1, self.frames):
            raise DataError(f"backbone {self.name}: mask of shape {tuple(mask.shape)}; expected (B, 1, 1, {self.frames})")
        return mask

    def input_files(self) -> dict[str, list]:
        """The statistics files (hashed by content) change what ``encode``/``decode`` compute."""
        return {"content": list(self._stats_files)} if self._stats_files else {}
