"""experiments/wide_gp.yaml (make table-wide-gp): it composes, and its exact row scores at the noise floor.

Also method=exact on backbone=gp, task=wide: exact canvas draws from the samples' own generators."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from conftest import load_script
from omegaconf import OmegaConf

from alm.config import compose
from alm.errors import ConfigError
from alm.parts import build_parts
from alm.rng import SampleGenerators

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT = ROOT / "experiments" / "wide_gp.yaml"


@pytest.fixture(scope="module")
def driver():
    return load_script("run_experiment")


def test_every_row_and_sweep_point_composes_on_the_same_canvas(driver):
    exp = OmegaConf.load(EXPERIMENT)
    common = list(exp.overrides)
    assert set(exp.rank) <= set(exp.columns) and "exact" in exp.unranked
    assert not any(c.endswith("_exact") for c in exp.rank)  # the noise-floor columns are shown, never ranked
    rows = {label: (driver.merge_overrides(common, list(o)), 0) for label, o in exp.runs.items()}
    for label, sweep in exp.sweeps.items():  # each sweep's first and last grid points, on the validation seed
        for point in (driver.grid_points(sweep.grid)[0], driver.grid_points(sweep.grid)[-1]):
            overrides = driver.merge_overrides(common, list(exp.validation), list(sweep.base), point)
            rows[f"{label} {' '.join(point)}"] = (overrides, 1)
    geometry = {}
    for label, (overrides, seed) in rows.items():
        cfg = compose(overrides)
        assert cfg.backbone.name == "gp" and cfg.task.name == "wide" and cfg.sampler.steps == 50, label
        assert int(cfg.seed) == seed, label  # the sweeps run on another seed than the table
        parts = build_parts(cfg)  # every method accepts the GP canvas (exact included)
        g = parts.task.geometry(parts.backbone)
        geometry[label] = (g.length, g.count, g.stride)
    assert geometry["syncsde (13 windows)"] == (128, 13, 8)  # SyncSDE's own geometry: the same canvas
    assert {v for k, v in geometry.items() if k != "syncsde (13 windows)"} == {(128, 5, 24)}


def test_exact_canvases_are_the_gp_draws_of_each_sample_generator():
    cfg = compose(["backbone=gp", "dataset=unconditional", "task=wide", "method=exact", "seed=3"])
    parts = build_parts(cfg)
    gp, task = parts.backbone, parts.task
    from alm.runner import sample

    batch = task.load(parts.dataset, parts.masks, [0, 5, 2], parts.device)
    canvases, _ = sample(parts, batch, cfg)
    assert canvases.shape == (3, 1, 1, 128) and canvases.dtype == torch.float32
    for j, i in enumerate([0, 5, 2]):
        want, _ = gp.sample(1, SampleGenerators(3, [i]).generators[0], 128)
        assert torch.allclose(canvases[j].double(), want[0], atol=1e-6)  # the batch does not matter
    assert batch.metas[0]["seams"] == [32, 56, 80, 104] and batch.metas[0]["axis"] == -1


@pytest.mark.parametrize("overrides, message", [
    (["task=inpaint", "mask=center"], "task=wide"),
    (["task=wide", "task.source=true"], "source"),
])
def test_exact_on_the_gp_refuses_what_it_cannot_draw(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_parts(compose(["backbone=gp", "dataset=unconditional", "method=exact", *overrides]))


def test_the_exact_row_scores_at_the_noise_floor(driver, tmp_path):
    """The experiment's own driver, exact row only, 300 canvases: within the noise floor of 300 exact reference
    draws (the ``*_exact`` columns), coherence 1, and profiles.png drawn."""
    out = tmp_path / "out"
    args = [str(EXPERIMENT), "--only", "exact", "--output", str(out), "num_samples=300", "threads=1",
            "progress=false", f"paths.runs={tmp_path / 'runs'}"]
    assert driver.main(args) == 0
    with open(out / "table.csv") as f:
        (row,) = list(csv.DictReader(f))
    v = {k: float(x) for k, x in row.items() if k != "method" and x != ""}
    assert row["method"] == "exact" and "rank" not in v  # not ranked
    assert v["coherence"] == 1.0 and v["coherence_pieces"] == 1.0 and v["evaluations"] == 0
    for column in ("variance_profile_error", "seam_band_correlation_error", "w2"):
        assert v[column] < 1.6 * v[f"{column}_exact"] + 0.01, (column, v)
    assert 0.8 < v["seam_ratio"] < 1.25
    assert (out / "profiles.png").stat().st_size > 10_000
    assert "Made by `python scripts/run_experiment.py" in (out / "table.md").read_text()
