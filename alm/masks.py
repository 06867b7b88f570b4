"""Deterministic inpainting masks, generated from a seed at any resolution.

Notation
--------
A mask ``M`` is a float32 tensor of shape ``(1, H, W)`` with values in {0, 1}:

    M = 1  unobserved, to generate (the hole)
    M = 0  observed, copied from the source

(RePaint's PNG files use the opposite convention: white = known. Read them with
``kind=folder, invert=true``.) Every kind below is one small function
``(size, rng, **params) -> bool array (H, W)`` (True = unobserved) in the registry ``KINDS``;
``make_mask`` turns it into the tensor. ``MaskSource.get(index, size)`` seeds ``rng`` from
``alm.rng.sample_seed(seed, index, stream=1)``, so a mask depends only on
(kind, params, seed, index, size) -- never on the batch or on the other samples.

RePaint's mask set (docs/method.md §9)
--------------------------------------
RePaint (Lugmayr et al. 2022, GitHub ``andreas128/RePaint``) ships its test masks as 256x256
PNGs in ``data/datasets/gt_keep_masks/<kind>/`` (downloaded by its ``download.sh``; white = known).
The same archive is redistributed as ``gt_keep_masks.zip`` in GitHub ``MaugrimEP/td-paint``
(TD-Paint, 2024). We read the files (ex64, genhalf, nn2, ev2li: one file each; thick, thin: 100 each)
and measured them:

- ``ex64`` ("expand"): only the centre 64x64 square is known, rows and columns 96..159 of 256;
  15/16 of the image is unobserved. Here: a centred box of ``round(H/4) x round(W/4)`` is observed
  (the same side fraction per axis; identical to the file at 256x256).
- ``genhalf`` ("half"): the LEFT half is known (columns 0..127), the right half (128..255) is
  unobserved; rows play no part. Here: columns ``>= W // 2`` are unobserved.
- ``nn2`` ("super-resolution", nearest-neighbour x2): only pixels with an ODD row AND an ODD column
  are known, e.g. (1, 1), (1, 3), (3, 1); 3/4 unobserved. Reproduced exactly at any size.
- ``ev2li`` ("every second line"): ROWS, not columns. Even rows (0, 2, ...) are unobserved, odd rows
  known; 1/2 unobserved. Reproduced exactly at any size.
- ``thick`` / ``thin``: 100 fixed masks from LaMa's random generator (GitHub ``advimman/lama``,
  ``configs/data_gen/random_{thick,thin}_256.yaml`` run through ``bin/gen_mask_dataset.py``).
  Measured unobserved fraction: thick mean 0.25 (min 0.007, max 0.48); thin mean 0.30
  (min 0.03, max 0.50).
  The same layouts are described by CoPaint's re-implementation (GitHub ``UCSB-NLP-Chang/CoPaint``,
  ``datasets/masks.py``: "half" keeps the left half, "line" keeps the odd rows, "sr2" keeps the
  odd/odd pixels, "expand" keeps a centre square of side H/4).

The random-stroke generator (``thick``, ``thin``) is our own implementation of the procedure that
LaMa's configs describe (read for understanding; no code copied). At 256 px:

- a mask is EITHER strokes OR boxes. LaMa mixes an irregular generator (weight 1) and, for thick,
  a box generator (weight 0.3), picking ONE per mask, so P(boxes) = 0.3 / 1.3 for thick, 0 for thin;
- strokes: ``n`` strokes (thick 1..5, thin 4..50), each a polyline of 1..5 segments from a uniform
  random start; segment angle ``0.01 + k`` rad with ``k`` uniform in {0, 1, 2, 3}, mirrored for
  every other stroke; length ``10 + U{0..max_len-1}`` (thick max_len 200, thin 40); width
  ``5 + U{0..max_width-1}`` (thick max_width 100, thin 10), ends clipped to the image; drawn with
  round ends and joints;
- boxes (thick only): 1..3 boxes with sides uniform in [30, min(150, side - 20)), 10 px from the border;
- a mask covering more than half of the image (``max_coverage``), or nothing, is rejected and
  drawn again, as LaMa's ``max_tamper_area: 0.5`` does.

Every pixel size (widths, lengths, box sides, margins) is multiplied by ``min(H, W) / 256`` so the masks
look the same at any resolution; a width is at least 1 px. Differences from RePaint's files, by design:
LaMa draws on a whole photo resized to 256 px on its short side and then takes a random square crop;
we draw on the target canvas directly, so our masks are on average somewhat larger than the files
(see the coverage numbers above) -- no crop throws strokes away.

Choices of ours (no RePaint counterpart)
-----------------------------------------
- Non-square sizes: ``ex64`` keeps 1/4 of each side; ``genhalf`` gives the right ``W - W//2`` columns
  (the larger half when W is odd) to the hole; stroke sizes scale with the short side.
- If 100 stroke draws in a row are all rejected (not seen in practice), a centred box covering about
  ``max_coverage / 2`` of the image is used, so the generator always terminates.
- ``random_pixels`` forces at least one observed and one unobserved pixel (so that a tiny mask is
  never all-0 / all-1).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from alm.errors import ConfigError, DataError
from alm.rng import sample_seed

Size = tuple[int, int]
BoolMask = np.ndarray  # (H, W) bool, True = unobserved

#: the reference resolution of every pixel size below (RePaint / LaMa masks are 256 x 256)
REFERENCE_SIDE = 256
REPAINT_KINDS = ("thick", "thin", "ex64", "genhalf", "nn2", "ev2li")
#: the rng stream of mask draws in ``alm.rng.sample_seed`` (0: sampler noise by default, 2: data draws)
MASK_STREAM = 1


# ----------------------------------------------------------------------------------------------
# LaMa-style random strokes and boxes (thick, thin)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StrokeSpec:
    """LaMa's irregular-mask settings, in pixels at 256 px (``configs/data_gen/random_*_256.yaml``)."""

    min_strokes: int
    max_strokes: int
    max_width: int
    max_len: int
    max_angle: int = 4
    box_weight: float = 0.0  # weight of the box generator against the stroke generator (weight 1)
    min_boxes: int = 1
    max_boxes: int = 3
    box_margin: int = 10
    box_min: int = 30
    box_max: int = 150


