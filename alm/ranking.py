"""The paper's Rank column (docs/method.md §11): rank each metric with competition ranking (ties share the
lowest rank: 1, 2, 2, 4), average the ranks per method, then rank the averages the same way."""

from __future__ import annotations

import math
from typing import Mapping, Sequence


def competition_rank(values: Sequence[float], higher_is_better: bool) -> list[int]:
    """1 + the number of entries strictly better than each entry (NaN ranks last)."""
    key = [(-v if higher_is_better else v) if not math.isnan(v) else math.inf for v in values]
    return [1 + sum(k2 < k for k2 in key) for k in key]


def average_ranks(rows: Sequence[Mapping[str, float]], directions: Mapping[str, bool]) -> list[float]:
    """Mean over the metrics in ``directions`` (name -> higher_is_better) of each row's rank."""
    per_metric = [competition_rank([float(r[m]) for r in rows], hib) for m, hib in directions.items()]
    return [sum(ranks[i] for ranks in per_metric) / len(per_metric) for i in range(len(rows))]


def rank_column(rows: Sequence[Mapping[str, float]], directions: Mapping[str, bool]) -> list[int]:
    """The final Rank: the averaged ranks ranked again (lower average = better)."""
    return competition_rank(average_ranks(rows, directions), higher_is_better=False)
