"""Several processes on one run folder: atomic writes that never share a temporary, per-sample claims
(taken once, stale ones taken over), and two runs started together splitting the work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from alm import claims, io, run_folder

ROOT = Path(__file__).resolve().parent.parent


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_claim(path: Path, pid: int, host: str, age: float = 0.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "host": host, "started": "then", "token": "t0"}))
    if age:
        os.utime(path, (time.time() - age, time.time() - age))


# --- atomic writes ---------------------------------------------------------------------------------
def test_concurrent_writers_of_one_file_never_collide(tmp_path):
    """Every writer has its own temporary: no crash, and the file is always one writer's whole content."""
    target, errors = tmp_path / "images" / "00026_source.png", []

    def write(value: float) -> None:
        try:
            for _ in range(100):
                io.save_png(torch.full((1, 8, 8), value), target)
                io.atomic_write_bytes(tmp_path / "summary.json", json.dumps({"v": value}).encode())
                io.atomic_torch_save({"v": value}, tmp_path / "samples" / "00001.pt")
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=write, args=(v,)) for v in (-1.0, 0.0, 1.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert json.loads((tmp_path / "summary.json").read_text())["v"] in (-1.0, 0.0, 1.0)
    assert torch.load(tmp_path / "samples" / "00001.pt")["v"] in (-1.0, 0.0, 1.0)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]  # every temporary renamed


def test_a_failed_write_leaves_neither_file_nor_temporary(tmp_path):
    with pytest.raises(RuntimeError):
        with io.replacing(tmp_path / "x.bin") as f:
            f.write(b"half")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_leftovers_of_dead_processes_are_removed_and_those_of_live_ones_kept(tmp_path):
    host = io.HOST
    dead = tmp_path / "samples" / f".00003.pt.{dead_pid()}@{host}.0123abcd.tmp"
    live = tmp_path / "images" / f".00004_output.png.{os.getpid()}@{host}.0123abcd.tmp"
    elsewhere = tmp_path / f".summary.json.{os.getpid()}@other-host.0123abcd.tmp"  # another host: kept until old
    old = tmp_path / f".table.md.{os.getpid()}@other-host.89abcdef.tmp"
    for p in (dead, live, elsewhere, old):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    os.utime(old, (time.time() - 2 * claims.STALE_AFTER,) * 2)
    write_claim(tmp_path / "claims" / "00003.claim", dead_pid(), host)
    write_claim(tmp_path / "claims" / "00005.claim", os.getppid(), host)  # a live process's
    run_folder.remove_leftovers(tmp_path)
    assert not dead.exists() and live.exists() and elsewhere.exists() and not old.exists()
    assert sorted(p.name for p in (tmp_path / "claims").iterdir()) == ["00005.claim"]


# --- claims ----------------------------------------------------------------------------------------
def test_a_claim_is_taken_once_and_released(tmp_path):
    with claims.Claims(tmp_path) as a, claims.Claims(tmp_path) as b:
        assert a.take(12) and not b.take(12) and not a.take(12)
        owner = claims.owner(tmp_path / "claims" / "00012.claim")
        assert owner["pid"] == os.getpid() and owner["host"] and owner["started"]
        a.release(12)
        assert b.take(12)
    assert list((tmp_path / "claims").iterdir()) == []  # leaving the block releases


def test_stale_claims_are_taken_over_and_live_ones_respected(tmp_path, monkeypatch):
    folder = tmp_path / "claims"
    write_claim(folder / "00001.claim", dead_pid(), io.HOST)  # a killed process of this host
    write_claim(folder / "00002.claim", 1, "another-host", age=claims.STALE_AFTER + 5)  # not refreshed
    write_claim(folder / "00003.claim", 1, "another-host", age=claims.STALE_AFTER / 2)  # refreshed lately
    write_claim(folder / "00004.claim", os.getppid(), io.HOST, age=10)  # alive here
    (folder / "00005.claim").write_text("")  # being written: not stale for a moment
    write_claim(folder / "00006.claim", dead_pid(), io.HOST + "0")  # another pid namespace (a container): unknown
    (folder / "00007.claim").write_text("")  # never written: its process was killed between create and write
    os.utime(folder / "00007.claim", (time.time() - claims.UNWRITTEN_AFTER - 1,) * 2)
    with claims.Claims(tmp_path) as mine:
        assert [mine.take(i) for i in range(1, 8)] == [True, True, False, False, False, False, True]
        assert claims.owner(folder / "00001.claim")["token"] == mine.token


def test_claims_are_refreshed_and_orphans_of_this_process_taken_over(tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "REFRESH_EVERY", 0.0)
    with claims.Claims(tmp_path) as mine:
        mine.take(7)
        path = mine.path(7)
        os.utime(path, (time.time() - 100, time.time() - 100))
        mine.refresh(0)
        assert time.time() - path.stat().st_mtime < 10
    orphan = claims.Claims(tmp_path)  # never entered: as if an interrupted run of this process left it
    assert orphan.take(8)
    with claims.Claims(tmp_path) as mine:
        assert mine.take(8)


def test_the_summary_lock_waits_for_its_holder(tmp_path):
    order = []

    def hold():
        with claims.locked(tmp_path, "summary"):
            order.append("first in")
            time.sleep(0.5)
            order.append("first out")

    t = threading.Thread(target=hold)
    t.start()
    time.sleep(0.1)
    with claims.locked(tmp_path, "summary", poll=0.05):
        order.append("second in")
    t.join()
    assert order == ["first in", "first out", "second in"]


# --- two processes on one folder -------------------------------------------------------------------
#: run.py with ``alm.runner.sample`` wrapped to log every batch it samples (one log per process)
COUNTING_RUN = """
import os, runpy, sys
import alm.runner as runner
log = open(os.path.join(os.environ["WORK_LOGS"], f"{os.getpid()}.log"), "a")
original = runner.sample
def counted(parts, batch, cfg, *args, **kwargs):
    log.write("".join(f"{i}\\n" for i in batch.indices)); log.flush()
    return original(parts, batch, cfg, *args, **kwargs)
runner.sample = counted
sys.argv[0] = os.path.join(os.environ["ALM_ROOT"], "run.py")
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def counting_run(args: list[str], logs: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WORK_LOGS": str(logs), "ALM_ROOT": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", COUNTING_RUN, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_started_together_split_the_work(tmp_path):
    n = 16
    args = ["backbone=gmm", "dataset=gmm", "mask=center", "method=alm", f"num_samples={n}", "batch_size=2", "threads=1",
            "sampler.steps=200", "progress=false", "metrics=gmm", f"hydra.run.dir={tmp_path / 'run'}"]
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = [counting_run(args, logs) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and "Traceback" not in err, err[-3000:]
        assert f"| alm | {n} |" in out  # each process ends with the whole run's summary
    work = [int(line) for log in logs.iterdir() for line in log.read_text().split()]
    assert sorted(work) == list(range(n)), "a sample was computed twice (or never)"
    assert sorted(run_folder.done_indices(tmp_path / "run")) == list(range(n))
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["samples"] == n
    assert not list((tmp_path / "run" / "claims").iterdir())
    assert not [p for p in (tmp_path / "run").rglob("*") if p.name.endswith(".tmp")]
