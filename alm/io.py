"""Atomic writes and image files for run folders."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator, Optional

import numpy as np
import torch
from PIL import Image

def _host() -> str:
    """Where a process id means one process: the host name and, on Linux, the pid namespace (containers
    sharing a host name do not share process ids)."""
    try:
        return f"{socket.gethostname()}~{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return socket.gethostname()


HOST = _host()
_TEMPORARY = re.compile(r"\..+\.(\d+)@(.+)\.[0-9a-f]{8}\.tmp")


def temporary_path(path: Path) -> Path:
    """A sibling of ``path`` that no other writer uses, naming its writer: ``.<name>.<pid>@<HOST>.<random>.tmp``."""
    return path.with_name(f".{path.name}.{os.getpid()}@{HOST}.{secrets.token_hex(4)}.tmp")


def temporary_writer(name: str) -> Optional[tuple[int, str]]:
    """``(pid, host)`` of the writer of a ``temporary_path``, None for any other file name."""
    m = _TEMPORARY.fullmatch(name)
    return (int(m[1]), m[2]) if m else None


@contextmanager
def replacing(path: Path) -> Iterator[IO[bytes]]:
    """A binary file whose content replaces ``path`` at once when the block ends (readers see the old file
    or the new one, never a part). Each writer has its own temporary: concurrent writers of one path do
    not collide, the last one wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with open(tmp, "xb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with replacing(Path(path)) as f:
        f.write(data)


def atomic_torch_save(obj: Any, path: Path) -> None:
    with replacing(Path(path)) as f:
        torch.save(obj, f)


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
    with replacing(Path(path)) as f:
        pil.save(f, format="PNG")


def shown_masked(source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The masked input as pictures show it: the hole mid-grey, whatever value the model was given."""
    return source * (1 - mask) + 0.0 * mask


def grid(images: list[list[torch.Tensor]], pad: int = 1) -> torch.Tensor:
    """Tile rows of (C, H, W) images into one image with ``pad`` px of white between tiles; tiles of
    different sizes (e.g. motion strips) are padded with white at the bottom / right to line up."""
    rows = []
    for row in images:
        tiles = [im.float().cpu() for im in row]
        height = max(t.shape[1] for t in tiles)
        tiles = [torch.nn.functional.pad(t, (pad, pad, pad, pad + height - t.shape[1]), value=1.0) for t in tiles]
        rows.append(torch.cat(tiles, dim=2))
    width = max(r.shape[2] for r in rows)
    return torch.cat([torch.nn.functional.pad(r, (0, width - r.shape[2]), value=1.0) for r in rows], dim=1)
