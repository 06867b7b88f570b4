"""Clips from video files, to extend (``task=video task.source=true dataset=video_files dataset.path=<clip>``).

``path`` is one video file or a folder of them (mp4/mov/avi/mkv/webm/gif, sorted by name; hidden files
skipped). Each file is one item: its first ``frames`` frames (read with imageio, the ffmpeg binary of the
``imageio-ffmpeg`` wheel; every ``stride``-th frame), each resized to ``height`` x ``width`` (bilinear,
antialiased; no crop), grey if ``channels`` is 1, scaled to [-1, 1]: (C, frames, height, width). With
``task.source=true`` this clip is the observed anchor window (X_t by DDIM inversion, cached) and the video
is extended from it (to the right, or to both sides with ``task.extend=both``). ``prompt``: the condition
of every item (a prompt, a class id, or null).

Errors are one-line ``DataError``s: a missing path, no video in a folder, a file that cannot be read or
has fewer than ``frames`` frames (naming the file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F

from alm.data.base import CompletionDataset, Item
from alm.errors import ConfigError, DataError

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif")


def list_videos(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"dataset.path {path} does not exist (a video file or a folder of them)")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise DataError(f"dataset.path {path} holds no video ({', '.join(VIDEO_SUFFIXES)})")
    return files


def read_clip(path: Path, frames: int, height: int, width: int, channels: int, stride: int = 1) -> torch.Tensor:
    """The first ``frames`` frames (every ``stride``-th) of a video file as (channels, frames, height, width) in [-1, 1]."""
    import imageio.v3 as iio

    try:
        video = iio.imread(path, index=None)  # (N, H, W[, C]) uint8
    except Exception as err:  # imageio raises many kinds, with long texts
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"cannot read the video {path}: {first}") from None
    x = torch.from_numpy(video.copy())
    if x.dim() == 3:
        x = x.unsqueeze(-1)
    x = x[::stride][:frames]
    if x.shape[0] < frames:
        raise DataError(f"{path} has {x.shape[0]} frames (every {stride}th); the clip needs {frames}")
    x = x[..., :3].permute(0, 3, 1, 2).float() / 255.0  # (F, C, H, W) in [0, 1]
    x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    if channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114])[: x.shape[1]]
        x = (x * (weights / weights.sum()).view(1, -1, 1, 1)).sum(1, keepdim=True)
    elif x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return (x.clamp(0, 1) * 2 - 1).permute(1, 0, 2, 3).contiguous()


class VideoFiles(CompletionDataset):
    """One item per video file (see the module docstring)."""

    def __init__(self, path: str, frames: int = 16, height: int = 32, width: int = 32, channels: int = 3,
                 stride: int = 1, prompt: Any = None, limit: Optional[int] = None, name: str = "video_files"):
        for key, value in (("frames", frames), ("height", height), ("width", width), ("stride", stride)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"dataset.{key}={value!r}: expected a positive integer")
        if channels not in (1, 3):
            raise ConfigError(f"dataset.channels={channels!r}: expected 1 or 3")
        self.name, self.prompt = name, prompt
        self.files = list_videos(Path(path).expanduser())[: limit if limit else None]
        self.frames, self.stride, self.channels = int(frames), int(stride), int(channels)
        self.size = (int(height), int(width))
        self.shape = (self.channels, self.frames, *self.size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Item:
        if not 0 <= index < len(self.files):
            raise IndexError(f"index {index} outside the {len(self.files)} videos of {self.name}")
        clip = read_clip(self.files[index], self.frames, *self.size, self.channels, self.stride)
        return Item(image=clip, label=self.prompt, meta={"index": int(index), "file": self.files[index].name})

    def input_files(self) -> dict[str, list]:
        return {"stat": list(self.files)}
