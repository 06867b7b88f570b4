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
