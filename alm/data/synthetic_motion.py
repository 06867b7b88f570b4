"""Seeded procedural human motions with captions, in HumanML3D's features (``dataset=synthetic_motion``).

A stand-in for HumanML3D that needs no download and that a small motion diffusion model and a motion
evaluator can be trained on with a CPU. Each clip comes from ``alm.motion.procedural``: a 22-joint t2m
skeleton with HumanML3D's bone lengths, posed by forward kinematics from joint rotations (walk, jog, run,
sidestep, jump, turn on the spot, wave, sit down / stand up, stand; half of the clips blend two actions),
feet planted while in contact except for a controlled share of sliding landings, and a caption built from
the actions and their parameters ("a person walks forward slowly then turns left.").

An item is exactly what ``dataset=humanml3d`` gives: ``image`` (263, 1, frames) float32 RAW features in
CondMDI's absolute-root form, ``label`` the caption, ``meta`` with ``length`` (= frames: no padding),
``caption``, ``tokens`` (HumanML3D's "word/POS" strings), ``name``, ``index``, plus ``action`` (the
families, in order) and ``params`` (each action's parameters, its first clip frame ``start`` and its
``blend`` frames). The features are those HumanML3D's pipeline computes from the joints:
``features_from_joints`` (canonicalisation, inverse kinematics, the 263 features; T + 1 joint frames
give T rows) then ``rel_to_abs`` -- exact, so ``recover_joints`` gives the generated joints back.

Determinism: clip i of a split is a pure function of (split, seed, i) and the generator's settings
(``frames``, ``transition``, ``slide``, ``families``): its generator is seeded with
``sample_seed(seed, i, STREAMS[split])`` (``alm.rng``), so splits are independent streams and a larger
size only appends clips.

Generation runs at about 150 clips per second on one core (docs/synthetic_motion.md), so a split's
features are built once, with a progress bar, and cached under ``$ALM_CACHE_DIR/synthetic_motion``
(default ``~/.cache/alm``) in a folder named by a hash of the settings and ``VERSION``: ``features.npy``
(memory-mapped when read) and ``clips.json`` (captions, tokens, actions, parameters). ``stats()`` is the
mean and standard deviation of the TRAIN split's features over all its frames (std floored at
``STD_FLOOR``, as HumanML3D's statistics keep near-constant features from blowing up when normalised),
cached beside them. Change ``VERSION`` whenever the generator changes what it makes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from alm.data.base import CompletionDataset, Item
from alm.errors import ConfigError, DataError
from alm.motion import procedural
from alm.motion.features import N_FEATURES, features_from_joints, rel_to_abs
from alm.rng import sample_seed

VERSION = 3  # 1, 2: development versions (caches built before the generator was final)
STREAMS = {"train": 401, "val": 402, "test": 403}  # alm.rng.sample_seed stream of each split's clips
DEFAULT_SIZES = {"train": 4000, "val": 500, "test": 500}
STD_FLOOR = 0.01
CHUNK = 256  # clips whose features are computed in one batch


@dataclass(frozen=True)
class Settings:
    """What a clip depends on, besides its split and index."""

    frames: int = 64
    seed: int = 0
    transition: float = 0.5
    slide: float = 0.35
    families: tuple[str, ...] = procedural.FAMILIES

    def key(self, split: str, size: int) -> str:
        """The cache folder's name: split, size and a hash of the settings and VERSION."""
        text = json.dumps({"version": VERSION, "frames": self.frames, "seed": self.seed,
                           "transition": self.transition, "slide": self.slide, "families": list(self.families)},
                          sort_keys=True)
        return f"{split}-{size}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def cache_root() -> Path:
    """``$ALM_CACHE_DIR/synthetic_motion`` (``~/.cache/alm`` without the variable), read at call time."""
    return Path(os.environ.get("ALM_CACHE_DIR") or "~/.cache/alm").expanduser() / "synthetic_motion"


def make_clip(settings: Settings, split: str, index: int) -> procedural.Clip:
    """Clip ``index`` of ``split``: joints (frames + 1, 22, 3), contacts, caption, tokens, actions."""
    rng = np.random.default_rng(sample_seed(settings.seed, index, STREAMS[split]))
    return procedural.make_clip(rng, settings.frames, settings.transition, settings.slide, settings.families)


def clip_features(joints: np.ndarray) -> np.ndarray:
    """(..., frames + 1, 22, 3) joint positions -> (..., frames, 263) float32 RAW absolute-root features:
    HumanML3D's ``features_from_joints`` then CondMDI's ``rel_to_abs``, in float64."""
    feats = rel_to_abs(features_from_joints(torch.from_numpy(np.asarray(joints, dtype=np.float64))))
    return feats.numpy().astype(np.float32)


@dataclass
class Split:
    """A generated split: features (n, frames, 263) float32 and one record per clip (caption, tokens,
    actions, params, ik_error)."""

    features: np.ndarray
    clips: list[dict]


def generate(settings: Settings, split: str, size: int, progress: bool = False) -> Split:
    """Clips 0..size-1 of ``split`` (features in batches of ``CHUNK``)."""
    from tqdm.auto import tqdm

    features = np.empty((size, settings.frames, N_FEATURES), dtype=np.float32)
    records: list[dict] = []
    bar = tqdm(total=size, unit="clip", desc=f"synthetic_motion {split}", disable=not progress, leave=False)
    for lo in range(0, size, CHUNK):
        clips = [make_clip(settings, split, i) for i in range(lo, min(lo + CHUNK, size))]
        features[lo:lo + len(clips)] = clip_features(np.stack([c.joints for c in clips]))
        records += [{"caption": c.caption, "tokens": c.tokens, "action": c.actions, "params": c.params,
                     "ik_error": c.ik_error} for c in clips]
        bar.update(len(clips))
    bar.close()
    return Split(features, records)


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, array, allow_pickle=False)


