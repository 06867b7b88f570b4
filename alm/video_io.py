"""Videos people can watch: MP4 and GIF files, and Fig. 7-style strips of a long video's frames.

A clip is a tensor (C, F, H, W) in [-1, 1] (C = 1 or 3), the layout of a video sample's output.

- ``save_mp4``: H.264 (yuv420p, the format every player reads) through imageio and the ffmpeg binary
  that the ``imageio-ffmpeg`` wheel ships; small frames are enlarged (nearest) to at least
  ``min_size`` px and to even sides (yuv420p needs them).
- ``save_gif``: an animated GIF (Pillow), looping, same enlargement.
- ``strip``: every ``every``-th frame side by side with its frame number above it, and below, a
  timeline of the windows (one outlined bar per window, stacked in as many rows as windows overlap) with a red tick at every seam (where the stitched video changes window). An RGB image (3, H, W)
  in [-1, 1], drawn at display size (``save_png`` keeps it as is).

Files are written to a temporary and renamed (``alm.io.replacing``): a reader never sees a part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from alm import io
from alm.errors import ConfigError

Tensor = torch.Tensor
SEAM_RGB = (220, 30, 30)
WINDOW_RGB = ((70, 110, 200), (150, 180, 235))
TEXT_RGB = (20, 20, 20)


def frames_uint8(clip: Tensor, min_size: int = 128) -> np.ndarray:
    """(C, F, H, W) in [-1, 1] -> (F, H', W', 3) uint8, enlarged (nearest, integer factor) to at least
    ``min_size`` px on the short side, sides even."""
    if clip.dim() != 4 or clip.shape[0] not in (1, 3):
        raise ConfigError(f"a clip is (channels 1 or 3, frames, height, width); got shape {tuple(clip.shape)}")
    x = ((clip.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    x = x.expand(3, *x.shape[1:]).permute(1, 2, 3, 0)  # (F, H, W, 3)
    h, w = x.shape[1:3]
    k = max(1, -(-min_size // min(h, w)))
    if k > 1:
        x = x.repeat_interleave(k, dim=1).repeat_interleave(k, dim=2)
    arr = x.numpy()
    pad_h, pad_w = arr.shape[1] % 2, arr.shape[2] % 2
    if pad_h or pad_w:
        arr = np.pad(arr, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return np.ascontiguousarray(arr)


def save_mp4(clip: Tensor, path: Path, fps: float = 8.0, min_size: int = 128) -> None:
    """An H.264 MP4 of ``clip`` (see the module docstring)."""
    import imageio.v2 as imageio

    frames = frames_uint8(clip, min_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # ffmpeg writes by file name: a temporary next to the target (with the .mp4 suffix ffmpeg reads the format
    # from), then a rename (a reader never sees a part)
    tmp = io.temporary_path(path).with_suffix(".tmp.mp4")
    try:
        writer = imageio.get_writer(str(tmp), format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                    pixelformat="yuv420p", macro_block_size=1, ffmpeg_log_level="error")
        try:
            for frame in frames:
                writer.append_data(frame)
        finally:
            writer.close()
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def save_gif(clip: Tensor, path: Path, fps: float = 8.0, min_size: int = 128) -> None:
    """A looping animated GIF of ``clip``."""
    frames = [Image.fromarray(f) for f in frames_uint8(clip, min_size)]
    with io.replacing(Path(path)) as f:
        frames[0].save(f, format="GIF", save_all=True, append_images=frames[1:], duration=int(round(1000 / fps)),
                       loop=0, optimize=False)


def strip(clip: Tensor, every: int = 8, spans: Optional[Sequence[Sequence[int]]] = None,
          seams: Optional[Sequence[int]] = None, min_frame: int = 64, label: Optional[str] = None,
          label_chars: Optional[int] = None) -> Tensor:
    """Every ``every``-th frame of ``clip`` (C, F, H, W) with frame numbers; ``spans`` ([start, stop)
    frames of each window) and ``seams`` (frames where the stitched video changes window) drawn as a
    timeline below; ``label`` written at the left, in a margin of ``label_chars`` characters (default: the
    label's; give the longest label of a comparison so the strips line up). Returns (3, H, W) in [-1, 1]
    (see the module docstring)."""
    if every < 1:
        raise ConfigError(f"strip every={every}: expected a positive frame step")
    frames = frames_uint8(clip, min_frame)
    n_frames = frames.shape[0]
    shown = list(range(0, n_frames, every))
    fh, fw = frames.shape[1:3]
    gap, top, line = 2, 14, 8
    chars = len(label or "") if label_chars is None else int(label_chars)
    left = 0 if chars == 0 else 8 + 7 * chars
    # windows stacked in as many rows as the most windows covering one frame (2 at a stride of half a window)
    rows = 0 if not spans else max(sum(a <= f < b for a, b in spans) for f in range(n_frames))
    width = left + len(shown) * (fw + gap) + gap
    height = top + fh + gap + rows * (line + 2) + 4
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for k, f in enumerate(shown):
        x = left + gap + k * (fw + gap)
        canvas.paste(Image.fromarray(frames[f]), (x, top))
        draw.text((x + 2, 1), str(f), fill=TEXT_RGB)
    if label is not None:
        draw.text((4, top + fh // 2 - 5), label, fill=TEXT_RGB)
    if spans is not None:
        # frame position -> x: frame f sits in shown tile f // every, at the fraction (f % every) / every of a tile step
        def fx(f: float) -> float:
            return left + gap + f / every * (fw + gap)

        y0 = top + fh + gap
        for j, (a, b) in enumerate(spans):
            y = y0 + (j % rows) * (line + 2)
            draw.rectangle([fx(a), y, max(fx(a), fx(b) - 2), y + line], fill=WINDOW_RGB[j % 2], outline=TEXT_RGB)
        for s in seams or []:  # in the timeline only (a line through a frame would look like an artefact of it)
            draw.line([fx(s), y0, fx(s), height - 1], fill=SEAM_RGB, width=1)
    arr = torch.from_numpy(np.array(canvas)).permute(2, 0, 1).float()
    return arr / 127.5 - 1.0


def comparison(strips: Sequence[Tensor]) -> Tensor:
    """Strips (3, H, W) stacked top to bottom (white padding to the widest): one row per method."""
    width = max(s.shape[-1] for s in strips)
    rows = [torch.nn.functional.pad(s, (0, width - s.shape[-1], 0, 2), value=1.0) for s in strips]
    return torch.cat(rows, dim=1)