THICK = StrokeSpec(min_strokes=1, max_strokes=5, max_width=100, max_len=200, box_weight=0.3)
THIN = StrokeSpec(min_strokes=4, max_strokes=50, max_width=10, max_len=40)


def _draw_segment(canvas: BoolMask, p0: tuple[float, float], p1: tuple[float, float], width: int) -> None:
    """Mark every pixel centre within ``width / 2`` of the segment p0-p1 (a capsule: round ends)."""
    h, w = canvas.shape
    r = width / 2.0
    (x0, y0), (x1, y1) = p0, p1
    cols = slice(max(0, math.floor(min(x0, x1) - r)), min(w, math.ceil(max(x0, x1) + r) + 1))
    rows = slice(max(0, math.floor(min(y0, y1) - r)), min(h, math.ceil(max(y0, y1) + r) + 1))
    if cols.start >= cols.stop or rows.start >= rows.stop:
        return
    ys, xs = np.mgrid[rows, cols].astype(np.float64)
    dx, dy = x1 - x0, y1 - y0
    seg2 = dx * dx + dy * dy
    t = np.zeros_like(xs) if seg2 == 0 else np.clip(((xs - x0) * dx + (ys - y0) * dy) / seg2, 0.0, 1.0)
    dist2 = (xs - (x0 + t * dx)) ** 2 + (ys - (y0 + t * dy)) ** 2
    canvas[rows, cols] |= dist2 <= r * r


def _strokes(size: Size, rng: np.random.Generator, spec: StrokeSpec, scale: float) -> BoolMask:
    h, w = size
    mask = np.zeros((h, w), dtype=bool)
    for i in range(int(rng.integers(spec.min_strokes, spec.max_strokes + 1))):
        x, y = float(rng.integers(w)), float(rng.integers(h))
        for _ in range(1 + int(rng.integers(5))):
            angle = 0.01 + int(rng.integers(spec.max_angle))
            if i % 2 == 0:  # every other stroke is mirrored, as in LaMa
                angle = 2 * math.pi - angle
            length = (10 + int(rng.integers(spec.max_len))) * scale
            width = max(1, round((5 + int(rng.integers(spec.max_width))) * scale))
            x1 = float(np.clip(round(x + length * math.sin(angle)), 0, w - 1))
            y1 = float(np.clip(round(y + length * math.cos(angle)), 0, h - 1))
            _draw_segment(mask, (x, y), (x1, y1), width)
            x, y = x1, y1
    return mask