def _save_npz(path: str, **arrays: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_or_generate(settings: Settings, split: str, size: int, cache: bool = True) -> Split:
    """The split from its cache folder, generated (with a progress bar) and written there first if absent.
    ``cache=False``: generated in memory, nothing written."""
    if not cache:
        return generate(settings, split, size)
    folder = cache_root() / settings.key(split, size)
    feats_path, clips_path = folder / "features.npy", folder / "clips.json"
    if feats_path.is_file() and clips_path.is_file():
        try:
            features = np.load(feats_path, mmap_mode="r", allow_pickle=False)
            clips = json.loads(clips_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise DataError(f"cannot read the synthetic_motion cache {folder}: {err}; delete the folder") from None
        if features.shape == (size, settings.frames, N_FEATURES) and len(clips) == size:
            return Split(features, clips)
    data = generate(settings, split, size, progress=True)
    _atomic_write(clips_path, lambda p: Path(p).write_text(json.dumps(data.clips), encoding="utf-8"))
    _atomic_write(feats_path, lambda p: _save_npy(p, data.features))
    return data


def feature_stats(features: np.ndarray, floor: float = STD_FLOOR) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) float32 (263,) over every frame of (n, frames, 263) features; std floored at ``floor``."""
    x = np.asarray(features, dtype=np.float64).reshape(-1, N_FEATURES)
    mean = x.mean(axis=0)
    std = np.maximum(x.std(axis=0), floor)
    return torch.from_numpy(mean.astype(np.float32)), torch.from_numpy(std.astype(np.float32))


class SyntheticMotion(CompletionDataset):
    """One split of procedural motions (module docstring); ``conf/dataset/synthetic_motion.yaml``."""

    def __init__(self, split: str = "test", frames: int = 64, seed: int = 0, sizes: Optional[dict] = None,
                 transition: float = 0.5, slide: float = 0.35, families: Optional[Sequence[str]] = None,
                 cache: bool = True, name: Optional[str] = None):
        if split not in STREAMS:
            raise ConfigError(f"dataset.split={split!r}: expected one of {', '.join(STREAMS)}")
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 8:
            raise ConfigError(f"dataset.frames={frames!r}: expected an integer >= 8")
        sizes = {**DEFAULT_SIZES, **dict(sizes or {})}
        for key, value in sizes.items():
            if key not in STREAMS or isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"dataset.sizes.{key}={value!r}: expected a positive clip count of train, val "
                                  "or test")
        for key, value in (("transition", transition), ("slide", slide)):
            if not 0.0 <= float(value) <= 1.0:
                raise ConfigError(f"dataset.{key}={value!r}: expected a probability in [0, 1]")
        fams = tuple(families) if families is not None else procedural.FAMILIES
        unknown = [f for f in fams if f not in procedural.FAMILIES]
        if unknown or not fams:
            raise ConfigError(f"dataset.families={list(fams)!r}: expected a non-empty list of "
                              f"{', '.join(procedural.FAMILIES)}")
        self.name = name or "synthetic_motion"
        self.split = split
        self.sizes = sizes
        self.cache = bool(cache)
        self.settings = Settings(frames=frames, seed=int(seed), transition=float(transition), slide=float(slide),
                                 families=fams)
        self.shape = (N_FEATURES, 1, frames)
        self._data: Optional[Split] = None

    @property
    def data(self) -> Split:
        """The split's features and records, generated or read from the cache on first use."""
        if self._data is None:
            self._data = load_or_generate(self.settings, self.split, self.sizes[self.split], self.cache)
        return self._data

    def __len__(self) -> int:
        return self.sizes[self.split]

    def __getitem__(self, index: int) -> Item:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} outside the {len(self)} clips of {self.name}/{self.split}")
        feats = np.asarray(self.data.features[index], dtype=np.float32)      # (frames, 263)
        record = self.data.clips[index]
        image = torch.from_numpy(np.ascontiguousarray(feats.T))[:, None, :]   # (263, 1, frames)
        meta: dict[str, Any] = {"index": int(index), "name": f"{self.split}_{index:05d}",
                                "length": self.settings.frames, "caption": record["caption"],
                                "tokens": list(record["tokens"]), "action": list(record["action"]),
                                "params": [dict(p) for p in record["params"]]}
        return Item(image=image, label=record["caption"], meta=meta)

    def stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) float32 (263,) of the TRAIN split's features (cached beside it)."""
        size = self.sizes["train"]
        path = cache_root() / f"stats-{self.settings.key('train', size)}.npz"
        if self.cache and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    return torch.from_numpy(z["mean"]), torch.from_numpy(z["std"])
            except (OSError, ValueError, KeyError) as err:
                raise DataError(f"cannot read {path}: {err}; delete it") from None
        train = self.data if self.split == "train" else load_or_generate(self.settings, "train", size, self.cache)
        mean, std = feature_stats(train.features)
        if self.cache:
            _atomic_write(path, lambda p: _save_npz(p, mean=mean.numpy(), std=std.numpy()))
        return mean, std

    def input_files(self) -> dict[str, list]:
        return {}
