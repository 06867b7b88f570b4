"""Atomic writes and image files for run folders."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> (H, W, C) or (H, W) uint8."""
    x = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    x = x.permute(1, 2, 0).numpy()
    return x[..., 0] if x.shape[-1] == 1 else x


def save_png(image: torch.Tensor, path: Path, min_size: int = 64) -> None:
    """Save a [-1, 1] image; small images are enlarged (nearest) to at least ``min_size`` px."""
    pil = Image.fromarray(to_uint8(image))
    scale = max(1, -(-min_size // min(pil.size)))
    if scale > 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    pil.save(tmp)
    os.replace(tmp, path)


def shown_masked(source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The masked input as pictures show it: the hole mid-grey, whatever value the model was given."""
    return source * (1 - mask) + 0.0 * mask


def grid(images: list[list[torch.Tensor]], pad: int = 1) -> torch.Tensor:
    """Tile rows of (C, H, W) images into one image with ``pad`` px of white between tiles."""
    rows = []
    for row in images:
        tiles = []
        for im in row:
            tiles.append(torch.nn.functional.pad(im.float().cpu(), (pad, pad, pad, pad), value=1.0))
        rows.append(torch.cat(tiles, dim=2))
    return torch.cat(rows, dim=1)
