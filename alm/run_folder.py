"""Run folders: where the runner writes samples and the evaluation stage, figures and loggers read them.

Layout (``EDM``-style: readable names, options written beside the outputs)::

    <run>/config.yaml          the resolved config
    <run>/fingerprint.json     the output-relevant part of the config; a restart must match it
    <run>/samples/00012.pt     per sample: the task's tensors (source, mask, output, ...), label, meta, cost
    <run>/images/00012_*.png   the task's pictures of the sample
    <run>/grid.png             the first rows of the task's picture of each sample
    <run>/eval/                the evaluation stage's per-sample rows and set values (``alm.evaluate``)
    <run>/summary.json, table.md

A sample is done when its ``.pt`` exists (written atomically, last). This module is the one place that
knows the layout; it imports nothing above it (no runner, no evaluation stage).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from alm import io
from alm.errors import DataError

SAMPLES = "samples"
IMAGES = "images"
EVAL_DIR = "eval"
STORE_ROWS = "per_sample.csv"   # <run>/eval/: every per-sample metric ever computed on the run
STORE_VALUES = "values.json"    # <run>/eval/: each metric's config, samples seen, set-metric values
DIVERGED = "diverged.txt"       # <run>/diverged.txt: the NaN error of a run that diverged (a sweep result)


def sample_path(run_dir: Path, index: int) -> Path:
    return Path(run_dir) / SAMPLES / f"{int(index):05d}.pt"


def image_path(run_dir: Path, index: int, kind: str) -> Path:
    return Path(run_dir) / IMAGES / f"{int(index):05d}_{kind}.png"


def done_indices(run_dir: Path) -> set[int]:
    """Indices of the samples stored in ``run_dir`` (one directory listing)."""
    folder = Path(run_dir) / SAMPLES
    if not folder.is_dir():
        return set()
    return {int(f.stem) for f in folder.glob("*.pt") if f.stem.isdigit()}


def save_sample(run_dir: Path, index: int, record: dict) -> None:
    """Write one sample's record atomically (its existence marks the sample done)."""
    io.atomic_torch_save(record, sample_path(run_dir, index))


def load_sample(run_dir: Path, index: int, map_location: Any = "cpu") -> dict:
    return torch.load(sample_path(run_dir, index), map_location=map_location, weights_only=False)


def sample_files(run_dir: Path) -> list[tuple[int, Path]]:
    """``(index, path)`` of every stored sample, in index order; a folder without samples is an error."""
    files = [(i, sample_path(run_dir, i)) for i in sorted(done_indices(run_dir))]
    if not files:
        raise DataError(f"{run_dir} has no samples (samples/*.pt)")
    return files


def cost_rows(run_dir: Path, indices: Sequence[int]) -> list[dict]:
    """The per-sample cost rows (``sample``, ``seconds``, ``evaluations``, ...) of the stored samples."""
    rows = []
    done = done_indices(run_dir)
    for i in indices:
        if i in done:
            d = load_sample(run_dir, i)
            rows.append({"sample": int(i), **d.get("cost", d.get("metrics", {}))})
    return rows


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


def write_grid(run_dir: Path, indices: Sequence[int], panels: Optional[Callable[[dict], list]] = None,
               max_rows: int = 8) -> None:
    """``grid.png``: one row per stored sample (the first ``max_rows`` of ``indices``), the task's panels."""
    panels = panels or inpainting_panels
    done, rows = done_indices(run_dir), []
    for i in indices:
        if len(rows) == max_rows:
            break
        if i in done:
            rows.append(panels(load_sample(run_dir, i)))
    if rows:
        io.save_png(io.grid(rows), Path(run_dir) / "grid.png", min_size=256)
