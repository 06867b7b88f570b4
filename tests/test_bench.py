"""scripts/bench.py on the tiny Stable Diffusion: the table's rows, call counts and finite numbers
(never the timings' values), and the authors'-loop sanity check (issue 5 point 7)."""

from __future__ import annotations

import csv
import math
import re
import sys
from pathlib import Path

import pytest
from conftest import load_script

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    try:
        yield load_script("bench")
    finally:
        sys.modules.pop("bench", None)


def test_batch_sizes_parse(bench):
    assert bench.parse_args(["--batch", "1,4"]).batch == [1, 4]
    assert bench.parse_args([]).batch == [4]  # today's default
    with pytest.raises(SystemExit):
        bench.parse_args(["--batch", "0"])


def test_sd15_tiny_table_has_every_row_and_the_authors_loop_agrees(bench, tmp_path, capsys):
    out = tmp_path / "bench.csv"
    argv = ["--backbone", "sd15-tiny", "--steps", "2", "--reps", "1", "--batch", "1", "--threads", "1", "--csv", str(out)]
    assert bench.main(argv) == 0
    printed = capsys.readouterr().out

    lines = out.read_text().splitlines()
    assert lines[0].startswith("# ") and "--backbone sd15-tiny" in lines[0]  # the command that made it
    rows = {r["method"]: r for r in csv.DictReader(lines[1:])}
    assert list(rows) == ["alm", "alm_fused", "syncsde", "bld", bench.AUTHORS]
    for name, row in rows.items():
        assert row["backbone"] == "sd15-tiny" and row["batch"] == "1"
        for col in ("s/sample", "bare s/sample", "ratio vs syncsde", "vs authors' loop", "core overhead"):
            value = float(row[col])
            assert math.isfinite(value) and value > 0, (name, col, row[col])
        assert math.isfinite(float(row["spread"].rstrip("%")))
        assert row["method"] in printed
    # evaluations per image per step and forward calls per step (the point of the comparison)
    counts = {name: (float(r["evals/sample/step"]), float(r["calls/step"])) for name, r in rows.items()}
    assert counts == {"alm": (4, 2), "alm_fused": (3, 1), "syncsde": (2, 1), "bld": (2, 1), bench.AUTHORS: (4, 3)}
    assert float(rows[bench.AUTHORS]["vs authors' loop"]) == 1.0

    match = re.search(r"max \|alm - authors' loop\| = (\S+) over 1 image\(s\) \(outputs up to (\S+);", printed)
    assert match, printed
    assert float(match.group(1)) <= bench.AGREEMENT[bench.torch.float32] * float(match.group(2))


def test_methods_are_composed_with_their_published_weights(bench):
    """The bench claims conf/method/<name>.yaml's weights: not the default backbone's tuned ones (w2 = 5)."""
    method = bench.make_method("alm")
    assert (method.w1, method.w2) == (1.0, 0.005)


def test_wide_defaults(bench):
    args = bench.parse_args(["--task", "wide"])
    assert args.batch == [1, 4] and args.methods == bench.WIDE_METHODS and (args.windows, args.stride) == (5, 0.75)
    assert bench.parse_args(["--task", "wide", "--stride", "8"]).stride == 8  # latent columns, as task.stride
    assert bench.parse_args([]).methods == "alm,alm_fused,syncsde,bld"


def test_wide_table_has_every_row_and_the_authors_wide_loop_agrees(bench, tmp_path, capsys):
    """--task wide on the tiny SD 2.1-base: 3 windows, 2 steps; the authors' wide loop first, per-canvas counts."""
    out = tmp_path / "wide.csv"
    argv = ["--task", "wide", "--windows", "3", "--steps", "2", "--reps", "1", "--batch", "2", "--threads", "1",
            "--csv", str(out)]
    assert bench.main(argv) == 0
    printed = capsys.readouterr().out

    lines = out.read_text().splitlines()
    assert "--task wide" in lines[0]
    rows = {r["method"]: r for r in csv.DictReader(lines[1:])}
    assert list(rows) == [bench.AUTHORS, *bench.WIDE_METHODS.split(",")]
    for name, row in rows.items():
        assert row["backbone"] == bench.WIDE_BACKBONE and row["batch"] == "2"
        for col in ("s/canvas", "bare s/canvas", "vs authors' loop", "core overhead"):
            value = float(row[col])
            assert math.isfinite(value) and value > 0, (name, col, row[col])
    # per canvas and step, K = 3 windows: the authors' loop e(Y) of K windows, e(E) of K-1, CFG of K (K+1 calls per
    # canvas); ours one batched call per window group (alm: K-1 moves + CFG) for both canvases
    k = 3
    counts = {name: (float(r["evals/canvas/step"]), float(r["calls/canvas/step"])) for name, r in rows.items()}
    assert counts == {bench.AUTHORS: (4 * k - 1, k + 1), "alm": (4 * k - 2, k / 2), "alm_parallel": (4 * k - 2, 1),
                      "alm_fused": (3 * k - 1, 0.5), "syncsde": (2 * k, 0.5), "synctweedies": (2 * k, 0.5),
                      "multidiffusion": (2 * k, 0.5), "ddim": (2 * k, 0.5)}
    assert float(rows[bench.AUTHORS]["vs authors' loop"]) == 1.0

    match = re.search(r"max \|alm - authors' wide loop\| = (\S+) over 2 canvas\(es\) of 3 windows .*\(outputs up to (\S+);",
                      printed)
    assert match, printed
    assert float(match.group(1)) <= bench.AGREEMENT[bench.torch.float32] * float(match.group(2))


