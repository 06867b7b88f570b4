"""Exact metrics of wide canvases of the Gaussian-process testbed (``metrics=wide_gp``, docs/wide_gp.md).

A run of ``task=wide`` with ``backbone=gp`` stores canvases (1, 1, L) stitched from K windows of the
backbone's length n. Because the GP mixture is stationary, the canvas has an exact law: the same mixture
on L consecutive entries (``GaussianProcessMixture.canvas_distribution(L)``), every window of which is the
window process. These metrics compare the SET of a run's canvases with that law. Each builds the GP from
the run's own config (``bind_run``: the ``backbone`` node of ``<run>/config.yaml``, as ``alm.metrics.gmm``
does), so a run of another backbone is a one-line ``ConfigError``.

| column                       | class                   | value (one per run)                                        | direction |
|------------------------------|-------------------------|------------------------------------------------------------|-----------|
| ``variance_profile_error``   | ``VarianceProfileError``| mean over positions of |log(empirical var / true var)|     | lower     |
| ``seam_correlation_error``   | ``SeamCorrelationError``| mean over seams of |corr_hat(c-1, c) - corr(c-1, c)|       | lower     |
| ``seam_band_correlation_error`` | ``SeamCorrelationError(band=2)`` | the same over every pair of the band c-3 .. c+2 | lower |
| ``w2``                       | ``GaussianW2``          | W2 between N(mean_hat, cov_hat) and the moment-matched truth | lower   |
| ``coherence``                | ``Coherence``           | share of canvases whose windows share one component        | higher    |

Extra columns (``<column>_<suffix>``, ``Metric.compute_extra``): ``exact`` = the same statistic of as many
exact canvas draws (the sampling-noise floor at this N; ``reference: false`` turns it off); the variance
profile adds ``overlap`` (the error on the columns two windows cover), ``min_ratio`` and ``within`` (the error
within components, grouped as the seam correlation's ``within``); the seam
correlation adds ``inside`` (the same statistic at the middle of every stitched piece: errors that are not
the seams') and ``within`` (the error within components: canvases grouped by the majority component of
their seam-free pieces, each group against its component's covariance: local defects without the
between-component variance, which dominates the pooled correlation); coherence adds ``pairs`` (share of
adjacent windows that agree) and ``pieces`` (the coherence of the seam-free pieces between seams: mode
switches alone, without a seam's jump flipping a window's assignment). ``VarianceProfileError`` keeps the
per-position profile (``profile()``; ``profile_csv`` writes it as a csv).

The layout (windows, seams) comes from each sample's ``meta`` (``windows`` (K, 2), ``seams`` and ``axis``,
which ``task=wide`` stores with every sample; ``axis`` must be the GP's: -1 for fields, -3 for clips), else (a sample without them) from
the metric's options (``windows``, ``seams``, or the geometry ``window`` / ``stride`` / ``count`` /
``extend``; ``window`` defaults to the backbone's length, the others to the run's ``task.windows``,
``task.stride``, ``task.extend``): ``alm.metrics.seams.Layout``. Every canvas of a run must share it (the
statistics are per position across the set).

Exact reference draws: canvas i comes from a CPU generator seeded with ``sample_seed(seed, i, stream=3)``
(``GaussianProcessMixture.sample(1, generator, L)``), ``seed`` the run's unless the metric's ``seed`` is set.

**Clips** (the GP's frame layout, ``backbone=gp_video``, ``task=video``; ``metrics=video_gp``): a canvas is a clip
(1, L, h, w) whose windows run along the frames (``meta["axis"] = -3``, the GP's ``axis``); a *position* is a frame
of P = h w pixels, and the canvas is handled flat, frame-major (N, L P). The layout (windows, seams, pieces) is in
frames. The variance profile is per frame: log(mean over the frame's pixels of the empirical variance / the same of
the true variance); the seam correlation error compares |corr_hat - corr| over the pairs of ENTRIES in two different
frames of the band (band 0: every pixel of frame c-1 with every pixel of frame c, P^2 pairs: the cross-boundary
covariance); coherence assigns whole windows (every pixel of their frames) and pieces. W2 is over all L P entries;
with fewer canvases than entries it is computed from the N x N Gram matrix (``gaussian_w2_samples``, the same value).
For 1-D fields (P = 1) every formula is the one above.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from alm.backbones.gp import GaussianProcessMixture
from alm.errors import ConfigError, DataError
from alm.metrics.base import Metric, run_backbone
from alm.metrics.seams import Layout, meta_axis
from alm.rng import sample_seed

Tensor = torch.Tensor

#: the ``_target_`` of the run's ``backbone`` node these metrics accept
GP_TARGET = "alm.backbones.gp.GaussianProcessMixture"
#: stream of the exact reference canvases (never the sampler's own stream 0)
REFERENCE_STREAM = 3
#: the smallest group of canvases whose within-component correlations are compared
MIN_GROUP = 10


# -- the run's process ----------------------------------------------------------------------------------


def run_gp(run_cfg: Any, what: str = "this metric") -> GaussianProcessMixture:
    """The GP mixture a run sampled from, built from its config's ``backbone`` node."""
    return run_backbone(run_cfg, GP_TARGET, GaussianProcessMixture, what, "Gaussian process", "gp")


