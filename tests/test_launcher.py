"""Shards of one config through a real Hydra launcher fill ONE run folder with a single process's outputs.

``python run.py -m shard_index=0,1,2 shard_count=3 hydra/launcher=<launcher>`` starts three jobs in
parallel processes (joblib: loky worker processes; submitit_local: one subprocess per job, as
submitit_slurm's jobs on a cluster), all writing into the folder of the one config (shard_index and
shard_count are not part of its name). Then ``python run.py`` once more without shards computes nothing
and writes the complete summary. docs/distributed.md has the commands, including Slurm's.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alm.config import compose
from alm.runner import run

ROOT = Path(__file__).resolve().parent.parent
N = 6
CONFIG = ["backbone=gmm", "dataset=gmm", "mask=center", "method=alm", "sampler.steps=10", f"num_samples={N}",
          "batch_size=2", "progress=false", "threads=1"]  # threads=1: three jobs share this machine's cores
LAUNCHERS = {  # hydra/launcher=<name>: its settings, the package providing it
    "joblib": (["hydra.launcher.n_jobs=3"], "hydra_plugins.hydra_joblib_launcher"),
    "submitit_local": (["hydra.launcher.timeout_min=10"], "hydra_plugins.hydra_submitit_launcher"),
}


def run_py(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, f"run.py {' '.join(args)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def samples_of(folder: Path) -> dict[int, dict]:
    return {int(p.stem): torch.load(p, weights_only=False) for p in sorted((folder / "samples").glob("*.pt"))}


@pytest.mark.slow  # ~35 s per launcher (four python processes)
@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_shards_through_a_hydra_launcher_equal_one_process(launcher, tmp_path):
    settings, package = LAUNCHERS[launcher]
    assert importlib.util.find_spec(package), f"{package} missing: .venv/bin/pip install -c constraints.txt -e '.[dev]'"
    runs = tmp_path / "runs"  # paths.runs; hydra.sweep.dir defaults to it (the multirun's own files land there)
    run_py(["-m", *CONFIG, "shard_index=0,1,2", "shard_count=3", f"hydra/launcher={launcher}", *settings,
            f"paths.runs={runs}", f"hydra.sweep.dir={runs}"], cwd=tmp_path)

    folders = sorted(p.parent for p in runs.rglob("samples"))
    assert len(folders) == 1, f"the three shards wrote {len(folders)} run folders: {folders}"
    folder = folders[0]
    assert "shard" not in str(folder.relative_to(runs))
    got = samples_of(folder)
    assert sorted(got) == list(range(N))
    if launcher == "submitit_local":  # three jobs, each its own process with its own submitit record
        assert len(list(runs.glob(".submitit/*/*_result.pkl"))) == 3

    # the same config in one process (in-process runner: the one run.py calls), in a folder of its own and
    # with an inversion cache of its own (else it would read the shards' inversions)
    run(compose([*CONFIG, f"paths.inversion_cache={tmp_path / 'single-cache'}"]), tmp_path / "single")
    ref = samples_of(tmp_path / "single")
    assert sorted(ref) == list(range(N))
    for i in ref:
        assert torch.equal(ref[i]["source"], got[i]["source"]) and torch.equal(ref[i]["mask"], got[i]["mask"])
    diff = max((ref[i]["output"] - got[i]["output"]).abs().max().item() for i in ref)
    print(f"\n{launcher}: max |sharded - single-process output| = {diff:.3g}")
    assert diff <= 1e-5  # the float32 rounding of other batches (docs/distributed.md, "Batch size")

    # the closing command without shards: the same folder, nothing recomputed, the complete summary
    stamps = {p: p.stat().st_mtime_ns for p in (folder / "samples").glob("*.pt")}
    run_py([*CONFIG, f"paths.runs={runs}"], cwd=tmp_path)
    assert sorted(p.parent for p in runs.rglob("samples")) == [folder]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["samples"] == N and "mse" in summary, summary
