"""task=wide: the windowed canvas (alm/windows.py, alm/tasks/windows.py) and its methods.

The yardstick is ``alm.reference.reference_wide_alm``, the authors' wide-image loop written one canvas at a
time with diffusers' ``DDIMScheduler.step`` and the raw model: ``method=alm`` (sequential groups) through our
batched core must equal it in float64 for a batch of canvases with different conditions.
"""

from __future__ import annotations

import copy

import pytest
import torch

from alm import reference as authors
from alm.backbones.diffusers_unet import DiffusersUNet
from alm.config import build_method
from alm.rng import SampleGenerators
from alm.sampling import CallCounter, reverse
from alm.schedule import make_schedule
from alm.tasks.windows import windows_problem
from alm.windows import WindowGeometry, geometry_for

DT = torch.float64
STEPS, G, SEED = 5, 3.0, 7
SD_SCHEDULER = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                    steps_offset=1, set_alpha_to_one=False, clip_sample=False, prediction_type="epsilon")


# --- geometry -------------------------------------------------------------------------------------------

def test_geometry_of_the_paper():
    g = geometry_for(64, 0.75, 5)  # 512 px windows at 384 px on SD's 8x latents
    assert (g.size, g.stride, g.count, g.length, g.overlap) == (64, 48, 5, 256, 16)
    assert g.groups() == [[1], [2], [3], [4]]
    assert g.seams(8).tolist() == [512, 896, 1280, 1664]  # the earlier window wins each overlap
    assert g.observed_mask(0).min() == 1 and g.observed_mask(3)[:16].sum() == 0 and g.observed_mask(3)[16:].min() == 1


def test_geometry_both_sides_and_round_trips():
    g = geometry_for(8, 0.5, 5, extend="both")
    assert g.anchor == 2 and g.groups() == [[3, 1], [4, 0]]
    assert g.shared(1) == (slice(4, 8), slice(0, 4)) and g.shared(3) == (slice(0, 4), slice(4, 8))
    canvas = torch.randn(3, 2, 4, g.length)
    rows = g.crops(canvas)
    assert rows.shape == (5 * 3, 2, 4, 8)
    assert torch.equal(g.stitch(rows), canvas) and torch.allclose(g.average(rows), canvas)
    assert torch.equal(g.from_parents(rows), rows)  # consistent windows: X_t = the state itself


def test_bad_geometry_is_one_line():
    from alm.errors import ConfigError

    for kw, msg in [(dict(stride=0.3), "not a whole number"), (dict(stride=0.0), "fraction"),
                    (dict(count=4, extend="both"), "odd count"), (dict(extend="up"), "right or both")]:
        args = {"size": 8, "stride": 0.5, "count": 5, "extend": "right", **kw}
        with pytest.raises(ConfigError, match=msg):
            geometry_for(**args)
    with pytest.raises(ConfigError, match="between 1 and the window size"):
        WindowGeometry(size=8, stride=9, count=2)


# --- the authors' order, in float64 -----------------------------------------------------------------------

def _class_unet():
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=16, in_channels=2, out_channels=2, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8, num_class_embeds=5,  # 4 classes + the null class 4
    ).to(DT).eval().requires_grad_(False)


def _ours(backbone, method, geometry, labels, schedule, counter=None):
    problem = windows_problem(backbone, method, geometry, len(labels), labels, schedule)
    gens = SampleGenerators(SEED, list(range(len(labels))))
    with torch.no_grad():
        z = reverse(backbone, method, problem, schedule, gens, guidance=G, counter=counter)
    return geometry.stitch(z)


@pytest.mark.parametrize("count", [2, 4])
def test_alm_equals_the_authors_wide_loop_in_float64(count):
    unet = _class_unet()
    backbone = DiffusersUNet.from_model(copy.deepcopy(unet), SD_SCHEDULER, dtype=DT)
    g = geometry_for(16, 0.75, count)
    labels = [1, 3]
    schedule = make_schedule(backbone.scheduler_config, STEPS)
    w1, w2 = 0.8, 0.3  # large enough for every term to show
    method = build_method("alm", w1=w1, w2=w2)
    counter = CallCounter()
    ours = _ours(backbone, method, g, labels, schedule, counter)

    def call(z, t, cs):
        return unet(z, t, class_labels=torch.tensor(cs)).sample

    noise = SampleGenerators(SEED, [0, 1]).randn((2, 16, g.length), dtype=DT)
    with torch.no_grad():
        ref = torch.cat([authors.reference_wide_alm(call, noise[b:b + 1], labels[b], 4,
                                                    authors.ddim_scheduler(SD_SCHEDULER, STEPS, dtype=DT),
                                                    size=16, stride=g.stride, count=count, guidance=G, w1=w1, w2=w2)
                         for b in range(2)])
    assert (ours - ref).abs().max() < 1e-10
    # whole batch per call: (count-1) move calls + 1 CFG call per step; evaluations: 2 per moved window + 2 CFG
    assert counter.calls == STEPS * count
    assert counter.evaluations == STEPS * 2 * (2 * (count - 1) + 2 * count)
    # with 3+ windows the order matters: all at once (from the pre-move state) is another canvas; with 2 it cannot
    parallel = _ours(backbone, build_method("alm", w1=w1, w2=w2, sequential=False), g, labels, schedule)
    assert ((parallel - ref).abs().max() > 1e-4) == (count > 2)


