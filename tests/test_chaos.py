"""Chaos: three processes fill one run folder while one of them, at random, is killed with SIGKILL in the
middle of its work and started again, over and over. The folder ends with every sample stored once,
readable, equal to a clean single-process run, with a summary and nothing left behind."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from alm import claims
from alm.config import compose
from alm.runner import run

ROOT = Path(__file__).resolve().parent.parent
N = 120
CONFIG = ["backbone=gmm", "dataset=gmm", "mask=center", "method=alm", f"num_samples={N}", "batch_size=2", "threads=1",
          "sampler.steps=800", "progress=false"]
#: the mixture's metrics (evaluated at the end, by whichever processes get there), without the pixel ones
#: (their torchmetrics import would slow every start)
METRICS = ["metrics=gmm", "metrics.mse=null", "metrics.mse_hole=null", "metrics.psnr=null", "metrics.ssim=null"]
KILLS = 6


def start(run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "run.py"), *CONFIG, *METRICS, f"hydra.run.dir={run_dir}"],
                            cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def working(procs: list[subprocess.Popen], run_dir: Path) -> list[int]:
    """Positions in ``procs`` of the processes that hold a claim now (they are in the middle of a batch)."""
    owners = {(claims.owner(p) or {}).get("pid") for p in (run_dir / claims.FOLDER).glob("*.claim")}
    return [k for k, p in enumerate(procs) if p.pid in owners and p.poll() is None]


@pytest.mark.slow
def test_killed_and_restarted_processes_on_one_folder_lose_and_repeat_nothing(tmp_path):
    rng, run_dir = random.Random(0), tmp_path / "run"
    procs = [start(run_dir) for _ in range(3)]
    kills, deadline, next_kill = 0, time.time() + 240, None
    while kills < KILLS and time.time() < deadline and any(p.poll() is None for p in procs):
        busy = working(procs, run_dir)
        if len(busy) >= 2 and next_kill is None:  # one process keeps working while another restarts
            next_kill = time.time() + rng.uniform(0.2, 1.5)  # of work: somewhere in a batch, its save, the summary
        if len(busy) < 2 or time.time() < next_kill:
            time.sleep(0.02)
            continue
        k = rng.choice(busy)
        procs[k].send_signal(signal.SIGKILL)
        procs[k].communicate()
        procs[k], next_kill = start(run_dir), None
        kills += 1
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert kills >= 5, f"only {kills} kills before the work ran out"
    for p, err in zip(procs, errors):
        assert p.returncode == 0 and "Traceback" not in err, err[-3000:]

    samples = run_dir / "samples"
    assert sorted(p.name for p in samples.iterdir()) == [f"{i:05d}.pt" for i in range(N)]  # nothing set aside
    got = {i: torch.load(samples / f"{i:05d}.pt", weights_only=False)["output"] for i in range(N)}
    ref_dir = tmp_path / "clean"
    run(compose([*CONFIG, "metrics=none", "batch_size=8"]), ref_dir)
    ref = {i: torch.load(ref_dir / "samples" / f"{i:05d}.pt", weights_only=False)["output"] for i in range(N)}
    assert max(float((got[i] - ref[i]).abs().max()) for i in range(N)) <= 1e-5
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["samples"] == N and "coherence" in summary
    assert list((run_dir / claims.FOLDER).iterdir()) == []  # every claim released or taken over
    assert not [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]  # no temporary left behind
