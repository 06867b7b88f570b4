"""Compare a regenerated table with a committed one, cell by cell as printed (4 significant digits).

    python scripts/compare_tables.py results/gmm/table.csv /tmp/new/table.csv [--key method] [--ignore seconds]

Rows are matched by the key column; rows present in only one table are listed. Timing columns are
ignored by default (they measure the machine, not the method). Exit 1 if a printed cell differs.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alm.tables import fmt, read_csv, to_float  # noqa: E402


def compare(old: Path, new: Path, key: str, ignore: set[str]) -> tuple[list[str], int, int]:
    """Lines describing every difference, the number of cells compared, the number that differ."""
    cols_old, rows_old = read_csv(old)
    cols_new, rows_new = read_csv(new)
    by_key = {r[key]: r for r in rows_new}
    lines, cells, bad = [], 0, 0
    for r in rows_old:
        other = by_key.get(r[key])
        if other is None:
            continue
        for c in cols_old:
            if c == key or c in ignore or c not in cols_new:
                continue
            a, b = to_float(r[c]), to_float(other[c])
            cells += 1
            if fmt(a) != fmt(b) and not (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)):
                bad += 1
                lines.append(f"{r[key]} / {c}: {fmt(a)} (committed) vs {fmt(b)} (regenerated)")
    return lines, cells, bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("committed", type=Path)
    ap.add_argument("regenerated", type=Path)
    ap.add_argument("--key", default=None, help="the row label column (default: the first column)")
    ap.add_argument("--ignore", default="seconds", help="comma-separated columns not compared")
    args = ap.parse_args(argv)
    key = args.key or read_csv(args.committed)[0][0]
    lines, cells, bad = compare(args.committed, args.regenerated, key, set(filter(None, args.ignore.split(","))))
    _, new_rows = read_csv(args.regenerated)
    _, old_rows = read_csv(args.committed)
    matched = len({r[key] for r in old_rows} & {r[key] for r in new_rows})
    print(f"{matched} rows matched by {key!r}; {cells} printed cells compared; {bad} differ"
          + (f" (ignored: {args.ignore})" if args.ignore else ""))
    for line in lines:
        print("  " + line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