def test_canvas_noise_makes_overlaps_start_equal_and_ddim_windows_are_independent():
    unet = _class_unet()
    backbone = DiffusersUNet.from_model(unet, SD_SCHEDULER, dtype=DT)
    g = geometry_for(16, 0.75, 3)
    schedule = make_schedule(backbone.scheduler_config, STEPS)
    problem = windows_problem(backbone, build_method("ddim"), g, 2, [0, 1], schedule)
    y = problem.initial_noise(SampleGenerators(SEED, [0, 1]))
    assert torch.equal(g.from_parents(y), y)
    # a sample's canvas does not depend on the other samples of its batch
    alone = _ours(backbone, build_method("multidiffusion"), g, [1], schedule)
    pair = _ours(backbone, build_method("multidiffusion"), g, [0, 1], schedule)
    assert (alone[0] - pair[1]).abs().max() > 0  # different sample index -> different noise


# --- the task end to end through the runner ----------------------------------------------------------------

from alm.config import compose  # noqa: E402
from alm.errors import ConfigError  # noqa: E402
from alm.run_folder import load_sample  # noqa: E402
from alm.runner import run  # noqa: E402

EMBEDDED = ["task=wide", "backbone=embedded", "dataset=mnist", "sampler.steps=6", "metrics=none", "progress=false",
            "num_samples=2", "batch_size=2", "task.windows=3", "task.inversion_cache=false"]


@pytest.mark.parametrize("method", ["alm", "alm_parallel", "alm_fused", "syncsde", "synctweedies", "multidiffusion", "ddim"])
def test_every_wide_method_runs_on_the_gp_canvas(method, tmp_path):
    cfg = compose(["task=wide", "backbone=gp", "dataset=unconditional", f"method={method}", "sampler.steps=8",
                   "num_samples=3", "batch_size=2", "metrics=none", "progress=false"])
    run(cfg, tmp_path)
    rec = load_sample(tmp_path, 2)
    assert rec["output"].shape == (1, 1, 32 + 4 * 24)
    assert rec["meta"]["seams"] == [32, 56, 80, 104] and len(rec["meta"]["windows"]) == 5
    assert torch.isfinite(rec["output"]).all()


def test_batch_size_does_not_change_a_canvas(tmp_path):
    base = ["task=wide", "backbone=gp", "dataset=unconditional", "method=alm", "sampler.steps=8", "num_samples=3",
            "metrics=none", "progress=false"]
    run(compose(base + ["batch_size=3"]), tmp_path / "a")
    run(compose(base + ["batch_size=1"]), tmp_path / "b")
    for i in range(3):
        assert (load_sample(tmp_path / "a", i)["output"] - load_sample(tmp_path / "b", i)["output"]).abs().max() < 1e-6


@pytest.mark.parametrize("extend", ["right", "both"])
def test_outpainting_a_source_keeps_it_and_grows_around_it(extend, tmp_path):
    run(compose(EMBEDDED + ["method=alm", "task.source=true", f"task.extend={extend}"]), tmp_path)
    rec = load_sample(tmp_path, 0)
    assert rec["output"].shape == (1, 32, 32 + 2 * 24)
    start = 0 if extend == "right" else 24
    observed = rec["mask"][0] < 0.5
    assert observed.sum() == 32 * 32 and observed[:, start:start + 32].all()
    kept = rec["output"][..., start:start + 32]
    source = rec["source"][..., start:start + 32]
    # the observed window follows its inversion: close to the source (6 steps), unlike the generated part
    assert (kept - source).abs().mean() < 0.25
    assert rec["meta"]["seams"] == ([32, 56] if extend == "right" else [24, 56])


def test_outpainting_with_a_method_that_reads_no_observation_is_one_line():
    from alm.parts import build_parts

    with pytest.raises(ConfigError, match="reads no observation"):
        build_parts(compose(EMBEDDED + ["method=ddim", "task.source=true"]))
    with pytest.raises(ConfigError, match="needs task=wide"):
        build_parts(compose(["method=multidiffusion", "backbone=gmm", "dataset=gmm"]))


@pytest.mark.parametrize("override, message", [
    ("task.stride=0.3", r"task.stride=0.3 of a window of 32 entries is 9.6, not a whole number"),
    ("task.windows=0", r"task.windows=0: expected a positive integer"),
    ("task.extend=up", r"task.extend='up': expected right or both"),
    ("task.stride=40", r"stride=40 must be between 1 and the window size 32"),
])
def test_bad_window_options_are_one_line(override, message):
    from alm.parts import build_parts

    with pytest.raises(ConfigError, match=message):
        build_parts(compose(["task=wide", "backbone=gp", "dataset=unconditional", override]))
