"""Overlapping windows along one axis of a canvas (wide images, long videos): pure geometry.

A canvas of length ``L = size + (count - 1) * stride`` along ``axis`` is covered by ``count`` windows
of the backbone's native ``size``; window j starts at ``j * stride``. One window, the ``anchor``, is
where growth starts (window 0: the canvas grows to the right; the middle one: to both sides). Every
other window j has a ``parent``, its neighbour one step closer to the anchor, and observes the
``size - stride`` entries it shares with it (docs/method.md §12):

    right growth (anchor 0):   [ 0 ][ 1 ][ 2 ]...      window j observes its FIRST  size-stride entries
    left  growth (j < anchor):                          window j observes its LAST   size-stride entries

Rows of a batch are window-major: row ``j * B + b`` is window j of sample b, so the windows of one
``group`` (every window at the same distance from the anchor) are contiguous for a single window.

The stitched canvas is written farthest window first and the anchor last, so the window closer to the
anchor (the earlier one, in the authors' order) wins on each overlap; ``average`` is MultiDiffusion's
and SyncTweedies' map back to the canvas (each position the mean of the windows that cover it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from alm.errors import ConfigError

Tensor = torch.Tensor


@dataclass(frozen=True)
class WindowGeometry:
    """``count`` windows of ``size`` at ``stride`` along sample axis ``axis`` (negative: from the end)."""

    size: int
    stride: int
    count: int
    anchor: int = 0
    axis: int = -1

    def __post_init__(self) -> None:
        if self.count < 1 or self.size < 1:
            raise ConfigError(f"windows: count={self.count}, size={self.size}: expected positive integers")
        if not 1 <= self.stride <= self.size:
            raise ConfigError(f"windows: stride={self.stride} must be between 1 and the window size {self.size} "
                              "(windows must overlap or touch)")
        if not 0 <= self.anchor < self.count:
            raise ConfigError(f"windows: anchor={self.anchor} outside the {self.count} windows")
        if self.axis >= 0:
            raise ConfigError(f"windows: axis={self.axis}: give a negative (from the end) sample axis")

    # --- positions -----------------------------------------------------------------------------
    @property
    def length(self) -> int:
        """The canvas length along the axis."""
        return self.size + (self.count - 1) * self.stride

    @property
    def overlap(self) -> int:
        return self.size - self.stride

    def start(self, j: int) -> int:
        return j * self.stride

    def parent(self, j: int) -> Optional[int]:
        """The window j observes (one step closer to the anchor); None for the anchor."""
        if j == self.anchor:
            return None
        return j - 1 if j > self.anchor else j + 1

    def distance(self, j: int) -> int:
        return abs(j - self.anchor)

    def groups(self) -> list[list[int]]:
        """The non-anchor windows by distance from the anchor: group d only observes group d-1."""
        far = max(self.anchor, self.count - 1 - self.anchor)
        return [[j for j in (self.anchor + d, self.anchor - d) if 0 <= j < self.count] for d in range(1, far + 1)]

    def shared(self, j: int) -> tuple[slice, slice]:
        """(entries of window j, entries of its parent) along the axis that hold the same canvas positions."""
        p = self.parent(j)
        if p is None:
            raise ValueError("the anchor window has no parent")
        lo, hi = max(self.start(j), self.start(p)), min(self.start(j), self.start(p)) + self.size
        return slice(lo - self.start(j), hi - self.start(j)), slice(lo - self.start(p), hi - self.start(p))

    def observed_mask(self, j: int) -> Tensor:
        """(size,) float: 1 = generated, 0 = observed from the parent (the anchor: all generated)."""
        m = torch.ones(self.size)
        if self.parent(j) is not None:
            m[self.shared(j)[0]] = 0.0
        return m

    def owner(self) -> Tensor:
        """(length,) long: the window whose entry the stitched canvas keeps at each position."""
        own = torch.empty(self.length, dtype=torch.long)
        for j in self.write_order():
            own[self.start(j): self.start(j) + self.size] = j
        return own

    def write_order(self) -> list[int]:
        """Farthest window first, the anchor last (the window closer to the anchor wins each overlap)."""
        return sorted(range(self.count), key=lambda j: (-self.distance(j), j))

    def seams(self, scale: int = 1) -> Tensor:
        """Positions c (data space: times ``scale``) where the stitched canvas changes window between c-1 and c."""
        own = self.owner()
        return (torch.nonzero(own[1:] != own[:-1]).flatten() + 1) * int(scale)

    def spans(self, scale: int = 1) -> Tensor:
        """(count, 2) long: [start, stop) of every window (data space: times ``scale``)."""
        return torch.tensor([[self.start(j) * scale, (self.start(j) + self.size) * scale] for j in range(self.count)])

    # --- rows <-> canvas -------------------------------------------------------------------------
    def dim(self, x: Tensor) -> int:
        """The axis of a batched tensor (B, *sample_shape)."""
        return x.dim() + self.axis

    def rows(self, j: int, batch: int) -> slice:
        return slice(j * batch, (j + 1) * batch)

    def batch(self, rows: Tensor) -> int:
        if rows.shape[0] % self.count:
            raise ValueError(f"{rows.shape[0]} rows are not {self.count} windows of a batch")
        return rows.shape[0] // self.count

    def crops(self, canvas: Tensor) -> Tensor:
        """(B, ..., length, ...) -> (count * B, ..., size, ...): every window of every sample, window-major."""
        d = self.dim(canvas)
        return torch.cat([canvas.narrow(d, self.start(j), self.size) for j in range(self.count)], dim=0)

    def stitch(self, rows: Tensor) -> Tensor:
        """Window rows -> canvas, farthest window written first (the earlier window wins on each overlap)."""
        b, d = self.batch(rows), self.dim(rows)
        shape = list(rows.shape)
        shape[0], shape[d] = b, self.length
        canvas = rows.new_zeros(shape)
        for j in self.write_order():
            canvas.narrow(d, self.start(j), self.size).copy_(rows[self.rows(j, b)])
        return canvas

    def average(self, rows: Tensor) -> Tensor:
        """Window rows -> canvas, each position the mean over the windows that cover it."""
        b, d = self.batch(rows), self.dim(rows)
        shape = list(rows.shape)
        shape[0], shape[d] = b, self.length
        total, count = rows.new_zeros(shape), rows.new_zeros(shape)
        for j in range(self.count):
            total.narrow(d, self.start(j), self.size).add_(rows[self.rows(j, b)])
            count.narrow(d, self.start(j), self.size).add_(1.0)
        return total / count

    def synced(self, rows: Tensor) -> Tensor:
        """Every window replaced by its crop of the averaged canvas."""
        return self.crops(self.average(rows))

    def from_parents(self, rows: Tensor, into: Optional[Tensor] = None) -> Tensor:
        """``into`` (default: a copy of ``rows``) with every non-anchor window's shared entries replaced by its
        parent's current entries there: a window's X_t when it observes its neighbour's state."""
        b, d = self.batch(rows), self.dim(rows)
        out = rows.clone() if into is None else into.clone()
        for j in range(self.count):
            p = self.parent(j)
            if p is None:
                continue
            mine, theirs = self.shared(j)
            out[self.rows(j, b)].narrow(d, mine.start, mine.stop - mine.start).copy_(
                rows[self.rows(p, b)].narrow(d, theirs.start, theirs.stop - theirs.start))
        return out

    def group_rows(self, group: list[int], batch: int):
        """The rows of ``group``'s windows: a slice for one window, an index tensor for several."""
        if len(group) == 1:
            return self.rows(group[0], batch)
        return torch.cat([torch.arange(j * batch, (j + 1) * batch) for j in group])


