"""Replications: a row of a table run R times with seeds 0..R-1, reported as mean ± 95% interval.

The motion tables (paper Tables 4, 5, 7) follow CondMDI's evaluation protocol: each method samples the
test motions R = 10 times (replication r uses seed r) and every metric is reported as

    mean ± 1.96 std / sqrt(R)        (std over the R replications, ddof 0: CondMDI ``get_metric_statistics``)

An experiment with ``replications: R`` expands each run ``label`` into ``label #r`` with ``seed=r``; the
evaluation stage scores every replication as its own run; ``summarize`` then folds the rows of one label
into one, and the Rank column is computed on the means.
"""

from __future__ import annotations

import math
import re
from typing import Mapping, Sequence

from alm.ranking import rank_column
from alm.tables import fmt, to_float

Z95 = 1.96
_SUFFIX = re.compile(r"^(.*) #(\d+)$")


def expand(runs: Mapping[str, list[str]], count: int) -> dict[str, list[str]]:
    """Each run ``label`` as ``label #r`` with ``seed=r`` appended, r = 0..count-1 (unchanged if count is 1)."""
    if count <= 1:
        return {label: list(o) for label, o in runs.items()}
    return {f"{label} #{r}": [*o, f"seed={r}"] for label, o in runs.items() for r in range(count)}


def base_label(label: str) -> str:
    """``"alm #3"`` -> ``"alm"`` (a label without a replication suffix is its own base)."""
    match = _SUFFIX.match(label)
    return match.group(1) if match else label


def mean_interval(values: Sequence[float]) -> tuple[float, float]:
    """(mean, 1.96 std / sqrt(R)) over the finite values (std with ddof 0, as CondMDI)."""
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
    return mean, Z95 * std / math.sqrt(len(vals))


def summarize(rows: Sequence[Mapping[str, object]], metrics: Sequence[str], directions: Mapping[str, bool],
              label_key: str = "label") -> list[dict]:
    """One row per base label: ``<metric>`` the mean, ``<metric>_ci`` the interval, ``replications`` the count,
    ``rank`` from the means over ``directions`` (name -> higher is better)."""
    groups: dict[str, list[Mapping[str, object]]] = {}
    for r in rows:
        groups.setdefault(base_label(str(r[label_key])), []).append(r)
    out = []
    for label, members in groups.items():
        row: dict = {label_key: label, "replications": len(members)}
        for m in metrics:
            row[m], row[f"{m}_ci"] = mean_interval([to_float(r.get(m, "")) for r in members])
        out.append(row)
    ranked = {m: hib for m, hib in directions.items() if m in metrics}
    if len(out) > 1 and ranked:
        for row, k in zip(out, rank_column(out, ranked)):
            row["rank"] = k
    return out


def markdown(rows: Sequence[Mapping[str, object]], metrics: Sequence[str], directions: Mapping[str, bool],
             label_key: str = "label", digits: int = 3) -> str:
    """The summary as a markdown table, each metric cell ``mean ± interval``."""
    arrow = {m: (" ↑" if directions[m] else " ↓") if m in directions else "" for m in metrics}
    head = [label_key, *[f"{m}{arrow[m]}" for m in metrics], "replications"] + (["rank"] if any("rank" in r for r in rows) else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r[label_key])]
        cells += [f"{fmt(r[m], digits)} ± {fmt(r[f'{m}_ci'], digits)}" for m in metrics]
        cells.append(str(r["replications"]))
        if "rank" in head:
            cells.append(str(r.get("rank", "")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
