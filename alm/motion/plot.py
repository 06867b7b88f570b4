"""Pictures of motions people can look at (the paper's Fig. 6 / 12): observed frames ORANGE, generated BLUE.

A motion here is joint positions ``joints`` (T, 22, 3) in metres, y up (HumanML3D's t2m skeleton; a numpy
array or a tensor), a per-frame boolean ``observed`` (T,) and an optional valid ``length`` (frames from
``length`` on are padding and dropped).

- ``motion_strip``: one still picture: the poses of every ``every``-th frame and of every boundary frame
  (first and last frame of each observed / generated run) along the motion, the root's path on a light
  floor grid, each pose's frame number under it. An RGB array (H, W, 3) uint8.
- ``motion_frames``: one picture per frame (T, H, W, 3) uint8: the pose, a trailing root trace, a frame
  counter and an "observed" / "generated" label, under one fixed camera that sees the whole motion;
  ``save_motion_video`` writes them as MP4 and GIF (``alm.video_io``).
- ``comparison_strip``: strips of several motions (e.g. ground truth, ALM, a baseline) stacked top to
  bottom with their labels, all in the first motion's view, frames and floor, so they line up.
- ``strip_as_tensor`` / ``frames_as_clip``: these pictures as the runner's images (3, H, W) and clips
  (3, T, H, W) in [-1, 1] (``alm.io.save_png``, ``Task.movies``).

View
----
    ===============  ==========================================================================
    x', z'           floor axes of the "strip frame": the reference motion's first root at the
                     origin, turned about the vertical so that the root's overall displacement
                     (last - first) points along +x' (time runs left to right); a motion that moves
                     less than ``MIN_TRAVEL`` is turned so that its first pose faces the camera (+z')
    y                height above the floor (the reference motion's lowest joint)
    elev, azim       camera angles (degrees): above the floor, and turned from +z' toward +x'
    e                direction to the camera  (sin a cos e, sin e, cos a cos e) in (x', y, z')
    r, s             screen right  (cos a, 0, -sin a);  screen up  s = e x r
    (u, v)           screen position of a point p: u = p.r, v = p.s (metres); depth p.e
    ===============  ==========================================================================

The projection is orthographic with one scale on every axis (``px_per_m`` pixels per metre). It is computed
here and drawn in 2D on matplotlib's Agg canvas (no window, no pyplot state): mplot3d fits a scene into a
square box, which would shrink a long strip, and redraws the whole scene for every video frame.

Layout of a strip: ``"trajectory"`` draws each pose where it stands; ``"spaced"`` puts the i-th shown pose
at i slot widths along x' (its own root's x' replaced, its z' kept) and the root's path between two shown
poses at positions interpolated in time: a picture for motions whose poses would overlap, not a
measurement (the floor grid then measures nothing along x'). ``"auto"`` keeps the trajectory when every two
consecutive shown poses at least ``every / 2`` frames apart stand at least ``AUTO_SEPARATION`` slot widths
apart on screen by themselves.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from alm import video_io
from alm.errors import ConfigError, DataError
from alm.motion.skeleton import FACE_JOINTS, JOINT_NAMES, N_JOINTS, T2M_KINEMATIC_CHAIN

ArrayLike = Union[np.ndarray, torch.Tensor]

_T2M_CHAIN = T2M_KINEMATIC_CHAIN  # right leg, left leg, spine to head, right arm, left arm
_HEAD = JOINT_NAMES.index("head")
# right hip, left hip, right shoulder, left shoulder: their left-right vectors give the facing direction
_R_HIP, _L_HIP, _R_SHOULDER, _L_SHOULDER = FACE_JOINTS

# per chain: right side dark, left side light, spine in between (tells left from right at a glance)
OBSERVED_SHADES = ("#C2410C", "#F59E4B", "#E8701A", "#C2410C", "#F59E4B")   # orange
GENERATED_SHADES = ("#1E4E8C", "#6EA8E0", "#2F74C0", "#1E4E8C", "#6EA8E0")  # blue
OBSERVED_RGB, GENERATED_RGB = OBSERVED_SHADES[2], GENERATED_SHADES[2]
FLOOR_FILL, GRID_RGB, TEXT_RGB, NUMBER_RGB = "#F4F4F4", "#D6D6D6", "#141414", "#707070"

MIN_TRAVEL = 0.5        # m: below this root displacement the view turns to the first pose's facing
GRID_STEP = 0.5         # m between floor grid lines
FLOOR_MARGIN = 0.4      # m of floor around the path and the poses
SLOT_MARGIN = 0.25      # m of space between two poses of a spaced strip
AUTO_SEPARATION = 0.6   # "auto" layout: poses this many slot widths apart keep their trajectory
DPI = 100


# --------------------------------------------------------------------------------------------- inputs
def _checked(joints: ArrayLike, observed: ArrayLike, length: Optional[int]) -> tuple[np.ndarray, np.ndarray]:
    """(T, 22, 3) float64 and (T,) bool, cut to ``length``; a one-line DataError for anything else."""
    j = np.asarray(joints.detach().cpu() if isinstance(joints, torch.Tensor) else joints, dtype=np.float64)
    o = np.asarray(observed.detach().cpu() if isinstance(observed, torch.Tensor) else observed)
    if j.ndim != 3 or j.shape[1:] != (N_JOINTS, 3):
        raise DataError(f"motion joints must be (frames, {N_JOINTS}, 3); got shape {j.shape}")
    if o.shape != (j.shape[0],):
        raise DataError(f"observed must be one flag per frame ({j.shape[0]},); got shape {o.shape}")
    if length is not None:
        if not 1 <= int(length) <= j.shape[0]:
            raise DataError(f"motion length {length} outside 1..{j.shape[0]} (the frames given)")
        j, o = j[: int(length)], o[: int(length)]
    if j.shape[0] == 0:
        raise DataError("a motion needs at least one frame")
    if not np.isfinite(j).all():
        raise DataError("motion joints contain NaN or inf")
    return j, o.astype(bool)


def shown_frames(observed: np.ndarray, every: int) -> list[int]:
    """The frames a strip shows: every ``every``-th frame, the first and last frame, and the first and last
    frame of every observed / generated run; a regular frame closer than ``every / 2`` to one of those
    others is left out (it would overlap it). When the runs are more than ``T // every + 2`` (e.g. a random
    per-frame mask), only the first and last observed and generated frames count as boundaries."""
    if every < 1:
        raise ConfigError(f"strip every={every}: expected a positive frame step")
    obs = np.asarray(observed, dtype=bool)
    n = len(obs)
    starts = [0] + [t for t in range(1, n) if obs[t] != obs[t - 1]]
    ends = [s - 1 for s in starts[1:]] + [n - 1]
    if len(starts) <= n // every + 2:
        keep = set(starts) | set(ends)
    else:
        keep = {0, n - 1}
        for flag in (True, False):
            where = np.flatnonzero(obs == flag)
            if len(where):
                keep |= {int(where[0]), int(where[-1])}
    regular = [t for t in range(0, n, every) if all(abs(t - b) >= every / 2 for b in keep)]
    return sorted(keep | set(regular))


# ---------------------------------------------------------------------------------------- strip frame
def _strip_frame(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(origin (3,), axis (2,)): the data point that becomes the strip frame's origin (first root over the
    floor) and the unit floor direction (x, z) that becomes +x' (see the module docstring)."""
    origin = np.array([joints[0, 0, 0], joints[..., 1].min(), joints[0, 0, 2]])
    travel = joints[-1, 0, [0, 2]] - joints[0, 0, [0, 2]]
    if np.linalg.norm(travel) >= MIN_TRAVEL:
        return origin, travel / np.linalg.norm(travel)
    # facing = up x across, across = (right - left) hips + shoulders (HumanML3D's facing direction);
    # +x' = (f_z, -f_x) turns the facing f onto +z', toward the camera
    across = joints[0, _R_HIP] - joints[0, _L_HIP] + joints[0, _R_SHOULDER] - joints[0, _L_SHOULDER]
    facing = np.array([across[2], -across[0]])  # (up x across) in (x, z): (a_z, -a_x)
    if np.linalg.norm(facing) < 1e-9:
        return origin, np.array([1.0, 0.0])
    facing /= np.linalg.norm(facing)
    return origin, np.array([facing[1], -facing[0]])


