"""The runner end to end on the Gaussian-mixture backbone: every method, resume, batch independence,
and every bad input ending in a one-line error with nothing written lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alm.config import compose
from alm.run_names import run_dir_for
from alm.errors import ConfigError, NumericalError
from alm.fingerprint import same_but_postprocessing
from alm.runner import run

ROOT = Path(__file__).resolve().parent.parent
FAST = ["backbone=gmm", "dataset=gmm", "mask=center", "sampler.steps=10", "num_samples=4", "batch_size=4", "progress=false",
        "metrics=gmm"]
METHODS = ["alm", "alm_fused", "alm_wo_alm", "alm_wo_cond", "alm_wo_joint", "syncsde", "bld",
           "recon_guidance", "recon_guidance_imputation", "ddim", "exact"]


def outputs(run_dir: Path) -> dict[int, torch.Tensor]:
    return {int(p.stem): torch.load(p, weights_only=False)["output"] for p in sorted((run_dir / "samples").glob("*.pt"))}


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_end_to_end_on_gmm(method, tmp_path):
    cfg = compose([f"method={method}", *FAST])
    summary = run(cfg, tmp_path)
    assert summary["samples"] == 4
    for key in ("mse", "psnr", "ssim", "coherence", "tv", "energy_distance", "variance_ratio"):
        assert key in summary and np.isfinite(summary[key]), key
    for name in ("metrics.csv", "summary.json", "table.md", "grid.png", "config.yaml", "images/00003_output.png"):
        assert (tmp_path / name).exists(), name


def test_exact_is_perfectly_coherent(tmp_path):
    summary = run(compose(["method=exact", *FAST, "num_samples=16", "batch_size=16"]), tmp_path)
    assert summary["coherence"] == 1.0


@pytest.mark.parametrize("method", ["alm", "bld", "recon_guidance_imputation"])
def test_batch_size_does_not_change_outputs(method, tmp_path):
    a = outputs_of(tmp_path / "b1", [f"method={method}", *FAST, "batch_size=1"])
    b = outputs_of(tmp_path / "b4", [f"method={method}", *FAST, "batch_size=4"])
    c = outputs_of(tmp_path / "b3", [f"method={method}", *FAST, "batch_size=3"])
    for i in a:
        assert (a[i] - b[i]).abs().max() <= 1e-5
        assert (a[i] - c[i]).abs().max() <= 1e-5
    # a sample file holds its own sample only, not its batch's storage: the same size at any batch size
    size = lambda d: (d / "samples" / "00000.pt").stat().st_size  # noqa: E731
    assert size(tmp_path / "b4") == size(tmp_path / "b1")


def outputs_of(run_dir: Path, overrides: list[str]) -> dict[int, torch.Tensor]:
    run(compose(overrides), run_dir)
    return outputs(run_dir)


def test_shards_fill_one_folder_with_the_same_outputs(tmp_path):
    for k in range(3):
        run(compose(["method=bld", *FAST, "num_samples=5", "batch_size=2", f"shard_index={k}", "shard_count=3"]), tmp_path / "sharded")
    ref = outputs_of(tmp_path / "ref", ["method=bld", *FAST, "num_samples=5"])
    got = outputs(tmp_path / "sharded")
    assert sorted(got) == list(range(5)) and all((ref[i] - got[i]).abs().max() <= 1e-5 for i in ref)
    with pytest.raises(ConfigError, match="shard_index"):
        run(compose(["method=bld", *FAST, "shard_index=3", "shard_count=3"]), tmp_path / "bad")


def test_restart_finishes_missing_samples_and_redoes_none(tmp_path):
    run(compose(["method=alm", *FAST, "num_samples=2"]), tmp_path)
    first = {p: p.stat().st_mtime_ns for p in (tmp_path / "samples").glob("*.pt")}
    full = run(compose(["method=alm", *FAST, "num_samples=4", "batch_size=3"]), tmp_path)
    assert full["samples"] == 4
    assert {p: p.stat().st_mtime_ns for p in first} == first  # not recomputed
    again = run(compose(["method=alm", *FAST, "num_samples=4"]), tmp_path)
    assert again["seconds"] == full["seconds"] and again["evaluations"] == 3 * 10 + 10  # stored per sample; 3 evals x 10 steps + inversion
    ref = outputs_of(tmp_path / "ref", ["method=alm", *FAST])
    got = outputs(tmp_path)
    assert all((ref[i] - got[i]).abs().max() <= 1e-5 for i in ref)


def test_run_folder_refuses_a_different_config(tmp_path):
    run(compose(["method=alm", *FAST, "num_samples=1"]), tmp_path)
    with pytest.raises(ConfigError, match="different config.*method.w2"):
        run(compose(["method=alm", "method.w2=0.5", *FAST, "num_samples=1"]), tmp_path)


def test_sweep_overrides_land_in_separate_folders():
    a = run_dir_for(compose(["method=alm", "method.w2=0.001"]), ["method=alm", "method.w2=0.001"])
    b = run_dir_for(compose(["method=alm", "method.w2=0.01"]), ["method=alm", "method.w2=0.01"])
    assert a != b and "method.w2=0.001" in str(a)
    c = run_dir_for(compose(["method=alm", "batch_size=1"]), ["method=alm", "batch_size=1"])
    assert c == run_dir_for(compose(["method=alm"]), ["method=alm"])  # batch size is not part of the name


def test_nan_is_reported_with_sample_ids_and_earlier_batches_are_kept(tmp_path):
    run(compose(["method=alm", *FAST, "num_samples=2"]), tmp_path / "ok")
    with pytest.raises(NumericalError, match=r"sample\(s\) \[0, 1\]"):
        run(compose(["method=alm", "method.w2=1e300", *FAST, "num_samples=2"]), tmp_path / "nan")
    assert len(list((tmp_path / "ok" / "samples").glob("*.pt"))) == 2
    # a diverged run is recorded: running it again reports the same error at once, without sampling
    import alm.runner as runner

    original = runner.reverse
    runner.reverse = lambda *a, **k: pytest.fail("sampled a recorded divergence again")
    try:
        with pytest.raises(NumericalError, match=r"sample\(s\) \[0, 1\].*diverged.txt; delete it"):
            run(compose(["method=alm", "method.w2=1e300", *FAST, "num_samples=2"]), tmp_path / "nan")
    finally:
        runner.reverse = original


def test_invalid_combinations_are_refused_before_work(tmp_path):
    with pytest.raises(ConfigError, match="exact"):
        run(compose(["method=exact", *FAST, "backbone=unet_pixel"]), tmp_path / "a")
    with pytest.raises(ConfigError, match="num_samples"):
        run(compose(["method=alm", "num_samples=100000", "progress=false"]), tmp_path / "b")
    with pytest.raises(ConfigError, match="task.observed"):
        run(compose(["method=alm", "task.observed=psychic", *FAST]), tmp_path / "c")
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


# --- the command line: one-line errors and a non-zero exit -------------------------------------

def cli(*args: str, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "Traceback" not in err, err
    for n in needles:
        assert n in err, err


def _image_folder(path: Path, n: int = 3, size: int = 8) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(path / f"{i}.png")
    return path


def _folder_run(tmp_path: Path, data: Path, masks: Path | None = None, **extra: str) -> list[str]:
    args = ["backbone=gmm", "dataset=image_folder", f"dataset.path={data}", "dataset.resolution=8", "dataset.channels=1",
            "num_samples=2", "sampler.steps=5", "progress=false", f"hydra.run.dir={tmp_path / 'run'}"]
    if masks is not None:
        args += ["mask=folder", f"mask.folder={masks}"]
    return args + [f"{k}={v}" for k, v in extra.items()]


def test_cli_unknown_method(tmp_path):
    one_line_error(cli("method=nope", f"hydra.run.dir={tmp_path}"), "method/nope")


def test_cli_unknown_backbone(tmp_path):
    one_line_error(cli("backbone=nope", f"hydra.run.dir={tmp_path}"), "backbone/nope")


def test_cli_missing_checkpoint_is_one_line(tmp_path):
    env_home = tmp_path / "hf"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "backbone=unet_pixel", "dataset=image_folder",
         f"dataset.path={_image_folder(tmp_path / 'data', size=32)}", "num_samples=1", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(env_home), "HF_HUB_CACHE": str(env_home / "hub")},
    )
    one_line_error(proc, "error:", "google/ddpm-cifar10-32")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_cli_unknown_key(tmp_path):
    one_line_error(cli("method.w9=1", f"hydra.run.dir={tmp_path}"), "w9")


def test_cli_missing_data_folder(tmp_path):
    one_line_error(cli(*_folder_run(tmp_path, tmp_path / "nowhere")), "error:", "nowhere")


def test_cli_corrupt_image_keeps_earlier_samples(tmp_path):
    data = _image_folder(tmp_path / "data", n=3)
    (data / "2.png").write_bytes(b"not a png")
    args = _folder_run(tmp_path, data, num_samples="3", batch_size="1")
    one_line_error(cli(*args), "error:", "2.png")
    assert len(list((tmp_path / "run" / "samples").glob("*.pt"))) == 2


def test_cli_mask_of_wrong_size(tmp_path):
    data = _image_folder(tmp_path / "data")
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray((np.arange(16 * 16).reshape(16, 16) % 2 * 255).astype(np.uint8)).save(masks / "m.png")
    one_line_error(cli(*_folder_run(tmp_path, data, masks)), "error:", "m.png")


@pytest.mark.parametrize("value", [0, 255])
def test_cli_all_zero_or_all_one_mask(tmp_path, value):
    data = _image_folder(tmp_path / "data")
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(masks / "m.png")
    one_line_error(cli(*_folder_run(tmp_path, data, masks)), "error:")


def test_cli_nan_reports_sample(tmp_path):
    one_line_error(cli("method=alm", "method.w2=nan", "num_samples=2", "sampler.steps=5", "progress=false", f"hydra.run.dir={tmp_path}"), "NaN", "sample")


def test_cli_default_run_prints_table(tmp_path):
    proc = cli("num_samples=2", "sampler.steps=5", "progress=false", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert "| method |" in proc.stdout and "grid.png" in proc.stdout


def test_cli_sweep_lands_in_separate_folders(tmp_path):
    proc = cli("-m", "method=alm", "method.w2=0.001,0.01", "num_samples=1", "sampler.steps=3", "progress=false",
               f"paths.runs={tmp_path}", f"hydra.sweep.dir={tmp_path}", timeout=300)
    assert proc.returncode == 0, proc.stderr
    made = sorted(p.parent.parent.name for p in tmp_path.rglob("samples/00000.pt"))
    assert len(made) == 2 and any("0.001" in m for m in made) and any("0.01" in m for m in made), made


@pytest.mark.slow
def test_killed_run_restarts_without_redoing(tmp_path):
    args = ["backbone=gmm", "dataset=gmm", "mask=center", "method=alm", "num_samples=60", "batch_size=2", "threads=1",
            "sampler.steps=50", "progress=false", f"hydra.run.dir={tmp_path}"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples = tmp_path / "samples"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(samples.glob("*.pt"))) < 4:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p: p.stat().st_mtime_ns for p in samples.glob("*.pt")}
    assert 4 <= len(done) < 60
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    assert {p: p.stat().st_mtime_ns for p in done} == done
    assert len(list(samples.glob("*.pt"))) == 60
    assert not list(samples.glob("*.tmp"))


def test_the_device_is_not_part_of_a_runs_identity():
    """Shards of one run on different GPUs (device=cuda:k) share its folder: the backbone's device is not output."""
    from alm.fingerprint import fingerprint

    a, b = (compose(["backbone=sd15-tiny", f"device={d}"]) for d in ("cpu", "cuda:1"))
    assert a.backbone.device != b.backbone.device and fingerprint(a) == fingerprint(b)


