"""Figures from run folders: comparison grid (Fig. 2), ablation grid (Fig. 3), wide strip, sweep plot."""

from __future__ import annotations

import pytest
import torch
from _eval_runs import copy_run, gmm_runs
from PIL import Image

from alm import io
from alm.errors import DataError
from alm.evaluate import main as evaluate_main
from alm.figures import ablation_grid, comparison_grid, main, sweep_plot, sweep_points, wide_strip


def _png(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_comparison_and_ablation_grids(tmp_path_factory, tmp_path):
    runs = gmm_runs(tmp_path_factory)
    w2, h2 = _png(comparison_grid([("ALM", runs["alm"]), ("DDIM", runs["ddim"])], tmp_path / "fig2.png", rows=3))
    w1, h1 = _png(comparison_grid([("ALM", runs["alm"])], tmp_path / "fig2_one.png", rows=3))
    assert w2 > w1 * 1.3 and abs(h2 - h1) <= 2  # one column more: wider, same height
    _png(ablation_grid([("w/o joint", runs["ddim"]), ("w2=0.05", runs["alm_w2"])], ("ALM", runs["alm"]),
                       tmp_path / "fig3.png", per_row=2))
    with pytest.raises(DataError, match="not in every run"):
        comparison_grid([("ALM", runs["alm"])], tmp_path / "x.png", samples=[99])
    assert main(["grid", "--runs", str(runs["alm"]), str(runs["ddim"]), "--rows", "2", "--out", str(tmp_path / "c.png")]) == 0
    _png(tmp_path / "c.png")


def test_wide_strip_from_a_wide_run_folder(tmp_path):
    run = tmp_path / "wide"
    for i in range(2):
        img = torch.rand(3, 16, 64) * 2 - 1
        io.atomic_torch_save({"source": img, "mask": torch.zeros(1, 16, 64), "masked": img, "output": img,
                              "label": None, "meta": {"prompt": f"a wide landscape {i}"}}, run / "samples" / f"{i:05d}.pt")
    w, h = _png(wide_strip([("ALM", run), ("SyncSDE", run)], tmp_path / "strip.png", samples=[0, 1], stride=12))
    assert w > 2 * h


def test_sweep_plot_of_evaluated_runs(tmp_path_factory, tmp_path):
    runs = gmm_runs(tmp_path_factory)
    sweep = [copy_run(runs[k], tmp_path / "sweep") for k in ("alm", "alm_w2")]
    assert evaluate_main([*map(str, sweep), "--only", "mse,ssim", "progress=false", "--out", str(tmp_path / "t")]) == 0
    points = sweep_points(sweep, "method.w2")
    assert sorted(p["param"] for p in points) == [0.005, 0.05] and all("ssim" in p and "mse" in p for p in points)
    _png(sweep_plot(points, "method.w2", ["mse", "ssim", "coherence"], tmp_path / "sweep.png",
                    directions={"mse": False, "ssim": True}))
    with pytest.raises(DataError, match="no run has"):
        sweep_plot(points, "method.w2", ["lpips"], tmp_path / "none.png")
    assert main(["sweep", "--runs", str(tmp_path / "sweep"), "--param", "method.w2", "--metrics", "mse",
                 "--out", str(tmp_path / "s.png")]) == 0