def _boxes(size: Size, rng: np.random.Generator, spec: StrokeSpec, scale: float) -> BoolMask:
    h, w = size
    mask = np.zeros((h, w), dtype=bool)
    margin = round(spec.box_margin * scale)
    if min(h, w) - 2 * margin < 1:
        margin = 0
    lo = max(1, round(spec.box_min * scale))
    hi = max(lo + 1, min(round(spec.box_max * scale), h - 2 * margin, w - 2 * margin))
    for _ in range(int(rng.integers(spec.min_boxes, spec.max_boxes + 1))):
        bw = min(int(rng.integers(lo, hi)), w - 2 * margin)
        bh = min(int(rng.integers(lo, hi)), h - 2 * margin)
        x = int(rng.integers(margin, w - margin - bw + 1))
        y = int(rng.integers(margin, h - margin - bh + 1))
        mask[y : y + bh, x : x + bw] = True
    return mask


def _random_strokes(size: Size, rng: np.random.Generator, spec: StrokeSpec, max_coverage: float) -> BoolMask:
    """Draw strokes (or, with probability box_weight / (1 + box_weight), boxes) until the hole is
    non-empty and covers at most ``max_coverage`` of the image (LaMa's ``max_tamper_area``)."""
    if isinstance(max_coverage, bool) or not isinstance(max_coverage, (int, float)) or not 0 < max_coverage <= 1:
        raise ConfigError(f"max_coverage={max_coverage!r} must be a number in (0, 1]")
    scale = min(size) / REFERENCE_SIDE
    p_boxes = spec.box_weight / (1.0 + spec.box_weight)
    for _ in range(100):
        draw = _boxes if rng.random() < p_boxes else _strokes
        mask = draw(size, rng, spec, scale)
        if mask.any() and mask.mean() <= max_coverage:
            return mask
    return _center_box(size, math.sqrt(max_coverage / 2))  # fallback; see the module docstring


def thick(size: Size, rng: np.random.Generator, max_coverage: float = 0.5) -> BoolMask:
    """LaMa "thick": 1-5 strokes 5-104 px wide (5 + U{0..99}), or 1-3 boxes; at most half of the image."""
    return _random_strokes(size, rng, THICK, max_coverage)


def thin(size: Size, rng: np.random.Generator, max_coverage: float = 0.5) -> BoolMask:
    """LaMa "thin": 4-50 strokes 5-14 px wide (5 + U{0..9}: LaMa's max_width 10); at most half of the image."""
    return _random_strokes(size, rng, THIN, max_coverage)


# ----------------------------------------------------------------------------------------------
# RePaint's fixed masks and the generic kinds
# ----------------------------------------------------------------------------------------------


def _center_box(size: Size, side_fraction: float) -> BoolMask:
    """True inside a centred box whose sides are ``side_fraction`` of H and of W (at least 1 px)."""
    h, w = size
    bh, bw = max(1, round(h * side_fraction)), max(1, round(w * side_fraction))
    mask = np.zeros((h, w), dtype=bool)
    top, left = (h - bh) // 2, (w - bw) // 2
    mask[top : top + bh, left : left + bw] = True
    return mask


def ex64(size: Size, rng: np.random.Generator) -> BoolMask:
    """RePaint "expand": only the centre box (1/4 of each side: 64 x 64 at 256 px) is observed."""
    return ~_center_box(size, 0.25)


