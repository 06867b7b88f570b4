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
