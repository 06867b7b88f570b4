"""The metric interface of the evaluation stage, and the region and view helpers every metric shares.

A metric is a streaming object (torchmetrics' ``update`` / ``compute`` pattern) built from a config node
of the ``metrics`` group. It declares

- ``higher_is_better``: the direction the averaged-rank tables use (None: no direction, e.g. a value
  that is best at a target; such a metric must be ``rank: false``);
- ``region``: where it is computed: ``full`` (the whole image, default), ``hole`` (the generated
  region, mask = 1) or ``known`` (the observed region, mask = 0). Not every metric supports every
  region (``regions``); asking for another is a one-line ``ConfigError``;
- ``per_sample``: True if ``update`` returns one value per sample (written as per-sample rows and
  averaged in a separate step); False for set metrics (FID, KID) that only have a ``compute()``;
- ``aggregate`` (per-sample metrics): how a run's summary value is made: ``"mean"`` (default) the mean
  of the finite per-sample values, ``"compute"`` the metric's own ``compute()`` over the whole set (stored
  beside the rows), None no summary value (rows only, e.g. an index).

A metric that needs the run itself (its config: the Gaussian-mixture metrics build the run's mixture
and read its seed) overrides ``bind_run(run_cfg, indices)``: the evaluation stage calls it before the
run's samples are passed to ``update``, with the run's resolved config (``alm.run_folder.run_config``,
None if the folder has none) and the indices of the samples in the order they will be passed.

Inputs are in data space: ``output`` / ``source`` (B, C, H, W) in [-1, 1]; ``mask`` (B, 1, H, W) with
1 = hole (to generate), as in ``alm.masks``.

``check_available()`` is cheap (file look-ups, no network, no weight loading) and raises a one-line
``MissingWeightsError`` naming the weights and how to get them; the runner and ``alm.evaluate`` call it
for every metric before any work starts. ``setup(device)`` then loads the networks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F

from alm.errors import CheckpointError, ConfigError

REGIONS = ("full", "hole", "known")


class MissingWeightsError(CheckpointError):
    """A metric's network weights are not available offline (the message says which and how to get them)."""


class Metric:
    """Base class. Subclasses set ``higher_is_better`` and implement ``values`` (per-sample metrics) or
    override ``update`` / ``compute`` / ``reset`` (set metrics)."""

    higher_is_better: Optional[bool] = False
    per_sample: bool = True
    #: per-sample metrics: the summary value is the rows' "mean", the set's "compute()", or None (none)
    aggregate: Optional[str] = "mean"
    #: the regions this metric can be computed on
    regions: tuple[str, ...] = REGIONS
    #: a short human name used in messages ("LPIPS (alex)")
    title: str = "metric"
    #: bump when the definition changes: values cached by ``alm.evaluate`` are then recomputed
    version: int = 1

    def __init__(self, region: str = "full") -> None:
        if region not in self.regions:
            raise ConfigError(
                f"{type(self).__name__}: region={region!r} is not supported (choose one of {', '.join(self.regions)})"
            )
        self.region = region
        self.device = torch.device("cpu")
        self._sum, self._count = 0.0, 0

    # -- availability and setup -------------------------------------------------------------------
    def check_available(self) -> None:
        """Raise ``MissingWeightsError`` if a file this metric needs is missing (cheap; no loading)."""

    def setup(self, device: torch.device) -> None:
        """Load networks onto ``device`` (called once, after ``check_available``)."""
        self.device = torch.device(device)

    def bind_run(self, run_cfg: Any, indices: Optional[Sequence[int]] = None) -> None:
        """The run about to be evaluated: its resolved config (None if unknown) and the indices of its
        samples in ``update`` order (None: not known yet, a check only). Called by the evaluation stage
        before the updates (and before ``setup``); raise a one-line ``ConfigError`` if the metric does not
        fit the run. Default: nothing (a metric of the images alone)."""

    # -- streaming ----------------------------------------------------------------------------------
    def values(self, output: torch.Tensor, source: torch.Tensor, mask: torch.Tensor,
               labels: Sequence[Any], metas: Sequence[dict]) -> torch.Tensor:
        """Per-sample values, shape (B,)."""
        raise NotImplementedError

    @torch.no_grad()
    def update(self, output: torch.Tensor, source: torch.Tensor, mask: torch.Tensor,
               labels: Optional[Sequence[Any]] = None, metas: Optional[Sequence[dict]] = None) -> Optional[torch.Tensor]:
        """Add a batch; returns its per-sample values (or None for set metrics)."""
        n = output.shape[0]
        labels = list(labels) if labels is not None else [None] * n
        metas = list(metas) if metas is not None else [{} for _ in range(n)]
        vals = self.values(output.float(), source.float(), _as_batch_mask(mask, output), labels, metas)
        vals = vals.detach().double().cpu().reshape(n)
        finite = vals[torch.isfinite(vals)]
        self._sum += float(finite.sum())
        self._count += int(finite.numel())
        return vals

    def compute(self) -> float:
        """The aggregate over everything seen: the mean of the per-sample values."""
        return self._sum / self._count if self._count else float("nan")

    def compute_extra(self) -> dict[str, float]:
        """Extra aggregate columns, ``suffix -> value`` (e.g. KID's ``std``)."""
        return {}

    def reset(self) -> None:
        self._sum, self._count = 0.0, 0

    def describe(self) -> str:
        return self.title if self.region == "full" else f"{self.title}, {self.region} region"


