"""Run folders: where the runner writes samples and the evaluation stage, figures and loggers read them.

Layout (``EDM``-style: readable names, options written beside the outputs)::

    <run>/config.yaml          the resolved config
    <run>/fingerprint.json     the output-relevant part of the config; a restart must match it
    <run>/samples/00012.pt     per sample: the task's tensors (source, mask, output, ...), label, meta, cost
    <run>/samples/damaged/     sample files found unreadable, set aside (their samples are computed again)
    <run>/images/00012_*.png   the task's pictures of the sample
    <run>/videos/00012_*.mp4   the task's videos of the sample (and .gif), if its outputs are clips
    <run>/claims/00012.claim   a process is computing sample 12 (``alm.claims``)
    <run>/grid.png             the first rows of the task's picture of each sample
    <run>/eval/                the evaluation stage's per-sample rows and set values (``alm.evaluate``)
    <run>/summary.json, table.md, metrics.csv
    <run>/summary.stamp        what the summary was made from (a resume with nothing new skips it)

A sample is done when its ``.pt`` exists (written atomically, last). This module is the one place that
knows the layout; it imports nothing above it (no runner, no evaluation stage).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from alm import claims, io
from alm.errors import DataError

SAMPLES = "samples"
IMAGES = "images"
VIDEOS = "videos"
EVAL_DIR = "eval"
STORE_ROWS = "per_sample.csv"   # <run>/eval/: every per-sample metric ever computed on the run
STORE_VALUES = "values.json"    # <run>/eval/: each metric's config, samples seen, set-metric values
DIVERGED = "diverged.txt"       # <run>/diverged.txt: the NaN error of a run that diverged (a sweep result)
DAMAGED = "damaged"             # <run>/samples/damaged/
SUMMARY_STAMP = "summary.stamp"
GRID_ROWS = 8
ZIP_END = b"PK\x05\x06"         # a zip's end-of-central-directory record: the last 22 bytes of a torch.save file


def sample_path(run_dir: Path, index: int) -> Path:
    return Path(run_dir) / SAMPLES / f"{int(index):05d}.pt"


def image_path(run_dir: Path, index: int, kind: str) -> Path:
    return Path(run_dir) / IMAGES / f"{int(index):05d}_{kind}.png"


def video_path(run_dir: Path, index: int, kind: str, suffix: str = ".mp4") -> Path:
    return Path(run_dir) / VIDEOS / f"{int(index):05d}_{kind}{suffix}"


def done_indices(run_dir: Path) -> set[int]:
    """Indices of the samples stored in ``run_dir`` (one directory listing)."""
    folder = Path(run_dir) / SAMPLES
    if not folder.is_dir():
        return set()
    return {int(f.stem) for f in folder.glob("*.pt") if f.stem.isdigit()}


def is_stored(run_dir: Path, index: int) -> bool:
    return sample_path(run_dir, index).exists()


def _whole(path: str) -> bool:
    """A cheap check that a sample file was written whole: it ends with its zip's end record (torch.save
    writes no zip comment). An empty or cut-short file does not; other damage shows when it is read."""
    try:
        with open(path, "rb") as f:
            f.seek(-22, os.SEEK_END)
            return f.read(4) == ZIP_END
    except OSError:  # shorter than 22 bytes
        return False


def set_aside(run_dir: Path, index: int, why: str) -> None:
    """Move an unreadable sample file to ``samples/damaged/`` (one line on stderr): the sample counts as missing."""
    path = sample_path(run_dir, index)
    dest = path.parent / DAMAGED / f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}"
    dest.parent.mkdir(exist_ok=True)
    try:
        os.rename(path, dest)
    except FileNotFoundError:  # another process set it aside first
        return
    print(f"warning: sample file {path} is unreadable ({why}); moved to {dest}, the sample will be computed again",
          file=sys.stderr, flush=True)


def stored_samples(run_dir: Path) -> dict[int, os.stat_result]:
    """The stored samples' file status by index: one listing, one stat and a 22-byte read per file (no
    sample is loaded). A damaged file (empty, cut short) is set aside and left out."""
    folder, out = Path(run_dir) / SAMPLES, {}
    if not folder.is_dir():
        return out
    for entry in os.scandir(folder):
        stem, ext = os.path.splitext(entry.name)
        if ext != ".pt" or not stem.isdigit():
            continue
        try:
            status = entry.stat()
        except FileNotFoundError:  # set aside by another process meanwhile
            continue
        if _whole(entry.path):
            out[int(stem)] = status
        else:
            set_aside(run_dir, int(stem), "empty" if status.st_size == 0 else "cut short")
    return out


def remove_leftovers(run_dir: Path) -> None:
    """Remove what killed processes left in a run folder: their temporary files and their stale claims."""
    run_dir = Path(run_dir)
    for folder in (run_dir, run_dir / SAMPLES, run_dir / IMAGES, run_dir / EVAL_DIR, run_dir / claims.FOLDER):
        for entry in os.scandir(folder) if folder.is_dir() else ():
            writer = io.temporary_writer(entry.name)
            try:
                if writer and (claims.gone(*writer) or time.time() - entry.stat().st_mtime > claims.STALE_AFTER):
                    os.unlink(entry.path)
            except FileNotFoundError:  # renamed by its writer, or removed by another process
                pass
    claims.remove_stale(run_dir)


def save_sample(run_dir: Path, index: int, record: dict) -> None:
    """Write one sample's record atomically (its existence marks the sample done)."""
    io.atomic_torch_save(record, sample_path(run_dir, index))