def test_a_blended_run_reuses_its_plain_run(tmp_path, monkeypatch):
    """The experiment layer gives a "*" row its plain row's folder; the runner blends the plain outputs
    (no sampling) and they equal a fresh "*" run."""
    import alm.runner as runner

    from conftest import load_script

    driver = load_script("run_experiment")
    plain = ["method=alm", *FAST, f"paths.runs={tmp_path / 'runs'}"]
    star = [*plain, "task.blend=true", "task.blend_kernel=3", "task.blend_mode=float"]
    plain_dir = run_dir_for(compose(plain), plain)
    run(compose([*plain, "num_samples=2"]), plain_dir)  # the plain run has 2 of 4 samples
    assert driver.plain_run_dir(compose(star), star) == plain_dir
    calls = []
    original = runner.reverse
    monkeypatch.setattr(runner, "reverse", lambda *a, **k: calls.append(len(a[2].x0)) or original(*a, **k))
    star_dir = run_dir_for(compose(star), star)
    summary = run(compose(star), star_dir, reuse_from=plain_dir)
    assert calls == [2]  # only samples 2 and 3 were sampled; 0 and 1 came from the plain run
    fresh = outputs_of(tmp_path / "fresh", [*FAST, "method=alm", "task.blend=true", "task.blend_kernel=3", "task.blend_mode=float"])
    got = outputs(star_dir)
    assert all((fresh[i] - got[i]).abs().max() <= 1e-6 for i in fresh)
    assert summary["evaluations"] == run(compose([*plain, "num_samples=4"]), plain_dir)["evaluations"]
    # another blend kernel is another run, but the same plain parent; a plain row has none
    other = [*plain, "task.blend=true", "task.blend_kernel=5", "task.blend_mode=float"]
    assert driver.plain_run_dir(compose(other), other) == plain_dir
    assert driver.plain_run_dir(compose(plain), plain) is None
    # a folder made with another config is not reused (the runner checks its fingerprint)
    w = [*plain, "method.w2=0.5"]
    assert not same_but_postprocessing(plain_dir, compose([*w, "task.blend=true", "task.blend_mode=float"]))
    assert same_but_postprocessing(plain_dir, compose(star))

