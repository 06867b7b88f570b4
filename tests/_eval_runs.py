"""Run folders for the evaluation-stage tests, made once per test session with the real runner on the
Gaussian-mixture backbone (1x8x8 images) and shared by test_evaluate / test_figures / test_loggers.

Tests that write into a run folder (``eval/``) work on a copy (``copy_run``)."""

from __future__ import annotations

import shutil
from pathlib import Path

_RUNS: dict[str, Path] = {}
_ROOT: list[Path] = []

#: label -> runner overrides
SPECS = {
    "alm": ["method=alm"],
    "ddim": ["method=ddim"],
    "alm_w2": ["method=alm", "method.w2=0.05"],
}


def gmm_runs(tmp_path_factory) -> dict[str, Path]:
    """label -> run folder (4 samples, 5 DDIM steps each)."""
    if not _RUNS:
        from alm.config import compose
        from alm.runner import run

        root = tmp_path_factory.mktemp("gmm_runs")
        _ROOT.append(root)
        for label, overrides in SPECS.items():
            run(compose(["backbone=gmm", "dataset=gmm", "mask=center", *overrides, "num_samples=4", "sampler.steps=5", "progress=false",
                         "metrics=gmm"]), root / label)
            _RUNS[label] = root / label
    return dict(_RUNS)


def copy_run(src: Path, dst_parent: Path, name: str | None = None) -> Path:
    dst = dst_parent / (name or src.name)
    shutil.copytree(src, dst)
    return dst