def genhalf(size: Size, rng: np.random.Generator) -> BoolMask:
    """RePaint "half": the left half is observed, the right half (columns >= W//2) unobserved."""
    h, w = size
    mask = np.zeros((h, w), dtype=bool)
    mask[:, w // 2 :] = True
    return mask


def nn2(size: Size, rng: np.random.Generator) -> BoolMask:
    """RePaint "super-resolution x2": only pixels at (odd row, odd column) are observed."""
    h, w = size
    mask = np.ones((h, w), dtype=bool)
    mask[1::2, 1::2] = False
    return mask


def ev2li(size: Size, rng: np.random.Generator) -> BoolMask:
    """RePaint "every second line": even rows unobserved, odd rows observed."""
    h, w = size
    mask = np.zeros((h, w), dtype=bool)
    mask[0::2, :] = True
    return mask


def _check_fraction(name: str, value: float, kind: str) -> float:
    if not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise ConfigError(f"mask kind {kind!r}: {name}={value!r} must be a number in (0, 1)")
    return float(value)


def center(size: Size, rng: np.random.Generator, keep: float = 0.5) -> BoolMask:
    """Only a centred square of side ``keep * min(H, W)`` is observed; everything else is unobserved."""
    keep = _check_fraction("keep", keep, "center")
    h, w = size
    side = max(1, round(keep * min(h, w)))
    mask = np.ones((h, w), dtype=bool)
    top, left = (h - side) // 2, (w - side) // 2
    mask[top : top + side, left : left + side] = False
    return mask


def box(size: Size, rng: np.random.Generator, size_fraction: float = 0.5) -> BoolMask:
    """One unobserved box with sides ``size_fraction`` of H and W, at a uniform random position.

    The config key is ``size`` (``box`` yaml); it is renamed here so as not to clash with the canvas size.
    """
    frac = _check_fraction("size", size_fraction, "box")
    h, w = size
    bh, bw = max(1, round(frac * h)), max(1, round(frac * w))
    top, left = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
    mask = np.zeros((h, w), dtype=bool)
    mask[top : top + bh, left : left + bw] = True
    return mask


def random_pixels(size: Size, rng: np.random.Generator, p_observed: float = 0.25) -> BoolMask:
    """Each pixel is observed independently with probability ``p_observed``."""
    p = _check_fraction("p_observed", p_observed, "random_pixels")
    h, w = size
    mask = rng.random((h, w)) >= p
    if h * w >= 2:  # never all-0 / all-1 (only possible on tiny canvases)
        if mask.all():
            mask.flat[int(rng.integers(h * w))] = False
        elif not mask.any():
            mask.flat[int(rng.integers(h * w))] = True
    return mask


def mixed(
    size: Size,
    rng: np.random.Generator,
    index: int = 0,
    kinds: Sequence[str] = REPAINT_KINDS,
    kind_params: Optional[Mapping[str, Mapping[str, Any]]] = None,
) -> BoolMask:
    """Sample ``index`` uses ``kinds[index % len(kinds)]`` (with ``kind_params[kind]``, if given)."""
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    if not kinds:
        raise ConfigError("mask kind 'mixed': kinds is empty")
    for k in kinds:
        if k not in KINDS or k in ("mixed", "folder"):
            usable = ", ".join(n for n in KINDS if n not in ("mixed", "folder"))
            raise ConfigError(f"mask kind 'mixed': unknown or unsupported kind {k!r} in kinds; use any of {usable}")
    kind_params = dict(kind_params or {})
    extra = sorted(set(kind_params) - set(kinds))
    if extra:
        raise ConfigError(f"mask kind 'mixed': kind_params for kinds not in kinds: {', '.join(extra)}")
    for k, params in kind_params.items():
        _check_params(k, params)
    kind = kinds[index % len(kinds)]
    return _generate(kind, size, rng, index, dict(kind_params.get(kind, {})))


# ----------------------------------------------------------------------------------------------
# Masks read from a folder of PNG files
# ----------------------------------------------------------------------------------------------


class NoMasks:
    """``mask=none``: for tasks whose layout decides what is observed (``task=wide``); asking for a mask is an error."""

    def __init__(self, name: str = "none"):
        self.name = name

    def get(self, index: int, size: Size):
        raise ConfigError("mask=none gives no masks: this task needs a mask (choose one, e.g. mask=thick)")

    def input_files(self) -> dict:
        return {}


class FolderMasks:
    """The ``*.png`` files of a folder, sorted by name; sample ``index`` uses file ``index % count``.

    White (>= 128) is unobserved, unless ``invert`` (RePaint's files: white = known). With ``resize``
    a file of another size is resized with nearest-neighbour; without it, that is an error.
    """

    def __init__(self, folder: str | Path, invert: bool = False, resize: bool = False):
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise DataError(f"mask folder {self.folder} does not exist or is not a folder")
        self.files = sorted(p for p in self.folder.iterdir() if p.is_file() and p.suffix.lower() == ".png")
        if not self.files:
            raise DataError(f"mask folder {self.folder} has no .png files")
        self.invert, self.resize = bool(invert), bool(resize)
        self._cache: dict[Path, BoolMask] = {}

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, path: Path) -> BoolMask:
        if path not in self._cache:
            from PIL import Image, UnidentifiedImageError

            try:
                with Image.open(path) as im:
                    gray = np.asarray(im.convert("L"))
            except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
                reason = " ".join(str(exc).split()) or type(exc).__name__
                raise DataError(f"cannot read mask file {path}: {reason}") from None
            white = gray >= 128
            self._cache[path] = ~white if self.invert else white
        return self._cache[path]

    def load(self, index: int, size: Size) -> BoolMask:
        path = self.files[index % len(self.files)]
        mask = self._read(path)
        if mask.shape == tuple(size):
            return mask.copy()
        if not self.resize:
            found = f"{mask.shape[0]}x{mask.shape[1]}"
            raise DataError(
                f"mask file {path} is {found} (HxW) but {size[0]}x{size[1]} is needed; "
                "set resize: true to resize it (nearest-neighbour)"
            )
        from PIL import Image

        im = Image.fromarray(mask.astype(np.uint8) * 255).resize((size[1], size[0]), Image.NEAREST)
        return np.asarray(im) >= 128