# -- the math: float64 functions of canvases (N, L) --------------------------------------------------------
def flat_canvases(x: Tensor, frame_size: Optional[Sequence[int]] = None) -> Tensor:
    """(N, 1, 1, L) or (N, L) canvases -> (N, L) float64 on the CPU; with ``frame_size`` (h, w), clips
    (N, 1, L, h, w) -> (N, L h w), frame-major."""
    if frame_size is not None:
        if x.dim() != 5 or x.shape[1] != 1 or tuple(x.shape[3:]) != tuple(frame_size):
            raise DataError(f"canvases of shape {tuple(x.shape)}: the GP testbed's clips are (N, 1, L, "
                            f"{frame_size[0]}, {frame_size[1]})")
        return x.reshape(x.shape[0], -1).detach().cpu().double()
    if x.dim() == 4 and x.shape[1:3] != (1, 1):
        raise DataError(f"canvases of shape {tuple(x.shape)}: the GP testbed's canvases are (N, 1, 1, L)")
    if x.dim() > 4 and x[0].numel() != x.shape[-1]:
        raise DataError(f"canvases of shape {tuple(x.shape)}: the GP testbed's canvases are (N, 1, 1, L) "
                        "(clips need the GP's frame layout, backbone=gp_video)")
    return x.reshape(x.shape[0], x.shape[-1]).detach().cpu().double()


def frame_entries(positions: Sequence[int], pixels: int) -> Tensor:
    """The entries (frame-major) of the positions (frames) ``positions``: (len * pixels,) long."""
    pos = torch.as_tensor(list(positions), dtype=torch.long)
    if pixels == 1:
        return pos
    return (pos[:, None] * pixels + torch.arange(pixels)[None]).reshape(-1)


def correlation(cov: Tensor) -> Tensor:
    d = cov.diagonal().clamp_min(0).sqrt()
    return cov / (d[:, None] * d[None, :]).clamp_min(1e-300)


def empirical_covariance(x: Tensor) -> Tensor:
    """Unbiased (N - 1) covariance of the columns of ``x`` (N, L)."""
    if x.shape[0] < 2:
        raise DataError(f"set statistics of canvases need at least 2 canvases, got {x.shape[0]}")
    c = x - x.mean(0, keepdim=True)
    return c.T @ c / (x.shape[0] - 1)


def variance_log_ratio(x: Tensor, true_cov: Tensor, pixels: int = 1) -> Tensor:
    """log(empirical variance / true variance) per position (L,) (a frame of ``pixels`` entries: the ratio of the
    means over its pixels)."""
    var = x.var(dim=0, unbiased=True)
    if pixels == 1:
        return torch.log(var.clamp_min(1e-300) / true_cov.diagonal())
    return torch.log(frame_means(var, pixels).clamp_min(1e-300) / frame_means(true_cov.diagonal(), pixels))