# -- helpers shared by the metric families -----------------------------------------------------------
def _as_batch_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) float mask (accepts (B, H, W) or (B, C, H, W) too)."""
    m = mask.float()
    if m.dim() == 3:
        m = m.unsqueeze(1)
    if m.dim() == like.dim() == 5 and m.shape[0] == like.shape[0] and m.shape[2:] == like.shape[2:]:
        return m.to(like.device)  # a clip's mask (B, 1, F, H, W)
    if m.dim() != 4 or m.shape[0] != like.shape[0] or m.shape[-2:] != like.shape[-2:]:
        raise ConfigError(f"mask of shape {tuple(mask.shape)} does not fit images of shape {tuple(like.shape)}")
    return m.to(like.device)


def region_weights(mask: torch.Tensor, region: str) -> torch.Tensor:
    """Per-pixel weights (B, 1, H, W) of a region: all ones, the hole (mask) or the known part (1 - mask)."""
    if region == "full":
        return torch.ones_like(mask)
    if region == "hole":
        return mask
    if region == "known":
        return 1 - mask
    raise ConfigError(f"unknown region {region!r} (choose one of {', '.join(REGIONS)})")


def masked_mean(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-sample weighted mean of ``x`` (B, C, H, W) with per-pixel ``weights`` (B, 1 or C, H, W).

    The weights are broadcast over the channels BEFORE counting, so the denominator counts the
    same entries as the numerator (a 3-channel sum divided by a 3-channel count). An empty region
    gives NaN.
    """
    w = weights.to(x.dtype).expand_as(x)
    num = (x * w).flatten(1).sum(1)
    den = w.flatten(1).sum(1)
    return torch.where(den > 0, num / den.clamp_min(1e-12), torch.full_like(num, float("nan")))


