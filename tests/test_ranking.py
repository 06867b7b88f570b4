from alm.ranking import competition_rank, rank_column


def test_competition_ranking_ties_share_the_lowest_rank():
    assert competition_rank([0.1, 0.2, 0.2, 0.3], higher_is_better=False) == [1, 2, 2, 4]
    assert competition_rank([3.0, 1.0, 3.0], higher_is_better=True) == [1, 3, 1]


def test_reproduces_paper_table1_afhq_rank_column():
    # Table 1, AFHQ, the six un-blended rows: LPIPS, MSE, SSIM, CS -> printed Rank
    rows = [
        ("BrushNet", 0.434, 0.216, 0.494, 29.46, 6),
        ("PowerPaint", 0.428, 0.217, 0.502, 29.26, 5),
        ("SyncSDE", 0.414, 0.172, 0.552, 28.80, 2),
        ("BLD", 0.421, 0.149, 0.520, 28.71, 3),
        ("HD-Painter", 0.398, 0.146, 0.498, 28.28, 3),
        ("ALM", 0.391, 0.142, 0.591, 29.00, 1),
    ]
    table = [dict(lpips=r[1], mse=r[2], ssim=r[3], cs=r[4]) for r in rows]
    ranks = rank_column(table, {"lpips": False, "mse": False, "ssim": True, "cs": True})
    assert ranks == [r[5] for r in rows]
