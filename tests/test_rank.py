"""The averaged-rank tool reproduces every Rank column printed in the paper (results/paper/*.csv)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alm.rank import main, rank_rows
from alm.tables import read_csv

PAPER = Path(__file__).resolve().parent.parent / "results" / "paper"

#: table -> (lower-is-better, higher-is-better, row groups ranked separately)
PRINTED_RANKS = {
    # Table 1: per data set, the un-blended rows and the '*' (blended) rows are ranked separately
    "table1": ("lpips,mse", "ssim,cs", "dataset,rows"),
    "table3": ("fid,kid", "aesthetic,clip", ""),
    "table4": ("fid,matching", "r_precision,diversity", "scenario"),
    "table7": ("fid,matching", "r_precision,diversity", ""),
}


@pytest.mark.parametrize("table", sorted(PRINTED_RANKS))
def test_reproduces_the_printed_rank_column(table, capsys):
    lower, higher, group = PRINTED_RANKS[table]
    args = [str(PAPER / f"{table}.csv"), "--lower", lower, "--higher", higher, "--check", "paper_rank"]
    if group:
        args += ["--group", group]
    assert main(args) == 0, capsys.readouterr().err
    _, rows = read_csv(PAPER / f"{table}.csv")
    ranks = rank_rows(rows, lower.split(","), higher.split(","), group.split(",") if group else ())
    assert ranks == [int(r["paper_rank"]) for r in rows]
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith("| Rank |") and len(out.splitlines()) == len(rows) + 2


def test_every_typed_table_has_the_paper_numbers():
    # Tables 2, 5, 6 print no Rank column; they are typed in for completeness and parse as numbers
    for name, metrics in {"table2": "lpips,mse,ssim,cs", "table5": "fid,skating_ratio,trajectory_error,keyframe_error",
                          "table6": "lpips,mse,ssim,cs"}.items():
        _, rows = read_csv(PAPER / f"{name}.csv")
        assert rows and all(float(r[m]) > 0 for r in rows for m in metrics.split(","))
    _, t1 = read_csv(PAPER / "table1.csv")
    assert len(t1) == 36 and {r["dataset"] for r in t1} == {"AFHQ", "CelebA-HQ", "Seasons", "Painters"}


def test_table1_needs_its_row_groups():
    _, rows = read_csv(PAPER / "table1.csv")
    together = rank_rows(rows, ["lpips", "mse"], ["ssim", "cs"], ["dataset"])
    assert together != [int(r["paper_rank"]) for r in rows]  # blended rows ranked with the others: not the paper's


def test_csv_latex_and_errors(tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("method,err,acc,div\na,0.1,0.9,8.0\nb,0.2,0.9,9.4\nc,0.3,0.5,9.6\n")
    assert main([str(table), "--lower", "err", "--higher", "acc", "--closer", "div=9.5",
                 "--csv", str(tmp_path / "o.csv"), "--latex", str(tmp_path / "o.tex")]) == 0
    _, out = read_csv(tmp_path / "o.csv")
    assert [r["Rank"] for r in out] == ["2", "1", "3"]  # a: (1+1+3)/3, b: (2+1+1)/3, c: (3+3+1)/3 (ties share 1)
    tex = (tmp_path / "o.tex").read_text()
    assert r"\textbf{0.1}" in tex and r"\underline{0.2}" in tex and r"\textbf{0.9}" in tex
    capsys.readouterr()
    assert main([str(table), "--lower", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: column(s) nope not in the table") and err.count("\n") == 1
    assert main([str(table), "--lower", "err", "--check", "acc"]) == 1
    assert "mismatch" in capsys.readouterr().err
