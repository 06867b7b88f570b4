"""scripts/run_experiment.py: sweeps judged by the evaluation stage, --only / --sweeps, override merging."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import load_script

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def driver():
    return load_script("run_experiment")


def test_merge_overrides_keeps_the_later_value_in_the_earlier_place(driver):
    merged = driver.merge_overrides(["dataset.split=test", "num_samples=500", "a=1"], ["dataset.split=val"], ["+b=2", "b=3"])
    assert merged == ["dataset.split=val", "num_samples=500", "a=1", "b=3"]


EXPERIMENT = """
name: tiny sweep
make: ''
output: unused
overrides: [backbone=gmm, dataset=gmm, mask=center, sampler.steps=3, num_samples=4, dataset.seed=0]
validation: [dataset.seed=1, num_samples=3]
sweeps:
  recon_guidance:
    base: [method=recon_guidance]
    grid: {method.w_r: [0.0, 50.0]}
runs: {ddim: [method=ddim]}
columns: [method, mse_hole]
evaluate: {metrics: pixel, only: [ssim_hole], config: [progress=false]}  # not in the runner's summary
combined: table1
"""


def test_sweeps_are_judged_by_the_evaluation_stage(driver, tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text(EXPERIMENT)
    common = [f"paths.runs={tmp_path / 'runs'}", "progress=false"]
    assert driver.main([str(exp), "--sweeps", "--output", str(tmp_path / "out"), *common]) == 0
    out = tmp_path / "out"
    assert not (out / "table.md").exists()  # --sweeps: no table
    sweep = (out / "sweep.md").read_text()
    assert "ssim_hole (higher)" in sweep and "method.w_r=0.0" in sweep and "method.w_r=50.0" in sweep
    assert (out / "sweep_recon_guidance_w_r.png").stat().st_size > 1000
    # the chosen point is the one with the higher validation ssim_hole (the only ranked metric)
    rows = [l for l in sweep.splitlines() if l.startswith("| method.w_r=")]
    values = {r.split("|")[1].strip(): float(r.split("|")[2]) for r in rows}
    assert len(set(values.values())) == 2
    best = max(values, key=values.get)
    assert f"chosen `{best}`" in sweep
    # validation runs used the validation overrides, once each (no duplicated keys in the folder names)
    folders = sorted(p.name for p in (tmp_path / "runs").rglob("fingerprint.json"))
    names = [str(p.parent) for p in (tmp_path / "runs").rglob("fingerprint.json")]
    assert len(folders) == 2 and all(n.count("dataset.seed=") == 1 and "dataset.seed=1" in n for n in names)
    # the full experiment reuses the sweep and adds the tuned row on the test overrides
    assert driver.main([str(exp), "--output", str(out), *common]) == 0
    table = (out / "table.md").read_text()
    assert "| recon_guidance (tuned) |" in table and "| ddim |" in table
    assert "| recon_guidance (tuned) | 4 |" in (out / "evaluation_table.md").read_text()
    combined = (out / "table1.md").read_text()  # metrics, cost and rank in one table
    assert "| label | samples | ssim_hole | evaluations | seconds | rank |" in combined and "Made by" in combined


def test_only_skips_other_sweeps(driver, tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text(EXPERIMENT)
    assert driver.main([str(exp), "--only", "ddim", "--output", str(tmp_path / "out"),
                        f"paths.runs={tmp_path / 'runs'}", "progress=false"]) == 0
    assert not (tmp_path / "out" / "sweep.md").exists()
    assert "recon_guidance" not in (tmp_path / "out" / "table.md").read_text()
    # a sweep runs for its tuned row, or by its own label with --sweeps
    args = ["--output", str(tmp_path / "out2"), f"paths.runs={tmp_path / 'runs'}", "progress=false"]
    assert driver.main([str(exp), "--only", "recon_guidance", *args]) == 0
    assert not list((tmp_path / "out2").glob("sweep*.md"))
    assert driver.main([str(exp), "--sweeps", "--only", "recon_guidance", *args]) == 0
    assert "## recon_guidance: chosen" in next((tmp_path / "out2").glob("sweep*.md")).read_text()


def test_runs_sharing_a_folder_are_judged_on_their_own_samples(driver, tmp_path):
    """num_samples is not part of a run's folder: a 2-sample run inside a 4-sample folder is judged on 2."""
    exp = tmp_path / "exp.yaml"
    exp.write_text(EXPERIMENT)
    common = ["--only", "ddim", f"paths.runs={tmp_path / 'runs'}", "progress=false"]
    assert driver.main([str(exp), "--output", str(tmp_path / "a"), *common]) == 0
    assert driver.main([str(exp), "--output", str(tmp_path / "b"), *common, "num_samples=2"]) == 0
    assert "| ddim | 4 |" in (tmp_path / "a" / "evaluation_table.md").read_text()
    assert "| ddim | 2 |" in (tmp_path / "b" / "evaluation_table.md").read_text()


def test_smoke_swaps_backbones_for_miniatures_everywhere(driver, monkeypatch, tmp_path):
    from omegaconf import OmegaConf

    monkeypatch.setenv("ALM_CACHE_DIR", str(tmp_path / "cache"))
    exp = OmegaConf.load(ROOT / "experiments" / "table6.yaml")
    smoke = driver.apply_smoke(exp)
    assert smoke.runs["Stable Diffusion Inpainting"][0] == "backbone=sd15-inpaint-tiny"
    assert smoke.runs["ALM"][0] == "backbone=sd15-tiny" and "num_samples=4" in smoke.overrides
    assert smoke.output == "results/runs/smoke/table6" and "skip_unavailable=true" in smoke.evaluate.overrides
    assert (tmp_path / "cache" / "smoke-data" / "celeba_hq" / "val" / "female").is_dir()
    assert exp.runs["ALM"][0] == "backbone=sd15"  # the experiment itself is untouched


DIVERGING = """
name: a row that diverges
make: ''
output: unused
overrides: [backbone=gmm, dataset=gmm, mask=center, sampler.steps=5, num_samples=2, metrics=gmm]
rank: {coherence: higher, tv: lower}
runs: {ddim: [method=ddim], alm: [method=alm, method.w2=1e300], syncsde: [method=syncsde, method.lam=50]}
columns: [method, coherence, tv]
"""


def test_a_diverged_run_is_a_row_marked_so_not_the_end_of_the_table(driver, tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text(DIVERGING)
    out = tmp_path / "out"
    assert driver.main([str(exp), "--output", str(out), f"paths.runs={tmp_path / 'runs'}", "progress=false"]) == 0
    rows = {l.split("|")[1].strip(): [c.strip() for c in l.split("|")[2:-1]] for l in (out / "table.md").read_text().splitlines()
            if l.startswith("| ") and not l.startswith("| method")}
    assert list(rows) == ["ddim", "alm", "syncsde"]
    assert rows["ddim"][:2] != ["-", "-"] and rows["ddim"][-1] == "1"  # header: method, coherence, tv, note, rank
    assert rows["alm"] == ["-", "-", "diverged: NaN/inf at step 0", "2"]
    assert rows["syncsde"][:2] == ["-", "-"] and rows["syncsde"][2].startswith("diverged: values of magnitude")
    assert (out / "grid.png").is_file()  # from the rows that finished
