"""Paper Table 3 (experiments/table3.yaml, ``make table3``): the composition on SD 2.1-base and in smoke mode, the
FID/KID reference read from a run folder (``reference: {run: ...}``), the Fig. 5-style grid, and the one-line
error when the SD 2.1-base checkpoint is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import load_script
from omegaconf import OmegaConf
from PIL import Image

from alm import io
from alm.errors import DataError

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT = ROOT / "experiments" / "table3.yaml"
METHODS = {"alm": "alm", "alm_parallel": "alm_parallel", "alm_fused": "alm_fused", "syncsde": "syncsde",
           "syncsde (13 windows)": "syncsde", "synctweedies": "synctweedies", "multidiffusion": "multidiffusion",
           "ddim": "ddim"}


@pytest.fixture(scope="module")
def driver():
    return load_script("run_experiment")


def _rows(driver, exp, extra=()):
    from alm.config import compose

    common = list(exp.overrides)
    return {label: compose(driver.merge_overrides(common, list(o), list(extra))) for label, o in exp.runs.items()}


def test_the_table_composes_on_sd21base_with_the_papers_protocol(driver, tmp_path):
    from alm.evaluate import compose_evaluate

    exp = OmegaConf.load(EXPERIMENT)
    rows = _rows(driver, exp, [f"paths.runs={tmp_path}"])
    assert {label: cfg.method.name for label, cfg in rows.items()} == METHODS
    for label, cfg in rows.items():
        assert cfg.backbone.name == "sd21base" and cfg.dataset.name == "wide_prompts" and cfg.task.name == "wide"
        assert (cfg.sampler.name, cfg.sampler.steps, cfg.sampler.guidance) == ("ddim", 50, 7.5)
        assert cfg.num_samples == 450 == 9 * cfg.dataset.repeats and cfg.seed == 0
        windows = (13, 0.25) if label == "syncsde (13 windows)" else (5, 0.75)
        assert (cfg.task.windows, cfg.task.stride) == windows  # both: a 2048 px canvas (512 + 4 * 384 = 512 + 12 * 128)
    for label in ("alm", "alm_parallel", "alm_fused"):  # the authors' wide-image weights, not the inpainting w2 = 0.005
        assert (rows[label].method.w1, rows[label].method.w2) == (1.0, 0.001)
    assert rows["alm"].method.get("sequential", True) is True and rows["alm_parallel"].method.sequential is False
    assert rows["syncsde"].method.lam == 5.0
    # the reference set: single 512 px DDIM images of the same prompts, another seed, referenced by its folder
    label, overrides, folder, num = driver.reference_run(exp, list(exp.overrides), [f"paths.runs={tmp_path}"])
    assert num == 450 and str(folder).startswith(str(tmp_path)) and "/ddim/" in str(folder) and "seed1" in folder.name
    spec = driver.evaluate_spec(exp, (label, overrides, folder, num))
    cfg = compose_evaluate([f"metrics={spec['metrics']}", *[f"metrics.{o}" for o in spec["overrides"]]])
    for m in ("fid", "kid"):
        assert OmegaConf.to_container(cfg.metrics[m].reference) == {"run": str(folder), "num": 450}
        assert cfg.metrics[m].views == "tiles"
    assert cfg.metrics.kid.scale == 1000 and set(cfg.metrics) >= {"fid", "kid", "aesthetic", "clip"}


def test_smoke_mode_swaps_in_the_tiny_sd21_and_stand_in_metric_networks(driver, monkeypatch, tmp_path):
    monkeypatch.setenv("ALM_CACHE_DIR", str(tmp_path / "cache"))
    exp = OmegaConf.load(EXPERIMENT)
    smoke = driver.apply_smoke(exp)
    assert smoke.output == "results/runs/smoke/table3" and exp.overrides[0] == "backbone=sd21base"  # untouched
    rows = _rows(driver, smoke, [f"paths.runs={tmp_path / 'runs'}"])
    assert all(cfg.backbone.name == "sd21base-tiny" and cfg.num_samples == 9 and cfg.sampler.steps == 5 for cfg in rows.values())
    ref = driver.reference_run(smoke, list(smoke.overrides), [f"paths.runs={tmp_path / 'runs'}"])
    assert ref[3] == 9 and "sd21base-tiny" in str(ref[2])
    plan = driver.plan_evaluation(driver.evaluate_spec(smoke, ref))  # weights checked: every stand-in is on disk
    assert list(plan.mset.metrics) == ["fid", "kid", "aesthetic", "clip"] and not plan.mset.skipped
    assert plan.mset.metrics["fid"].reference == {"run": str(ref[2]), "num": 9}
    assert plan.mset.metrics["clip"].clip.model_name == "ViT-S-32" and plan.mset.metrics["clip"].clip.pretrained is None
    head = plan.mset.metrics["aesthetic"].head_path
    assert head.is_file() and head.is_relative_to(tmp_path / "cache" / "smoke-weights")
    assert torch.load(head, weights_only=True)["weight"].shape == (1, 384)
    assert plan.mset.directions() == {"fid": False, "kid": False, "aesthetic": True, "clip": True}  # the paper's Rank rule


def _fake_run(folder: Path, n: int, shape=(3, 16, 16), seed=0) -> Path:
    gen = torch.Generator().manual_seed(seed)
    for i in range(n):
        img = torch.rand(shape, generator=gen) * 2 - 1
        io.atomic_torch_save({"source": img, "mask": torch.ones(1, *shape[1:]), "masked": img, "output": img,
                              "label": "a prompt", "meta": {"prompt": f"prompt {i % 3}"}}, folder / "samples" / f"{i:05d}.pt")
    return folder


def test_fid_and_kid_read_their_reference_from_a_run_folder(tmp_path):
    from alm.metrics.fid import FID, KID

    ref = _fake_run(tmp_path / "ref", 6)
    wide = torch.stack([torch.load(ref / "samples" / f"{i:05d}.pt", weights_only=False)["output"] for i in range(6)])
    wide = wide.view(3, 2, 3, 16, 16).permute(0, 2, 3, 1, 4).reshape(3, 3, 16, 32)  # pairs side by side: the same tiles
    feature = {"_target_": "alm.metrics.features.RandomConvFeatures", "in_channels": 3, "num_features": 4}
    values = {}
    for cls in (FID, KID):
        for attempt in range(2):  # the second from the cached statistics (one file per metric: FID sums, KID features)
            m = cls(feature=feature, reference={"run": str(ref), "num": 6}, views="tiles", cache_dir=str(tmp_path / "cache"))
            m.update(wide, wide, torch.ones(3, 1, 16, 32))
            values.setdefault(cls.__name__, []).append(m.compute())
    assert values["FID"][0] == pytest.approx(0.0, abs=1e-3) and values["FID"][1] == pytest.approx(values["FID"][0])
    assert values["KID"][1] == pytest.approx(values["KID"][0])
    cached = sorted(p.name for p in (tmp_path / "cache" / "reference").rglob("*.pt"))
    assert len(cached) == 2 and any("-fid-" in n for n in cached) and any("-kid-" in n for n in cached)
    short = FID(feature=feature, reference={"run": str(ref), "num": 8}, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"reference run .* has 6 of its 8 samples; make it first: python run.py") as info:
        short.update(wide, wide, torch.ones(3, 1, 16, 32))
    assert "\n" not in str(info.value)


def test_the_grid_is_one_row_per_prompt_one_strip_per_method(tmp_path):
    from alm.figures import main, wide_strip

    runs = [("alm", _fake_run(tmp_path / "a", 3, (3, 16, 64))), ("ddim", _fake_run(tmp_path / "b", 3, (3, 16, 64), seed=1))]
    by_run = Image.open(wide_strip(runs, tmp_path / "runs.png", samples=[0, 1, 2])).size
    by_sample = Image.open(wide_strip(runs, tmp_path / "samples.png", samples=[0, 1, 2], by="sample")).size
    assert by_sample[1] > by_run[1] and by_sample[0] < by_run[0]  # 3 rows x 2 strips instead of 2 rows x 3 strips
    assert main(["strip", "--runs", str(runs[0][1]), "--samples", "0,1", "--by", "sample", "--out", str(tmp_path / "c.png")]) == 0


def test_missing_sd21base_checkpoint_is_one_line(tmp_path):
    """The table's first row on a machine without the weights: one line naming the checkpoint and how to fetch it."""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
           "HF_HUB_OFFLINE": "1", "ALM_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), "task=wide", "backbone=sd21base", "dataset=wide_prompts",
                           "method=alm", f"paths.runs={tmp_path / 'runs'}", "progress=false", "threads=1"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: checkpoint stabilityai/stable-diffusion-2-1-base not found")
    assert "python scripts/fetch_weights.py sd21base" in lines[0] and "backbone.path" in lines[0]


@pytest.mark.slow
def test_smoke_table_end_to_end(driver, monkeypatch, tmp_path):
    """Two rows of the smoke table at 2 steps: the reference run first, the metrics against it, the grid."""
    out = tmp_path / "out"
    args = [str(EXPERIMENT), "--smoke", "--only", "alm,ddim", "--output", str(out), f"paths.runs={tmp_path / 'runs'}",
            "progress=false", "threads=1", "num_samples=3", "sampler.steps=2"]
    assert driver.main(args) == 0
    table = (out / "table.md").read_text()
    assert "| reference (512x512, ddim) | 4 |" in table and "| alm | 36 |" in table and "| ddim | 20 |" in table
    combined = (out / "table3.md").read_text()
    assert "| label | samples | fid | kid | kid_std | aesthetic | clip | evaluations | seconds | rank |" in combined
    assert "| alm | 3 |" in combined and not [l for l in combined.splitlines() if l.startswith("| reference")]  # not a row
    assert Image.open(out / "grid.png").size[1] > 100
