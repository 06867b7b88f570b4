"""Measures of a long video stitched from windows along its frames (``task=video``).

A video is (C, F, H, W); its windows ``[start_j, stop_j)`` (frames) and seams (the frames where the
stitched video changes window) ride in each sample's meta (``alm.metrics.seams.Layout``).

Weight-free, for any backbone:

- ``boundary_jump`` = ``alm.metrics.seams.SeamRatio`` along the frames (the task stores ``axis = -3``):
  mean squared frame-to-frame change across the seams / inside the windows (1.0 = no visible seam).
- ``Drift``: each window's mean frame m_j against the first window's::

      drift_j = sqrt(mean over pixels of (m_j - m_0)^2),    drift = mean_{j >= 1} drift_j

  (0 = every window shows, on average, what the first one showed; a video that wanders off grows it).

The moving-digits testbed (``alm.data.moving_digits``; judge: the committed MNIST classifier):

- ``DigitIdentity``: share of the windows classified as the conditioning digit. Every frame's digit is
  cut out around its ink centroid (a 16 px square, enlarged to MNIST's 28 px and padded to 32, as
  the digits were shrunk), the classifier's probabilities are averaged over the window's frames, and the
  window counts if their argmax is the label.
- ``MotionRatio`` / ``MotionLogRatio``: the seam ratio of the digit's centroid track instead of the
  pixels: the mean squared centroid step (px^2 per frame) across the seams / inside the windows. The
  digit moves at a constant speed and bounces elastically, so a continuous motion gives 1.0; a window
  that restarts the digit elsewhere gives a jump (> 1). Ranked: ``|log ratio|``.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F

from alm.errors import DataError
from alm.metrics.base import Metric
from alm.metrics.classifier import _ClassifierMetric
from alm.metrics.seams import Layout, SeamLogRatio, SeamRatio, meta_axis

Tensor = torch.Tensor


# -- pure functions ------------------------------------------------------------------------------------
def window_means(video: Tensor, windows: Tensor) -> Tensor:
    """Mean frame of every window: ``video`` (C, F, H, W), ``windows`` (K, 2) -> (K, C, H, W)."""
    return torch.stack([video[:, int(a):int(b)].double().mean(dim=1) for a, b in windows.tolist()])


def drift_profile(video: Tensor, windows: Tensor) -> Tensor:
    """drift_j = RMS(m_j - m_0) for every window j (drift_0 = 0): (K,) float64."""
    m = window_means(video, windows)
    return (m - m[:1]).pow(2).flatten(1).mean(1).sqrt()


def ink_centroids(video: Tensor) -> Tensor:
    """(F, 2) ink centroid (row, column) of every frame of a grey video (1, F, H, W) in [-1, 1] (ink = x + 1);
    a frame without ink gets the frame centre."""
    from alm.data.moving_digits import digit_positions

    return torch.from_numpy(digit_positions(video.unsqueeze(0).cpu()))[0]


def digit_crops(video: Tensor, side: int = 16, out: int = 28, pad: int = 2) -> Tensor:
    """Every frame's digit as MNIST shows one: the ``side`` px square around the frame's ink centroid
    (clamped into the frame), enlarged to ``out`` px (bilinear) and padded with background to ``out + 2 pad``:
    (1, F, H, W) -> (F, 1, out + 2 pad, out + 2 pad)."""
    frames = video[0].float()  # (F, H, W)
    h, w = frames.shape[-2:]
    centre = ink_centroids(video)
    crops = []
    for f in range(frames.shape[0]):
        top = int(min(max(round(float(centre[f, 0]) - (side - 1) / 2), 0), h - side))
        left = int(min(max(round(float(centre[f, 1]) - (side - 1) / 2), 0), w - side))
        crops.append(frames[f, top:top + side, left:left + side])
    x = torch.stack(crops).unsqueeze(1)
    x = F.interpolate(x, size=(out, out), mode="bilinear", align_corners=False)
    return F.pad(x, (pad, pad, pad, pad), value=-1.0).clamp(-1, 1)


def _layout_windows(layout: Layout, meta: Any, length: int) -> Tensor:
    windows, _ = layout.of(meta, length, need_windows=True)
    return windows


# -- metrics -------------------------------------------------------------------------------------------
class Drift(Metric):
    """Mean over the windows j >= 1 of RMS(window j's mean frame - window 0's) (module docstring)."""

    title = "drift (RMS, window mean frame vs the first)"
    higher_is_better = False
    regions = ("full",)

    def __init__(self, windows: Optional[Sequence[Sequence[int]]] = None, window: Optional[int] = None,
                 stride: Optional[float] = None, count: Optional[int] = None, region: str = "full") -> None:
        super().__init__(region)
        self.layout = Layout(None, windows, window, stride, count, None)

    def bind_run(self, run_cfg: Any, indices: Optional[Sequence[int]] = None) -> None:
        self.layout.fill_from_run(run_cfg)

    def values(self, output, source, mask, labels, metas) -> Tensor:
        out = torch.empty(output.shape[0], dtype=torch.float64)
        for i in range(output.shape[0]):
            meta = metas[i] if i < len(metas) else None
            video = output[i].movedim(meta_axis(meta), -3)  # the windows' axis = the frames
            windows = _layout_windows(self.layout, meta, video.shape[-3])
            prof = drift_profile(video, windows)
            out[i] = prof[1:].mean() if prof.numel() > 1 else math.nan
        return out


class DigitIdentity(_ClassifierMetric):
    """Share of a video's windows classified as the conditioning digit (module docstring); the judge's loading
    and the label checks are ``alm.metrics.classifier``'s."""

    what = "digit identity"

    def __init__(self, path: Optional[str] = None, windows: Optional[Sequence[Sequence[int]]] = None,
                 window: Optional[int] = None, stride: Optional[float] = None, count: Optional[int] = None,
                 region: str = "full") -> None:
        super().__init__(path, region)
        self.layout = Layout(None, windows, window, stride, count, None)
        self.title = self.title.replace(")", ", share of windows)")

    def bind_run(self, run_cfg: Any, indices: Optional[Sequence[int]] = None) -> None:
        self.layout.fill_from_run(run_cfg)

    def values(self, output, source, mask, labels, metas) -> Tensor:
        out = torch.empty(output.shape[0], dtype=torch.float64)
        for i in range(output.shape[0]):
            meta = metas[i] if i < len(metas) else None
            video = output[i].movedim(meta_axis(meta), -3)
            if video.shape[0] != 1:
                raise DataError(f"{self.title}: expects grey videos (1, F, H, W), got {tuple(video.shape)}")
            windows = _layout_windows(self.layout, meta, video.shape[-3])
            probs = self._probs(digit_crops(video))[:, 0].double().cpu()  # (F, classes)
            label = int(self._labels([labels[i]], probs.shape[-1])[0])
            hits = [int(probs[int(a):int(b)].mean(0).argmax()) == label for a, b in windows.tolist()]
            out[i] = sum(hits) / len(hits)
        return out