_NEEDS_FOLDER = "mask kind 'folder' needs folder=<a folder of .png masks> (command line: mask.folder=...)"


def folder(
    size: Size,
    rng: np.random.Generator,
    index: int = 0,
    folder: Optional[str] = None,
    invert: bool = False,
    resize: bool = False,
) -> BoolMask:
    """File ``index % count`` of a folder of PNG masks (see ``FolderMasks``)."""
    if folder is None:
        raise ConfigError(_NEEDS_FOLDER)
    return FolderMasks(folder, invert, resize).load(index, size)


# ----------------------------------------------------------------------------------------------
# Registry, public API
# ----------------------------------------------------------------------------------------------

MaskFn = Callable[..., BoolMask]

KINDS: dict[str, MaskFn] = {
    "thick": thick,
    "thin": thin,
    "ex64": ex64,
    "genhalf": genhalf,
    "nn2": nn2,
    "ev2li": ev2li,
    "center": center,
    "box": box,
    "random_pixels": random_pixels,
    "mixed": mixed,
    "folder": folder,
}

#: config names that differ from the function's argument names
_RENAMED = {"box": {"size": "size_fraction"}}


def _names() -> str:
    return ", ".join(KINDS)


def _params_of(kind: str) -> list[str]:
    """The config keys a kind accepts (``index`` is supplied by ``MaskSource``, not the config)."""
    names = [p for p in inspect.signature(KINDS[kind]).parameters if p not in ("size", "rng", "index")]
    back = {v: k for k, v in _RENAMED.get(kind, {}).items()}
    return [back.get(n, n) for n in names]


def _check_params(kind: str, params: Mapping[str, Any]) -> None:
    if kind not in KINDS:
        raise ConfigError(f"unknown mask kind {kind!r}; known kinds: {_names()}")
    unknown = sorted(set(params) - set(_params_of(kind)))
    if unknown:
        known = ", ".join(_params_of(kind)) or "none"
        raise ConfigError(f"mask kind {kind!r} got unknown parameter(s) {', '.join(unknown)}; it takes: {known}")


def _generate(kind: str, size: Size, rng: np.random.Generator, index: int, params: dict[str, Any]) -> BoolMask:
    _check_params(kind, params)
    fn = KINDS[kind]
    args = {_RENAMED.get(kind, {}).get(k, k): v for k, v in params.items()}
    if "index" in inspect.signature(fn).parameters:
        args["index"] = index
    mask = np.asarray(fn(size, rng, **args), dtype=bool)
    if mask.shape != tuple(size):
        raise DataError(f"mask kind {kind!r} made a mask of shape {mask.shape}, expected {tuple(size)}")
    return mask


def _check_size(size: Sequence[int]) -> Size:
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ConfigError(f"mask size must be (H, W), got {size!r}") from None
    if h < 1 or w < 1:
        raise ConfigError(f"mask size must be positive, got {h}x{w}")
    return h, w


def make_mask(
    kind: str, size: tuple[int, int], rng: np.random.Generator, /, index: int = 0, **params: Any
) -> torch.Tensor:
    """A ``(1, H, W)`` float32 mask of ``kind`` (1 = unobserved), drawn with ``rng``.

    ``index`` is the sample index; only ``mixed`` (which kind) and ``folder`` (which file) use it.
    The first three arguments are positional-only, so ``box``'s parameter ``size`` can be passed as
    a keyword: ``make_mask("box", (64, 64), rng, size=0.25)``.
    """
    size = _check_size(size)
    mask = _generate(kind, size, rng, int(index), _plain(params))
    return torch.from_numpy(mask.astype(np.float32)).unsqueeze(0)


