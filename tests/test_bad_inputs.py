"""Every bad input to ``python run.py`` is one line: the first stderr line is ``error: ...`` naming the
problem, the exit code is non-zero, and nothing already stored is touched.

One table of cases. Each runs ``run.py`` in a subprocess (cwd = a tmp folder, the run folder inside it);
all of them run at once in a module fixture, so the file stays fast. Most cases point ``hydra.run.dir``
at one folder that already holds 2 samples (``STORED``): a bad command must leave it as it was.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
GMM = ["backbone=gmm", "dataset=gmm", "mask=center", "sampler.steps=5", "num_samples=2", "progress=false", "metrics=none"]
STORED = "stored"  # the run folder with 2 samples (made first by the fixture with GMM)


@dataclass
class Case:
    args: list[str]        # run.py arguments; {tmp} is the module's tmp folder
    first_line: str        # regex for the first line of stderr
    codes: tuple = (1,)    # accepted exit codes
    one_line: bool = True  # stderr is that line only (Hydra's config errors keep Hydra's report below it)
    folder: str = STORED   # hydra.run.dir below {tmp}


HYDRA = dict(one_line=False)
CASES = {
    # the run's own keys: integers, ranges, the device (alm/parts.py, before any folder is written)
    "num_samples not a number": Case([*GMM, "num_samples=abc"], r"error: num_samples='abc': expected an integer >= 1$"),
    "num_samples zero": Case([*GMM, "num_samples=0"], r"error: num_samples=0: expected an integer >= 1$"),
    "num_samples beyond the data set": Case([*GMM, "num_samples=100000"], r"error: num_samples=100000 but dataset gmm has only 256"),
    "batch_size zero": Case([*GMM, "batch_size=0"], r"error: batch_size=0: expected an integer >= 1$"),
    "seed negative": Case([*GMM, "seed=-1"], r"error: seed=-1: expected an integer >= 0$"),
    "seed fractional": Case([*GMM, "seed=1.5"], r"error: seed=1.5: expected an integer >= 0$"),
    "shard_index beyond shard_count": Case([*GMM, "shard_index=2", "shard_count=2"],
                                           r"error: shard_index=2 must be in \[0, shard_count=2\)"),
    "sampler.steps not a number": Case([*GMM, "sampler.steps=ten"], r"error: sampler.steps='ten': expected an integer >= 1$"),
    "unknown sampler name": Case([*GMM, "sampler.name=euler"], r"error: sampler.name='euler': expected one of ddim, ddpm$"),
    "unknown device": Case([*GMM, "device=tpu"], r"error: device='tpu': expected auto, cpu, cuda or cuda:<index>$"),
    "a required value left unset": Case([*GMM, "dataset=image_folder"],
                                        r"error: dataset.path must be set: add dataset.path=\.\.\. to the command$"),
    # overrides Hydra refuses: our line first (key and choices), Hydra's report kept below it
    "unknown method": Case([*GMM, "method=foo"], r"error: .*'method/foo' \(choices: alm, .*syncsde, synctweedies\)$", **HYDRA),
    "unknown backbone": Case(["backbone=nope"], r"error: .*'backbone/nope' \(choices: .*gmm", **HYDRA),
    "unknown top-level key": Case([*GMM, "foo=1"], r"error: Could not override 'foo' "
                                  r"\(the config has: .*num_samples.*seed.*; \+foo=\.\.\. adds a key\)$", **HYDRA),
    "unknown method key": Case([*GMM, "method.w22=1"], r"error: Could not override 'method.w22' \(method has: .*w1, w2.*\)$", **HYDRA),
    "a list without -m": Case([*GMM, "method.w2=1,2"], r"error: Ambiguous value for argument 'method.w2=1,2'$", **HYDRA),
    "an override that does not parse": Case([*GMM, "method.w2=["], r"error: no viable alternative at input '\['$", **HYDRA),
    "a sweep's bad key (-m)": Case(["-m", *GMM, "method.w22=1,2", "paths.runs={tmp}/sweep"],
                                   r"error: Could not override 'method.w22' \(method has", **HYDRA),
    "a sweep's unknown choice (-m)": Case(["-m", *GMM, "method=foo,alm", "paths.runs={tmp}/sweep"],
                                          r"error: .*'method/foo' \(choices:", **HYDRA),
    # the stored folder holds another config: refused, nothing written
    "another config into a stored folder": Case([*GMM, "method.w2=0.5"], r"error: run folder .* different config"),
    # the backbone is named as configured (build() drops the config's `name`: it said unet_pixel)
    "a prompt for a class-conditional backbone": Case(
        ["dataset=image_folder", "dataset.path={tmp}/digits", "dataset.channels=1", "dataset.labels='a cat'", "num_samples=1",
         "progress=false", "metrics=none"], r"error: backbone embedded is class-conditional: labels must be class ids", folder="labels"),
    # divergence: NaN, and a finite blow-up (alm/sampling.py MAX_ABS)
    "NaN": Case([*GMM, "method.w2=1e300"], r"error: method alm produced NaN/inf at step 0 \(t=\d+\) for sample\(s\) \[0, 1\]$",
                folder="nan"),
    "a finite blow-up": Case([*GMM, "method=syncsde", "method.lam=50"], r"error: method syncsde produced values of magnitude .* "
                             r"\(beyond \d+\) at step \d+ \(t=\d+\) for sample\(s\) \[0, 1\]$", folder="blowup"),
    # the results folder cannot be written
    "a results folder below a file": Case([*GMM], r"error: cannot write the results folder .*/a_file/run: .*a_file is a file, not a folder",
                                          folder="a_file/run"),
    "a read-only results folder": Case([*GMM], r"error: cannot write the results folder .*/read_only/run: .*read_only is read-only",
                                       folder="read_only/run"),
    # a truncated fingerprint.json in a folder without samples (alm/fingerprint.py): one line, or the folder is reused
    "a truncated fingerprint.json": Case([*GMM], r"(error: .*fingerprint\.json.*)?$", codes=(0, 1), folder="truncated"),
}


def cli(args: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ALM_INVERSION_CACHE_DIR": str(cwd / "inversion")}
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def read_only(folder: Path) -> bool:
    """Make ``folder`` read-only: a read-only bind mount (root ignores permissions), else chmod."""
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return True
    return subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """(tmp folder, the stored folder's files before, case name -> finished process); every case at once."""
    tmp = tmp_path_factory.mktemp("bad_inputs")
    made = cli([*GMM, f"hydra.run.dir={tmp / STORED}"], tmp)
    assert made.returncode == 0 and len(list((tmp / STORED / "samples").glob("*.pt"))) == 2, made.stderr
    before = snapshot(tmp / STORED)
    (tmp / "a_file").write_text("")
    (tmp / "truncated").mkdir()
    (tmp / "truncated" / "fingerprint.json").write_text('{"seed": 0, "meth')
    (tmp / "digits").mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (32, 32), dtype=np.uint8)).save(tmp / "digits" / f"{i}.png")
    mounted = read_only(tmp / "read_only")
    cases = {n: c for n, c in CASES.items() if mounted or n != "a read-only results folder"}
    try:
        with ThreadPoolExecutor(4) as pool:
            procs = dict(zip(cases, pool.map(
                lambda c: cli([a.format(tmp=tmp) for a in c.args] + [f"hydra.run.dir={tmp / c.folder}"], tmp), cases.values())))
    finally:
        if mounted and os.geteuid() == 0:
            subprocess.run(["umount", str(tmp / "read_only")], check=False)
    return tmp, before, procs


