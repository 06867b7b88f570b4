"""scripts/compare_tables.py: a printed cell that changed is caught; timing columns and unmatched rows are not compared."""

from __future__ import annotations

from conftest import load_script


def test_a_changed_printed_cell_is_caught(tmp_path):
    compare = load_script("compare_tables")
    (tmp_path / "a.csv").write_text("method,mse,seconds\nalm,0.023790472,2.6\nbld,0.1,1.0\n")
    (tmp_path / "b.csv").write_text("method,mse,seconds\nalm,0.0237904729,9.9\nbld,0.1001,1.0\nnew,1,1\n")
    lines, cells, bad = compare.compare(tmp_path / "a.csv", tmp_path / "b.csv", "method", {"seconds"})
    assert (cells, bad) == (2, 1) and lines == ["bld / mse: 0.1 (committed) vs 0.1001 (regenerated)"]
    assert compare.main([str(tmp_path / "a.csv"), str(tmp_path / "a.csv")]) == 0
    assert compare.main([str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]) == 1