def validate_mask(mask: torch.Tensor, where: str) -> None:
    """Raise ``DataError`` unless ``mask`` is a binary (1, H, W) mask with something to generate
    (a 1) and something observed (a 0)."""
    if not isinstance(mask, torch.Tensor) or mask.dim() != 3 or mask.shape[0] != 1:
        shape = tuple(mask.shape) if hasattr(mask, "shape") else type(mask).__name__
        raise DataError(f"{where}: a mask must be a (1, H, W) tensor, got {shape}")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise DataError(f"{where}: mask has values other than 0 and 1")
    if not bool((mask == 1).any()):
        raise DataError(f"{where}: mask is all zeros (nothing to generate: every pixel is observed)")
    if not bool((mask == 0).any()):
        raise DataError(f"{where}: mask is all ones (nothing observed: every pixel is to be generated)")


def _plain(value: Any) -> Any:
    """Config containers (OmegaConf ListConfig / DictConfig) -> plain lists / dicts."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [_plain(v) for v in value]
    return value


#: the parameter a default name shows, e.g. center -> "center0.5"
_NAME_PARAM = {"center": "keep", "box": "size", "random_pixels": "p_observed"}


def _default_name(kind: str, params: Mapping[str, Any]) -> str:
    key = _NAME_PARAM.get(kind)
    if key is None:
        return kind
    value = params.get(key, inspect.signature(KINDS[kind]).parameters[_RENAMED.get(kind, {}).get(key, key)].default)
    return f"{kind}{value:g}"


class MaskSource:
    """Masks for a run: ``get(index, size)`` depends only on (kind, params, seed, index, size).

    Args:
        kind: one of ``KINDS``.
        seed: the run's mask seed; sample ``index`` draws from ``sample_seed(seed, index, stream=1)``.
        folder: the folder of PNG masks (kind ``folder`` only).
        name: a short readable label for output folders; default the kind (with its main parameter,
            e.g. ``center0.5``).
        **params: the kind's parameters (see each kind's function).
    """

    def __init__(self, kind: str, seed: int = 0, folder: str | None = None, name: str | None = None, **params: Any):
        if kind not in KINDS:
            raise ConfigError(f"unknown mask kind {kind!r}; known kinds: {_names()}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ConfigError(f"mask seed must be an integer, got {seed!r}")
        self.kind, self.seed = kind, int(seed)
        self.params: dict[str, Any] = _plain(params)
        self.folder = None if folder is None else str(folder)
        self._folder_masks: Optional[FolderMasks] = None
        if kind == "folder":
            if folder is None:
                raise ConfigError(_NEEDS_FOLDER)
            _check_params("folder", self.params)
            self._folder_masks = FolderMasks(folder, **self.params)
        elif folder is not None:
            raise ConfigError(f"folder={folder!r} is only used by mask kind 'folder' (kind is {kind!r})")
        else:  # check the parameters now, at the config boundary, not at the first sample
            kinds = self.params.get("kinds", REPAINT_KINDS)
            cycle = (1 if isinstance(kinds, str) else len(kinds)) if kind == "mixed" else 1
            for index in range(max(1, cycle)):
                _generate(kind, (8, 8), np.random.default_rng(0), index, dict(self.params))
        if name is None:
            name = f"folder_{Path(folder).name}" if kind == "folder" else _default_name(kind, self.params)
        self.name = str(name)
        if not self.name or "/" in self.name or "\\" in self.name:
            raise ConfigError(f"mask name {self.name!r} must be non-empty and without path separators")

    def input_files(self) -> dict[str, list]:
        """The mask PNGs of a ``folder`` source, hashed by content into a run's fingerprint."""
        return {"content": list(self._folder_masks.files)} if self._folder_masks is not None else {}

    def get(self, index: int, size: tuple[int, int]) -> torch.Tensor:
        """The ``(1, H, W)`` float32 mask of sample ``index`` (1 = unobserved), validated."""
        size = _check_size(size)
        if self._folder_masks is not None:
            mask = torch.from_numpy(self._folder_masks.load(int(index), size).astype(np.float32)).unsqueeze(0)
        else:
            rng = np.random.default_rng(sample_seed(self.seed, int(index), stream=MASK_STREAM))
            mask = make_mask(self.kind, size, rng, index=int(index), **self.params)
        validate_mask(mask, f"mask {self.name!r} for sample {index}")
        return mask

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.params.items())
        where = f", folder={self.folder!r}" if self.folder else ""
        return f"MaskSource(kind={self.kind!r}, seed={self.seed}{where}{extra}, name={self.name!r})"
