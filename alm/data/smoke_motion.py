"""A stand-in HumanML3D folder for smoke runs of the motion table (``dataset=humanml3d`` on tiny models).

HumanML3D's motions come from AMASS and cannot be fetched here; a smoke run checks the composition
(folder layout, text parsing, sub-motion tags, crops, padding, masks, tiny U-Net, methods, evaluation)
on a few seeded synthetic motions written in exactly the layout ``alm.data.humanml3d`` reads
(docs/datasets.md, "HumanML3D"):

    new_joint_vecs_abs_3d/<name>.npy   (T, 263) float32, T uniform in ``frames_range``
    texts/<name>.txt                   3 captions of the whole motion with word/POS tokens; every 4th
                                       motion also has one sub-motion line (frames 0 .. T-4)
    train.txt, val.txt, test.txt, all.txt   every name (one split for all: it is a stand-in)
    Mean_abs_3d.npy, Std_abs_3d.npy    statistics of these motions (std averaged per feature block,
    Mean.npy, Std.npy                  as GMD's cal_mean_variance does); the relative-root pair is a copy

The features are smooth random curves (a few sines per feature; foot contacts 0/1): nothing about
them means anything, and joints recovered from them are not a body. Keep ``frames_range`` within the
dataset's ``min_frames`` .. ``max_frames`` (e.g. ``(40, 48)`` with ``dataset.max_frames=48`` for a tiny
U-Net): every motion then passes the length filter and fits the canvas.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from alm.data.humanml3d import FEATURES, FPS, MEAN_FILE, MOTION_DIR, STD_FILE, TEXT_DIR

#: (caption, word/POS tokens) pairs the smoke texts draw from
CAPTIONS = (
    ("a person walks forward.", "a/DET person/NOUN walk/VERB forward/ADV"),
    ("someone jumps up and down.", "someone/PRON jump/VERB up/ADP and/CCONJ down/ADP"),
    ("a man waves with his right hand.", "a/DET man/NOUN wave/VERB with/ADP his/DET right/ADJ hand/NOUN"),
    ("the person turns around slowly.", "the/DET person/NOUN turn/VERB around/ADV slowly/ADV"),
    ("a figure kicks with the left leg.", "a/DET figure/NOUN kick/VERB with/ADP the/DET left/ADJ leg/NOUN"),
    ("a person sits down on a chair.", "a/DET person/NOUN sit/VERB down/ADP on/ADP a/DET chair/NOUN"),
)
SPLITS = ("train", "val", "test", "all")
#: feature blocks whose std GMD's cal_mean_variance averages (root rot, root x/z, root y, positions,
#: rotations, velocities, foot contacts)
BLOCKS = ((0, 1), (1, 3), (3, 4), (4, 67), (67, 193), (193, 259), (259, 263))
MARKER = "smoke.json"


def smooth_motion(rng: np.random.Generator, frames: int) -> np.ndarray:
    """(frames, 263) float32: per feature an offset plus three sines of random frequency and phase;
    the last 4 (foot contacts) thresholded to 0/1."""
    t = np.arange(frames)[:, None] / FPS  # seconds
    x = rng.normal(0.0, 0.5, (1, FEATURES))
    for _ in range(3):
        freq = rng.uniform(0.1, 1.5, (1, FEATURES))
        phase = rng.uniform(0, 2 * np.pi, (1, FEATURES))
        x = x + rng.uniform(0.05, 0.3, (1, FEATURES)) * np.sin(2 * np.pi * freq * t + phase)
    x[:, -4:] = (x[:, -4:] > 0).astype(np.float64)
    return x.astype(np.float32)


def text_lines(rng: np.random.Generator, frames: int, sub_motion: bool) -> list[str]:
    """Three whole-motion captions; with ``sub_motion`` one more line tagged with frames 0 .. frames-4
    (times written half a frame past the boundary, so ``int(t * 20)`` lands on it)."""
    lines = []
    for k in rng.choice(len(CAPTIONS), size=3, replace=False):
        caption, tokens = CAPTIONS[int(k)]
        lines.append(f"{caption}#{tokens}#0.0#0.0")
    if sub_motion:
        caption, tokens = CAPTIONS[int(rng.integers(len(CAPTIONS)))]
        lines.append(f"{caption}#{tokens}#0.0#{(frames - 4 + 0.5) / FPS!r}")
    return lines


def grouped_std(data: np.ndarray) -> np.ndarray:
    """Per-feature std of (N, 263) frames, averaged within each block of ``BLOCKS``."""
    std = data.std(axis=0)
    for lo, hi in BLOCKS:
        std[lo:hi] = std[lo:hi].mean()
    return std


def make_smoke_humanml3d(root: Path, num: int = 24, frames_range: tuple[int, int] = (40, 48), seed: int = 0) -> Path:
    """Write ``num`` synthetic motions in the HumanML3D layout below ``root`` (kept if a folder made
    with the same arguments is already there); returns ``root``."""
    root = Path(root)
    lo, hi = int(frames_range[0]), int(frames_range[1])
    if not 8 <= lo <= hi:
        raise ValueError(f"frames_range={frames_range}: expected 8 <= low <= high")
    params = {"num": int(num), "frames_range": [lo, hi], "seed": int(seed)}
    marker = root / MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == params:
                return root
        except ValueError:
            pass
    (root / MOTION_DIR).mkdir(parents=True, exist_ok=True)
    (root / TEXT_DIR).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([int(seed), 263])
    names = [f"{k:06d}" for k in range(int(num))]
    motions = []
    for k, name in enumerate(names):
        frames = int(rng.integers(lo, hi + 1))
        motion = smooth_motion(rng, frames)
        motions.append(motion)
        np.save(root / MOTION_DIR / f"{name}.npy", motion)
        lines = text_lines(rng, frames, sub_motion=(k % 4 == 3))
        (root / TEXT_DIR / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for split in SPLITS:
        (root / f"{split}.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    data = np.concatenate(motions, axis=0).astype(np.float64)
    mean, std = data.mean(axis=0).astype(np.float32), grouped_std(data).astype(np.float32)
    for mean_name, std_name in ((MEAN_FILE, STD_FILE), ("Mean.npy", "Std.npy")):
        np.save(root / mean_name, mean)
        np.save(root / std_name, std)
    marker.write_text(json.dumps(params))
    return root