def to_unit(x: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """Data space [-1, 1] -> [0, 1] (clamped unless ``clamp=False``)."""
    x = x.float()
    return ((x.clamp(-1, 1) if clamp else x) + 1) / 2


def to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Grey images (B, 1, H, W) -> 3 identical channels; RGB unchanged."""
    if x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1)
    if x.shape[1] != 3:
        raise ConfigError(f"expected images with 1 or 3 channels, got {x.shape[1]}")
    return x


VIEWS = ("full", "tiles", "frames", "clips<N>")


def check_views(views: str) -> None:
    """A one-line ``ConfigError`` for an unknown ``views`` option (see ``square_views``)."""
    if views in VIEWS[:3] or (isinstance(views, str) and views.startswith("clips") and views[5:].isdigit()
                              and int(views[5:]) > 0):
        return
    raise ConfigError(f"views={views!r}: choose one of {', '.join(VIEWS)}")


def square_views(x: torch.Tensor, views: str) -> tuple[torch.Tensor, int]:
    """Square views of (B, C, H, W) images for networks trained on square inputs.

    ``full``: the images unchanged (the network's own preprocessing resizes / crops them);
    ``tiles``: every non-overlapping square of side min(H, W) along the long side, left to right
    (a 2048x512 wide image -> 4 tiles; a remainder narrower than a tile is covered by one last
    tile aligned to the end); ``frames``: the frames of clips (B, C, F, H, W), as they are;
    ``clips<N>``: the non-overlapping N-frame pieces of clips from frame 0, (B * V, C, N, H, W) (a video
    judged by a network of N-frame clips). Returns (B * V, C, S, S) ordered sample-major, and V.
    """
    if views == "full":
        return x, 1
    if views == "frames" or views.startswith("clips"):
        if x.dim() != 5:
            raise ConfigError(f"views={views} needs clips (B, C, frames, H, W), got shape {tuple(x.shape)}")
        if views == "frames":
            return x.transpose(1, 2).flatten(0, 1), x.shape[2]
        check_views(views)
        n, f = int(views[5:]), x.shape[2]
        if f < n:
            raise ConfigError(f"views={views}: clips of {f} frames are shorter than {n}")
        chunks = [x[:, :, s:s + n] for s in range(0, f - n + 1, n)]  # non-overlapping, from frame 0
        return torch.stack(chunks, dim=1).flatten(0, 1), len(chunks)
    check_views(views)
    h, w = x.shape[-2:]
    side, long = min(h, w), max(h, w)
    starts = list(range(0, long - side + 1, side))
    if starts[-1] + side < long:
        starts.append(long - side)
    tiles = [x[..., :, s : s + side] if w >= h else x[..., s : s + side, :] for s in starts]
    return torch.stack(tiles, dim=1).flatten(0, 1), len(starts)


def resize_shortest_center_crop(x: torch.Tensor, size: int, mode: str = "bicubic") -> torch.Tensor:
    """CLIP-style preprocessing on tensors: resize the shortest side to ``size`` (antialiased), centre crop."""
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode=mode, align_corners=False, antialias=mode in ("bilinear", "bicubic"))
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[..., top : top + size, left : left + size]


def torch_hub_checkpoint(url: str) -> Path:
    """Where ``torch.hub.load_state_dict_from_url(url)`` keeps (or would keep) its file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


_RUN_BACKBONES: dict = {}


def run_backbone(run_cfg: Any, target: str, cls: type, what: str, kind: str, option: str) -> Any:
    """The exact backbone (``target``, an instance of ``cls``) a run sampled from, built from its config's
    ``backbone`` node (``alm.config.build``) once per config and handed out as a copy (devices stay apart);
    ``kind`` and ``option`` (``backbone=<option>``) name it in the one-line error for a run of another backbone."""
    import copy
    import json

    from alm.config import build, to_plain

    if run_cfg is None:
        raise ConfigError(f"{what} needs the run's config.yaml (the {kind} it sampled from); the run folder has none")
    node = run_cfg.get("backbone")
    got = node.get("_target_") if node is not None else None
    if got != target:
        name = (node.get("name") or got) if node is not None else None
        raise ConfigError(f"{what} scores against the exact {kind}: it needs a run with backbone={option}, "
                          f"not backbone={name}")
    key = json.dumps([target, to_plain(node)], sort_keys=True, default=str)
    if key not in _RUN_BACKBONES:
        built = build(node)
        if not isinstance(built, cls):  # pragma: no cover - the target says it is one
            raise ConfigError(f"{what}: backbone node {target} did not build a {cls.__name__}")
        _RUN_BACKBONES.clear()
        _RUN_BACKBONES[key] = built.cpu().eval()
    return copy.deepcopy(_RUN_BACKBONES[key])

