"""Sweeps survive their failures: a multirun runs every job and ends with one summary of the failed
ones (alm/sweep_report.py), and a divergence is caught by magnitude as well as by NaN (alm/sampling.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra.core.utils import JobStatus

from alm.config import compose
from alm.errors import NumericalError
from alm.runner import run
from alm.sampling import MAX_ABS, _check_diverged
from alm.sweep_report import FailureReport, JobFailure, summary

ROOT = Path(__file__).resolve().parent.parent
GMM = ["backbone=gmm", "dataset=gmm", "mask=center", "sampler.steps=5", "num_samples=4", "progress=false", "metrics=none"]
# ++: the callback is registered in conf/config.yaml; giving it again (forced) is harmless
REPORT = "++hydra.callbacks.failure_report._target_=alm.sweep_report.FailureReport"


def multirun(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), "-m", *GMM, *args, f"paths.runs={tmp / 'runs'}", REPORT],
                          cwd=tmp, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def stored(tmp: Path) -> dict[str, int]:
    """Run folder name -> number of stored samples."""
    return {p.parent.name: len(list(p.glob("*.pt"))) for p in (tmp / "runs").rglob("samples")}


# --- item 1: a multirun goes on past a failing job --------------------------------------------------------

def test_a_multirun_runs_every_job_and_reports_the_failed_one_at_the_end(tmp_path):
    proc = multirun(tmp_path, "method=alm", "method.w2=1e300,0.01,0.02")
    assert proc.returncode == 1, proc.stderr
    folders = stored(tmp_path)
    assert sorted(n for n, k in folders.items() if k == 4) == sorted(n for n in folders if "1e+300" not in n)
    assert len([n for n, k in folders.items() if k == 4]) == 2  # the jobs after the failing one ran
    err = proc.stderr
    assert "Traceback" not in err, err
    report = err[err.index("error: 1 of 3 jobs failed"):]
    assert "method.w2=1e+300" in report and "method.w2=0.01" not in report  # the failed job's command...
    diverged = next((tmp_path / "runs").rglob("diverged.txt")).parent
    assert f"folder: {diverged}" in report  # ...its folder, the step and the samples
    assert "at step 0" in report and "sample(s) [0, 1, 2, 3]" in report
    # the same sweep again: the recorded divergence is reported at once, the others are reused
    again = multirun(tmp_path, "method=alm", "method.w2=1e300,0.01,0.02")
    assert again.returncode == 1 and "error: 1 of 3 jobs failed" in again.stderr and "diverged.txt" in again.stderr


def test_a_multirun_without_failures_exits_0_with_no_report(tmp_path):
    proc = multirun(tmp_path, "method=alm", "method.w2=0.01,0.02")
    assert proc.returncode == 0, proc.stderr
    assert "error" not in proc.stderr and list(stored(tmp_path).values()) == [4, 4]


def _job(overrides, value, status=JobStatus.COMPLETED):
    job = SimpleNamespace(overrides=overrides, status=status)
    job.return_value = value
    return job


def test_the_report_lists_only_failed_jobs_and_exits_1_only_then(capsys):
    report = FailureReport()
    report.on_multirun_start(config=None)
    report.on_job_end(config=None, job_return=_job(["seed=0"], 0.5))
    report.on_multirun_end(config=None)  # nothing failed: no exit, no output
    assert capsys.readouterr().err == ""
    report.on_job_end(config=None, job_return=_job(["seed=1", "method.lam=a b"], JobFailure("method x produced NaN/inf", "/r/1")))
    with pytest.raises(SystemExit) as stop:
        report.on_multirun_end(config=None)
    assert stop.value.code == 1
    assert capsys.readouterr().err.splitlines() == summary(2, report.failed).splitlines() == [
        "error: 1 of 2 jobs failed (the others finished):",
        "  python run.py seed=1 'method.lam=a b'", "    folder: /r/1", "    method x produced NaN/inf"]


# --- item 2: divergence that is not NaN -------------------------------------------------------------------

def test_a_state_beyond_the_bound_is_a_divergence_like_nan():
    y = torch.zeros(3, 1, 2, 2)
    _check_diverged(y + MAX_ABS, 4, 600, [7, 8, 9], "m")  # at the bound: fine
    y[1, 0, 0, 0] = 1e7  # finite, far beyond any diffusion state
    with pytest.raises(NumericalError, match=rf"^method m produced values of magnitude 1e\+07 \(beyond {MAX_ABS:g}\) at step 4 "
                                             r"\(t=600\) for sample\(s\) \[8\]$"):
        _check_diverged(y, 4, 600, [7, 8, 9], "m")
    y[2, 0, 1, 1] = float("nan")
    with pytest.raises(NumericalError, match=r"produced NaN/inf at step 4 \(t=600\) for sample\(s\) \[8, 9\]"):
        _check_diverged(y, 4, 600, [7, 8, 9], "m")


def test_syncsde_with_a_large_lambda_is_reported_as_diverged_not_finished(tmp_path):
    """SyncSDE lam=50 drives the observed entries of the mixture testbed far beyond any VP state, finitely."""
    with pytest.raises(NumericalError, match=r"syncsde produced values of magnitude .* for sample\(s\) \[0, 1, 2, 3\]"):
        run(compose([*GMM, "method=syncsde", "method.lam=50"]), tmp_path)
    assert (tmp_path / "diverged.txt").is_file() and not list(tmp_path.glob("samples/*.pt"))
    assert run(compose([*GMM, "method=syncsde", "method.lam=5"]), tmp_path / "ok")["samples"] == 4  # the tuned value runs