# --- damaged sample files heal; a finished run costs its start-up alone -----------------------------

def _count_loads(monkeypatch) -> dict[str, int]:
    """torch.load calls per file name (sample files are only ever read through torch.load)."""
    counts: dict[str, int] = {}
    original = torch.load

    def counting(f, *args, **kwargs):
        counts[Path(str(f)).name] = counts.get(Path(str(f)).name, 0) + 1
        return original(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting)
    return counts


def test_damaged_sample_files_are_set_aside_and_computed_again(tmp_path, capsys):
    args = ["method=alm", *FAST, "batch_size=2"]
    run(compose(args), tmp_path)
    before = outputs(tmp_path)
    samples = tmp_path / "samples"
    (samples / "00001.pt").write_bytes(b"")  # zero bytes (a disk that filled up)
    whole = (samples / "00002.pt").read_bytes()
    (samples / "00002.pt").write_bytes(whole[: len(whole) // 2])  # cut short (an interrupted copy)
    capsys.readouterr()
    summary = run(compose(args), tmp_path)
    err = capsys.readouterr().err
    assert summary["samples"] == 4 and "coherence" in summary
    for name, why in (("00001.pt", "empty"), ("00002.pt", "cut short")):
        assert any(name in line and why in line and line.startswith("warning:") for line in err.splitlines()), err
    assert sorted(p.name.split(".pt")[0] for p in (samples / "damaged").iterdir()) == ["00001", "00002"]
    after = outputs(tmp_path)
    assert sorted(after) == [0, 1, 2, 3] and all((before[i] - after[i]).abs().max() <= 1e-5 for i in before)


def test_the_cli_heals_a_damaged_sample_without_a_traceback(tmp_path):
    args = ["backbone=gmm", "dataset=gmm", "mask=center", "num_samples=3", "sampler.steps=3", "progress=false",
            "metrics=none", f"hydra.run.dir={tmp_path}"]
    assert cli(*args).returncode == 0
    (tmp_path / "samples" / "00000.pt").write_bytes(b"")
    again = cli(*args)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert "00000.pt" in again.stderr and torch.load(tmp_path / "samples" / "00000.pt", weights_only=False)["output"] is not None


def test_a_sample_damaged_after_the_start_counts_as_missing_in_the_summary(tmp_path, capsys):
    """Damage the tail check cannot see (the file ends well): reading it for the summary sets it aside."""
    from alm.metrics import prepare_metrics
    from alm.runner import summarize

    cfg = compose(["method=alm", *FAST, "metrics=none"])
    run(cfg, tmp_path)
    path = tmp_path / "samples" / "00000.pt"
    data = bytearray(path.read_bytes())
    data[40:400] = bytes(360)  # the pickle zeroed, the zip's end record kept
    path.write_bytes(bytes(data))
    summary, rows = summarize(tmp_path, cfg, prepare_metrics(cfg.metrics), torch.device("cpu"))
    assert summary["samples"] == 3 and [r["sample"] for r in rows] == [1, 2, 3]
    assert not path.exists() and "00000.pt" in capsys.readouterr().err


def test_a_resume_with_nothing_to_do_reads_no_sample_file(tmp_path, monkeypatch):
    args = ["method=alm", *FAST]
    first = run(compose(args), tmp_path)
    counts = _count_loads(monkeypatch)
    monkeypatch.setattr("alm.evaluate.evaluate_run", lambda *a, **k: pytest.fail("evaluated a finished run again"))
    again = run(compose(args), tmp_path)
    assert counts == {} and again == first
    # another metric set is another summary (made again, from the files)
    monkeypatch.undo()
    other = run(compose([*args, "metrics=none"]), tmp_path)
    assert "coherence" not in other and other["samples"] == 4


def test_the_end_of_a_run_reads_each_sample_file_once(tmp_path, monkeypatch):
    counts = _count_loads(monkeypatch)
    run(compose(["method=alm", *FAST, "metrics=none", "num_samples=10", "batch_size=5"]), tmp_path)
    assert counts == {f"{i:05d}.pt": 1 for i in range(10)}  # cost rows and grid rows from one read
    counts.clear()
    run(compose(["method=alm", *FAST, "num_samples=10", "batch_size=5"]), tmp_path / "evaluated")
    # the evaluation reads every file and hands over their costs; only the grid's rows are read again
    assert {name: c for name, c in counts.items() if name.endswith(".pt")} == {
        f"{i:05d}.pt": 2 if i < 8 else 1 for i in range(10)}
