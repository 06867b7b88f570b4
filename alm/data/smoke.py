"""Stand-in image folders for smoke runs of the paper's tables (``make table1 SMOKE=1``).

The real AFHQ / CelebA-HQ / Seasons / Painters folders cannot be fetched here; a smoke run checks the whole
composition (data set layout, prompts from folder names, masks, tiny backbone, every method, evaluation,
table) on a few seeded synthetic pictures written in each data set's layout (docs/datasets.md). The
pictures are smooth random colour fields: nothing about their numbers means anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: data set -> (folder name below ALM_DATA, sub-folders holding the images) as conf/dataset/*.yaml expect
LAYOUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "afhq": ("afhq", ("val/cat", "val/dog", "val/wild")),
    "celebahq": ("celeba_hq", ("val/female", "val/male")),
    "seasons": ("alps_seasons", ("testA", "testB")),
    "painters": ("painters_14", ("testA", "testB")),
}


def colour_field(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random RGB picture (a few Gaussian blobs of colour), uint8 (size, size, 3)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.zeros((size, size, 3)) + rng.uniform(0.2, 0.8, 3)
    for _ in range(4):
        cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.1, 0.4)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
        img += blob * rng.uniform(-0.6, 0.6, 3)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def make_smoke_data(root: Path, per_folder: int = 4, size: int = 64, seed: int = 0) -> Path:
    """Write every data set of ``LAYOUTS`` below ``root`` (kept if already there); returns ``root``."""
    root = Path(root)
    for k, (folder, subs) in enumerate(LAYOUTS.values()):
        for j, sub in enumerate(subs):
            out = root / folder / sub
            if out.is_dir() and len(list(out.glob("*.png"))) >= per_folder:
                continue
            out.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng([seed, k, j])
            for i in range(per_folder):
                Image.fromarray(colour_field(rng, size)).save(out / f"{i:03d}.png")
    return root
