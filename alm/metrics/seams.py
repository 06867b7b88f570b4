"""Seams of a wide canvas, without any backbone: the layout helpers and ``seam_ratio`` (docs/wide_gp.md).

A wide canvas (C, H, L) is stitched from K windows along its last axis; window j covers the columns
``windows[j] = [start_j, stop_j)`` and, on every overlap, the earlier window wins. A **seam** is a column c
whose left neighbour c-1 comes from a different window: with earlier-wins stitching, c = stop_{j-1} for
j >= 1 (the first column that window j contributes). The windowed task stores ``windows`` (K, 2), ``seams``
and ``axis`` (the sample axis the windows run along, -1 = width) in every sample's ``meta``; the metrics
read them from there (``meta["seams"]``, else the seams of ``meta["windows"]``; ``seam_ratio`` takes its
columns along ``meta["axis"]``), and only for a sample without them (samples of older runs, tensors
from elsewhere) fall back on their own options: ``seams`` / ``windows`` explicitly, else the geometry of
``count`` windows of ``window`` columns at ``stride``, two of the three with the canvas length, as
``task=wide`` writes them (``stride`` a fraction of the window if <= 1, else columns; ``extend: both``
grows from the middle window, which then wins its overlaps); options left null come from the run's task
(``task.windows`` = the count, ``task.stride``, ``task.extend``). The fallback is a few integer operations.

``seam_ratio``: the mean squared difference between adjacent columns across the seams, divided by the
same inside the windows (every other adjacent pair of columns, optionally leaving out ``exclude`` pairs on
each side of a seam). Per sample::

    d(c)        = mean over the other axes of (x[..., c] - x[..., c-1])^2      (c = 1 .. L-1)
    seam_ratio  = mean_{c in seams} d(c) / mean_{c not a seam} d(c)

1.0 = the seams cannot be told from any other column boundary (for a stationary process: exactly in
expectation), > 1 = a visible step, < 1 = over-smoothed seams. The run's summary is the pooled ratio
(sum of the set's seam differences over its seam count, divided by the same inside), not the mean of
the per-sample ratios (a mean of ratios of noisy values is biased upwards). Lower is better towards 1:
the ranked form is ``seam_log_ratio`` = |log seam_ratio| (lower).
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch

from alm.errors import ConfigError, DataError
from alm.metrics.base import Metric

Tensor = torch.Tensor


# -- the layout ---------------------------------------------------------------------------------------
def stride_columns(stride: float, window: int) -> int:
    """A stride in columns from the task's convention: a fraction of the window if <= 1, else columns."""
    step = float(stride) * window if float(stride) <= 1 else float(stride)
    if step < 1 or abs(step - round(step)) > 1e-9:
        raise ConfigError(f"stride={stride} of a window of {window} columns is {step:g}: not a whole number >= 1")
    return int(round(step))


def strided_windows(length: int, window: int, stride: float) -> Tensor:
    """[start, stop) (K, 2) of evenly strided windows covering ``length`` columns exactly (``stride`` as in
    ``stride_columns``)."""
    length, window = int(length), int(window)
    if window < 1 or window > length:
        raise ConfigError(f"windows of {window} columns do not fit a canvas of {length}")
    step = stride_columns(stride, window)
    if (length - window) % step:
        raise ConfigError(f"a canvas of {length} columns is not windows of {window} at stride {step} "
                          f"(({length} - {window}) / {step} is not an integer)")
    starts = torch.arange(0, length - window + 1, step, dtype=torch.long)
    return torch.stack([starts, starts + window], dim=1)


def seams_from_windows(windows: Any, anchor: int = 0) -> Tensor:
    """The seams of a stitch in which the window closer to ``anchor`` wins every overlap (anchor 0: the
    earlier window; seams stop_{j-1}): the columns c whose window differs from column c-1's."""
    w = as_windows(windows)
    length = int(w[:, 1].max())
    owner = torch.full((length,), -1, dtype=torch.long)
    for j in sorted(range(w.shape[0]), key=lambda j: (-abs(j - int(anchor)), j)):  # closest to the anchor last
        owner[int(w[j, 0]) : int(w[j, 1])] = j
    return torch.nonzero(owner[1:] != owner[:-1]).flatten() + 1


def as_windows(windows: Any) -> Tensor:
    w = torch.as_tensor(windows, dtype=torch.long).reshape(-1, 2) if windows is not None else None
    if w is None or w.numel() == 0 or bool((w[:, 1] <= w[:, 0]).any()) or bool((w[:, 0] < 0).any()):
        raise DataError(f"windows must be [start, stop) pairs with start < stop, got {windows!r}")
    return w


