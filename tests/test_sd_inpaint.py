"""method=sd_inpaint (paper Table 6): diffusers' StableDiffusionInpaintPipeline through the runner, on
the tiny random inpainting pipeline of alm.backbones.tiny (no hub)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alm.config import compose
from alm.errors import CheckpointError, ConfigError
from alm.methods.base import Problem
from alm.rng import SampleGenerators
from alm.runner import run

TINY = ["backbone=sd15-inpaint-tiny", "method=sd_inpaint", "sampler.steps=3", "sampler.guidance=7.5", "progress=false"]


@pytest.fixture(scope="module")
def pipe_backbone():
    from alm.backbones.inpaint_pipeline import InpaintPipeline

    return InpaintPipeline(tiny="sd15-inpaint", dtype="float32")


@pytest.fixture
def afhq(tmp_path) -> Path:
    """A tiny AFHQ-like folder: val/{cat,dog}/*.png at 80x64 (cropped and resized to 64)."""
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "afhq" / "val" / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(tmp_path / "afhq" / "val" / cls / f"{i}.png")
    return tmp_path / "afhq"


def outputs(run_dir: Path) -> dict[int, dict]:
    return {int(p.stem): torch.load(p, weights_only=False) for p in sorted((run_dir / "samples").glob("*.pt"))}


def test_runs_end_to_end_and_batch_size_does_not_matter(afhq, tmp_path):
    data = ["dataset=afhq", f"dataset.path={afhq}", "dataset.pairs=2", "num_samples=2"]
    summary = run(compose([*TINY, *data, "batch_size=2"]), tmp_path / "b2")
    assert summary["samples"] == 2
    a = outputs(tmp_path / "b2")
    for d in a.values():
        assert d["output"].shape == (3, 64, 64) and torch.isfinite(d["output"]).all()
        assert d["output"].min() >= -1 and d["output"].max() <= 1
        assert d["label"] in ("a photo of a cat", "a photo of a dog")
    assert not torch.equal(a[0]["output"], a[1]["output"])
    run(compose([*TINY, *data, "batch_size=1"]), tmp_path / "b1")
    b = outputs(tmp_path / "b1")
    for i in a:
        assert (a[i]["output"] - b[i]["output"]).abs().max() <= 1e-5
    # another run seed, other noise
    run(compose([*TINY, *data, "batch_size=2", "seed=1"]), tmp_path / "s1")
    assert (outputs(tmp_path / "s1")[0]["output"] - a[0]["output"]).abs().max() > 1e-3


def test_blend_keeps_the_known_region(afhq, tmp_path):
    """The "*" rows: away from the hole (further than the blur's reach) the output is the source."""
    over = [*TINY, "dataset=afhq", f"dataset.path={afhq}", "dataset.pairs=1", "num_samples=1", "mask=center",
            "mask.keep=0.75", "task.blend=true", "task.blend_kernel=21"]
    run(compose(over), tmp_path / "run")
    d = outputs(tmp_path / "run")[0]
    known_far = slice(8 + 11, 56 - 11)  # observed square 8..55; the 21x21 blur reaches 10 px
    assert torch.allclose(d["output"][:, known_far, known_far], d["source"][:, known_far, known_far], atol=1e-6)
    assert (d["output"] - d["source"])[:, :8].abs().max() > 1e-2  # the hole is generated


def test_uses_the_known_region_and_never_the_hole(pipe_backbone):
    """The pipeline sees the source outside the mask only: changing the hole's content changes nothing,
    changing the known region changes the output."""
    from alm.methods.sd_inpaint import SDInpaint

    method = SDInpaint(steps=2, guidance=3.0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1

    def sample(source):
        problem = Problem(x0=source, mask=mask, cond=pipe_backbone.make_cond(["a photo of a cat"], 1))
        return method.sample_directly(pipe_backbone, problem, SampleGenerators(0, [0]))

    base = sample(x)
    hole_changed = x * (1 - mask) + mask * torch.rand(1, 3, 64, 64, generator=g)
    assert torch.equal(sample(hole_changed), base)
    known_changed = x.clone()
    known_changed[..., :8, :] = -x[..., :8, :]
    assert (sample(known_changed) - base).abs().max() > 1e-3


def test_ddpm_sampler_is_per_sample(pipe_backbone):
    from alm.methods.sd_inpaint import SDInpaint

    method = SDInpaint(steps=3, guidance=1.0, sampler="ddpm")
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    mask = torch.zeros(2, 1, 64, 64)
    mask[..., :, 32:] = 1
    both = method.sample_directly(pipe_backbone, Problem(x0=x, mask=mask, cond=[None, "a dog"]), SampleGenerators(5, [3, 4]))
    one = method.sample_directly(pipe_backbone, Problem(x0=x[1:], mask=mask[1:], cond=["a dog"]), SampleGenerators(5, [4]))
    assert (both[1:] - one).abs().max() <= 1e-5


def test_missing_checkpoint_is_one_line(tmp_path, monkeypatch, afhq):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    cfg = compose(["backbone=sd15-inpaint", "method=sd_inpaint", "dataset=afhq", f"dataset.path={afhq}", "dataset.pairs=1",
                   "num_samples=1", "progress=false", "device=cpu"])
    with pytest.raises(CheckpointError) as info:
        run(cfg, tmp_path / "run")
    msg = str(info.value)
    assert "\n" not in msg and "stable-diffusion-v1-5/stable-diffusion-inpainting" in msg
    assert "scripts/fetch_weights.py sd15-inpaint" in msg


def test_wrong_combinations_are_refused(tmp_path, afhq):
    with pytest.raises(ConfigError, match="inpaint_pipeline"):  # before anything is built
        run(compose(["backbone=gmm", "method=sd_inpaint", "dataset=gmm", "num_samples=1", "progress=false"]), tmp_path / "a")
    cfg = compose(["backbone=sd15-inpaint-tiny", "method=alm", "dataset=afhq", f"dataset.path={afhq}", "dataset.pairs=1",
                   "num_samples=1", "sampler.steps=2", "progress=false"])
    with pytest.raises(ConfigError, match="only runs method=sd_inpaint"):
        run(cfg, tmp_path / "b")