def _to_strip(joints: np.ndarray, frame: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Points (..., 3) in data coordinates -> (x', y, z') of the strip frame: a turn about y, no mirror
    (x' = a_x x + a_z z, z' = -a_z x + a_x z for the +x' axis a)."""
    origin, (ax_, az_) = frame
    p = joints - origin
    out = np.empty_like(p)
    out[..., 0] = ax_ * p[..., 0] + az_ * p[..., 2]
    out[..., 1] = p[..., 1]
    out[..., 2] = -az_ * p[..., 0] + ax_ * p[..., 2]
    return out


def _camera(elev: float, azim: float) -> np.ndarray:
    """(3, 3): rows r (screen right), s (screen up), e (toward the camera) in (x', y, z')."""
    e_, a_ = math.radians(elev), math.radians(azim)
    e = np.array([math.sin(a_) * math.cos(e_), math.sin(e_), math.cos(a_) * math.cos(e_)])
    r = np.array([math.cos(a_), 0.0, -math.sin(a_)])
    return np.stack([r, np.cross(e, r), e])


def _project(points: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """(..., 3) strip-frame points -> (..., 3): u, v (screen, metres) and depth (larger = nearer)."""
    return points @ cam.T


# ------------------------------------------------------------------------------------------ placement
def _slot_width(poses: np.ndarray, cam: np.ndarray) -> float:
    """Screen width (m) of one slot: the widest shown pose about its root, plus ``SLOT_MARGIN``."""
    u = _project(poses, cam)[..., 0]
    return float((u.max(axis=1) - u.min(axis=1)).max()) + SLOT_MARGIN


def _auto_layout(p: np.ndarray, shown: list[int], every: int, slot: float, cam: np.ndarray) -> str:
    u = _project(p[shown, 0], cam)[:, 0]
    gaps = [u[i + 1] - u[i] for i in range(len(shown) - 1) if shown[i + 1] - shown[i] >= every / 2]
    return "trajectory" if all(g >= AUTO_SEPARATION * slot for g in gaps) else "spaced"


def _place(p: np.ndarray, shown: list[int], layout: str, slot: float, cam: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """(poses (len(shown), 22, 3), path (T, 3) on the floor) where the strip draws them."""
    poses = p[shown].copy()
    path = p[:, 0].copy()
    path[:, 1] = 0.0
    if layout == "spaced":
        step = slot / max(cam[0, 0], 1e-3)  # x' per slot: a slot is measured on screen, u = x' cos(azim) + ...
        shown_slots = np.arange(len(shown)) * step
        poses[..., 0] += (shown_slots - poses[:, 0, 0])[:, None]
        path[:, 0] = np.interp(np.arange(len(p)), shown, shown_slots)
    return poses, path


def _floor(points: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, x1, z0, z1): the floor under ``points`` (..., 3) with ``FLOOR_MARGIN`` around, on the grid."""
    x, z = points[..., 0], points[..., 2]

    def out(lo: float, hi: float) -> tuple[float, float]:
        return (math.floor((lo - FLOOR_MARGIN) / GRID_STEP) * GRID_STEP,
                math.ceil((hi + FLOOR_MARGIN) / GRID_STEP) * GRID_STEP)

    return (*out(float(x.min()), float(x.max())), *out(float(z.min()), float(z.max())))


def _floor_corners(floor: tuple[float, float, float, float]) -> np.ndarray:
    x0, x1, z0, z1 = floor
    return np.array([[x0, 0, z0], [x1, 0, z0], [x1, 0, z1], [x0, 0, z1]], dtype=float)


def _grid_segments(floor: tuple[float, float, float, float], cam: np.ndarray) -> np.ndarray:
    """(n, 2, 2) screen segments of the floor grid lines."""
    x0, x1, z0, z1 = floor
    segs = [[[x, 0, z0], [x, 0, z1]] for x in np.arange(x0, x1 + 1e-9, GRID_STEP)]
    segs += [[[x0, 0, z], [x1, 0, z]] for z in np.arange(z0, z1 + 1e-9, GRID_STEP)]
    return _project(np.array(segs, dtype=float), cam)[..., :2]


def _path_segments(path_uv: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Segments (t-1 -> t) of a screen path and their colours (frame t's role)."""
    segs = np.stack([path_uv[:-1], path_uv[1:]], axis=1)
    return segs, [OBSERVED_RGB if o else GENERATED_RGB for o in observed[1:]]


# -------------------------------------------------------------------------------------------- drawing
def _figure(width: int, height: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _screen_axes(fig, box: tuple[float, float, float, float], lims: tuple[float, float, float, float]):
    """An axes on the pixel ``box`` (left, bottom, width, height of the figure in px) showing the screen
    rectangle ``lims`` (u0, u1, v0, v1), without frame or ticks."""
    W, H = fig.get_size_inches() * DPI
    left, bottom, w, h = box
    ax = fig.add_axes((left / W, bottom / H, w / W, h / H))
    ax.set_xlim(lims[0], lims[1])
    ax.set_ylim(lims[2], lims[3])
    ax.set_axis_off()
    return ax


def _rgb(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.array(fig.canvas.buffer_rgba())[..., :3]


def _draw_floor(ax, floor: tuple[float, float, float, float], cam: np.ndarray, lw: float) -> None:
    from matplotlib.collections import LineCollection
    from matplotlib.patches import Polygon

    ax.add_patch(Polygon(_project(_floor_corners(floor), cam)[:, :2], closed=True, facecolor=FLOOR_FILL,
                         edgecolor="none", zorder=0))
    ax.add_collection(LineCollection(_grid_segments(floor, cam), colors=GRID_RGB, linewidths=lw, zorder=1))


def _draw_pose(ax, uv: np.ndarray, observed: bool, lw: float, zorder: float) -> list:
    """The bones (5 chains) and head of one pose, given its screen points (22, 2)."""
    shades = OBSERVED_SHADES if observed else GENERATED_SHADES
    artists = []
    for chain, colour in zip(_T2M_CHAIN, shades):
        idx = list(chain)
        artists += ax.plot(uv[idx, 0], uv[idx, 1], color=colour, lw=lw, solid_capstyle="round",
                           solid_joinstyle="round", zorder=zorder)
    artists += ax.plot(uv[_HEAD, 0], uv[_HEAD, 1], "o", color=shades[2], markersize=2.2 * lw, zorder=zorder)
    return artists


def _render_strip(poses: np.ndarray, frames: list[int], path: np.ndarray, observed: np.ndarray,
                  floor: tuple[float, float, float, float], cam: np.ndarray,
                  lims: tuple[float, float, float, float], px_per_m: float, numbers: bool,
                  left_px: int = 0, top_px: int = 0, label: Optional[str] = None,
                  title: Optional[str] = None) -> np.ndarray:
    """One strip (H, W, 3) uint8: floor, path, poses (far ones first), frame numbers, label and title."""
    from matplotlib.collections import LineCollection

    u0, u1, v0, v1 = lims
    w, h = int(round((u1 - u0) * px_per_m)), int(round((v1 - v0) * px_per_m))
    lims = (u0, u0 + w / px_per_m, v0, v0 + h / px_per_m)  # whole pixels, the same scale on both axes
    fig = _figure(left_px + w, top_px + h)
    ax = _screen_axes(fig, (left_px, 0, w, h), lims)
    scale = px_per_m / 90.0  # line widths and fonts are set for 90 px per metre
    _draw_floor(ax, floor, cam, 0.6 * scale)
    segs, colours = _path_segments(_project(path, cam)[:, :2], observed)
    ax.add_collection(LineCollection(segs, colors=colours, linewidths=1.6 * scale, zorder=2,
                                     capstyle="round"))
    proj = _project(poses, cam)
    order = np.argsort(proj[:, 0, 2], kind="stable")  # far (small depth) first
    for rank, i in enumerate(order):
        _draw_pose(ax, proj[i, :, :2], bool(observed[frames[i]]), 2.2 * scale, 3 + rank / len(order))
    if numbers:
        feet = _project(np.concatenate([poses[:, :1, 0:1], np.zeros((len(poses), 1, 1)), poses[:, :1, 2:3]],
                                       axis=-1)[:, 0], cam)
        for members in _number_groups(feet[:, 0]):
            text = str(frames[members[0]]) + ("" if len(members) == 1 else f"–{frames[members[-1]]}")
            ax.text(feet[members, 0].mean(), feet[members, 1].min() - 0.12, text, ha="center", va="top",
                    fontsize=6.5 * scale, color=NUMBER_RGB, zorder=10)
    if label is not None:
        fig.text(6 / fig.bbox.width, 0.5, label, ha="left", va="center", fontsize=9, color=TEXT_RGB)
    if title is not None:
        fig.text(6 / fig.bbox.width, 1 - 4 / fig.bbox.height, title, ha="left", va="top", fontsize=9,
                 color=TEXT_RGB, linespacing=1.2)
    return _rgb(fig)


def _number_groups(u: np.ndarray, apart: float = 0.3) -> list[list[int]]:
    """Shown poses (in frame order) whose frame numbers would collide, screen positions ``u`` closer than
    ``apart`` m to the group's first: one label "a–b" per group."""
    groups: list[list[int]] = []
    for i in range(len(u)):
        if groups and abs(u[i] - u[groups[-1][0]]) < apart:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _bounds(points: np.ndarray, cam: np.ndarray, margin: float) -> tuple[float, float, float, float]:
    uv = _project(points.reshape(-1, 3), cam)
    return (float(uv[:, 0].min()) - margin, float(uv[:, 0].max()) + margin,
            float(uv[:, 1].min()) - margin, float(uv[:, 1].max()) + margin)


def _union(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, float, float, float]:
    return (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))


def _wrapped(title: Optional[str], width_px: int, lines: int = 2) -> Optional[str]:
    if title is None:
        return None
    parts = textwrap.wrap(title, max(10, width_px // 7)) or [""]
    if len(parts) > lines:
        parts = parts[:lines]
        parts[-1] = parts[-1][: max(0, len(parts[-1]) - 3)] + "..."
    return "\n".join(parts)


class _Strip:
    """A strip's placed poses and path in one view (the work shared by ``motion_strip`` and
    ``comparison_strip``)."""

    def __init__(self, p: np.ndarray, observed: np.ndarray, shown: list[int], layout: str, slot: float,
                 cam: np.ndarray) -> None:
        self.frames = [f for f in shown if f < len(p)]
        self.observed = observed
        self.poses, self.path = _place(p, self.frames, layout, slot, cam)
        self.floor = _floor(np.concatenate([self.poses.reshape(-1, 3), self.path]))
        self.lims = _union(_bounds(_floor_corners(self.floor), cam, 0.05),
                           _bounds(self.poses, cam, 0.1))
        self.lims = (self.lims[0], self.lims[1], self.lims[2] - 0.2, self.lims[3])  # room for frame numbers


def _resolution(lims: tuple[float, float, float, float], px_per_m: float, max_width: int, left_px: int) -> float:
    """``px_per_m``, lowered so that the strip is at most ``max_width`` px wide."""
    return min(px_per_m, (max_width - left_px) / max(lims[1] - lims[0], 1e-6))


def motion_strip(joints: ArrayLike, observed: ArrayLike, title: Optional[str] = None, every: int = 10,
                 length: Optional[int] = None, layout: str = "auto", px_per_m: float = 90.0,
                 elev: float = 15.0, azim: float = -10.0, numbers: bool = True,
                 max_width: int = 3000) -> np.ndarray:
    """The Fig. 6 picture of one motion (H, W, 3) uint8: poses of ``shown_frames(observed, every)``
    (observed orange, generated blue; right limbs darker than left), the root's path on the floor coloured
    by frame, a floor grid of ``GRID_STEP`` m, frame numbers (``numbers``), ``title`` above. ``layout``:
    "trajectory", "spaced" or "auto" (module docstring). One scale for every axis: ``px_per_m``, lowered
    when the strip would be wider than ``max_width`` px."""
    return comparison_strip([(None, joints, observed)], every=every, lengths=[length], layout=layout,
                            px_per_m=px_per_m, elev=elev, azim=azim, numbers=numbers, max_width=max_width,
                            title=title)


def comparison_strip(rows: Sequence[tuple[Optional[str], ArrayLike, ArrayLike]], every: int = 10,
                     lengths: Optional[Sequence[Optional[int]]] = None, layout: str = "auto",
                     px_per_m: float = 90.0, elev: float = 15.0, azim: float = -10.0, numbers: bool = True,
                     max_width: int = 3000, title: Optional[str] = None) -> np.ndarray:
    """Strips of several motions ``rows`` = [(label, joints, observed), ...] stacked top to bottom (H, W, 3)
    uint8, each row's label at its left, e.g. "observed (ground truth)", "ALM", "recon. guidance". Every
    row is drawn in the FIRST row's strip frame and floor, with the first row's shown frames and layout and
    one slot width, screen rectangle and scale: poses of the same frame stand one above the other, and a
    motion that drifts or floats shows it against the reference floor. ``lengths``: each row's valid
    length (None = all frames)."""
    if not rows:
        raise ConfigError("comparison_strip needs at least one row")
    if layout not in ("auto", "trajectory", "spaced"):
        raise ConfigError(f"strip layout {layout!r}: expected 'auto', 'trajectory' or 'spaced'")
    lengths = list(lengths) if lengths is not None else [None] * len(rows)
    if len(lengths) != len(rows):
        raise ConfigError(f"{len(lengths)} lengths for {len(rows)} rows")
    checked = [_checked(j, o, n) for (_, j, o), n in zip(rows, lengths)]
    frame = _strip_frame(checked[0][0])
    cam = _camera(elev, azim)
    motions = [(_to_strip(j, frame), o) for j, o in checked]
    shown = shown_frames(motions[0][1], every)
    slot = max(_slot_width(p[[f for f in shown if f < len(p)]], cam) for p, _ in motions)
    if layout == "auto":
        layout = _auto_layout(motions[0][0], shown, every, slot, cam)
    strips = [_Strip(p, o, shown, layout, slot, cam) for p, o in motions]
    lims = strips[0].lims
    for s in strips[1:]:
        lims = _union(lims, s.lims)
    labels = [label for label, _, _ in rows]
    left_px = 0 if all(lb is None for lb in labels) else 12 + 7 * max(len(lb or "") for lb in labels)
    ppm = _resolution(lims, px_per_m, max_width, left_px)
    width = left_px + int(round((lims[1] - lims[0]) * ppm))
    text = _wrapped(title, width)
    top_px = 0 if text is None else 8 + 14 * (text.count("\n") + 1)
    images = [_render_strip(s.poses, s.frames, s.path, s.observed, s.floor, cam, lims, ppm, numbers,
                            left_px=left_px, top_px=top_px if i == 0 else 0, label=label,
                            title=text if i == 0 else None)
              for i, (s, label) in enumerate(zip(strips, labels))]
    gap = np.full((2, width, 3), 255, dtype=np.uint8)
    out = [images[0]]
    for im in images[1:]:
        out += [gap, im]
    return np.ascontiguousarray(np.concatenate(out, axis=0))


# --------------------------------------------------------------------------------------------- frames
def motion_frames(joints: ArrayLike, observed: ArrayLike, length: Optional[int] = None,
                  size: Union[int, tuple[int, int]] = 256, trail: int = 40, elev: float = 20.0,
                  azim: float = -30.0) -> np.ndarray:
    """One picture per frame (T, H, W, 3) uint8 (``size`` = W = H, or (W, H)): the pose (orange when the
    frame is observed, blue when generated), the root's floor trace over the last ``trail`` frames
    coloured by frame, "frame t / T-1" at the top left and "observed" / "generated" at the top right. The
    camera is fixed for the whole clip: the strip frame and screen rectangle of the whole motion.

    Fast: one figure; the floor is drawn once and restored for every frame, only the pose, the trace and the
    two texts are drawn again (Agg ``copy_from_bbox`` / ``restore_region``)."""
    from matplotlib.collections import LineCollection

    j, obs = _checked(joints, observed, length)
    width, height = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if width < 32 or height < 32:
        raise ConfigError(f"motion frames of {width}x{height} px: expected at least 32 px a side")
    cam = _camera(elev, azim)
    p = _to_strip(j, _strip_frame(j))
    uv = _project(p, cam)[..., :2]                       # (T, 22, 2)
    root = p[:, 0].copy()
    root[:, 1] = 0.0
    trace = _project(root, cam)[:, :2]                   # (T, 2)
    floor = _floor(p)
    u0, u1, v0, v1 = _union(_bounds(_floor_corners(floor), cam, 0.05), _bounds(p, cam, 0.1))
    band = max(14, height // 10)                         # px at the top for the texts
    ppm = min(width / (u1 - u0), (height - band) / (v1 - v0))
    uc, vc = (u0 + u1) / 2, (v0 + v1) / 2
    lims = (uc - width / 2 / ppm, uc + width / 2 / ppm, vc - (height - band) / 2 / ppm, 0.0)
    lims = (lims[0], lims[1], lims[2], lims[2] + height / ppm)
    fig = _figure(width, height)
    ax = _screen_axes(fig, (0, 0, width, height), lims)
    scale = min(ppm / 90.0, 2.0)
    _draw_floor(ax, floor, cam, 0.6 * scale)
    fig.canvas.draw()
    background = fig.canvas.copy_from_bbox(fig.bbox)

    lw = max(1.0, 2.2 * scale)
    bones = [ax.plot([], [], lw=lw, solid_capstyle="round", solid_joinstyle="round", animated=True)[0]
             for _ in _T2M_CHAIN]
    head = ax.plot([], [], "o", markersize=2.2 * lw, animated=True)[0]
    path = LineCollection([], linewidths=max(1.0, 1.6 * scale), capstyle="round", animated=True)
    ax.add_collection(path)
    font = max(6.0, height / 32)
    counter = fig.text(4 / width, 1 - 3 / height, "", ha="left", va="top", fontsize=font, color=TEXT_RGB,
                       animated=True)
    role = fig.text(1 - 4 / width, 1 - 3 / height, "", ha="right", va="top", fontsize=font,
                    fontweight="bold", animated=True)
    n = len(p)
    out = np.empty((n, height, width, 3), dtype=np.uint8)
    for t in range(n):
        fig.canvas.restore_region(background)
        shades = OBSERVED_SHADES if obs[t] else GENERATED_SHADES
        a = max(0, t - trail)
        segs, colours = _path_segments(trace[a: t + 1], obs[a: t + 1])
        path.set_segments(list(segs))
        path.set_color(colours)
        ax.draw_artist(path)
        for line, chain, colour in zip(bones, _T2M_CHAIN, shades):
            line.set_data(uv[t, list(chain), 0], uv[t, list(chain), 1])
            line.set_color(colour)
            ax.draw_artist(line)
        head.set_data([uv[t, _HEAD, 0]], [uv[t, _HEAD, 1]])
        head.set_color(shades[2])
        ax.draw_artist(head)
        counter.set_text(f"frame {t} / {n - 1}")
        role.set_text("observed" if obs[t] else "generated")
        role.set_color(shades[2])
        fig.draw_artist(counter)
        fig.draw_artist(role)
        out[t] = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    return out


def save_motion_video(path: Union[str, Path], frames: np.ndarray, fps: float = 20.0) -> tuple[Path, Path]:
    """``frames`` (T, H, W, 3) uint8 as ``<path>.mp4`` and ``<path>.gif`` (``path`` without extension;
    HumanML3D runs at 20 fps). Written by ``alm.video_io`` at their own size. Returns the two paths."""
    path = Path(path)
    clip = frames_as_clip(frames)
    side = int(min(clip.shape[-2:]))
    mp4, gif = path.with_name(path.name + ".mp4"), path.with_name(path.name + ".gif")
    video_io.save_mp4(clip, mp4, fps=fps, min_size=side)
    video_io.save_gif(clip, gif, fps=fps, min_size=side)
    return mp4, gif


# ----------------------------------------------------------------------------------- runner's formats
def strip_as_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [-1, 1] (the runner's pictures, ``alm.io.save_png``)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ConfigError(f"a picture is (height, width, 3) uint8; got {image.shape} {image.dtype}")
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 127.5 - 1.0


def frames_as_clip(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, H, W) float in [-1, 1] (the runner's clips, ``Task.movies``)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ConfigError(f"motion frames are (frames, height, width, 3) uint8; got {frames.shape} {frames.dtype}")
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float() / 127.5 - 1.0
