"""The evaluation stage inside sampling: metrics checked at the start of a run, evaluated at its end, a
wandb run per job, and the experiment driver's ``evaluate:`` section."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from alm.config import compose
from alm.metrics import MissingWeightsError
from conftest import load_script

ROOT = Path(__file__).resolve().parent.parent

SMALL = ["backbone=gmm", "dataset=gmm", "mask=center", "num_samples=3", "sampler.steps=3", "progress=false"]


def test_metrics_are_evaluated_after_sampling(tmp_path):
    from alm.runner import run

    summary = run(compose(["metrics=pixel", *SMALL]), tmp_path / "r")
    assert "fid_pixels" in summary and "fid_pixels" in json.loads((tmp_path / "r" / "summary.json").read_text())
    assert (tmp_path / "r" / "eval" / "values.json").is_file()


def test_missing_weights_stop_the_run_before_any_sample(tmp_path, monkeypatch):
    from alm.runner import run

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(MissingWeightsError, match="alexnet-owt-7be5be79.pth"):
        run(compose(["metrics=inpaint", *SMALL]), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_a_crashing_job_still_finishes_its_wandb_run(tmp_path, monkeypatch):
    import wandb

    from alm.runner import run

    monkeypatch.delenv("WANDB_DIR", raising=False)

    def crash(*args, **kwargs):
        raise RuntimeError("sampling failed")

    monkeypatch.setattr("alm.runner.sample", crash)
    with pytest.raises(RuntimeError, match="sampling failed"):
        run(compose(["logger=wandb", *SMALL]), tmp_path / "r")
    assert wandb.run is None and list((tmp_path / "r" / "wandb").glob("offline-run-*"))


@pytest.mark.slow
def test_multirun_gives_one_finished_wandb_run_per_job(tmp_path):
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", "method=alm,ddim", "logger=wandb", "metrics=pixel", *SMALL,
           f"paths.runs={tmp_path}"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    infos = sorted(tmp_path.rglob("wandb_run.json"))
    assert len(infos) == 2 and len({json.loads(p.read_text())["id"] for p in infos}) == 2
    assert not any("logger" in str(p) or "metrics" in str(p) for p in infos)  # not in the folder names


def test_experiment_driver_evaluates_its_runs(tmp_path, monkeypatch, capsys):
    
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        "name: tiny\nmake: ''\noutput: unused\n"
        "overrides: [backbone=gmm, dataset=gmm, mask=center, sampler.steps=3, num_samples=3, metrics=gmm]\n"
        "rank: {coherence: higher}\nruns: {alm: [method=alm], ddim: [method=ddim]}\ncolumns: [method, coherence]\n"
        "evaluate: {metrics: pixel, only: [mse_hole, ssim], config: [progress=false], figures: {grid: {rows: 2}}}\n"
    )
    driver = load_script("run_experiment")
    assert driver.main([str(exp), "--output", str(tmp_path / "out"), f"paths.runs={tmp_path / 'runs'}", "progress=false"]) == 0
    table = (tmp_path / "out" / "evaluation_table.md").read_text()
    assert "| alm | 3 |" in table and "mse_hole" in table and (tmp_path / "out" / "comparison.png").is_file()
    # metrics whose weights are missing stop the experiment before any sampling
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    exp.write_text(exp.read_text().replace("metrics: pixel, only: [mse_hole, ssim]", "metrics: inpaint"))
    assert driver.main([str(exp), "--output", str(tmp_path / "out2"), f"paths.runs={tmp_path / 'runs2'}"]) == 1
    assert "alexnet-owt-7be5be79.pth" in capsys.readouterr().err and not (tmp_path / "runs2").exists()
