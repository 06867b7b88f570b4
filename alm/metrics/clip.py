"""CLIP score and the LAION aesthetic score, through open_clip.

CLIP score (Hessel et al. 2021, torchmetrics' definition): ``100 * max(cos(E_img, E_txt), 0)`` per
sample. The default model is OpenAI's CLIP ViT-L/14 (``model: ViT-L-14, pretrained: openai``), the
network behind torchmetrics' ``CLIPScore`` default (``openai/clip-vit-large-patch14``) that BrushNet's
evaluation uses. We compute it with open_clip rather than torchmetrics' ``CLIPScore`` because the latter
breaks with transformers 5 (its ``get_image_features`` now returns an output object, not a tensor).
Preprocessing follows CLIP's on tensors: resize the shortest side to the model's input size (bicubic,
antialiased), centre crop, normalise with the model's mean / std.

LAION aesthetic score: a head on the L2-normalised CLIP ViT-L/14 image embedding. ``head: linear`` is
LAION-Aesthetics v1 (``sa_0_4_vit_l_14_linear.pth``, one ``nn.Linear(768, 1)``); ``head: mlp`` is the
"improved aesthetic predictor" (``sac+logos+ava1-l14-linearMSE.pth``). For wide images
``views: tiles`` scores every square tile and averages them (a 2048x512 image -> 4 tiles of 512 px).

The text of a sample (CLIP score): ``prompt`` is a template formatted with ``label`` (through
``class_names`` when the label is a class id) and the sample's ``meta`` keys; with ``prompt: null`` the
sample's ``meta['prompt']`` or its string label is used.

Weights: ``pretrained`` is an open_clip tag (looked up in the Hugging Face cache only, never downloaded
here), a local checkpoint file, or ``null`` (random weights: plumbing tests only).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F

from alm.errors import ConfigError, DataError
from alm.metrics.base import (
    Metric,
    MissingWeightsError,
    check_views,
    resize_shortest_center_crop,
    square_views,
    to_rgb,
    to_unit,
)

RANDOM = (None, "", "none", "random")

AESTHETIC_HEADS = {
    "linear": ("sa_0_4_vit_l_14_linear.pth",
               "https://github.com/LAION-AI/aesthetic-predictor/raw/main/sa_0_4_vit_l_14_linear.pth"),
    "mlp": ("sac+logos+ava1-l14-linearMSE.pth",
            "https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/sac+logos+ava1-l14-linearMSE.pth"),
}


class OpenCLIP:
    """Resolves an open_clip model's weights offline and loads it (shared by CLIP and aesthetic scores)."""

    def __init__(self, model: str, pretrained: Optional[str], owner: str) -> None:
        self.model_name, self.pretrained, self.owner = model, pretrained, owner
        self.model = self.tokenizer = None

    def _pretrained_cfg(self) -> dict:
        import open_clip

        cfg = open_clip.get_pretrained_cfg(self.model_name, self.pretrained)
        if not cfg:
            tags = [t for m, t in open_clip.list_pretrained() if m == self.model_name]
            raise ConfigError(f"{self.owner}: open_clip has no weights {self.model_name}/{self.pretrained!r} "
                              f"(tags: {', '.join(tags) or 'none; unknown model'}; or give a local file path)")
        return cfg

    def is_tag(self) -> bool:
        p = str(self.pretrained)
        return self.pretrained not in RANDOM and not Path(p).suffix and "/" not in p

    def weights_file(self) -> Optional[str]:
        """The local checkpoint to load (None = random weights); MissingWeightsError if not on disk."""
        if self.pretrained in RANDOM:
            return None
        if not self.is_tag():
            path = Path(str(self.pretrained)).expanduser()
            if not path.is_file():
                raise MissingWeightsError(f"{self.owner}: the CLIP checkpoint {path} does not exist")
            return str(path)
        cfg = self._pretrained_cfg()
        hub = cfg.get("hf_hub", "")
        if hub:
            from huggingface_hub import try_to_load_from_cache

            repo_id, filename = os.path.split(hub)  # open_clip's convention: 'org/repo/' or 'org/repo/file'
            names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
            for name in names:
                found = try_to_load_from_cache(repo_id, name)
                if isinstance(found, str):
                    return found
            raise MissingWeightsError(
                f"{self.owner} needs the open_clip weights {self.model_name}/{self.pretrained} (Hugging Face repo "
                f"{repo_id}, file {' or '.join(names)}) in the Hugging Face cache; on a machine with internet run "
                f"`python -c \"import open_clip; open_clip.create_model('{self.model_name}', pretrained='{self.pretrained}')\"` "
                f"and copy ~/.cache/huggingface, or set the metric's pretrained=/path/to/checkpoint"
            )
        raise MissingWeightsError(f"{self.owner}: open_clip weights {self.model_name}/{self.pretrained} are only "
                                  f"available by URL ({cfg.get('url')}); download the file and set pretrained=/path/to/it")

    def load(self, device: torch.device):
        if self.model is not None:
            return self.model
        import open_clip

        path = self.weights_file()
        kwargs = {}
        if path is None:
            warnings.warn(f"{self.owner}: open_clip {self.model_name} with RANDOM weights (plumbing tests only)")
        elif self.is_tag():
            cfg = self._pretrained_cfg()
            kwargs = {"force_quick_gelu": bool(cfg.get("quick_gelu", False))}
            if "mean" in cfg:
                kwargs["force_preprocess_cfg"] = {k: cfg[k] for k in ("mean", "std", "interpolation") if k in cfg}
        model = open_clip.create_model(self.model_name, pretrained=path, device=device, **kwargs)
        self.model = model.eval()
        self.tokenizer = open_clip.get_tokenizer(self.model_name)
        pre = getattr(model.visual, "preprocess_cfg", {}) or {}
        size = pre.get("size", getattr(model.visual, "image_size", 224))
        self.size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.mean = torch.tensor(pre.get("mean", (0.48145466, 0.4578275, 0.40821073)), device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(pre.get("std", (0.26862954, 0.26130258, 0.27577711)), device=device).view(1, 3, 1, 1)
        interp = pre.get("interpolation", "bicubic")
        self.interpolation = interp if interp in ("bicubic", "bilinear") else "bicubic"
        return self.model

    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """Data-space images (N, C, H, W) -> L2-normalised image embeddings (N, D)."""
        x = to_rgb(to_unit(images))
        x = resize_shortest_center_crop(x, self.size, self.interpolation).clamp(0, 1)
        x = (x - self.mean) / self.std
        return F.normalize(self.model.encode_image(x).float(), dim=-1)

    def text_embeddings(self, texts: list[str], device: torch.device) -> torch.Tensor:
        tokens = self.tokenizer(texts).to(device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)


class CLIPScore(Metric):
    higher_is_better = True
    regions = ("full",)

    def __init__(self, model: str = "ViT-L-14", pretrained: Optional[str] = "openai", prompt: Optional[str] = None,
                 class_names: Optional[Sequence[str]] = None, views: str = "full", region: str = "full") -> None:
        super().__init__(region)
        self.title = f"CLIP score ({model}/{pretrained})"
        self.clip = OpenCLIP(model, pretrained, self.title)
        self.prompt, self.class_names, self.views = prompt, list(class_names) if class_names else None, views
        check_views(views)  # validates ``views`` now
        self._text_cache: dict[str, torch.Tensor] = {}

    def check_available(self) -> None:
        self.clip.weights_file()

    def setup(self, device) -> None:
        super().setup(device)
        self.clip.load(self.device)

    def text_of(self, label: Any, meta: dict, index: int) -> str:
        name = label
        if self.class_names is not None and isinstance(label, int) and not isinstance(label, bool):
            if not 0 <= label < len(self.class_names):
                raise DataError(f"{self.title}: label {label} has no entry in class_names ({len(self.class_names)} names)")
            name = self.class_names[label]
        if self.prompt is not None:
            try:
                return self.prompt.format(label=name, **meta)
            except (KeyError, IndexError) as err:
                raise ConfigError(f"{self.title}: prompt template {self.prompt!r} needs {err} (not in label / meta)") from None
        if isinstance(meta.get("prompt"), str):
            return meta["prompt"]
        if isinstance(name, str):
            return name
        raise DataError(f"{self.title}: sample {index} has no text (label {label!r}, no meta['prompt']); "
                        f"set the metric's prompt (e.g. 'a photo of a {{label}}') and class_names")

    def values(self, output, source, mask, labels, metas) -> torch.Tensor:
        self.clip.load(self.device)
        texts = [self.text_of(l, m, i) for i, (l, m) in enumerate(zip(labels, metas))]
        missing = sorted({t for t in texts if t not in self._text_cache})
        if missing:
            for t, e in zip(missing, self.clip.text_embeddings(missing, self.device)):
                self._text_cache[t] = e
        txt = torch.stack([self._text_cache[t] for t in texts])
        views, v = square_views(output.to(self.device), self.views)
        img = self.clip.image_embeddings(views).view(output.shape[0], v, -1)
        score = 100 * (img * txt[:, None, :]).sum(-1)
        return score.clamp_min(0).mean(1)


class CLIPFrameConsistency(Metric):
    """Mean cosine similarity (x100) of the CLIP image embeddings of consecutive frames of a clip
    (B, C, F, H, W): how much a video stays the same scene from frame to frame (higher is smoother)."""

    higher_is_better = True
    regions = ("full",)

    def __init__(self, model: str = "ViT-L-14", pretrained: Optional[str] = "openai", region: str = "full") -> None:
        super().__init__(region)
        self.title = f"CLIP frame consistency ({model}/{pretrained})"
        self.clip = OpenCLIP(model, pretrained, self.title)

    def check_available(self) -> None:
        self.clip.weights_file()

    def setup(self, device) -> None:
        super().setup(device)
        self.clip.load(self.device)

    def values(self, output, source, mask, labels, metas) -> torch.Tensor:
        self.clip.load(self.device)
        frames, f = square_views(output.to(self.device), "frames")
        if f < 2:
            raise DataError(f"{self.title}: a clip of {f} frame has no consecutive pair")
        emb = self.clip.image_embeddings(frames).view(output.shape[0], f, -1)
        return 100 * (emb[:, 1:] * emb[:, :-1]).sum(-1).mean(1)


class AestheticScore(Metric):
    """LAION aesthetic predictor: a linear (v1) or MLP head on the normalised CLIP ViT-L/14 image embedding."""

    higher_is_better = True
    regions = ("full",)

    def __init__(self, model: str = "ViT-L-14", pretrained: Optional[str] = "openai", head: str = "linear",
                 head_path: Optional[str] = None, views: str = "tiles", region: str = "full") -> None:
        super().__init__(region)
        if head not in AESTHETIC_HEADS:
            raise ConfigError(f"AestheticScore: head={head!r}; choose one of {', '.join(AESTHETIC_HEADS)}")
        self.title = f"aesthetic score ({head} head on {model}/{pretrained})"
        self.clip = OpenCLIP(model, pretrained, self.title)
        self.head_kind, self.views = head, views
        self.head_path = Path(head_path).expanduser() if head_path else None
        check_views(views)  # validates ``views`` now
        self.head = None

    def check_available(self) -> None:
        self.clip.weights_file()
        name, url = AESTHETIC_HEADS[self.head_kind]
        if self.head_path is None or not self.head_path.is_file():
            where = self.head_path or f"<cache>/aesthetic/{name}"
            raise MissingWeightsError(f"{self.title} needs the LAION head {name} at {where}; download {url} there "
                                      "(or set the metric's head_path)")

    @staticmethod
    def make_head(kind: str, dim: int) -> torch.nn.Module:
        if kind == "linear":
            return torch.nn.Linear(dim, 1)

        class MLP(torch.nn.Module):  # the improved aesthetic predictor's layout (its state-dict keys: layers.*)
            def __init__(self) -> None:
                super().__init__()
                self.layers = torch.nn.Sequential(
                    torch.nn.Linear(dim, 1024), torch.nn.Dropout(0.2), torch.nn.Linear(1024, 128), torch.nn.Dropout(0.2),
                    torch.nn.Linear(128, 64), torch.nn.Dropout(0.1), torch.nn.Linear(64, 16), torch.nn.Linear(16, 1),
                )

            def forward(self, x):
                return self.layers(x)

        return MLP()

    def setup(self, device) -> None:
        super().setup(device)
        model = self.clip.load(self.device)
        if self.head is None:
            state = torch.load(self.head_path, map_location="cpu", weights_only=True)
            dim = int(getattr(model.visual, "output_dim", 0) or model.text_projection.shape[-1])
            head = self.make_head(self.head_kind, dim)
            try:
                head.load_state_dict(state)
            except RuntimeError as err:
                raise ConfigError(f"{self.title}: {self.head_path} does not fit a {self.head_kind} head on "
                                  f"{dim}-d embeddings ({str(err).splitlines()[0]})") from None
            self.head = head.to(self.device).eval()

    def values(self, output, source, mask, labels, metas) -> torch.Tensor:
        if self.head is None:
            self.setup(self.device)
        views, v = square_views(output.to(self.device), self.views)
        emb = self.clip.image_embeddings(views)
        return self.head(emb).view(output.shape[0], v).mean(1)
