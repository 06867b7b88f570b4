"""The design card's command and the experiment presets (issue 10, item 9)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from alm.config import compose
from alm.run_names import run_dir_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("dataset", ["afhq", "celebahq", "seasons", "painters"])
def test_a_paper_data_set_brings_the_papers_setup(dataset):
    cfg = compose(["task=inpaint", f"dataset={dataset}", "method=alm"])
    assert (cfg.backbone.name, cfg.sampler.name, cfg.sampler.steps, cfg.sampler.guidance) == ("sd15", "ddim", 50, 7.5)
    mine = compose([f"dataset={dataset}", "backbone=sd15-tiny", "sampler.guidance=3"])  # the user's choice wins
    assert (mine.backbone.name, mine.sampler.guidance) == ("sd15-tiny", 3)
    assert compose(["dataset=mnist"]).backbone.name == "embedded"  # the embedded default is unchanged


def test_the_design_card_command_stops_on_the_missing_weights_in_one_line(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), "task=inpaint", "dataset=afhq", "method=alm",
                           f"paths.runs={tmp_path / 'runs'}"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 1
    first = proc.stderr.strip().splitlines()[0]
    assert first.startswith("error:") and "sd15" in first and "shape" not in first, proc.stderr


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml")))
def test_every_preset_composes_and_holds_overrides_only(name):
    cfg = compose([f"experiment={name}"])
    raw = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "experiment" / f"{name}.yaml"))
    assert all(isinstance(d, dict) and all(str(k).startswith("override /") for k in d) for d in raw["defaults"])
    assert cfg.num_samples >= 1 and "_target_" in cfg.backbone


def test_a_preset_row_lands_in_the_tables_folder():
    """`python run.py experiment=gmm method=syncsde` is the gmm table's syncsde row: the same folder."""
    exp = OmegaConf.load(ROOT / "experiments" / "gmm.yaml")
    row = [*exp.overrides, *exp.runs["syncsde"]]
    preset = ["experiment=gmm", "method=syncsde"]
    assert run_dir_for(compose(preset), preset) == run_dir_for(compose(list(row)), list(row))
