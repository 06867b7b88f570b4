"""A pixel-space backbone over a diffusers ``UNet2DModel`` or ``UNet2DConditionModel``.

Where the weights come from (checked in this order; nothing ever touches the network):

- ``path``: a local folder holding either a UNet (``config.json`` + weights, with the scheduler in
  ``scheduler_config.json`` beside it or in ``../scheduler/``) or a pipeline (``unet/`` and
  ``scheduler/`` subfolders, as ``save_pretrained`` of a pipeline writes them);
- ``repo_id`` (+ ``revision``): the snapshot of that repository in the local Hugging Face cache
  (``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``), read directly from
  the cache folder, so a missing checkpoint is an immediate one-line ``CheckpointError``;
- ``DiffusersUNet.from_model(model, scheduler_config)``: an already-built model (tests, and the
  project's own trained models).

Conditions (``cond`` of ``eps``):

| model                                  | cond                         | null condition (CFG)            |
|----------------------------------------|------------------------------|---------------------------------|
| ``UNet2DModel``, no class embedding    | ignored (``None``)           | ``None``                        |
| ``UNet2DModel``, ``num_class_embeds``  | long tensor (B,) of labels   | label ``num_classes`` (see below)|
| ``UNet2DConditionModel``               | encoder states (B, L, D)     | ``null_embedding`` or zeros     |

Null class convention: a class-conditional model trained with label dropout has ``num_classes + 1``
embeddings and uses the LAST one, label ``num_classes``, as "no class" (DiT's convention, and the
one the project's own class-conditional models use). ``num_classes`` defaults to
``num_class_embeds - 1``; pass ``num_classes=num_class_embeds`` for a model without a null class
(classifier-free guidance is then refused, and every sample needs a label).

For ``UNet2DConditionModel`` the cond may also be a dict with ``encoder_hidden_states`` and extra
entries that go to ``added_cond_kwargs`` (SDXL's ``text_embeds``/``time_ids``).

Prediction type: ``eps`` always returns a noise prediction. Models trained with
``prediction_type="v_prediction"`` or ``"sample"`` are converted with the model's own schedule
(ab = alphas_cumprod[t]):  v -> eps = sqrt(ab) v + sqrt(1-ab) z;  x0 -> eps = (z - sqrt(ab) x0) /
sqrt(1-ab). The exposed ``scheduler_config`` therefore says ``prediction_type: epsilon``; the model's
own value is kept in ``model_prediction_type``. Models that also predict a variance (2C output
channels) give the first C channels. Note that our samplers never clip x0 (``clip_sample`` in the
checkpoint's scheduler config is not applied).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional, Union

import torch

from alm.backbones.base import Backbone, Cond
from alm.errors import CheckpointError, ConfigError

Tensor = torch.Tensor

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float64": torch.float64,  # for exact comparisons in tests
}
SUPPORTED_CLASSES = ("UNet2DModel", "UNet2DConditionModel")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


# --- locating a checkpoint -------------------------------------------------------------------------

def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time (not at import time)."""
    env = os.environ
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HUGGINGFACE_HUB_CACHE"):
        return Path(env["HUGGINGFACE_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    xdg = env.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def _fetch_hint(repo_id: str, revision: Optional[str]) -> str:
    from alm.backbones.checkpoints import checkpoint_for_repo, fetch_command

    known = checkpoint_for_repo(repo_id)
    rev = f" --revision {revision}" if revision and revision != "main" and (known is None or known.revision != revision) else ""
    return (f"fetch it on a machine with internet: {fetch_command(repo_id)}{rev}, "
            f"copy the cache over, or set backbone.path to a local folder")


def resolve_cached_repo(repo_id: str, revision: Optional[str] = None, cache_dir: Optional[Union[str, Path]] = None) -> Path:
    """The snapshot folder of ``repo_id`` at ``revision`` in the local HF cache, or a CheckpointError.

    Reads the cache layout directly (``models--org--name/{refs,snapshots}``): no network, no lock files.
    """
    cache = Path(cache_dir).expanduser() if cache_dir else hf_cache_dir()
    revision = revision or "main"
    where = f"the local Hugging Face cache ({cache})"
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    if not repo_dir.is_dir():
        raise CheckpointError(f"checkpoint {repo_id} not found in {where}; {_fetch_hint(repo_id, revision)}")
    if re.fullmatch(r"[0-9a-f]{40}", revision):
        commit = revision
    else:
        ref = repo_dir / "refs" / revision
        if not ref.is_file():
            raise CheckpointError(f"checkpoint {repo_id} has no revision {revision!r} in {where}; {_fetch_hint(repo_id, revision)}")
        commit = ref.read_text().strip()
    snapshot = repo_dir / "snapshots" / commit
    if not snapshot.is_dir():
        raise CheckpointError(f"checkpoint {repo_id} revision {revision} (commit {commit[:12]}) has no snapshot in {where}; "
                              f"{_fetch_hint(repo_id, revision)}")
    return snapshot


def _read_json(path: Path, what: str) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read {what} {path}: {_one_line(err)}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{what} {path} is not a JSON object")
    return data


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def find_checkpoint_folder(path: Optional[str], repo_id: Optional[str], revision: Optional[str],
                           cache_dir: Optional[str], missing_hint: str) -> Path:
    """The local folder of a checkpoint: ``path`` if given, else the HF-cache snapshot of ``repo_id``."""
    if path:
        folder = Path(str(path)).expanduser()
        if not folder.exists():
            raise CheckpointError(f"backbone.path {folder} does not exist; {missing_hint}")
        if not folder.is_dir():
            raise CheckpointError(f"backbone.path {folder} is a file, not a diffusers model folder")
        return folder
    if repo_id:
        return resolve_cached_repo(str(repo_id), str(revision) if revision is not None else None, cache_dir)
    raise ConfigError("backbone needs backbone.path (a local folder) or backbone.repo_id (in the local HF cache)")


def locate_unet(folder: Path) -> tuple[Path, Optional[str], Optional[Path]]:
    """(model folder, subfolder or None, scheduler config file or None) of a UNet or pipeline folder."""
    if (folder / "unet" / "config.json").is_file():  # pipeline layout
        sched = folder / "scheduler" / "scheduler_config.json"
        return folder, "unet", sched if sched.is_file() else None
    if (folder / "config.json").is_file():  # a bare UNet folder (possibly <pipeline>/unet)
        for sched in (folder / "scheduler_config.json", folder.parent / "scheduler" / "scheduler_config.json"):
            if sched.is_file():
                return folder, None, sched
        return folder, None, None
    raise CheckpointError(
        f"{folder} is not a diffusers model: expected config.json + weights (a UNet folder) or unet/ and "
        f"scheduler/ subfolders (a pipeline folder)"
    )


# --- the backbone -----------------------------------------------------------------------------------


def set_prediction(module: Any, sched_cfg: Mapping[str, Any], prediction_type: Optional[str], name: str) -> None:
    """What the model predicts (``model_prediction_type``: eps, v or x0; ``prediction_type`` overrides the
    scheduler config's), the scheduler config the methods see (always eps: ``eps()`` converts), and the
    model's alpha table for that conversion."""
    from diffusers import DDIMScheduler

    module.model_prediction_type = prediction_type or sched_cfg.get("prediction_type", "epsilon")
    if module.model_prediction_type not in PREDICTION_TYPES:
        raise ConfigError(f"prediction_type={module.model_prediction_type!r}: expected one of {', '.join(PREDICTION_TYPES)}")
    module.scheduler_config = {**sched_cfg, "prediction_type": "epsilon"}  # eps() always returns eps
    table = {k: v for k, v in sched_cfg.items() if k not in ("_class_name", "_diffusers_version")}
    try:
        module._alphas_cumprod = DDIMScheduler.from_config(table).alphas_cumprod.double()
    except Exception as err:
        raise ConfigError(f"invalid scheduler config for backbone {name}: {_one_line(err)}") from None


def to_eps(module: Any, out: Tensor, z: Tensor, t: Tensor) -> Tensor:
    """The network's output as eps, from its ``model_prediction_type`` (eps, v or x0) and alpha table."""
    if module.model_prediction_type == "epsilon":
        return out
    ab = module._alphas_cumprod.to(z.device)[t.to(z.device)].to(z.dtype).view(-1, *([1] * (z.dim() - 1)))
    if module.model_prediction_type == "v_prediction":
        return ab.sqrt() * out + (1 - ab).sqrt() * z
    return (z - ab.sqrt() * out) / (1 - ab).sqrt()  # "sample": out is x0

class DiffusersUNet(Backbone):
    """Pixel-space ``eps(z, t, cond)`` over a diffusers UNet (see the module docstring)."""

    #: refuse pipeline folders with a VAE (latent models need a latent backbone)
    pixel_space: ClassVar[bool] = True

    def __init__(
        self,
        path: Optional[str] = None,
        repo_id: Optional[str] = None,
        revision: Optional[str] = None,
        dtype: Union[str, torch.dtype] = "float32",
        device: Optional[str] = None,
        scheduler: Optional[Mapping[str, Any]] = None,
        num_classes: Optional[int] = None,
        null_embedding: Union[None, str, Tensor] = None,
        cond_length: int = 77,
        prediction_type: Optional[str] = None,
        variant: Optional[str] = None,
        cache_dir: Optional[str] = None,
        name: str = "unet_pixel",
        missing_hint: Optional[str] = None,
        resolution: Optional[int] = None,
    ):
        """Load a UNet from ``path`` (a local folder) or ``repo_id`` (the local HF cache only).

        ``scheduler``: values that override (or, if the checkpoint has none, make up) its scheduler
        config. ``num_classes``: see the null class convention above. ``null_embedding``: the
        null condition of a cross-attention model, a tensor (L, D) or a ``torch.save``d file; zeros
        of shape (``cond_length``, cross_attention_dim) if not given. ``prediction_type``: overrides
        the scheduler config's. ``variant``: weights variant (e.g. "fp16"). ``missing_hint``: how to
        make the checkpoint, added to the one-line error when ``path`` does not exist.
        ``resolution``: the image side to work at (null = the model's ``sample_size``); a
        convolutional UNet runs at any multiple of its total downsampling factor. ``dtype``:
        ``auto`` = float16 when ``device`` is (or, unset / ``auto``, would be) CUDA, else float32.
        """
        super().__init__()
        torch_dtype = resolve_dtype(dtype, device)
        folder, subfolder, sched_file = self._find(path, repo_id, revision, cache_dir, missing_hint)
        source = str(folder / subfolder) if subfolder else str(folder)
        config = _read_json(Path(source) / "config.json", "model config")
        cls_name = config.get("_class_name")
        if cls_name not in SUPPORTED_CLASSES:
            raise CheckpointError(f"{source} holds a {cls_name or 'model without _class_name'}, not one of {', '.join(SUPPORTED_CLASSES)}")
        sched_cfg = _read_json(sched_file, "scheduler config") if sched_file is not None else {}
        if scheduler:
            sched_cfg.update(_plain(scheduler))
        if not sched_cfg:
            raise ConfigError(f"{source} has no scheduler config (scheduler_config.json or ../scheduler/); "
                              f"set backbone.scheduler={{beta_schedule: ..., num_train_timesteps: ...}}")
        import diffusers

        model_cls = getattr(diffusers, cls_name)
        # low_cpu_mem_usage=False: the default path wants `accelerate` and warns at every load without it
        kwargs: dict[str, Any] = {"torch_dtype": torch_dtype, "local_files_only": True, "low_cpu_mem_usage": False}
        if subfolder:
            kwargs["subfolder"] = subfolder
        if variant:
            kwargs["variant"] = variant
        if not any(Path(source).glob("*.safetensors")):  # older repositories (google/ddpm-*) ship .bin only
            kwargs["use_safetensors"] = False
        try:
            model = model_cls.from_pretrained(str(folder), **kwargs)
        except Exception as err:  # diffusers raises OSError/ValueError/EnvironmentError with long texts
            raise CheckpointError(f"cannot load the {cls_name} weights from {source}: {_one_line(err)}") from None
        self._setup(model, sched_cfg, name=name, num_classes=num_classes, null_embedding=null_embedding,
                    cond_length=cond_length, prediction_type=prediction_type, dtype=torch_dtype,
                    device=device, resolution=resolution)

    @classmethod
    def from_model(
        cls,
        model: torch.nn.Module,
        scheduler_config: Mapping[str, Any],
        *,
        num_classes: Optional[int] = None,
        null_embedding: Union[None, str, Tensor] = None,
        cond_length: int = 77,
        prediction_type: Optional[str] = None,
        dtype: Union[None, str, torch.dtype] = None,
        device: Optional[str] = None,
        name: str = "unet_pixel",
        resolution: Optional[int] = None,
    ) -> "DiffusersUNet":
        """Wrap an already-built ``UNet2DModel``/``UNet2DConditionModel`` with a scheduler config."""
        if type(model).__name__ not in SUPPORTED_CLASSES:
            raise ConfigError(f"DiffusersUNet wraps {', '.join(SUPPORTED_CLASSES)}, not {type(model).__name__}")
        self = cls.__new__(cls)
        Backbone.__init__(self)
        self._setup(model, _plain(scheduler_config), name=name, num_classes=num_classes,
                    null_embedding=null_embedding, cond_length=cond_length, prediction_type=prediction_type,
                    dtype=resolve_dtype(dtype, device) if dtype is not None else None, device=device,
                    resolution=resolution)
        return self

    # -- construction helpers

    @classmethod
    def _find(cls, path, repo_id, revision, cache_dir, missing_hint=None) -> tuple[Path, Optional[str], Optional[Path]]:
        folder = find_checkpoint_folder(path, repo_id, revision, cache_dir, missing_hint or (
            "set backbone.path to a local diffusers model folder (config.json + weights, or a pipeline with unet/ and scheduler/)"))
        found = locate_unet(folder)
        pipeline = folder if found[1] == "unet" else folder.parent if folder.name == "unet" else None
        if cls.pixel_space and pipeline is not None and (pipeline / "vae").is_dir():
            raise ConfigError(f"{pipeline} is a latent diffusion pipeline (it has vae/); this backbone is pixel-space")
        return found

    def _setup(self, model, sched_cfg: dict, *, name, num_classes, null_embedding, cond_length,
               prediction_type, dtype, device, resolution=None) -> None:
        self.name = name
        cfg = model.config
        self.kind = type(model).__name__
        set_prediction(self, sched_cfg, prediction_type, name)

        size = cfg.sample_size
        if size is None:
            raise ConfigError(f"backbone {name}: the model config has no sample_size (the resolution it was trained at)")
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        if resolution is not None:
            factor = 2 ** (len(cfg.block_out_channels) - 1)
            if int(resolution) < 1 or int(resolution) % factor:
                raise ConfigError(f"backbone {name}: resolution={resolution} must be a positive multiple of {factor} "
                                  f"(the UNet's downsampling factor)")
            h = w = int(resolution)
        self.sample_shape = (int(cfg.in_channels), int(h), int(w))
        self.data_shape = self.sample_shape

        self.num_classes: Optional[int] = None
        self.null_class: Optional[int] = None
        if self.kind == "UNet2DConditionModel":
            self.conditional = True
            dim = cfg.cross_attention_dim
            self.cross_attention_dim = int(dim if isinstance(dim, int) else dim[0])
            null = _load_null(null_embedding)
            if null is None:
                null = torch.zeros(int(cond_length), self.cross_attention_dim)
            if null.dim() == 3 and null.shape[0] == 1:
                null = null[0]
            if null.dim() != 2 or null.shape[-1] != self.cross_attention_dim:
                raise ConfigError(f"null_embedding has shape {tuple(null.shape)}; expected (L, {self.cross_attention_dim})")
            self.register_buffer("null_embedding", null.float(), persistent=False)
        elif cfg.num_class_embeds is not None or cfg.class_embed_type is not None:
            if cfg.class_embed_type is not None:
                raise ConfigError(f"class_embed_type={cfg.class_embed_type!r} is not supported (only num_class_embeds label tables)")
            n_emb = int(cfg.num_class_embeds)
            self.num_classes = int(num_classes) if num_classes is not None else n_emb - 1
            if self.num_classes == n_emb - 1:
                self.null_class = self.num_classes
            elif self.num_classes != n_emb:
                raise ConfigError(f"num_classes={self.num_classes} does not fit a model with {n_emb} class embeddings "
                                  f"(expected {n_emb - 1} with a null class or {n_emb} without)")
            self.conditional = True
        else:
            self.conditional = False

        model.eval().requires_grad_(False)
        if dtype is not None and any(q.dtype != dtype for q in model.parameters()):
            model.to(dtype=dtype)  # only when needed: diffusers warns at every dtype cast
        self.model = model
        if device is not None:
            self.to(_device(device))

    # -- the Backbone interface

    @property
    def model_dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def eps(self, z: Tensor, t: Tensor, cond: Cond) -> Tensor:
        """Noise prediction in ``z``'s dtype: input cast to the model dtype, output cast back."""
        dev, mdt = self.device, self.model_dtype
        zin = z.to(device=dev, dtype=mdt)
        tt = torch.as_tensor(t, device=dev).long().reshape(-1).expand(z.shape[0])
        if self.kind == "UNet2DConditionModel":
            if isinstance(cond, Mapping):
                states = cond["encoder_hidden_states"]
                added = {k: _to(v, dev, mdt) for k, v in cond.items() if k != "encoder_hidden_states"}
            else:
                states, added = cond, None
            if states is None:
                states = self.null_cond(z.shape[0])
            out = self.model(zin, tt, encoder_hidden_states=_to(states, dev, mdt),
                             added_cond_kwargs=added or None).sample
        elif self.num_classes is not None:
            labels = self.null_cond(z.shape[0]) if cond is None else cond
            out = self.model(zin, tt, class_labels=torch.as_tensor(labels, device=dev).long()).sample
        else:
            out = self.model(zin, tt).sample
        if out.shape[1] == 2 * z.shape[1]:  # learned variance: [eps, variance]
            out = out[:, : z.shape[1]]
        return to_eps(self, out.to(z.dtype), z, tt)

    def null_cond(self, batch: int) -> Cond:
        if self.kind == "UNet2DConditionModel":
            return self.null_embedding.unsqueeze(0).expand(batch, -1, -1)
        if self.num_classes is not None:
            if self.null_class is None:
                raise ConfigError(f"backbone {self.name} has no null class ({self.num_classes} classes, no extra "
                                  f"embedding): it needs a label for every sample and guidance 1")
            return torch.full((batch,), self.null_class, dtype=torch.long, device=self.device)
        return None

    def make_cond(self, labels: Any, batch: int) -> Cond:
        """Labels of a batch -> condition: class ids for class models, (B, L, D) tensors for cross-attention."""
        if not self.conditional:
            return None
        if labels is None or (isinstance(labels, (list, tuple)) and all(v is None for v in labels)):
            return self.null_cond(batch)
        if self.num_classes is not None:
            if isinstance(labels, (int, str)) or (isinstance(labels, Tensor) and labels.dim() == 0):
                labels = [labels] * batch
            try:
                ids = torch.as_tensor([int(v) for v in labels], dtype=torch.long)
            except (TypeError, ValueError):
                raise ConfigError(f"backbone {self.name} is class-conditional: labels must be class ids, got {labels!r}"[:300]) from None
            bad = ids[(ids < 0) | (ids >= self.num_classes)]
            if bad.numel():
                raise ConfigError(f"label {int(bad[0])} is outside the model's {self.num_classes} classes")
            if ids.numel() != batch:
                raise ConfigError(f"{ids.numel()} labels for a batch of {batch}")
            return ids.to(self.device)
        # cross-attention model: precomputed encoder states
        if isinstance(labels, (list, tuple)):
            if any(isinstance(v, str) for v in labels):
                raise ConfigError(f"backbone {self.name} takes encoder states, not prompts; text needs a text encoder (a latent/SD backbone)")
            labels = torch.stack([torch.as_tensor(v) for v in labels])
        if isinstance(labels, str):
            raise ConfigError(f"backbone {self.name} takes encoder states, not prompts; text needs a text encoder (a latent/SD backbone)")
        states = torch.as_tensor(labels)
        if states.dim() == 2:
            states = states.unsqueeze(0).expand(batch, -1, -1)
        length = self.null_embedding.shape[0]
        if states.dim() != 3 or states.shape[0] != batch or states.shape[1:] != (length, self.cross_attention_dim):
            raise ConfigError(f"encoder states of shape {tuple(states.shape)}; expected ({batch}, {length}, "
                              f"{self.cross_attention_dim}) — the length of the null condition (cond_length / null_embedding)")
        return states.to(self.device)


def resolve_dtype(dtype: Union[str, torch.dtype], device: Union[None, str, torch.device] = None) -> torch.dtype:
    """A torch dtype from config; ``auto`` = float16 on CUDA, float32 elsewhere (``device`` None/auto:
    CUDA if available)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).replace("torch.", "")
    if key == "auto":
        where = _device(str(device)) if device is not None else _device("auto")
        return torch.float16 if where.type == "cuda" else torch.float32
    if key not in DTYPES:
        raise ConfigError(f"backbone.dtype={dtype!r}: expected auto, float32, float16, bfloat16 (or float64)")
    return DTYPES[key]


def _device(device: Union[str, torch.device]) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _plain(cfg: Mapping[str, Any]) -> dict:
    """A plain dict from a mapping or an OmegaConf node (Hydra passes DictConfig)."""
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:
        pass
    return dict(cfg)


def _to(v: Any, device: torch.device, dtype: torch.dtype) -> Any:
    if isinstance(v, Tensor):
        return v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype)
    return v


def _load_null(null: Union[None, str, Tensor]) -> Optional[Tensor]:
    if null is None or isinstance(null, Tensor):
        return null
    path = Path(str(null)).expanduser()
    if not path.is_file():
        raise CheckpointError(f"null_embedding file {path} not found (a torch.save'd tensor of shape (L, D))")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"cannot read null_embedding {path}: {_one_line(err)}") from None