def load_sample(run_dir: Path, index: int, map_location: Any = "cpu") -> dict:
    return torch.load(sample_path(run_dir, index), map_location=map_location, weights_only=False)


def read_sample(run_dir: Path, index: int) -> Optional[dict]:
    """A stored sample's record; None if it is missing or unreadable (then it is set aside)."""
    try:
        return load_sample(run_dir, index)
    except FileNotFoundError:
        return None
    except Exception as err:  # noqa: BLE001 - zip, pickle, EOF errors: all mean a damaged file
        set_aside(run_dir, index, (str(err).strip().splitlines() or [type(err).__name__])[0][:100])
        return None


def sample_files(run_dir: Path) -> list[tuple[int, Path]]:
    """``(index, path)`` of every stored sample, in index order; a folder without samples is an error."""
    files = [(i, sample_path(run_dir, i)) for i in sorted(done_indices(run_dir))]
    if not files:
        raise DataError(f"{run_dir} has no samples (samples/*.pt)")
    return files


def run_config(run_dir: Path):
    """The run's resolved ``config.yaml`` (an OmegaConf node), or None."""
    from omegaconf import OmegaConf

    path = Path(run_dir) / "config.yaml"
    return OmegaConf.load(path) if path.is_file() else None


def find_runs(paths: Sequence[Path]) -> list[Path]:
    """Run folders (with ``samples/``) given directly or found below the given folders, in order."""
    runs: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise DataError(f"no such run folder: {p}")
        if (p / SAMPLES).is_dir():
            found = [p]
        else:
            found = sorted(d.parent for d in p.rglob(SAMPLES) if d.is_dir() and (d.parent / "config.yaml").is_file())
        if not found:
            raise DataError(f"{p} is not a run folder (no samples/) and holds none")
        runs += [r for r in found if r not in runs]
    return runs


def default_labels(runs: Sequence[Path]) -> list[str]:
    """The method name of each run; where two runs share one, their folder path below the common parent."""
    names = []
    for r in runs:
        cfg = run_config(r)
        names.append(str(cfg.method.name) if cfg is not None and "method" in cfg else Path(r).name)
    if len(set(names)) == len(names):
        return names
    parts = [Path(r).resolve().parts for r in runs]
    n = 0
    while all(len(p) > n + 1 for p in parts) and len({p[n] for p in parts}) == 1:
        n += 1
    return [str(Path(*p[n:])) for p in parts]


def inpainting_panels(record: dict) -> list[torch.Tensor]:
    """The default picture of a sample: source, masked input (hole mid-grey), output."""
    return [record["source"], io.shown_masked(record["source"], record["mask"]), record["output"].clamp(-1, 1)]


def save_grid(run_dir: Path, rows: list[list[torch.Tensor]]) -> None:
    """``grid.png``: one row of pictures per sample (the task's panels of the first ``GRID_ROWS`` samples)."""
    if rows:
        io.save_png(io.grid(rows), Path(run_dir) / "grid.png", min_size=256)
