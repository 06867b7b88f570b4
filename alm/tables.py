"""Rendering tables of methods x metrics: Markdown, CSV and LaTeX (best bold, second underlined)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence


def fmt(value: Any, digits: int = 4) -> str:
    """A table cell: floats with ``digits`` significant digits, NaN as '-', the rest as text."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    return "" if value is None else str(value)


def markdown(columns: Sequence[str], rows: Sequence[Mapping[str, Any]], headers: Optional[Mapping[str, str]] = None) -> str:
    headers = headers or {}
    lines = ["| " + " | ".join(headers.get(c, c) for c in columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c, "")).replace("|", "\\|") for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    import io as _io

    from alm.io import atomic_write_bytes  # a temporary name of this writer's own: processes may share a folder

    buf = _io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({c: (r.get(c, "") if not isinstance(r.get(c), float) else repr(r[c])) for c in columns})
    atomic_write_bytes(Path(path), buf.getvalue().encode())


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = [dict(r) for r in reader]
        return list(reader.fieldnames or []), rows


def to_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$")):
        text = text.replace(a, b)
    return text


def latex(columns: Sequence[str], rows: Sequence[Mapping[str, Any]], directions: Mapping[str, bool],
          group_of: Optional[Sequence[Any]] = None, headers: Optional[Mapping[str, str]] = None,
          caption: str = "") -> str:
    """A booktabs tabular; per group, the best value of each ranked column in bold, the second underlined
    (ties share the mark), as in the paper's tables. ``directions``: column -> higher_is_better."""
    headers = headers or {}
    group_of = list(group_of) if group_of is not None else [0] * len(rows)
    marks: dict[tuple[int, str], str] = {}
    for g in dict.fromkeys(group_of):
        idx = [i for i, gg in enumerate(group_of) if gg == g]
        for c, hib in directions.items():
            vals = sorted({to_float(rows[i].get(c)) for i in idx if not math.isnan(to_float(rows[i].get(c)))}, reverse=hib)
            for i in idx:
                v = to_float(rows[i].get(c))
                if vals and v == vals[0]:
                    marks[(i, c)] = "best"
                elif len(vals) > 1 and v == vals[1]:
                    marks[(i, c)] = "second"
    arrow = {c: (r" $\uparrow$" if hib else r" $\downarrow$") for c, hib in directions.items()}
    out = []
    if caption:
        out.append(f"% {caption}")
    out += [r"\begin{tabular}{" + "l" * len(columns) + "}", r"\toprule",
            " & ".join(_latex_escape(headers.get(c, c)) + arrow.get(c, "") for c in columns) + r" \\", r"\midrule"]
    for i, r in enumerate(rows):
        if i > 0 and group_of[i] != group_of[i - 1]:
            out.append(r"\midrule")
        cells = []
        for c in columns:
            text = _latex_escape(fmt(r.get(c, "")))
            mark = marks.get((i, c))
            cells.append(r"\textbf{" + text + "}" if mark == "best" else r"\underline{" + text + "}" if mark == "second" else text)
        out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(out) + "\n"


def markdown_table(summaries: Sequence[Mapping[str, Any]], title: str = "", columns: Optional[list[str]] = None) -> str:
    """A Markdown table of run summaries; columns default to every key seen, a title as an HTML comment."""
    if columns is None:
        columns = list(dict.fromkeys(k for s in summaries for k in s))
    return (f"<!-- {title} -->\n" if title else "") + markdown(columns, summaries)