def meta_axis(meta: Any) -> int:
    """The sample axis the canvas's windows run along: ``meta["axis"]`` (negative), else -1 (the width)."""
    axis = _meta_value(meta, "axis")
    if axis is None:
        return -1
    if isinstance(axis, bool) or not isinstance(axis, int) or axis >= 0:
        raise DataError(f"meta axis={axis!r}: expected a negative sample axis (-1 = width)")
    return int(axis)


def _meta_value(meta: Any, key: str) -> Any:
    if meta is None:
        return None
    if isinstance(meta, dict):
        return meta.get(key)
    return getattr(meta, key, None)


class Layout:
    """Where the windows and seams of the canvases come from: each sample's meta (``windows``, ``seams``),
    else explicit ``seams`` / ``windows``, else the geometry ``count`` windows of ``window`` columns at
    ``stride`` (a fraction of the window if <= 1, else columns; two of the three suffice given the canvas
    length), grown from window 0 (``extend: right``) or from the middle one (``both``)."""

    def __init__(self, seams: Optional[Sequence[int]] = None, windows: Optional[Sequence[Sequence[int]]] = None,
                 window: Optional[int] = None, stride: Optional[float] = None, count: Optional[int] = None,
                 extend: Optional[str] = None) -> None:
        self.seams = None if seams is None else [int(c) for c in seams]
        self.windows = None if windows is None else as_windows(windows)
        self.window = None if window is None else int(window)
        self.stride = None if stride is None else float(stride)
        self.count = None if count is None else int(count)
        self.extend = extend
        if extend not in (None, "right", "both"):
            raise ConfigError(f"extend={extend!r}: expected right or both")
        self._options = (self.window, self.stride, self.count, self.extend)

    def reset(self) -> None:
        """Back to the configured options (before a run's ``fill_from_run``)."""
        self.window, self.stride, self.count, self.extend = self._options

    def fill_from_run(self, run_cfg: Any, window: Optional[int] = None) -> None:
        """Options left null from the run: ``window`` (e.g. a backbone's window length in data space), then the
        task's ``windows`` (the count), ``stride`` and ``extend`` (task=wide's keys)."""
        self.reset()
        if self.window is None and window is not None:
            self.window = int(window)
        task = run_cfg.get("task") if run_cfg is not None else None
        if task is None:
            return
        count, stride, extend = task.get("windows"), task.get("stride"), task.get("extend")
        if self.count is None and isinstance(count, int) and not isinstance(count, bool):
            self.count = count
        if self.stride is None and isinstance(stride, (int, float)) and not isinstance(stride, bool):
            self.stride = float(stride)
        if self.extend is None and extend in ("right", "both"):
            self.extend = str(extend)

    def geometry(self, length: int) -> Optional[Tensor]:
        """The windows (K, 2) of a canvas of ``length`` columns from the geometry options, or None."""
        if self.stride is None or (self.window is None and self.count is None):
            return None
        size = self.window
        if size is None:  # from the count: length = size + (count - 1) * stride
            k, f = self.count, self.stride
            size_f = length / (1 + (k - 1) * f) if f <= 1 else length - (k - 1) * f
            if size_f < 1 or abs(size_f - round(size_f)) > 1e-9:
                raise ConfigError(f"a canvas of {length} columns is not {k} windows at stride {f}")
            size = int(round(size_f))
        windows = strided_windows(length, size, self.stride)
        if self.count is not None and windows.shape[0] != self.count:
            raise DataError(f"a canvas of {length} columns holds {windows.shape[0]} windows of {size} at stride "
                            f"{self.stride}, not {self.count}")
        return windows

    def anchor(self, count: int) -> int:
        return count // 2 if self.extend == "both" else 0

    def of(self, meta: Any, length: int, need_windows: bool = False) -> tuple[Optional[Tensor], Tensor]:
        """(windows (K, 2) or None, seams (S,)) of one canvas of ``length`` columns."""
        windows = _meta_value(meta, "windows")
        windows = as_windows(windows) if windows is not None else self.windows
        if windows is None:
            windows = self.geometry(length)
        seams = _meta_value(meta, "seams")
        if seams is None:
            seams = self.seams
        if seams is None and windows is not None:
            seams = seams_from_windows(windows, self.anchor(windows.shape[0]))
        if seams is None or (need_windows and windows is None):
            what = "windows" if need_windows else "seams"
            raise DataError(f"the canvas's {what} are unknown: the sample's meta has no 'windows'"
                            f"{'' if need_windows else ' or seams'}, the metric no "
                            f"{'windows' if need_windows else 'seams or windows'} option, and no window geometry "
                            "(window / count with stride, from the options or the run's task)")
        seams = torch.as_tensor(seams, dtype=torch.long).reshape(-1)
        if windows is not None and int(windows[:, 1].max()) > length:
            raise DataError(f"windows {windows.tolist()} reach beyond the canvas's {length} columns")
        if seams.numel() and (int(seams.min()) < 1 or int(seams.max()) > length - 1):
            raise DataError(f"seams {seams.tolist()} must be columns 1..{length - 1} of a canvas of {length}")
        return windows, seams


