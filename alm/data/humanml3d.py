"""HumanML3D motions with captions, in CondMDI's absolute-root features (``dataset=humanml3d``).

The folder is HumanML3D (Guo et al. 2022) prepared for CondMDI (docs/datasets.md, "HumanML3D"):

    <root>/new_joint_vecs_abs_3d/<name>.npy   (T, 263) float32 features, root rotation and x/z ABSOLUTE
    <root>/texts/<name>.txt                   lines  caption#word/POS word/POS ...#start#end
    <root>/{train,val,test}.txt               one name per line
    <root>/Mean_abs_3d.npy, Std_abs_3d.npy    (263,) statistics of the features (``load_stats``)

An item is one motion, RAW (un-normalised) features as ``(263, 1, max_frames)`` float32 (features x 1
x frames, CondMDI's model layout), zero beyond its ``length`` valid frames; ``label`` is its caption
(the text condition); ``meta`` holds ``length``, ``caption``, ``tokens`` (the file's ``word/POS``
strings), ``name``, plus ``index``, ``source`` (the motion file) and ``offset`` (first frame taken).

Which motions, in which order (CondMDI ``data_loaders/humanml/data/dataset.py``,
``Text2MotionDatasetV2.__init__``, reproduced)
--------------------------------------------------------------------------------------------------
1. The names of ``<split>.txt`` in file order. A name whose motion or text file is missing, or whose
   text has a line that does not parse, is skipped as their ``try/except`` skips it (with a warning):
   the sub-motions read before the bad line stay, the whole motion does not.
2. A motion with ``T < min_frames`` (40) or ``T >= 200`` frames is dropped (sub-motions included).
3. Each text line is ``caption#tokens#start#end`` (seconds; NaN counts as 0). ``start = end = 0``: a
   caption of the whole motion. Otherwise the line is a SUB-MOTION: frames
   ``[int(start * 20), int(end * 20))`` (20 fps, Python slice rules), kept if it too has
   ``min_frames <= length < 200``, with that one caption, named ``<letter>_<name>``.
4. The whole motion (if it has at least one whole-motion caption) comes after its sub-motions, cut to
   its first ``max_frames`` (196) frames.
5. All entries are sorted by length, stably (ties keep the order of 1-4). That is the index order of
   their data set: ``order: length``. ``order: shuffled`` (the default) then sorts the entries by
   ``sha256("{seed}/{name}")``: a seeded shuffle, so the first N items are a random subset of the test
   set like their evaluation's (a shuffled ``DataLoader``, ~1,000 motions per replication).
   ``conf/dataset/humanml3d.yaml`` sets ``seed: ${seed}`` (the run seed), so replication r of a table
   (``seed=r``) takes its own subset, captions and crops, as CondMDI's replication r (``fixseed(r)``).

The crop of item ``i`` (``Text2MotionDatasetV2.__getitem__``): with ``L`` the entry's length, a coin
gives ``"double"`` with probability 1/3 (only when ``unit_length < 10``), and then

    length = (L // unit_length - 1) * unit_length      ("double")
    length = (L // unit_length) * unit_length          ("single")
    offset ~ uniform{0, ..., L - length}

so lengths are multiples of 4, between ``min_frames - 4`` (a "double" 40) and ``max_frames``.

Deviations, all documented in docs/datasets.md:

- Their caption (``random.choice``), coin and offset come from the global RNGs, so a motion's caption
  and crop change at every read. Ours come from one generator seeded with
  ``sample_seed(seed, i, stream=311)`` (``alm.rng``), drawn in that order: item ``i`` is a pure
  function of ``(config, i)``, whatever else was read.
- Their sub-motion names take a random letter of A-W; ours take the letters in line order (A_, B_, ...).
  Names never change their order (5. sorts by length only) but key our shuffle.
- ``length`` is also capped at ``max_frames`` (rounded down to ``unit_length``) and sub-motions longer
  than ``max_frames`` get a random window of it: a no-op at 196 (a sub-motion has < 200 frames), it
  lets smoke runs use short motions (``max_frames=48``).
- Padding is 0 in RAW feature units (theirs pads the normalised features with 0, i.e. the mean).
- A file with the wrong width (not 263 features) or an unreadable one is a one-line DataError, not a
  silently skipped name.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from alm.data.base import CompletionDataset, Item
from alm.errors import ConfigError, DataError
from alm.rng import sample_seed

FEATURES = 263  # 4 root + 21*3 positions + 21*6 rotations + 22*3 velocities + 4 foot contacts
FPS = 20  # HumanML3D's frame rate; start/end tags are seconds (CondMDI ``dataset.py``: ``int(f_tag * 20)``)
LENGTH_LIMIT = 200  # a motion or sub-motion with this many frames or more is dropped (CondMDI hard-codes 200)
SUB_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVW"  # CondMDI's sub-motion name prefixes (theirs drawn at random)
MOTION_DIR = "new_joint_vecs_abs_3d"
TEXT_DIR = "texts"
MEAN_FILE, STD_FILE = "Mean_abs_3d.npy", "Std_abs_3d.npy"  # CondMDI ``HumanML3D.__init__`` with abs_3d, in root
STREAM_ITEM = 311  # alm.rng.sample_seed stream of an item's caption / crop draws
ORDERS = ("shuffled", "length")
PREPARE = ("prepare HumanML3D with CondMDI's absolute-root features (new_joint_vecs_abs_3d, texts, test.txt, "
           "Mean_abs_3d.npy: docs/datasets.md, HumanML3D) and set dataset.root=... or ALM_HUMANML3D")


@dataclass(frozen=True)
class Caption:
    """One text line: the caption and its ``word/POS`` tokens as stored."""

    caption: str
    tokens: tuple[str, ...]


@dataclass(frozen=True)
class Entry:
    """A motion of the data set: frames ``start:stop`` of ``<source>.npy`` and its captions."""

    name: str
    source: str
    start: int
    stop: int
    captions: tuple[Caption, ...]

    @property
    def frames(self) -> int:
        return self.stop - self.start


def parse_text_line(line: str) -> tuple[Caption, float, float]:
    """``caption#tokens#start#end`` -> (caption, start, end) in seconds, NaN read as 0 (CondMDI
    ``dataset.py``, ``Text2MotionDatasetV2.__init__``). A ValueError if the line does not parse."""
    parts = line.strip().split("#")
    if len(parts) < 4:
        raise ValueError(f"{len(parts)} '#'-separated fields, expected 4")
    start, end = float(parts[2]), float(parts[3])
    start = 0.0 if math.isnan(start) else start
    end = 0.0 if math.isnan(end) else end
    return Caption(parts[0], tuple(parts[1].split(" "))), start, end


def read_split(path: Path) -> list[str]:
    """The names of a split file, in file order (blank lines and repeats dropped)."""
    if not path.is_file():
        raise DataError(f"HumanML3D split file {path} not found; {PREPARE}")
    names: list[str] = []
    seen: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        name = line.strip()
        if name and name not in seen:
            names.append(name)
            seen.add(name)
    if not names:
        raise DataError(f"HumanML3D split file {path} lists no motion; {PREPARE}")
    return names


def motion_frames(path: Path) -> int:
    """The frame count of a (T, 263) motion file, read from its header; a one-line DataError for an
    unreadable file or another shape."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read motion file {path}: {_first_line(err)}") from None
    return _check_shape(path, arr.shape)


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _check_shape(path: Path, shape: tuple[int, ...]) -> int:
    if len(shape) != 2 or shape[1] != FEATURES:
        raise DataError(f"motion file {path} has shape {tuple(shape)}, expected (frames, {FEATURES}) absolute-root "
                        f"features; {PREPARE}")
    return int(shape[0])