def check_window_options(stride: float, count: int, extend: str) -> None:
    """One-line ConfigErrors for the window options that do not depend on the backbone."""
    if isinstance(stride, bool) or not isinstance(stride, (int, float)) or stride <= 0:
        raise ConfigError(f"task.stride={stride!r}: expected a fraction of the window in (0, 1] or a number of entries")
    if extend not in ("right", "both"):
        raise ConfigError(f"task.extend={extend!r}: expected right or both")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ConfigError(f"task.windows={count!r}: expected a positive integer")
    if extend == "both" and count % 2 == 0:
        raise ConfigError(f"task.windows={count} with extend=both: expected an odd count (the source in the middle)")


def geometry_for(size: int, stride: float, count: int, extend: str = "right", axis: int = -1) -> WindowGeometry:
    """The geometry from config values: ``stride`` as a fraction of the window (0.75 = the paper's 384 of
    512 px) or, if > 1, in entries; ``extend`` = right (anchor = window 0) or both (anchor in the middle)."""
    check_window_options(stride, count, extend)
    step = stride * size if stride <= 1 else stride
    if abs(step - round(step)) > 1e-9:
        raise ConfigError(f"task.stride={stride} of a window of {size} entries is {step:g}, not a whole number of entries")
    anchor = 0 if extend == "right" else count // 2
    return WindowGeometry(size=int(size), stride=int(round(step)), count=count, anchor=anchor, axis=axis)