def frame_means(values: Tensor, pixels: int) -> Tensor:
    """(L P,) per entry -> (L,) the mean over each frame's pixels (identity for P = 1)."""
    return values if pixels == 1 else values.reshape(-1, pixels).mean(1)


def band_positions(seam: int, band: int, length: int) -> list[int]:
    """Columns c-1-band .. c+band around the seam pair (c-1, c), clipped to the canvas."""
    return [p for p in range(seam - 1 - band, seam + band + 1) if 0 <= p < length]


def correlation_error(x: Tensor, true_cov: Tensor, centres: Sequence[int], band: int = 0, pixels: int = 1) -> float:
    """Mean over ``centres`` c of the mean |corr_hat - corr| over the pairs of the band around (c-1, c)
    (band 0: the pair (c-1, c) only). Positions of ``pixels`` entries (frames): the pairs of entries in two
    different positions of the band."""
    errs = []
    true_corr = correlation(true_cov)
    for c in centres:
        pos = band_positions(int(c), band, x.shape[1] // pixels)
        if len(pos) < 2:
            continue
        idx = frame_entries(pos, pixels)
        emp = correlation(empirical_covariance(x[:, idx]))
        tru = true_corr[idx][:, idx]
        iu = torch.triu_indices(len(idx), len(idx), offset=1)
        if pixels > 1:  # pairs across frames only
            iu = iu[:, (iu[0] // pixels) != (iu[1] // pixels)]
        errs.append(float((emp - tru)[iu[0], iu[1]].abs().mean()))
    return sum(errs) / len(errs) if errs else math.nan


def inside_centres(seams: Sequence[int], length: int) -> list[int]:
    """The middle column of every piece between consecutive seams (and the canvas ends)."""
    edges = [0, *sorted(int(s) for s in seams), length]
    return [max(1, (a + b) // 2) for a, b in zip(edges, edges[1:]) if b - a >= 2]


def gaussian_w2(mean1: Tensor, cov1: Tensor, mean2: Tensor, cov2: Tensor) -> float:
    """2-Wasserstein distance between N(mean1, cov1) and N(mean2, cov2) (cov2 positive definite):
    sqrt(|m1 - m2|^2 + tr C1 + tr C2 - 2 tr (C2^1/2 C1 C2^1/2)^1/2)."""
    ev, vec = torch.linalg.eigh(cov2)
    root = (vec * ev.clamp_min(0).sqrt()) @ vec.T
    middle = root @ cov1 @ root
    cross = torch.linalg.eigvalsh(0.5 * (middle + middle.T)).clamp_min(0).sqrt().sum()
    w2sq = (mean1 - mean2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * cross
    return float(w2sq.clamp_min(0).sqrt())


def gaussian_w2_samples(x: Tensor, mean2: Tensor, cov2: Tensor) -> float:
    """``gaussian_w2`` between N(mean, unbiased covariance) of the rows of ``x`` (N, D) and N(mean2, cov2). With
    N - 1 < D the empirical covariance C1 = X^T X / (N - 1) (X centred) has rank < D, and the nonzero eigenvalues
    of C2^1/2 C1 C2^1/2 are those of X C2 X^T / (N - 1) (N x N): the same value without any D x D root."""
    n = x.shape[0]
    if n - 1 >= x.shape[1]:
        return gaussian_w2(x.mean(0), empirical_covariance(x), mean2, cov2)
    mean1 = x.mean(0)
    xc = x - mean1[None]
    gram = xc @ cov2 @ xc.T / (n - 1)
    cross = torch.linalg.eigvalsh(0.5 * (gram + gram.T)).clamp_min(0).sqrt().sum()
    w2sq = (mean1 - mean2).pow(2).sum() + xc.pow(2).sum() / (n - 1) + cov2.trace() - 2 * cross
    return float(w2sq.clamp_min(0).sqrt())


def window_components(gp: GaussianProcessMixture, x: Tensor, windows: Tensor) -> Tensor:
    """The most likely component of every window of every canvas under the window mixture: (N, K) long
    (windows in positions: frames of ``gp.pixels`` entries in the frame layout)."""
    p = gp.pixels
    return torch.stack([gp.assign(x[:, int(a) * p:int(b) * p]) for a, b in windows.tolist()], dim=1)


def pieces(seams: Tensor, length: int) -> Tensor:
    """The stitched pieces between consecutive seams, [start, stop) (S + 1, 2): each comes from one window."""
    edges = [0, *sorted(int(c) for c in seams.tolist()), int(length)]
    return torch.tensor([[a, b] for a, b in zip(edges, edges[1:]) if b > a], dtype=torch.long)


def canvas_component(gp: GaussianProcessMixture, x: Tensor, seams: Tensor) -> Tensor:
    """The component of each canvas (N,): the most frequent assignment of its seam-free pieces (ties: the
    smallest index). Pieces, not the whole canvas: a seam's jump would pull a whole-canvas assignment."""
    k = window_components(gp, x, pieces(seams, x.shape[1] // gp.pixels))
    counts = torch.stack([(k == c).sum(1) for c in range(gp.num_components)], dim=1)
    return counts.argmax(dim=1)


def coherent(gp: GaussianProcessMixture, x: Tensor, windows: Tensor) -> Tensor:
    """1.0 where every window of a canvas has the same most likely component (N,)."""
    k = window_components(gp, x, windows)
    return (k == k[:, :1]).all(dim=1).double()


def exact_canvases(gp: GaussianProcessMixture, length: int, seed: int, indices: Sequence[int]) -> Tensor:
    """One exact canvas draw of ``length`` entries per sample index (N, L), float64."""
    rows = []
    for i in indices:
        g = torch.Generator().manual_seed(sample_seed(seed, int(i), REFERENCE_STREAM))
        rows.append(gp.sample(1, g, length)[0].reshape(-1))
    return torch.stack(rows).cpu()


#: the last reference draws: key (the GP's parameters, length, seed, indices) -> canvases
_REFERENCE: dict[str, Any] = {}


def _reference_canvases(gp: GaussianProcessMixture, length: int, seed: int, indices: Sequence[int]) -> Tensor:
    key = json.dumps([repr(gp.components), gp.nugget, gp.length, length, seed, list(map(int, indices))]
                     + ([] if gp.frame_size is None else [gp.extra_repr()]))
    if _REFERENCE.get("key") != key:
        _REFERENCE.clear()
        _REFERENCE.update(key=key, x=exact_canvases(gp, length, seed, indices))
    return _REFERENCE["x"]


# -- the metrics ------------------------------------------------------------------------------------------
class CanvasMetric(Metric):
    """Base: the run's GP (``bind_run``), the canvases of every update and their shared layout; ``value`` of
    the whole set at ``compute()``, the same of exact draws as the ``exact`` extra."""

    regions = ("full",)
    per_sample = False
    higher_is_better: Optional[bool] = None
    #: the metric needs every window (not only the seams)
    needs_windows = False

    def __init__(self, reference: bool = True, seed: Optional[int] = None, seams: Optional[Sequence[int]] = None,
                 windows: Optional[Sequence[Sequence[int]]] = None, window: Optional[int] = None,
                 stride: Optional[float] = None, count: Optional[int] = None, extend: Optional[str] = None,
                 region: str = "full") -> None:
        super().__init__(region)
        self.reference = bool(reference)
        self.seed = None if seed is None else int(seed)
        self.layout = Layout(seams, windows, window, stride, count, extend)
        self.gp: Optional[GaussianProcessMixture] = None
        self.run_seed: Optional[int] = None
        self.indices: Optional[list[int]] = None
        self._x: list[Tensor] = []
        self._windows: Optional[Tensor] = None
        self._seams: Optional[Tensor] = None
        self._cache: dict[str, Any] = {}

    # -- the run ---------------------------------------------------------------------------------------
    def bind_run(self, run_cfg: Any, indices: Optional[Sequence[int]] = None) -> None:
        self.gp = run_gp(run_cfg, self.title)
        self._cache.clear()
        seed = run_cfg.get("seed")
        self.run_seed = None if seed is None else int(seed)
        self.indices = None if indices is None else [int(i) for i in indices]
        self.layout.fill_from_run(run_cfg, window=self.gp.length)  # the GP diffuses data: no latent scale
        if self.reference and self.seed is None and self.run_seed is None:
            raise ConfigError(f"{self.title}: the run's config has no seed; set the metric's seed option "
                              "(or reference: false)")

    def use(self, gp: GaussianProcessMixture, seed: Optional[int] = None) -> "CanvasMetric":
        """Score against ``gp`` directly (no run config): tests and notebooks."""
        self.gp = gp.cpu()
        self._cache.clear()
        if seed is not None:
            self.run_seed = int(seed)
        self.layout.fill_from_run(None, window=gp.length)
        return self

    def _gp(self) -> GaussianProcessMixture:
        if self.gp is None:
            raise ConfigError(f"{self.title} needs the run it scores (bind_run(run_config, indices); "
                              "the evaluation stage does this)")
        return self.gp

    def _pixels(self) -> int:
        return self._gp().pixels

    def _length(self, x: Tensor) -> int:
        """The canvas length in positions (frames) of flat canvases ``x`` (N, L P)."""
        return x.shape[1] // self._pixels()

    def _true(self, length: int) -> tuple[Tensor, Tensor]:
        key = f"moments{length}"
        if key not in self._cache:
            self._cache[key] = self._gp().moments(length)
        return self._cache[key]

    # -- streaming ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def update(self, output: Tensor, source: Tensor, mask: Tensor,
               labels: Optional[Sequence[Any]] = None, metas: Optional[Sequence[dict]] = None) -> Optional[Tensor]:
        gp = self._gp()
        x = flat_canvases(output, gp.frame_size)
        length = x.shape[1] // gp.pixels
        if length < gp.length:
            raise DataError(f"{self.title}: canvases of {length} entries are shorter than the GP's window ({gp.length})")
        if self._x and self._x[0].shape[1] != x.shape[1]:
            raise DataError(f"{self.title}: canvases of {self._x[0].shape[1]} and {x.shape[1]} entries in one run")
        metas = list(metas) if metas is not None else [None] * x.shape[0]
        for i in range(x.shape[0]):
            meta = metas[i] if i < len(metas) else None
            if meta_axis(meta) != gp.axis:
                want = "(1, 1, L) run along the last axis (-1)" if gp.frame_size is None else \
                    "clips (1, L, h, w) run along the frames (-3)"
                raise DataError(f"{self.title}: the sample's windows run along axis {meta_axis(meta)}; the GP "
                                f"testbed's canvases {want}")
            self._check_layout(*self.layout.of(meta, length, self.needs_windows))
        self._x.append(x)
        self._cache.pop("extra", None)
        if self.per_sample:
            return super().update(output, source, mask, labels, metas)
        return None

    def _check_layout(self, windows: Optional[Tensor], seams: Tensor) -> None:
        if self._seams is None:
            self._windows, self._seams = windows, seams
            return
        same_w = (windows is None and self._windows is None) or (
            windows is not None and self._windows is not None and torch.equal(windows, self._windows))
        if not same_w or not torch.equal(seams, self._seams):
            raise DataError(f"{self.title}: the canvases of a run must share one layout (windows, seams); "
                            f"got seams {self._seams.tolist()} and {seams.tolist()}")

    def canvases(self) -> Tensor:
        """Every canvas seen so far (N, L), float64."""
        if not self._x:
            raise DataError(f"{self.title}: no canvases")
        return torch.cat(self._x)

    def compute(self) -> float:
        if not self._x:
            return math.nan
        return self.value(self.canvases())

    def value(self, x: Tensor) -> float:
        raise NotImplementedError

    def extra(self, x: Tensor, exact: Tensor) -> dict[str, float]:
        """More columns: of the run's canvases ``x`` and of the exact draws ``exact`` (None without reference)."""
        return {}

    def exact_draws(self, n: int, length: int) -> Tensor:
        """The exact reference canvases of the ``n`` samples (the bound indices, else 0..n-1)."""
        seed = self.seed if self.seed is not None else self.run_seed
        if seed is None:
            raise ConfigError(f"{self.title}: no seed for the exact reference draws (set the metric's seed option)")
        indices = self.indices if self.indices is not None and len(self.indices) == n else list(range(n))
        return _reference_canvases(self._gp(), length, int(seed), indices)

    def compute_extra(self) -> dict[str, float]:
        if not self._x:
            return {}
        if "extra" not in self._cache:
            x = self.canvases()
            exact = self.exact_draws(x.shape[0], self._length(x)) if self.reference else None
            out = {} if exact is None else {"exact": self.value(exact)}
            out.update(self.extra(x, exact))
            self._cache["extra"] = out
        return dict(self._cache["extra"])

    def reset(self) -> None:
        super().reset()
        self._x, self._windows, self._seams = [], None, None
        self._cache.pop("extra", None)


class VarianceProfileError(CanvasMetric):
    """Mean over positions of |log(empirical variance / true variance)| (0 = the true profile; blur from
    averaging windows shows as variance lost on the overlaps). ``profile()`` gives it per position."""

    title = "variance profile error"
    higher_is_better = False

    def __init__(self, profile_csv: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.profile_csv = profile_csv
        self._run_names: dict[str, str] = {}

    def bind_run(self, run_cfg: Any, indices: Optional[Sequence[int]] = None) -> None:
        super().bind_run(run_cfg, indices)
        from omegaconf import DictConfig, OmegaConf

        plain = OmegaConf.to_container(run_cfg, resolve=True) if isinstance(run_cfg, DictConfig) else dict(run_cfg)
        names = {k: str((plain.get(k) or {}).get("name", "")) for k in ("task", "backbone", "method", "sampler")}
        names["seed"] = str(plain.get("seed"))
        names["digest"] = hashlib.sha1(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:10]
        self._run_names = names

    def value(self, x: Tensor) -> float:
        return float(variance_log_ratio(x, self._true(self._length(x))[1], self._pixels()).abs().mean())

    def extra(self, x, exact):
        lr = variance_log_ratio(x, self._true(self._length(x))[1], self._pixels())
        out = {"min_ratio": float(lr.exp().min())}
        cover = self.coverage(self._length(x))
        if cover is not None and bool((cover >= 2).any()):
            out["overlap"] = float(lr[cover >= 2].abs().mean())
        out["within"] = self.within(x)
        if self.profile_csv:
            self.write_profile(self.profile_csv.format(**self._run_names), exact)
        return out

    def within(self, x: Tensor) -> float:
        """The error within components: canvases grouped by their component (``canvas_component``), each group's
        profile against its component's variance, averaged with the group sizes (groups of fewer than
        ``MIN_GROUP`` canvases left out). The pooled variance is dominated by the spread of the component means;
        a sampler that keeps the means but flattens the process within them shows here."""
        gp, L = self._gp(), self._length(x)
        k = canvas_component(gp, x, self._seams)
        covs = gp.canvas_distribution(L)["covs"]
        total, weight = 0.0, 0
        for c in range(gp.num_components):
            rows = k == c
            n = int(rows.sum())
            if n >= MIN_GROUP:
                total += n * float(variance_log_ratio(x[rows], covs[c], gp.pixels).abs().mean())
                weight += n
        return total / weight if weight else math.nan

    def coverage(self, length: int) -> Optional[Tensor]:
        """How many windows cover each position (L,), or None if the windows are unknown."""
        if self._windows is None:
            return None
        cover = torch.zeros(length, dtype=torch.long)
        for a, b in self._windows.tolist():
            cover[a:b] += 1
        return cover

    def profile(self, exact: Optional[Tensor] = None) -> dict[str, list]:
        """Per position: the canvases' variance, the true variance, their log-ratio, the windows covering it,
        whether it is a seam, and (with ``reference``) the exact draws' variance (a frame: means over its pixels)."""
        x = self.canvases()
        L, p = self._length(x), self._pixels()
        true_var = frame_means(self._true(L)[1].diagonal(), p)
        var = frame_means(x.var(dim=0, unbiased=True), p)
        cover = self.coverage(L)
        seams = set(self._seams.tolist()) if self._seams is not None else set()
        out: dict[str, list] = {
            "position": list(range(L)), "variance": var.tolist(), "true_variance": true_var.tolist(),
            "log_ratio": torch.log(var.clamp_min(1e-300) / true_var).tolist(),
            "windows": cover.tolist() if cover is not None else [math.nan] * L,
            "seam": [int(p in seams) for p in range(L)],
        }
        if exact is None and self.reference:
            exact = self.exact_draws(x.shape[0], L)
        if exact is not None:
            out["exact_variance"] = frame_means(exact.var(dim=0, unbiased=True), p).tolist()
        return out

    def write_profile(self, path: str, exact: Optional[Tensor] = None) -> Path:
        """The profile as a csv (one row per position)."""
        prof = self.profile(exact)
        p = Path(path).expanduser()
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(list(prof))
            w.writerows(zip(*prof.values()))
        return p


class SeamCorrelationError(CanvasMetric):
    """Mean over the seams c of |corr_hat - corr| between the columns of the band c-1-band .. c+band (band 0:
    the pair (c-1, c) only), against the true canvas covariance. Extras: ``inside``, the same at the middle of
    every window piece (not seams); ``within``, the same within components (``within``)."""

    title = "seam correlation error"
    higher_is_better = False

    def __init__(self, band: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.band = int(band)
        if self.band < 0:
            raise ConfigError(f"{self.title}: band={band} must be >= 0")

    def value(self, x: Tensor) -> float:
        return correlation_error(x, self._true(self._length(x))[1], self._seams.tolist(), self.band, self._pixels())

    def extra(self, x, exact):
        seams, L = self._seams.tolist(), self._length(x)
        out = {"inside": correlation_error(x, self._true(L)[1], inside_centres(seams, L), self.band, self._pixels())}
        out["within"] = self.within(x, seams)
        return out

    def within(self, x: Tensor, centres: Sequence[int]) -> float:
        """The error within components: canvases grouped by their component (``canvas_component``),
        each group against its component's covariance, averaged with the groups' sizes (groups of fewer than
        ``MIN_GROUP`` canvases left out). Local seam defects show here without the mixture's between-component
        variance, which dominates the pooled correlation."""
        gp = self._gp()
        k = canvas_component(gp, x, self._seams)
        covs = gp.canvas_distribution(self._length(x))["covs"]
        total, weight = 0.0, 0
        for c in range(gp.num_components):
            rows = k == c
            n = int(rows.sum())
            if n >= MIN_GROUP:
                total += n * correlation_error(x[rows], covs[c], centres, self.band, gp.pixels)
                weight += n
        return total / weight if weight else math.nan


class GaussianW2(CanvasMetric):
    """Gaussian 2-Wasserstein distance between N(empirical mean, empirical covariance) of the canvases and the
    moment-matched Gaussian of the true canvas mixture (not 0 for exact draws: compare with ``exact``)."""

    title = "Gaussian W2 to the true canvas"
    higher_is_better = False

    def value(self, x: Tensor) -> float:
        mean, cov = self._true(self._length(x))
        return gaussian_w2_samples(x, mean, cov)


class Coherence(CanvasMetric):
    """Share of canvases whose windows all have the same most likely component (exact responsibilities of
    each window under the window mixture). Rows: 1/0 per canvas. Extras: ``pairs``, the share of adjacent
    windows that agree; ``pieces``, the same coherence of the stitched pieces between seams (no seam inside
    a segment: a jump inside a window can flip its assignment to the rougher component, a piece cannot)."""

    title = "coherence"
    higher_is_better = True
    per_sample = True
    aggregate = "compute"
    needs_windows = True

    def values(self, output, source, mask, labels, metas) -> Tensor:
        return coherent(self._gp(), flat_canvases(output, self._gp().frame_size), self._windows)

    def value(self, x: Tensor) -> float:
        return float(coherent(self._gp(), x, self._windows).mean())

    def extra(self, x, exact):
        k = window_components(self._gp(), x, self._windows)
        out = {"pairs": float((k[:, 1:] == k[:, :-1]).double().mean()) if k.shape[1] > 1 else 1.0}
        out["pieces"] = float(coherent(self._gp(), x, pieces(self._seams, self._length(x))).mean())
        return out


# -- the variance-profile figure of an experiment (experiments/wide_gp.yaml, ``figures:``) -------------------------
def run_canvases(run_dir: Path, num_samples: Optional[int] = None) -> tuple[Tensor, list[dict], Any]:
    """The canvases (N, 1, 1, L), their metas and the run's config of samples 0..N-1 of a run folder (N: the
    config's ``num_samples`` unless given; a folder may hold more samples than the run asked for)."""
    from alm import run_folder

    cfg = run_folder.run_config(run_dir)
    if cfg is None:
        raise DataError(f"{run_dir} has no config.yaml")
    n = int(cfg.num_samples if num_samples is None else num_samples)
    records = [run_folder.load_sample(run_dir, i) for i in range(n)]
    return torch.stack([r["output"] for r in records]), [r.get("meta") or {} for r in records], cfg


def run_profile(run_dir: Path, num_samples: Optional[int] = None) -> tuple[dict[str, list], float]:
    """``VarianceProfileError.profile()`` of a run folder (layout from the samples' meta, exact reference draws
    of the run's seed) and the run's variance profile error."""
    x, metas, cfg = run_canvases(run_dir, num_samples)
    metric = VarianceProfileError()
    metric.bind_run(cfg, list(range(x.shape[0])))
    metric.update(x, x, torch.ones_like(x), metas=metas)
    return metric.profile(), metric.compute()


def profile_figure(runs: Sequence[Sequence[Any]], output: Path, path: str = "profiles.png", columns: int = 3,
                   labels: Optional[Sequence[str]] = None, position: str = "canvas position") -> Path:
    """Small multiples, one panel per run ``(label, run_dir[, num_samples])``: the canvases' variance over the
    true variance at every position (blue), the same of as many exact draws (grey: the noise floor), 1 (black),
    the seams (dotted red) and the columns two windows cover (shaded). Written to ``output / path``. ``position``
    names the x axis (a clip's: "frame"; its variance is the mean over the frame's pixels)."""
    from alm.figures import _figure, _save

    runs = [r for r in runs if labels is None or r[0] in set(labels)]
    if not runs:
        raise DataError("profile_figure: no runs")
    profiles = [(r[0], *run_profile(Path(r[1]), r[2] if len(r) > 2 else None)) for r in runs]
    rows = math.ceil(len(profiles) / columns)
    fig = _figure(4.2 * columns, 2.3 * rows)
    ratios = [v / t for _, p, _ in profiles for v, t in zip(p["variance"], p["true_variance"])]
    lo, hi = min(0.9, min(ratios) * 0.95), max(1.1, max(ratios) * 1.05)
    for k, (label, prof, err) in enumerate(profiles):
        ax = fig.add_subplot(rows, columns, k + 1)
        pos, true = prof["position"], prof["true_variance"]
        for p, c in zip(pos, prof["windows"]):
            if isinstance(c, int) and c >= 2:
                ax.axvspan(p - 0.5, p + 0.5, color="0.9", lw=0)
        for p, s in zip(pos, prof["seam"]):
            if s:
                ax.axvline(p - 0.5, color="tab:red", ls=":", lw=0.9)
        if "exact_variance" in prof:
            ax.plot(pos, [v / t for v, t in zip(prof["exact_variance"], true)], color="0.55", lw=0.9,
                    label="exact draws (noise floor)")
        ax.plot(pos, [v / t for v, t in zip(prof["variance"], true)], color="tab:blue", lw=1.3, label="canvases")
        ax.axhline(1.0, color="black", lw=0.7)
        ax.set_ylim(lo, hi)
        ax.set_xlim(-0.5, len(pos) - 0.5)
        ax.set_title(f"{label}  (variance profile error {err:.3f})", fontsize=9)
        if k % columns == 0:
            ax.set_ylabel("variance / true", fontsize=8)
        if k >= len(profiles) - columns:
            ax.set_xlabel(f"{position} (seams dotted, overlaps shaded)", fontsize=8)
        ax.tick_params(labelsize=7)
        if k == 0:
            ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return _save(fig, Path(output) / path)