def _track_as_video(output: Tensor, metas: Sequence[Any]) -> tuple[Tensor, list]:
    """The centroid track of every video as a 2-channel "video" (B, 2, F, 1, 1), frames on axis -3."""
    tracks = []
    for i in range(output.shape[0]):
        meta = metas[i] if i < len(metas) else None
        video = output[i].movedim(meta_axis(meta), -3)
        tracks.append(ink_centroids(video[:1]).T.reshape(2, -1, 1, 1))  # (2, F, 1, 1)
    metas = [{**(m or {}), "axis": -3} if isinstance(m, dict) or m is None else m for m in metas]
    return torch.stack(tracks), metas


class MotionRatio(SeamRatio):
    """Mean squared centroid step across the seams / inside the windows (1.0 = continuous motion)."""

    title = "motion ratio (centroid step at seams / inside, best at 1)"

    def values(self, output, source, mask, labels, metas) -> Tensor:
        track, metas = _track_as_video(output, metas)
        return super().values(track, source, mask, labels, metas)


class MotionLogRatio(SeamLogRatio):
    """|log motion ratio| (pooled over the set): 0 = the digit moves on across the seams; lower is better."""

    title = "|log motion ratio|"

    def values(self, output, source, mask, labels, metas) -> Tensor:
        track, metas = _track_as_video(output, metas)
        return super().values(track, source, mask, labels, metas)
