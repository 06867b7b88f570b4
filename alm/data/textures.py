"""Texture images that ship inside scikit-image's wheel (no download): brick, grass and gravel.

``skimage.data.brick() / grass() / gravel()`` are 512x512 grayscale photographs. Each is resized to
256x256 (PIL bicubic; a brick is then ~16 px tall, a 32 px window holds a few of them), scaled to
[-1, 1] and split by ROWS, so that no pixel of a validation or test strip was seen in training:

- ``train`` = rows   0-191 (random 32x32 crops, horizontally flipped half the time: the texture model)
- ``val``   = rows 192-223 (strips for sweeps of method weights)
- ``test``  = rows 224-255 (strips for the tables)

``TextureStrips`` (``dataset=textures``) lists strips of the canvas size (default 32 x 128) from one
split's band, class-interleaved: item ``k`` is class ``k % 3`` at horizontal offset
``(k // 3) * offset_step mod (256 - width + 1)``. Its ``label`` is the class (the condition of a wide
texture strip), its ``image`` the real strip of that class: the reference for FID/KID and the source of
``task.source=dataset`` (outpainting a given strip).
"""

from __future__ import annotations

import functools
from typing import Optional

import numpy as np
import torch

from alm.data.base import CompletionDataset, Item
from alm.errors import ConfigError, DataError

CLASSES = ("brick", "grass", "gravel")
SIDE = 256  # the 512 px photographs resized to this side
SPLIT_ROWS: dict[str, tuple[int, int]] = {"train": (0, 192), "val": (192, 224), "test": (224, 256)}


@functools.lru_cache(maxsize=1)
def texture_images() -> torch.Tensor:
    """(3, 1, 256, 256) float32 in [-1, 1]: brick, grass, gravel (a DataError if scikit-image lacks them)."""
    try:
        import skimage.data as skdata
        from PIL import Image
    except ImportError:
        raise DataError("the texture data need scikit-image (pip install scikit-image), whose wheel ships them") from None
    out = []
    for name in CLASSES:
        try:
            img = np.asarray(getattr(skdata, name)())
        except Exception as err:  # an old wheel without the file
            raise DataError(f"skimage.data.{name}() is unavailable ({type(err).__name__}); install scikit-image>=0.19") from None
        if img.ndim == 3:
            img = img[..., :3].mean(-1).astype(np.uint8)
        small = np.asarray(Image.fromarray(img).resize((SIDE, SIDE), Image.Resampling.BICUBIC), dtype=np.float32)
        out.append(torch.from_numpy(small / 127.5 - 1.0))
    images = torch.stack(out)[:, None].contiguous()
    images.requires_grad_(False)
    return images


def band(split: str) -> torch.Tensor:
    """The rows of ``split`` of every texture: (3, 1, rows, 256)."""
    if split not in SPLIT_ROWS:
        raise DataError(f"dataset.split={split!r}: expected one of {', '.join(SPLIT_ROWS)}")
    lo, hi = SPLIT_ROWS[split]
    return texture_images()[:, :, lo:hi]


def random_crops(images: torch.Tensor, n: int, size: int, generator: torch.Generator, flip: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random ``size``-square crops of ``images`` (K, C, H, W) with their class ids; every draw
    (class, position, flip) from ``generator``."""
    k, _, h, w = images.shape
    labels = torch.randint(0, k, (n,), generator=generator)
    top = torch.randint(0, h - size + 1, (n,), generator=generator)
    left = torch.randint(0, w - size + 1, (n,), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    crops = []
    for c, y, x, f in zip(labels.tolist(), top.tolist(), left.tolist(), flips.tolist()):
        crop = images[c, :, y:y + size, x:x + size]
        crops.append(crop.flip(-1) if (flip and f) else crop)
    return torch.stack(crops), labels


class TextureStrips(CompletionDataset):
    """Strips (1, height, width) of one split's band, class-interleaved (see the module docstring)."""

    def __init__(self, split: str = "test", height: int = 32, width: int = 128, offset_step: int = 16,
                 size: Optional[int] = None, name: str = "textures"):
        rows = SPLIT_ROWS.get(split)
        if rows is None:
            raise ConfigError(f"dataset.split={split!r}: expected one of {', '.join(SPLIT_ROWS)}")
        if not (1 <= int(height) <= rows[1] - rows[0] and 1 <= int(width) <= SIDE):
            raise ConfigError(f"dataset.height={height}, width={width}: the {split} band is {rows[1] - rows[0]} x {SIDE} px")
        self.name, self.split = name, split
        self.height, self.width, self.offset_step = int(height), int(width), int(offset_step)
        self.shape = (1, self.height, self.width)
        self.positions = SIDE - self.width + 1
        # every (class, offset) pair once: 3 * positions items (the offsets wrap around the band's width)
        self._len = len(CLASSES) * self.positions if size is None else int(size)
        if self._len < 1:
            raise ConfigError(f"dataset.size={size}: expected a positive integer or null")
        self.labels = [k % len(CLASSES) for k in range(self._len)]

    def __len__(self) -> int:
        return self._len

    def offset(self, index: int) -> int:
        return ((index // len(CLASSES)) * self.offset_step) % self.positions

    def __getitem__(self, index: int) -> Item:
        if not 0 <= index < self._len:
            raise IndexError(f"index {index} outside the {self._len} strips of textures/{self.split}")
        c, x = index % len(CLASSES), self.offset(index)
        strip = band(self.split)[c, :, : self.height, x: x + self.width].clone()
        return Item(image=strip, label=c, meta={"index": int(index), "split": self.split, "texture": CLASSES[c], "offset": x})