def build_entries(root: Path, names: list[str], min_frames: int, max_frames: int,
                  motion_dir: str = MOTION_DIR) -> tuple[list[Entry], list[str]]:
    """The entries of ``names`` in CondMDI's order (module docstring, steps 1-5 with ``order: length``)
    and the names skipped for a missing file or an unparseable text line."""
    entries: list[Entry] = []
    skipped: list[str] = []
    for name in names:
        motion_path = root / motion_dir / f"{name}.npy"
        text_path = root / TEXT_DIR / f"{name}.txt"
        if not motion_path.is_file():
            skipped.append(name)  # CondMDI: np.load fails inside try -> the name is skipped
            continue
        total = motion_frames(motion_path)
        if total < min_frames or total >= LENGTH_LIMIT:
            continue
        try:
            lines = text_path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            skipped.append(name)
            continue
        whole: list[Caption] = []
        subs = 0
        for line in lines:
            try:
                caption, start_s, end_s = parse_text_line(line)
            except ValueError:
                # CondMDI: the exception leaves the name's loop; sub-motions already kept stay
                skipped.append(name)
                whole = []
                break
            if start_s == 0.0 and end_s == 0.0:
                whole.append(caption)
                continue
            try:
                window = range(total)[int(start_s * FPS):int(end_s * FPS)]  # numpy slice semantics
            except OverflowError:  # an infinite tag: CondMDI's inner try prints it and goes on
                continue
            if not min_frames <= len(window) < LENGTH_LIMIT:
                continue
            prefix = SUB_LETTERS[subs] if subs < len(SUB_LETTERS) else str(subs)
            entries.append(Entry(f"{prefix}_{name}", name, window.start, window.stop, (caption,)))
            subs += 1
        if whole:
            entries.append(Entry(name, name, 0, min(total, max_frames), tuple(whole)))
    entries.sort(key=lambda e: e.frames)  # stable: CondMDI sorts (name, length) pairs by length only
    return entries, skipped