def column_differences(x: Tensor) -> Tensor:
    """d(c) = mean over every other axis of (x[..., c] - x[..., c-1])^2: (B, ..., L) -> (B, L-1), d[:, c-1]."""
    d = (x[..., 1:] - x[..., :-1]).double().pow(2)
    return d.reshape(d.shape[0], -1, d.shape[-1]).mean(dim=1)


def seam_columns(length: int, seams: Tensor, exclude: int = 0) -> tuple[Tensor, Tensor]:
    """Bool masks over the pairs c = 1..L-1 (index c-1): the seams, and the inside pairs (not a seam and at
    least ``exclude`` + 1 pairs from one)."""
    c = torch.arange(1, length)
    at_seam = torch.zeros(length - 1, dtype=torch.bool)
    near = torch.zeros(length - 1, dtype=torch.bool)
    for s in seams.tolist():
        at_seam |= c == s
        near |= (c - s).abs() <= int(exclude)
    return at_seam, ~(at_seam | near)


class SeamRatio(Metric):
    """Mean squared adjacent-column difference across the seams / inside the windows (1 = invisible seam).

    Rows: the per-canvas ratio; summary: the pooled ratio of the set (module docstring). No direction
    (best at 1): rank ``SeamLogRatio`` instead."""

    title = "seam ratio (best at 1)"
    higher_is_better: Optional[bool] = None
    aggregate = "compute"
    regions = ("full",)

    def __init__(self, seams: Optional[Sequence[int]] = None, windows: Optional[Sequence[Sequence[int]]] = None,
                 window: Optional[int] = None, stride: Optional[float] = None, count: Optional[int] = None,
                 extend: Optional[str] = None, exclude: int = 0, region: str = "full") -> None:
        super().__init__(region)
        self.layout = Layout(seams, windows, window, stride, count, extend)
        self.exclude = int(exclude)
        if self.exclude < 0:
            raise ConfigError(f"{self.title}: exclude={exclude} must be >= 0")
        self._seam_sum = self._seam_n = self._in_sum = self._in_n = 0.0

    def bind_run(self, run_cfg: Any, indices: Optional[Sequence[int]] = None) -> None:
        """Layout options left null are taken from the run's task (``windows`` = the count, ``stride``,
        ``extend``); a sample's meta still wins."""
        self.layout.fill_from_run(run_cfg)

    def values(self, output, source, mask, labels, metas) -> Tensor:
        out = torch.empty(output.shape[0], dtype=torch.float64)
        for i in range(output.shape[0]):
            meta = metas[i] if i < len(metas) else None
            x = output[i : i + 1].movedim(meta_axis(meta), -1)  # the windows' axis last (a no-op for the width)
            L = x.shape[-1]
            d = column_differences(x)[0]
            _, seams = self.layout.of(meta, L)
            at, inside = seam_columns(L, seams, self.exclude)
            if not bool(at.any()) or not bool(inside.any()):
                out[i] = math.nan
                continue
            s, n = float(d[at].sum()), float(d[inside].sum())
            self._seam_sum += s
            self._seam_n += int(at.sum())
            self._in_sum += n
            self._in_n += int(inside.sum())
            out[i] = (s / int(at.sum())) / (n / int(inside.sum())) if n > 0 else math.nan
        return out

    def pooled(self) -> float:
        if not self._seam_n or not self._in_n or self._in_sum <= 0:
            return math.nan
        return (self._seam_sum / self._seam_n) / (self._in_sum / self._in_n)

    def compute(self) -> float:
        return self.pooled()

    def reset(self) -> None:
        super().reset()
        self._seam_sum = self._seam_n = self._in_sum = self._in_n = 0.0


class SeamLogRatio(SeamRatio):
    """|log seam_ratio| of the set (pooled): 0 = invisible seams; lower is better (the ranked form)."""

    title = "|log seam ratio|"
    higher_is_better = False

    def values(self, output, source, mask, labels, metas) -> Tensor:
        return super().values(output, source, mask, labels, metas).log().abs()

    def compute(self) -> float:
        r = self.pooled()
        return abs(math.log(r)) if r > 0 else (math.inf if r == 0 else math.nan)