def test_motion_defaults(bench):
    args = bench.parse_args(["--task", "motion"])
    assert (args.batch, args.steps, args.reps, args.sampler, args.guidance, args.methods) == \
        ([bench.MOTION_BATCH], bench.MOTION_STEPS, bench.MOTION_REPS, "ddpm", 2.5, "alm")
    plain = bench.parse_args([])  # the other tasks keep theirs
    assert (plain.steps, plain.reps, plain.sampler, plain.guidance) == (20, 5, "ddim", 7.5)


def test_motion_table_has_both_rows_and_the_authors_motion_loop_agrees(bench, tmp_path, capsys):
    """--task motion on the tiny CondMDI: 2 motions, 2 DDPM steps; the authors' loop first, per-motion counts."""
    out = tmp_path / "motion.csv"
    argv = ["--task", "motion", "--steps", "2", "--reps", "1", "--batch", "2", "--threads", "1", "--csv", str(out)]
    assert bench.main(argv) == 0
    printed = capsys.readouterr().out

    lines = out.read_text().splitlines()
    assert "--task motion" in lines[0]
    rows = {r["method"]: r for r in csv.DictReader(lines[1:])}
    assert list(rows) == [bench.AUTHORS, "alm"]
    for name, row in rows.items():
        assert row["backbone"] == bench.MOTION_BACKBONE and row["batch"] == "2"
        for col in ("s/motion", "bare s/motion", "vs authors' loop", "core overhead"):
            value = float(row[col])
            assert math.isfinite(value) and value > 0, (name, col, row[col])
    # per motion and step: the authors' loop 4 calls of one motion (e(Y), e(E), x0 with and without the caption);
    # ours the same 4 evaluations in 2 calls for the whole batch (e(Y) with e(E), then the guided pair)
    counts = {name: (float(r["evals/motion/step"]), float(r["calls/motion/step"])) for name, r in rows.items()}
    assert counts == {bench.AUTHORS: (4, 4), "alm": (4, 1)}
    assert float(rows[bench.AUTHORS]["vs authors' loop"]) == 1.0

    match = re.search(r"max \|alm - authors' motion loop\| = (\S+) over 2 motion\(s\) of 64 frames \(outputs up to (\S+);",
                      printed)
    assert match, printed
    assert float(match.group(1)) <= bench.MOTION_AGREEMENT * float(match.group(2))
    assert re.search(r"# condmdi-tiny, 2 motions: our batched core .* \(\S+x faster\)", printed), printed


def test_motion_sanity_check_catches_a_changed_update(bench):
    """The motion tolerance is loose enough for rounding and the two alphas_cumprod tables, not for another weight
    (w1 = 0.5; at 2 steps the sign of w2 moves the output by less than the tables do: ~1e-3 against ~6e-4)."""
    from alm.motion.frame_masks import FrameMasks
    from alm.tasks.motion import Motion

    backbone = bench.make_backbone(bench.MOTION_BACKBONE, [])
    alm = bench.make_method("alm")
    schedule = bench.make_schedule(backbone.scheduler_config, 2, kind="ddpm")
    task = Motion(render=0)
    data = task.load(bench.SyntheticMotions(backbone), FrameMasks("first_half"), [0], backbone.device)
    got = bench.reverse(backbone, alm, task.problem(backbone, alm, data, schedule), schedule,
                        bench.SampleGenerators(0, [0]), guidance=2.5, sampler="ddpm")

    def check(w1):
        loop = bench.MotionAuthorsLoop(backbone, data, schedule, 2.5, w1, alm.w2, False, 0)
        return bench.authors_job(backbone, "tiny", 1, 2, loop, None, got, got.dtype, "loop| = {diff:.2e}", "",
                                 tolerance=bench.MOTION_AGREEMENT)

    assert check(alm.w1)[0].method == bench.AUTHORS
    with pytest.raises(bench.BenchError, match="differ by"):
        check(0.5 * alm.w1)
