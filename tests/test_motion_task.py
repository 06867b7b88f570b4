"""task=motion end to end on the tiny CondMDI U-Net and a synthetic HumanML3D folder: records, pictures, videos,
the geometric measures, batch invariance, the one-line refusals, and the smoke tables."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alm.config import compose
from alm.data.smoke_motion import make_smoke_humanml3d
from alm.errors import ConfigError
from alm.runner import run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke_folder(tmp_path_factory):
    return make_smoke_humanml3d(tmp_path_factory.mktemp("hml") / "HumanML3D", num=12, frames_range=(40, 48))


def motion_cfg(folder, *extra):
    return compose(["task=motion", "backbone=condmdi-tiny", "dataset=humanml3d", f"dataset.root={folder}",
                    "dataset.max_frames=64", "num_samples=3", "batch_size=3", "sampler.steps=4", "device=cpu",
                    "progress=false", "threads=1", *extra])


def test_a_motion_run_writes_records_pictures_videos_and_measures(smoke_folder, tmp_path):
    import imageio.v3 as iio

    cfg = motion_cfg(smoke_folder, "method=alm", "task.render=1")
    assert cfg.mask.name == "first_half" and cfg.sampler.name == "ddpm" and cfg.sampler.guidance == 2.5
    assert cfg.metrics.name == "motion-geometry"
    summary = run(cfg, tmp_path)
    assert summary["samples"] == 3 and summary["evaluations"] == 4 * 4  # e(Y), e(E), then the CFG pair
    record = torch.load(tmp_path / "samples" / "00001.pt", weights_only=False)
    length = record["meta"]["length"]
    assert record["output"].shape == (263, 1, 64) and torch.isfinite(record["output"]).all()
    observed = (record["mask"].reshape(-1) < 0.5).nonzero().flatten().tolist()
    assert observed == list(range(length // 2, length))  # first half generated, padding never observed
    for key in ("keyframe_error", "traj_error", "skating_ratio"):
        assert math.isfinite(summary[key])
    assert (tmp_path / "images" / "00000_output.png").is_file() and (tmp_path / "images" / "00000_source.png").is_file()
    assert not (tmp_path / "images" / "00001_output.png").exists()  # task.render=1: only sample 0 is drawn
    assert iio.imread(tmp_path / "videos" / "00000_output.mp4").shape[0] == record_length(tmp_path, 0)
    assert (tmp_path / "grid.png").is_file()


def record_length(run_dir: Path, index: int) -> int:
    return int(torch.load(run_dir / "samples" / f"{index:05d}.pt", weights_only=False)["meta"]["length"])


@pytest.mark.parametrize("method", ["alm_imputation", "recon_guidance"])
def test_a_motion_sample_does_not_depend_on_the_batch(smoke_folder, tmp_path, method):
    outs = []
    for b in (1, 3):
        cfg = motion_cfg(smoke_folder, f"method={method}", f"batch_size={b}", "task.render=0", "metrics=none")
        run(cfg, tmp_path / f"b{b}")
        outs.append(torch.stack([torch.load(tmp_path / f"b{b}" / "samples" / f"{i:05d}.pt", weights_only=False)["output"]
                                 for i in range(3)]))
    # float32 rounding only: raw features reach ~10 (the stats), gradients through the U-Net for recon_guidance
    assert (outs[0] - outs[1]).abs().max() <= 1e-4 * outs[0].abs().max()


def test_imputation_keeps_the_observed_frames(smoke_folder, tmp_path):
    run(motion_cfg(smoke_folder, "method=alm_imputation", "task.render=0", "metrics=none", "mask=inbetween"), tmp_path)
    record = torch.load(tmp_path / "samples" / "00002.pt", weights_only=False)
    keep = (record["mask"].reshape(-1) < 0.5)
    assert keep.sum() == math.ceil(record["meta"]["length"] / 10)
    assert torch.allclose(record["output"][..., keep], record["source"][..., keep], atol=1e-4)


def test_masks_and_tasks_that_do_not_fit_are_one_line(smoke_folder, tmp_path):
    with pytest.raises(ConfigError, match="motion mask"):
        run(motion_cfg(smoke_folder, "method=alm", "mask=thick", "metrics=none"), tmp_path / "a")
    with pytest.raises(ConfigError, match="max_frames"):
        run(motion_cfg(smoke_folder, "method=alm", "dataset.max_frames=48", "metrics=none"), tmp_path / "b")
    with pytest.raises(ConfigError, match="task=motion"):
        run(compose(["mask=first_half", "num_samples=1", "progress=false", "device=cpu", "metrics=none"]), tmp_path / "c")


def test_the_paper_setup_without_its_files_is_one_line(tmp_path):
    """``python run.py task=motion dataset=humanml3d backbone=condmdi method=alm`` on a machine without the files."""
    env = {k: v for k, v in os.environ.items() if k not in ("ALM_HUMANML3D", "ALM_DATA", "ALM_T2M_EVALUATOR")}
    env.update({"ALM_CACHE_DIR": str(tmp_path / "cache"), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"})
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), "task=motion", "dataset=humanml3d", "backbone=condmdi",
                           "method=alm", f"paths.runs={tmp_path / 'runs'}", "progress=false", "threads=1"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "model000500000.pt" in lines[0] and "drive.google.com" in lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("table", ["table4", "table5", "table7"])
def test_smoke_motion_tables(tmp_path, table):
    """``make table4|5|7 SMOKE=1`` on one row, one mask: the replications table with intervals and Rank, Fig. 6."""
    from conftest import load_script

    driver = load_script("run_experiment")
    out = tmp_path / "out"
    rows = {"table4": "ALM,Recon. guidance*", "table5": "ALM (Eq. 1),w/o ALM (Eq. 3)", "table7": "ALM,ALM*"}[table]
    os.environ.setdefault("ALM_CACHE_DIR", str(tmp_path / "cache"))
    assert driver.main([str(ROOT / "experiments" / f"{table}.yaml"), "--smoke", "--only", rows, "--output", str(out),
                        f"paths.runs={tmp_path / 'runs'}", "progress=false", "threads=1", "sampler.steps=3"]) == 0
    folder = out / "first_half" if table == "table4" else out / "inbetween" if table == "table7" else out
    text = (folder / "replications.md").read_text()
    assert " ± " in text and "| 2 |" in text and "rank" in text
    if table != "table5":
        assert (folder / "fig6_0.png").is_file()
