"""Averaged-rank tables from any CSV of methods x metrics (the paper's Rank column, ``alm.ranking``).

    python -m alm.rank FILE.csv --lower lpips,mse --higher ssim,cs [--group dataset,group]
                       [--closer diversity=9.503] [--columns method,lpips,...] [--name Rank]
                       [--csv OUT.csv] [--latex OUT.tex] [--check paper_rank]

Each metric is ranked separately (ties share the lowest rank: 1, 2, 2, 4), the ranks are averaged per
row and the averages ranked the same way. ``--group`` ranks the rows of each group (same values in the
given columns) on their own, e.g. the paper's Table 1 ranks each data set's un-blended rows and its
'*' rows separately. ``--closer COL=TARGET`` ranks a column by its distance to a target (lower is
better). The Markdown table is printed; ``--csv`` / ``--latex`` also write it (LaTeX: per group, best
value of each metric in bold, second underlined). ``--check COL`` compares the computed rank with a
column of the file (e.g. a paper's printed Rank) and exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Mapping, Optional, Sequence

from alm.errors import ALMError, ConfigError, DataError
from alm.ranking import rank_column
from alm.tables import latex, markdown, read_csv, to_float, write_csv


def _split(text: Optional[str]) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def parse_closer(items: Sequence[str]) -> dict[str, float]:
    out = {}
    for item in items:
        col, sep, target = item.partition("=")
        if not sep or math.isnan(to_float(target)):
            raise ConfigError(f"--closer expects COLUMN=NUMBER, got {item!r}")
        out[col.strip()] = float(target)
    return out


def rank_rows(rows: Sequence[Mapping[str, object]], lower: Sequence[str] = (), higher: Sequence[str] = (),
              group: Sequence[str] = (), closer: Optional[Mapping[str, float]] = None) -> list[int]:
    """The Rank of every row, computed within its group (rows with equal values in the ``group`` columns)."""
    closer = dict(closer or {})
    directions = {c: False for c in lower} | {c: True for c in higher} | {c: False for c in closer}
    if not directions:
        raise ConfigError("nothing to rank: give --lower and/or --higher columns")
    if len(directions) != len(lower) + len(higher) + len(closer):
        raise ConfigError("a column is listed twice among --lower / --higher / --closer")
    columns = set().union(*(r.keys() for r in rows)) if rows else set()
    missing = [c for c in [*directions, *group] if c not in columns]
    if missing:
        raise DataError(f"column(s) {', '.join(missing)} not in the table (has {', '.join(sorted(columns))})")
    values = []
    for i, r in enumerate(rows):
        v = {}
        for c in directions:
            x = to_float(r[c])
            if math.isnan(x) and str(r[c]).strip() not in ("", "-", "nan", "NaN"):
                raise DataError(f"row {i + 1}: {c}={r[c]!r} is not a number")
            v[c] = abs(x - closer[c]) if c in closer else x
        values.append(v)
    keys = [tuple(str(r[g]) for g in group) for r in rows]
    ranks = [0] * len(rows)
    for key in dict.fromkeys(keys):
        idx = [i for i, k in enumerate(keys) if k == key]
        for i, rk in zip(idx, rank_column([values[i] for i in idx], directions)):
            ranks[i] = rk
    return ranks


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alm.rank", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", type=Path, help="a CSV file, one row per method (and group)")
    ap.add_argument("--lower", default="", help="comma-separated columns where lower is better")
    ap.add_argument("--higher", default="", help="comma-separated columns where higher is better")
    ap.add_argument("--closer", action="append", default=[], metavar="COL=TARGET", help="rank by |value - TARGET|")
    ap.add_argument("--group", default="", help="comma-separated columns: rank each group of rows separately")
    ap.add_argument("--columns", default="", help="columns to show (default: all, then the rank)")
    ap.add_argument("--name", default="Rank", help="name of the rank column (default Rank)")
    ap.add_argument("--csv", type=Path, default=None, help="also write the ranked table as CSV")
    ap.add_argument("--latex", type=Path, default=None, help="also write a LaTeX tabular")
    ap.add_argument("--check", default="", metavar="COL", help="compare with this column; exit 1 on a difference")
    args = ap.parse_args(argv)
    try:
        if not args.table.is_file():
            raise DataError(f"no such file: {args.table}")
        fields, rows = read_csv(args.table)
        lower, higher, group = _split(args.lower), _split(args.higher), _split(args.group)
        closer = parse_closer(args.closer)
        ranks = rank_rows(rows, lower, higher, group, closer)
        if args.check and args.check not in fields:
            raise DataError(f"--check {args.check}: no such column in {args.table}")
    except ALMError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for r, k in zip(rows, ranks):
        r[args.name] = k
    columns = _split(args.columns) or [f for f in fields if f != args.name]
    columns = [c for c in columns if c != args.name] + [args.name]
    print(markdown(columns, rows), end="")
    if args.csv:
        write_csv(args.csv, columns, rows)
    if args.latex:
        directions = {c: False for c in lower} | {c: True for c in higher}  # marks on raw values: not for --closer
        args.latex.parent.mkdir(parents=True, exist_ok=True)
        args.latex.write_text(latex(columns, rows, directions, [tuple(r[g] for g in group) for r in rows],
                                    caption=f"python -m alm.rank {' '.join(argv if argv is not None else sys.argv[1:])}"))
    if args.check:
        bad = [(i, r[args.check], r[args.name]) for i, r in enumerate(rows) if to_float(r[args.check]) != r[args.name]]
        for i, printed, computed in bad:
            label = ", ".join(str(rows[i][c]) for c in columns[:3])
            print(f"mismatch row {i + 1} ({label}): {args.check}={printed}, computed {computed}", file=sys.stderr)
        if bad:
            return 1
        print(f"{args.check}: all {len(rows)} rows reproduced", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
