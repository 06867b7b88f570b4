"""Run-folder names and fingerprints: injective, bounded, equal for equal configs, and aware of the
files a run reads (issue 10, items 5 and 6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alm.config import compose
from alm.errors import ConfigError
from alm.runner import run
from alm.run_names import READABLE_MAX, run_dir_for

ROOT = Path(__file__).resolve().parent.parent
GMM = ["backbone=gmm", "dataset=gmm", "mask=center", "sampler.steps=3", "num_samples=2", "batch_size=2", "progress=false"]


def folder(*overrides: str) -> Path:
    return run_dir_for(compose(list(overrides)), list(overrides))


def test_equal_configs_share_a_folder_whatever_their_spelling():
    base = folder(*GMM, "method=alm")
    assert folder(*GMM, "method=alm", "method.w2=0.005", "method.w1=1.0") == base  # the defaults, written out
    assert folder(*GMM, "method=alm", "batch_size=1", "threads=1", "num_samples=7") == base  # no output changes
    assert folder(*GMM, "method=alm", "method.w2=0.5") != base


def test_names_are_injective_where_the_old_ones_collided():
    a = folder(*GMM, "mask=folder", "mask.folder=/x/mx/a_b")
    b = folder(*GMM, "mask=folder", "mask.folder=/x/mx_a/b")
    assert a != b


def test_names_are_readable_and_bounded():
    name = folder(*GMM, "method=alm", "method.w2=0.5", "method.w_cond=0.25")
    assert "method.w2=0.5" in name.name and "method.w_cond=0.25" in name.name
    many = [f"backbone.mixture.std={0.15 + 1e-9}", "method.w2=0.123456789", "method.w1=0.987654321",
            "method.w_cond=0.55555555", "method.iterations=3", "dataset.size=1234", "dataset.seed=17",
            "mask.seed=99", "sampler.guidance=1.5", "task.hole_value=-0.5", "task.invert=full", "seed=12345"]
    long = folder(*GMM, "method=alm", *many)
    assert len(long.name) < READABLE_MAX + 80 and long.name.rsplit("-", 1)[1].isalnum()
    assert all(len(part) < 255 for part in long.parts)


def test_the_mask_label_follows_its_parameter():
    assert folder(*GMM, "mask.keep=0.25").name.startswith("center0.25-")


def test_cli_and_driver_agree_on_the_folder(tmp_path):
    args = [*GMM, "method=alm", "method.w2=0.05", f"paths.runs={tmp_path}"]
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (folder(*args) / "samples" / "00001.pt").is_file()


def _write_masks(folder_: Path, value: int) -> None:
    folder_.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        m = np.zeros((8, 8), np.uint8)
        m[2:6, 2 + value : 6] = 255
        Image.fromarray(m).save(folder_ / f"{i:03d}.png")


def test_changed_input_files_under_the_same_path_are_refused(tmp_path):
    masks = tmp_path / "masks"
    _write_masks(masks, 0)
    args = [*GMM, "method=alm", "mask=folder", f"mask.folder={masks}", "mask.invert=true", "num_samples=1"]
    run(compose(args), tmp_path / "r")
    _write_masks(masks, 1)  # other masks, same folder and names
    with pytest.raises(ConfigError, match="different input files"):
        run(compose([*args, "num_samples=2"]), tmp_path / "r")
    _write_masks(masks, 0)  # the original files again: the run goes on
    assert run(compose([*args, "num_samples=2"]), tmp_path / "r")["samples"] == 2


def test_an_empty_folder_takes_a_corrected_config(tmp_path):
    """A run that stopped on bad input before its first sample does not block the corrected command."""
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "fingerprint.json").write_text('{"method": {"w2": 123}}')
    assert run(compose([*GMM, "method=alm"]), tmp_path / "r")["samples"] == 2


def test_a_damaged_fingerprint_is_one_line(tmp_path):
    run(compose([*GMM, "method=alm", "num_samples=1"]), tmp_path / "r")
    (tmp_path / "r" / "fingerprint.json").write_text('{"method": {"w2"')
    with pytest.raises(ConfigError, match="fingerprint.json is damaged"):
        run(compose([*GMM, "method=alm"]), tmp_path / "r")
