"""Windows of one canvas: wide images by outpainting (paper §4.2.2), and the same along any axis.

A sample is a canvas of ``windows`` overlapping windows of the backbone's native size along ``axis``
(``alm.windows``). All windows of all samples of a batch are rows of ONE batch (window-major), denoised
side by side by any method: a window observes the entries it shares with its neighbour closer to the
anchor, X_t there being that neighbour's CURRENT state (``alm.observation.FromState``), and the groups of
windows at the same distance from the anchor form the observation's chain, which ALM's move visits in
order (the authors' order; docs/method.md §12). Methods that need the canvas itself (SyncTweedies,
MultiDiffusion) read the geometry from ``Problem.extra["windows"]``.

- Initial noise: ONE canvas noise per sample from the sample's generator, cropped to its windows, so the
  overlaps start equal (as the authors' code).
- ``source: true``: outpaint the data set's image: it is the anchor window (window 0 with
  ``extend: right``; the middle window with ``extend: both``), fully observed, its X_t the DDIM
  inversion of its encoding (cached like inpainting's); a method that reads no X_t is refused.
- Output: the stitched canvas, decoded once (the window closer to the anchor wins each overlap).

Each sample's record keeps ``output`` (the canvas), ``source`` (the data set's canvas-size image, or the
source placed on the canvas, or zeros) and ``mask`` (1 = generated); its ``meta`` the layout the seam
metrics read: ``windows`` ([start, stop) per window), ``seams`` (where the stitched canvas changes window),
both in data space, and ``axis``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import torch

from alm import io, video_io
from alm.backbones.base import cat_cond
from alm.errors import ConfigError, DataError
from alm.methods.base import Method, Problem
from alm.observation import FromState
from alm.sampling import CallCounter
from alm.schedule import Schedule
from alm.tasks.base import Batch, Task
from alm.windows import WindowGeometry, check_window_options, geometry_for

Tensor = torch.Tensor


def neighbour_state(geometry: WindowGeometry, batch: int, anchor_trajectory: Optional[Tensor] = None) -> FromState:
    """X_t of every window: its parent's current entries on the shared part (``WindowGeometry.from_parents``);
    the anchor's X_t is ``anchor_trajectory[i]`` when a source is observed. ``chain``: the window groups."""

    def x_t(i: int, y: Tensor) -> Tensor:
        into = None
        if anchor_trajectory is not None:
            into = y.clone()
            into[geometry.rows(geometry.anchor, batch)] = anchor_trajectory[i]
        return geometry.from_parents(y, into)

    return FromState(x_t, chain=[geometry.group_rows(g, batch) for g in geometry.groups()] or None)