def shuffled(entries: list[Entry], seed: int) -> list[Entry]:
    """``entries`` sorted by ``sha256("{seed}/{name}")``: a seeded order that depends on the names only."""
    key = lambda e: hashlib.sha256(f"{int(seed)}/{e.name}".encode()).digest()  # noqa: E731
    return sorted(entries, key=key)


def crop_window(frames: int, unit_length: int, max_frames: int, rng: np.random.Generator) -> tuple[int, int]:
    """(offset, length) of the crop of an entry of ``frames`` frames (module docstring; CondMDI
    ``Text2MotionDatasetV2.__getitem__``): the coin, then the offset, from ``rng`` in that order."""
    double = int(rng.integers(3)) == 2 and unit_length < 10  # np.random.choice(['single', 'single', 'double'])
    units = frames // unit_length - (1 if double else 0)
    length = min(units * unit_length, (max_frames // unit_length) * unit_length)
    offset = int(rng.integers(0, frames - length + 1))  # random.randint(0, len(motion) - m_length)
    return offset, length


def load_stats(root: Union[str, Path], mean_file: str = MEAN_FILE,
               std_file: str = STD_FILE) -> tuple[torch.Tensor, torch.Tensor]:
    """CondMDI's feature statistics (mean, std), float32 (263,), from the HumanML3D folder."""
    out = []
    for name in (mean_file, std_file):
        path = Path(str(root)).expanduser() / name
        if not path.is_file():
            raise DataError(f"HumanML3D statistics file {path} not found; {PREPARE}")
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DataError(f"cannot read {path}: {_first_line(err)}") from None
        if arr.shape != (FEATURES,):
            raise DataError(f"{path} has shape {arr.shape}, expected ({FEATURES},); {PREPARE}")
        out.append(torch.from_numpy(arr.astype(np.float32)))
    return out[0], out[1]


class HumanML3D(CompletionDataset):
    """The motions of one HumanML3D split as completion sources (module docstring)."""

    def __init__(self, root: Union[str, Path], split: str = "test", max_frames: int = 196, min_frames: int = 40,
                 unit_length: int = 4, seed: int = 0, order: str = "shuffled", motion_dir: str = MOTION_DIR,
                 name: Optional[str] = None):
        for key, value in (("max_frames", max_frames), ("min_frames", min_frames), ("unit_length", unit_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"dataset.{key}={value!r}: expected a positive integer")
        if min_frames < 2 * unit_length or max_frames < min_frames:
            raise ConfigError(f"dataset.min_frames={min_frames}, max_frames={max_frames}, unit_length={unit_length}: "
                              "expected 2 * unit_length <= min_frames <= max_frames")
        if order not in ORDERS:
            raise ConfigError(f"dataset.order={order!r}: expected one of {', '.join(ORDERS)}")
        if root is None or str(root) in ("", "???"):
            raise ConfigError(f"dataset.root is not set; {PREPARE}")
        self.name = name or "humanml3d"
        self.root = Path(str(root)).expanduser()
        self.split, self.seed, self.order = str(split), int(seed), order
        self.max_frames, self.min_frames, self.unit_length = int(max_frames), int(min_frames), int(unit_length)
        self.motion_dir = str(motion_dir)
        for folder in (self.root, self.root / self.motion_dir, self.root / TEXT_DIR):
            if not folder.is_dir():
                raise DataError(f"HumanML3D folder {folder} does not exist; {PREPARE}")
        self.split_file = self.root / f"{self.split}.txt"
        names = read_split(self.split_file)
        entries, self.skipped = build_entries(self.root, names, self.min_frames, self.max_frames, self.motion_dir)
        if self.skipped:
            warnings.warn(f"HumanML3D {self.split}: {len(self.skipped)} name(s) skipped as CondMDI's loader skips them "
                          f"(missing motion or text file, or a text line that does not parse), e.g. {self.skipped[0]}")
        if not entries:
            raise DataError(f"HumanML3D {self.split_file} gives no motion of {self.min_frames}..{LENGTH_LIMIT - 1} "
                            f"frames with a caption; {PREPARE}")
        self.entries: list[Entry] = shuffled(entries, self.seed) if order == "shuffled" else entries
        self.shape = (FEATURES, 1, self.max_frames)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> Item:
        if not 0 <= index < len(self.entries):
            raise IndexError(f"index {index} outside the {len(self.entries)} motions of {self.name}/{self.split}")
        entry = self.entries[index]
        rng = np.random.default_rng(sample_seed(self.seed, index, STREAM_ITEM))
        caption = entry.captions[int(rng.integers(len(entry.captions)))]  # random.choice(text_list)
        offset, length = crop_window(entry.frames, self.unit_length, self.max_frames, rng)
        motion = self._read(entry.source)[entry.start + offset:entry.start + offset + length]
        image = torch.zeros(self.shape, dtype=torch.float32)
        image[:, 0, :length] = torch.from_numpy(np.ascontiguousarray(motion, dtype=np.float32)).T
        meta = {"index": int(index), "name": entry.name, "length": int(length), "caption": caption.caption,
                "tokens": list(caption.tokens), "source": entry.source, "offset": int(entry.start + offset)}
        return Item(image=image, label=caption.caption, meta=meta)

    def stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of the features: ``Mean_abs_3d.npy`` / ``Std_abs_3d.npy`` of the folder."""
        return load_stats(self.root)

    def input_files(self) -> dict[str, list]:
        sources = sorted({e.source for e in self.entries})
        return {"content": [self.split_file] + [self.root / TEXT_DIR / f"{s}.txt" for s in sources],
                "stat": [self.root / self.motion_dir / f"{s}.npy" for s in sources]}

    def _read(self, source: str) -> np.ndarray:
        path = self.root / self.motion_dir / f"{source}.npy"
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DataError(f"cannot read motion file {path}: {_first_line(err)}") from None
        _check_shape(path, arr.shape)
        return arr
