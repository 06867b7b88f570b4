"""FID and KID (torchmetrics) of a run's outputs against a reference set, with any feature network.

``feature`` selects the features:

- an int (64, 192, 768, 2048): Inception-v3 (the TF-FID port of torch-fidelity, via torchmetrics).
  Needs the ``torch-fidelity`` package and its weights file ``weights-inception-2015-12-05-6726825d.pth``
  in torch's hub cache (or ``weights_path``); ``check_available`` looks for both and names what is missing.
  Images are given as [0, 1] RGB (grey repeated); torch-fidelity resizes them to 299 px (bilinear,
  antialiased: torchmetrics' default).
- ``{_target_: pkg.Module, ...}``: any ``torch.nn.Module`` built by Hydra; it receives data-space images in
  [-1, 1] (after the optional ``resize``) and returns (N, F) features (see ``alm.metrics.features``).
  This is the hook for the project's own feature networks (an MNIST classifier's features, ...).

``reference`` is the real set:

- ``sources`` (default): the run's own source images;
- ``{dataset: <a dataset node with _target_>, split: <label>, num: N}``: N items of a data set. Its
  statistics (FID: feature sums; KID: the features) are cached outside the package under
  ``<cache_dir>/reference/<feature>/<dataset name>-<split>-<H>x<W>-n<N>-<fid|kid>-<config hash>.pt``, per data
  set, split and resolution, and reused by every later evaluation.

``views: tiles`` splits wide images into square tiles, each one an element of the set (SyncTweedies-style
evaluation of panoramas on square crops); ``resize`` sets the side the images are resized to before the
feature network (``null``: as they are). KID is reported times ``scale`` (the paper's Table 3 uses 1e3),
with its standard deviation over subsets as the extra column ``<name>_std``.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F

from alm import io
from alm.errors import ConfigError, DataError
from alm.metrics.base import Metric, MissingWeightsError, check_views, square_views, to_rgb, to_unit, torch_hub_checkpoint

INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
INCEPTION_FEATURES = (64, 192, 768, 2048)
DEFAULT_CACHE = "~/.cache/alm"


def _plain(node: Any) -> Any:
    from omegaconf import DictConfig, ListConfig, OmegaConf

    return OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else node


def _hash(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


class _Features(torch.nn.Module):
    """Wraps a custom feature network for torchmetrics: data-space input, (N, F) float output."""

    def __init__(self, net: torch.nn.Module, num_features: int) -> None:
        super().__init__()
        self.net, self.num_features = net, num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1).float()


class _SetMetric(Metric):
    per_sample = False
    regions = ("full",)
    kind = "fid"

    def __init__(self, feature: Union[int, dict] = 2048, reference: Union[str, dict] = "sources",
                 weights_path: Optional[str] = None, resize: Optional[int] = None, views: str = "full",
                 cache_dir: Optional[str] = None, region: str = "full") -> None:
        super().__init__(region)
        feature = _plain(feature)
        self.reference = _plain(reference)
        self.weights_path = Path(weights_path).expanduser() if weights_path else None
        self.resize, self.views = resize, views
        self.cache_dir = Path(cache_dir or DEFAULT_CACHE).expanduser()
        check_views(views)  # validates ``views`` now
        if isinstance(feature, int) and not isinstance(feature, bool):
            if feature not in INCEPTION_FEATURES:
                raise ConfigError(f"{type(self).__name__}: feature={feature}: Inception features are one of "
                                  f"{INCEPTION_FEATURES}, or give a network as {{_target_: ...}}")
            self.inception_dim, self.net = feature, None
            self.feature_id = f"inception{feature}"
        elif isinstance(feature, dict) and "_target_" in feature:
            from alm.config import build

            self.inception_dim = None
            self.net = build(feature)
            if not isinstance(self.net, torch.nn.Module):
                raise ConfigError(f"{type(self).__name__}: feature {feature['_target_']} is not a torch.nn.Module")
            self.net.eval().requires_grad_(False)
            self.feature_id = f"{feature.get('name') or feature['_target_'].rsplit('.', 1)[-1]}-{_hash(feature)}"
        else:
            raise ConfigError(f"{type(self).__name__}: feature must be an Inception dimension "
                              f"{INCEPTION_FEATURES} or a network node {{_target_: ...}}, got {feature!r}")
        if self.reference != "sources" and not (isinstance(self.reference, dict) and
                                                ("dataset" in self.reference) != ("run" in self.reference)):
            raise ConfigError(f"{type(self).__name__}: reference must be 'sources', {{dataset: ..., split: ..., num: ...}} "
                              "or {run: <run folder>, num: ...}")
        self.title = f"{type(self).__name__} ({self.feature_id})"
        self.tm = None

    # -- availability --------------------------------------------------------------------------------
    def check_available(self) -> None:
        if self.inception_dim is None:
            return
        from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE

        weights = self.weights_path or torch_hub_checkpoint(INCEPTION_URL)
        if not _TORCH_FIDELITY_AVAILABLE:
            raise MissingWeightsError(f"{self.title} needs the torch-fidelity package (pip install torch-fidelity) and "
                                      f"its Inception weights {weights.name} (download {INCEPTION_URL})")
        if not weights.is_file():
            raise MissingWeightsError(f"{self.title} needs the Inception weights {weights} (missing); download "
                                      f"{INCEPTION_URL} there (or set the metric's weights_path)")

    # -- features ------------------------------------------------------------------------------------
    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Data-space images -> what the feature network takes (views, resize, range)."""
        if x.dim() == 5 and not (self.views == "frames" or self.views.startswith("clips")):
            raise ConfigError(f"{self.title}: the outputs are clips (B, C, F, H, W); set views=frames (per-frame "
                              f"features) or views=clips<N> (a clip encoder's N-frame pieces), e.g. metrics=video_digits")
        x, _ = square_views(x.float().clamp(-1, 1), self.views)
        if self.resize is not None and tuple(x.shape[-2:]) != (self.resize, self.resize):
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False, antialias=True)
        if self.inception_dim is not None:
            return to_rgb(to_unit(x))  # [0, 1]; torchmetrics (normalize=True) turns it into uint8
        return x

    def _make(self, probe: torch.Tensor):
        raise NotImplementedError

    def _ensure(self, probe: torch.Tensor) -> None:
        if self.tm is not None:
            return
        if self.net is not None:
            self.net.to(self.device)
            with torch.no_grad():
                dim = self.net(probe[:1].to(self.device)).flatten(1).shape[1]
            feature: Any = _Features(self.net, dim)
        else:
            feature = self.inception_dim
            if self.weights_path is not None:
                feature = ("weights", self.inception_dim)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # KID's "will save all extracted features" notice
            self.tm = self._make(feature).to(self.device)
        if isinstance(self.reference, dict):
            self._load_reference()

    def setup(self, device) -> None:
        super().setup(device)
        if self.net is not None:
            self.net.to(self.device)

    # -- reference statistics -------------------------------------------------------------------------
    def reference_path(self, shape: tuple[int, ...], num: int) -> Path:
        ref = self.reference
        if "run" in ref:
            return self._run_reference_path(shape, self._run_reference_files())
        ds = ref["dataset"]
        name = ds.get("name") or str(ds.get("_target_", "dataset")).rsplit(".", 1)[-1]
        key = _hash({k: v for k, v in ref.items() if k not in ("batch_size",)} | {"views": self.views, "resize": self.resize})
        return self._cache_file(f"{name}-{ref.get('split', 'all')}", shape, num, key)

    def _cache_file(self, prefix: str, shape: tuple[int, ...], num: int, key: str) -> Path:
        h, w = shape[-2:]
        kind = type(self).__name__.lower()  # FID keeps feature sums, KID the features: one file each
        return self.cache_dir / "reference" / self.feature_id / f"{prefix}-{h}x{w}-n{num}-{kind}-{key}.pt"

    def _run_reference_files(self) -> list[Path]:
        """The sample files of a ``{run: ...}`` reference (samples 0..num-1, every one stored)."""
        from alm.evaluate import rerun_command
        from alm.run_folder import done_indices, run_config, sample_path

        run = Path(str(self.reference["run"])).expanduser()
        num = self.reference.get("num")
        if num is None:
            cfg = run_config(run)
            num = cfg.get("num_samples") if cfg is not None else None
        done = done_indices(run)
        if num is None:
            num = len(done)
        missing = [i for i in range(int(num)) if i not in done]
        if not done or missing:
            raise DataError(f"{self.title}: the reference run {run} has {int(num) - len(missing)} of its {int(num)} "
                            f"samples; make it first: {rerun_command(run)}")
        return [sample_path(run, i) for i in range(int(num))]

    def _run_reference_path(self, shape: tuple[int, ...], files: list[Path]) -> Path:
        """The cache file of a ``{run: ...}`` reference's statistics, keyed by its sample files' names, sizes and times."""
        run = Path(str(self.reference["run"])).expanduser().resolve()
        stamp = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
        key = _hash({"run": str(run), "files": stamp, "output_key": self.reference.get("output_key", "output"),
                     "views": self.views, "resize": self.resize})
        return self._cache_file(f"run-{run.name[:60]}", shape, len(files), key)

    def _load_run_reference(self) -> None:
        from alm.evaluate import load_sample_file

        files = self._run_reference_files()
        run, key = Path(str(self.reference["run"])).expanduser(), str(self.reference.get("output_key", "output"))

        def images(chunk: list[Path]) -> torch.Tensor:
            items = [load_sample_file(f, run) for f in chunk]
            if any(key not in d for d in items):
                raise DataError(f"{self.title}: the reference run {run} has no {key!r} tensor in its samples")
            return torch.stack([d[key].float() for d in items])

        path = self._run_reference_path(tuple(self.prepare(images(files[:1])).shape), files)
        if path.is_file():
            self.load_real_state(torch.load(path, map_location=self.device, weights_only=True))
            return
        bs = int(self.reference.get("batch_size", 64))
        for start in range(0, len(files), bs):
            self.tm.update(self.prepare(images(files[start : start + bs])).to(self.device), real=True)
        io.atomic_torch_save({k: v.cpu() for k, v in self.real_state().items()}, path)

    def _load_reference(self) -> None:
        from alm.config import build

        ref = self.reference
        if "run" in ref:
            return self._load_run_reference()
        dataset = build(ref["dataset"])
        num = int(ref.get("num") or len(dataset))
        if num > len(dataset):
            raise DataError(f"{self.title}: reference num={num} but the data set has only {len(dataset)} items")
        first = self.prepare(dataset[0].image[None])
        path = self.reference_path(tuple(first.shape), num)
        if path.is_file():
            self.load_real_state(torch.load(path, map_location=self.device, weights_only=True))
            return
        bs = int(ref.get("batch_size", 64))
        from tqdm.auto import tqdm

        for start in tqdm(range(0, num, bs), desc=f"reference {path.name}", unit="batch", leave=False):
            images = torch.stack([dataset[i].image for i in range(start, min(num, start + bs))])
            self.tm.update(self.prepare(images).to(self.device), real=True)
        io.atomic_torch_save({k: v.cpu() for k, v in self.real_state().items()}, path)

    def real_state(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def load_real_state(self, state: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    # -- streaming ----------------------------------------------------------------------------------
    @torch.no_grad()
    def update(self, output, source, mask, labels=None, metas=None) -> None:
        out = self.prepare(output).to(self.device)
        self._ensure(out)
        if self.reference == "sources":
            self.tm.update(self.prepare(source).to(self.device), real=True)
        self.tm.update(out, real=False)
        self._count += output.shape[0]
        return None

    def reset(self) -> None:
        super().reset()
        if self.tm is not None:
            self.tm.reset()  # keeps a cached reference (reset_real_features=False) but not the run's sources


def _inception_kwargs(feature: Any) -> dict:
    if isinstance(feature, tuple):  # ("weights", dim): Inception with a local weights file
        return {"feature": feature[1]}
    return {"feature": feature}


class FID(_SetMetric):
    """Fréchet distance between Gaussian fits of the two feature sets (torchmetrics, float64 sums)."""

    higher_is_better = False

    def _make(self, feature):
        from torchmetrics.image.fid import FrechetInceptionDistance

        kwargs = _inception_kwargs(feature)
        if isinstance(feature, tuple):
            kwargs["feature_extractor_weights_path"] = str(self.weights_path)
        return FrechetInceptionDistance(reset_real_features=self.reference == "sources", normalize=True, **kwargs)

    def real_state(self):
        return {k: getattr(self.tm, k) for k in ("real_features_sum", "real_features_cov_sum", "real_features_num_samples")}

    def load_real_state(self, state):
        for k, v in state.items():
            setattr(self.tm, k, v.to(self.device))

    def compute(self) -> float:
        if self.tm is None:
            return float("nan")
        if int(self.tm.real_features_num_samples) < 2 or int(self.tm.fake_features_num_samples) < 2:
            raise DataError(f"{self.title}: needs at least 2 images in each set")
        return float(self.tm.compute())


class KID(_SetMetric):
    """Kernel inception distance: unbiased polynomial-kernel MMD^2 averaged over random subsets (torchmetrics)."""

    higher_is_better = False

    def __init__(self, feature: Union[int, dict] = 2048, reference: Union[str, dict] = "sources",
                 subsets: int = 100, subset_size: int = 1000, degree: int = 3, gamma: Optional[float] = None,
                 coef: float = 1.0, scale: float = 1.0, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(feature, reference, **kwargs)
        if self.weights_path is not None:
            raise ConfigError("KID: torchmetrics' KID cannot take a local Inception weights_path; "
                              "put the file in torch's hub cache instead")
        self.subsets, self.subset_size, self.degree = int(subsets), int(subset_size), int(degree)
        self.gamma, self.coef, self.scale, self.seed = gamma, float(coef), float(scale), int(seed)
        self._std = float("nan")

    def _make(self, feature):
        from torchmetrics.image.kid import KernelInceptionDistance

        return KernelInceptionDistance(subsets=self.subsets, subset_size=self.subset_size, degree=self.degree,
                                       gamma=self.gamma, coef=self.coef, reset_real_features=self.reference == "sources",
                                       normalize=True, **_inception_kwargs(feature))

    def real_state(self):
        return {"real_features": torch.cat(list(self.tm.real_features))}

    def load_real_state(self, state):
        self.tm.real_features = [state["real_features"].to(self.device)]

    def compute(self) -> float:
        if self.tm is None:
            return float("nan")
        n = min(sum(len(f) for f in self.tm.real_features), sum(len(f) for f in self.tm.fake_features))
        if n < 2:
            raise DataError(f"{self.title}: needs at least 2 images per set, got {n}")
        self.tm.subset_size = min(self.subset_size, n)  # the paper's wide-image set has 450 images
        with torch.random.fork_rng(devices=[]):  # KID draws its subsets from the global generator
            torch.manual_seed(self.seed)
            mean, std = self.tm.compute()
        self._std = float(std) * self.scale
        return float(mean) * self.scale

    def compute_extra(self) -> dict[str, float]:
        return {"std": self._std}