@pytest.mark.parametrize("name", CASES)
def test_a_bad_input_is_one_line(results, name):
    tmp, before, procs = results
    if name not in procs:
        pytest.skip("no read-only folder: a read-only bind mount needs root with mount rights")
    case, proc = CASES[name], procs[name]
    lines = proc.stderr.splitlines() or [""]
    assert proc.returncode in case.codes, proc.stderr
    assert re.match(case.first_line, lines[0]), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    if case.one_line:
        assert len(lines) == 1, proc.stderr
    assert snapshot(tmp / STORED) == before  # the stored samples, config and fingerprint are untouched


def test_ctrl_c_keeps_the_samples_and_says_how_to_resume(tmp_path):
    # every item of the mixture data set at 400 steps: on a loaded machine the test may look late, and a short run
    # could finish before the Ctrl-C
    run_dir = tmp_path / "run"
    args = [*GMM, "num_samples=256", "sampler.steps=400", "threads=1", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and len(list(run_dir.glob("samples/*.pt"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    kept = len(list(run_dir.glob("samples/*.pt")))
    assert proc.returncode == 130 and 2 <= kept < 256, err
    assert err.splitlines() == [f"interrupted: {kept} of 256 samples are stored in {run_dir}; "
                                f"resume with: python run.py {' '.join(args)}"]