@dataclass
class Windows(Task):
    """The windowed canvas (``conf/task/wide.yaml``); the fields are its config keys."""

    name: ClassVar[str] = "wide"
    non_output_keys: ClassVar[tuple[str, ...]] = ("inversion_cache", "cache_dir", "strip_every", "videos")

    windows: int = 5            # window count (the paper: 5 windows of 512 px at a stride of 384 px -> 2048 px)
    stride: float = 0.75        # fraction of the window (or, if > 1, entries of the diffusion variable)
    axis: int = -1              # the sample axis the windows run along (-1: width; a video's frames: -3)
    extend: str = "right"       # right: grow from window 0; both: from the middle window (odd count)
    source: bool = False        # outpaint the data set's image (the anchor window observed)
    inversion_cache: Any = "auto"   # keep the source's inversion on disk (as task=inpaint)
    cache_dir: Optional[str] = None
    strip_every: int = 8        # a video's strip PNG shows every k-th frame
    videos: bool = True         # write each video's MP4 and GIF (false: only its strip PNG; ~0.4 s a video saved)

    def __post_init__(self) -> None:
        if not isinstance(self.source, bool):
            raise ConfigError(f"task.source={self.source!r}: expected true or false")
        if not (isinstance(self.inversion_cache, bool) or self.inversion_cache == "auto"):
            raise ConfigError(f"task.inversion_cache={self.inversion_cache!r}: expected true, false or auto")
        if isinstance(self.axis, bool) or not isinstance(self.axis, int) or self.axis >= 0:
            raise ConfigError(f"task.axis={self.axis!r}: expected a negative sample axis (-1 = width)")
        check_window_options(self.stride, self.windows, self.extend)  # the rest needs the backbone (check)
        if isinstance(self.strip_every, bool) or not isinstance(self.strip_every, int) or self.strip_every < 1:
            raise ConfigError(f"task.strip_every={self.strip_every!r}: expected a positive frame step")
        if not isinstance(self.videos, bool):
            raise ConfigError(f"task.videos={self.videos!r}: expected true or false")
        self._geometry: Optional[WindowGeometry] = None  # set by check (they depend on the backbone)
        self._scale, self._canvas = 1, ()
        self._cache = None

    # --- geometry ------------------------------------------------------------------------------
    def geometry(self, backbone: Any) -> WindowGeometry:
        size = int(backbone.sample_shape[self.axis])
        return geometry_for(size, self.stride, int(self.windows), self.extend, self.axis)

    def canvas_shape(self, backbone: Any) -> tuple[int, ...]:
        """The data-space shape of a canvas."""
        g, scale = self.geometry(backbone), self.scale(backbone)
        shape = list(backbone.data_shape)
        shape[self.axis] = g.length * scale
        return tuple(shape)

    def scale(self, backbone: Any) -> int:
        data, sample = int(backbone.data_shape[self.axis]), int(backbone.sample_shape[self.axis])
        if data % sample:
            raise ConfigError(f"backbone {getattr(backbone, 'name', '')}: data length {data} is not a multiple of "
                              f"its diffusion variable's {sample} along axis {self.axis}")
        return data // sample

    def check(self, backbone: Any, dataset: Any, method: Method) -> None:
        self._geometry, self._scale = self.geometry(backbone), self.scale(backbone)
        self._canvas = canvas = self.canvas_shape(backbone)
        shape, window = getattr(dataset, "shape", None), tuple(backbone.data_shape)
        if self.source:
            if not method.reads_x_t:
                raise ConfigError(f"task.source=true outpaints an observed image, but method={method.name} reads no "
                                  "observation; use alm, syncsde or another method that reads X_t")
            if shape is None or tuple(shape) not in (window, canvas):
                raise ConfigError(f"task.source=true needs data set images of the window's shape {window} (or the "
                                  f"canvas's {canvas}); dataset {getattr(dataset, 'name', '')} gives {shape}")
            use_cache = (not backbone.analytic) if self.inversion_cache == "auto" else self.inversion_cache
            if use_cache and self.cache_dir:
                from alm.inversion_cache import InversionCache

                self._cache = InversionCache(self.cache_dir)

    # --- the protocol ---------------------------------------------------------------------------
    def load(self, dataset: Any, masks: Any, indices: list[int], device: torch.device) -> Batch:
        if self._geometry is None:
            raise RuntimeError("Windows.load before check")
        items = [dataset[i] for i in indices]
        window = torch.stack([self._anchor_crop(it.image) for it in items]).to(device) if self.source else None
        sources = torch.stack([self._canvas_image(it.image, window[k] if window is not None else None)
                               for k, it in enumerate(items)]).to(device)
        mask = torch.ones(1, 1, *self._canvas[1:])
        if self.source:  # the source window is observed
            mask.narrow(mask.dim() + self.axis, *self._anchor_span()).zero_()
        g, scale = self._geometry, self._scale  # the layout rides in each sample's meta (the metrics read it there)
        layout = {"windows": g.spans(scale).tolist(), "seams": g.seams(scale).tolist(), "axis": self.axis}
        batch = Batch(list(indices), sources, mask.expand(len(items), *mask.shape[1:]).contiguous().to(device),
                      [it.label for it in items], [{**it.meta, **layout} for it in items])
        batch.window_sources = window  # the anchor images (source: true), data space
        return batch

    def problem(self, backbone: Any, method: Method, batch: Batch, schedule: Schedule,
                counter: Optional[CallCounter] = None) -> Problem:
        g, b = self._geometry, len(batch)
        with torch.no_grad():
            return windows_problem(backbone, method, g, b, batch.labels, schedule, getattr(batch, "window_sources", None),
                                   counter=counter, cache=self._cache)

    def finish(self, backbone: Any, batch: Batch, z: Tensor) -> Tensor:
        with torch.no_grad():
            return backbone.decode(self._geometry.stitch(z)).float()

    def pictures(self, record: dict) -> dict[str, Tensor]:
        pics = {"output": record["output"]}
        if bool((record["mask"] < 0.5).any()):
            pics["source"] = io.shown_masked(record["source"], record["mask"])
        return {k: self._picture(v) for k, v in pics.items()}

    def movies(self, record: dict) -> dict[str, Tensor]:
        """A clip's MP4 and GIF (a video's frames along axis -3); none for a wide image."""
        is_video = record["output"].dim() == 4 and self.axis == -3
        return {"output": record["output"]} if is_video and self.videos else {}

    def panels(self, record: dict) -> list[Tensor]:
        return [self._picture(record["output"]).clamp(-1, 1)]

    # --- helpers -------------------------------------------------------------------------------
    def _picture(self, x: Tensor) -> Tensor:
        """A record tensor as a picture: a video (windows along its frames) is a Fig. 7-style strip of every
        ``strip_every``-th frame with frame numbers, the windows and their seams (``alm.video_io.strip``)."""
        if x.dim() == 4 and self.axis == -3 and self._geometry is not None:
            g, scale = self._geometry, self._scale
            return video_io.strip(x, self.strip_every, g.spans(scale).tolist(), g.seams(scale).tolist())
        return _as_image(x)

    def _anchor_span(self) -> tuple[int, int]:
        """(start, length) of the anchor window on the data-space canvas."""
        g, scale = self._geometry, self._scale
        return g.start(g.anchor) * scale, g.size * scale

    def _anchor_crop(self, image: Optional[Tensor]) -> Tensor:
        """The observed window: the data set's image, or its anchor window if it is canvas-size."""
        if image is None:
            raise DataError("task.source=true but the data set item has no image")
        if image.shape[self.axis] == self._canvas[self.axis]:
            return image.narrow(image.dim() + self.axis, *self._anchor_span())
        return image

    def _canvas_image(self, image: Optional[Tensor], window: Optional[Tensor]) -> Tensor:
        """The record's source: the data set's canvas-size image, else the source window on a zero canvas."""
        if image is not None and tuple(image.shape) == self._canvas:
            return image.float()
        canvas = torch.zeros(self._canvas)
        if window is not None:
            canvas.narrow(canvas.dim() + self.axis, *self._anchor_span()).copy_(window.cpu())
        return canvas


