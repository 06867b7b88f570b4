"""Replications (alm.replications): expansion with seeds, mean ± 1.96 std / sqrt(R), the Rank on the means; and the
paper's motion Rank columns reproduced by the project's rule with Diversity ranked higher-is-better."""

from __future__ import annotations

import math

import pytest

from alm.ranking import rank_column
from alm.replications import base_label, expand, markdown, mean_interval, summarize


def test_expand_gives_each_replication_its_seed():
    runs = expand({"alm": ["method=alm"], "rg": ["method=recon_guidance"]}, 3)
    assert list(runs) == ["alm #0", "alm #1", "alm #2", "rg #0", "rg #1", "rg #2"]
    assert runs["alm #2"] == ["method=alm", "seed=2"]
    assert expand({"alm": ["method=alm"]}, 1) == {"alm": ["method=alm"]}
    assert base_label("alm (tuned) #12") == "alm (tuned)" and base_label("alm") == "alm"


def test_mean_interval_is_condmdis_statistic():
    mean, ci = mean_interval([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert ci == pytest.approx(1.96 * math.sqrt(1.25) / 2)  # std with ddof 0: sqrt(1.25)
    assert mean_interval([5.0]) == (5.0, 0.0)
    assert math.isnan(mean_interval([float("nan")])[0])


def test_summarize_folds_replications_and_ranks_the_means():
    rows = [{"label": "a #0", "fid": "1.0", "div": "9"}, {"label": "a #1", "fid": "3.0", "div": "9"},
            {"label": "b #0", "fid": "0.5", "div": "8"}, {"label": "b #1", "fid": "0.5", "div": "8"}]
    out = summarize(rows, ["fid", "div"], {"fid": False, "div": True})
    assert [r["label"] for r in out] == ["a", "b"]
    assert out[0]["fid"] == 2.0 and out[0]["replications"] == 2 and out[1]["fid_ci"] == 0.0
    assert [r["rank"] for r in out] == [1, 1]  # a wins diversity, b wins FID: tied averages share rank 1
    table = markdown(out, ["fid", "div"], {"fid": False, "div": True})
    assert "2 ± 1.39" in table and "fid ↓" in table and "div ↑" in table


TABLE4_FIRST_HALF = {  # paper Table 4, first half: FID, Matching, R-precision, Diversity, Rank
    "CondMDI": (0.626, 4.510, 0.356, 8.724, 3), "Recon. Gui.": (11.742, 5.199, 0.279, 6.076, 5),
    "Recon. Gui.*": (3.738, 4.359, 0.360, 7.745, 3), "Ours": (0.346, 4.112, 0.400, 8.926, 1),
    "Ours*": (0.503, 4.098, 0.398, 8.804, 2)}
TABLE4_MIDDLE_HALF = {
    "CondMDI": (0.599, 4.429, 0.360, 8.574, 3), "Recon. Gui.": (13.113, 5.124, 0.295, 6.018, 5),
    "Recon. Gui.*": (4.390, 4.383, 0.362, 7.589, 4), "Ours": (0.494, 4.136, 0.395, 8.728, 1),
    "Ours*": (0.692, 4.126, 0.394, 8.595, 2)}
TABLE7 = {
    "CondMDI": (0.131, 4.071, 0.407, 9.218, 1), "Reconstruction Guidance": (1.965, 4.293, 0.372, 8.105, 5),
    "Reconstruction Guidance*": (1.703, 4.270, 0.376, 8.217, 4), "Ours": (0.828, 4.081, 0.399, 8.721, 3),
    "Ours*": (0.943, 4.034, 0.411, 8.679, 2)}


@pytest.mark.parametrize("table", [TABLE4_FIRST_HALF, TABLE4_MIDDLE_HALF, TABLE7])
def test_the_paper_motion_rank_columns_follow_the_rule(table):
    rows = [dict(zip(("fid", "matching", "r_precision", "diversity"), v[:4])) for v in table.values()]
    directions = {"fid": False, "matching": False, "r_precision": True, "diversity": True}
    assert rank_column(rows, directions) == [v[4] for v in table.values()]