def _as_image(x: Tensor) -> Tensor:
    """A (C, H, W) picture of a record tensor (a 1-D field (C, 1, L) is drawn 16 px tall; a clip
    (C, F, H, W) is its frames side by side, a strip of F x W px)."""
    if x.dim() == 3 and x.shape[-2] == 1:
        return x.expand(x.shape[0], 16, x.shape[-1])
    if x.dim() == 4:
        c, f, h, w = x.shape
        return x.permute(0, 2, 1, 3).reshape(c, h, f * w)
    return x


def windows_problem(
    backbone: Any,
    method: Method,
    geometry: WindowGeometry,
    batch: int,
    labels: list,
    schedule: Schedule,
    window_sources: Optional[Tensor] = None,
    counter: Optional[CallCounter] = None,
    cache: Any = None,
) -> Problem:
    """The rows of ``batch`` canvases (a pure function of its inputs): window-major rows, masks, the
    condition repeated per window, the neighbour observation, the canvas-noise initial state."""
    g = geometry
    shape = tuple(backbone.sample_shape)
    device = backbone.device
    # the state's dtype: float64 for a float64 backbone (the equivalence tests), else float32 (also for fp16 weights)
    params = list(backbone.parameters()) + list(backbone.buffers())
    dtype = torch.float64 if any(p.dtype == torch.float64 for p in params) else torch.float32
    x0 = torch.zeros(g.count * batch, *shape, device=device, dtype=dtype)
    mask_line = torch.stack([g.observed_mask(j) for j in range(g.count)])  # (K, size)
    view = [g.count, 1] + [1] * (len(shape) - 1)
    view[g.axis] = g.size
    mask = mask_line.reshape(view).to(device)  # (K, 1, ..., size, ...)
    mask = mask.repeat_interleave(batch, dim=0).expand(g.count * batch, 1, *shape[1:]).contiguous()
    cond = backbone.make_cond(labels, batch)
    anchor_trajectory = None
    if window_sources is not None:
        from alm.tasks.inpaint import inpainting_problem

        observed = inpainting_problem(backbone, method, window_sources, torch.zeros_like(window_sources[:, :1]), labels,
                                      schedule, observed="inversion", counter=counter, cache=cache)
        rows = g.rows(g.anchor, batch)
        x0[rows] = observed.x0
        mask[rows] = 0.0
        anchor_trajectory = observed.observation.trajectory
    cond_rows = cat_cond([cond] * g.count) if cond is not None else None
    canvas_shape = list(shape)
    canvas_shape[g.axis] = g.length

    def initial_noise(generators):
        return g.crops(generators.randn(tuple(canvas_shape), device=device, dtype=x0.dtype))

    return Problem(x0=x0, mask=mask.to(x0.dtype), cond=cond_rows, observation=neighbour_state(g, batch, anchor_trajectory),
                   initial_noise=initial_noise, extra={"windows": g})
