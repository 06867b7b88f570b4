"""The exact wide-canvas metrics of the GP testbed (metrics=wide_gp) and the backbone-free seam ratio."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from alm.backbones.gp import GaussianProcessMixture
from alm.errors import ConfigError, DataError
from alm.metrics import prepare_metrics
from alm.metrics import wide_gp as wg
from alm.metrics.seams import Layout, SeamLogRatio, SeamRatio, seams_from_windows, strided_windows

CONF = Path(__file__).resolve().parents[1] / "conf"
L, N_WIN, STRIDE, K = 128, 32, 24, 5
N = 600
WINDOWS = strided_windows(L, N_WIN, STRIDE)
SEAMS = seams_from_windows(WINDOWS)
META = {"windows": WINDOWS, "seams": SEAMS}


@pytest.fixture(scope="module")
def gp() -> GaussianProcessMixture:
    return GaussianProcessMixture()


def _run_cfg(backbone: str = "gp", seed=0, stride=0.75, extend="right"):
    """A run's config as task=wide writes it: 5 windows at a stride of 0.75 of the window (24 of 32)."""
    return OmegaConf.create({"seed": seed, "backbone": OmegaConf.load(CONF / "backbone" / f"{backbone}.yaml"),
                             "task": {"name": "wide", "windows": K, "stride": stride, "extend": extend},
                             "method": {"name": "test"}})


def _stitch(windows: list[torch.Tensor]) -> torch.Tensor:
    """Earlier window wins on every overlap."""
    canvas = torch.zeros(windows[0].shape[0], 1, 1, L, dtype=torch.float64)
    for j in reversed(range(K)):
        a, b = WINDOWS[j].tolist()
        canvas[..., a:b] = windows[j]
    return canvas


@pytest.fixture(scope="module")
def canvases(gp) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    exact = gp.sample(N, g, L)[0]
    independent = [gp.sample(N, g, N_WIN)[0] for _ in range(K)]
    averaged = torch.zeros(N, 1, 1, L, dtype=torch.float64)  # MultiDiffusion without coupling: overlaps averaged
    count = torch.zeros(L, dtype=torch.float64)
    for (a, b), w in zip(WINDOWS.tolist(), independent):
        averaged[..., a:b] += w
        count[a:b] += 1
    # coherent but uncoupled: one component per canvas, its windows independent draws of that component
    d = gp.canvas_distribution(N_WIN)
    chol = torch.linalg.cholesky(d["covs"])
    comp = torch.arange(N) % 2
    uncoupled = [d["means"][comp] + torch.einsum("bij,bj->bi", chol[comp], torch.randn(N, N_WIN, generator=g,
                 dtype=torch.float64)) for _ in range(K)]
    step = exact.clone()
    for c in SEAMS.tolist():
        step[..., c:] += 0.3
    return {"exact": exact, "independent": _stitch(independent), "averaged": averaged / count, "step": step,
            "uncoupled": _stitch([w.reshape(N, 1, 1, N_WIN) for w in uncoupled])}


def _score(metric, x: torch.Tensor, metas=None, batch: int = 250):
    metric.reset()
    for i in range(0, x.shape[0], batch):
        xb = x[i : i + batch]
        metric.update(xb.float(), torch.zeros_like(xb).float(), torch.ones(xb.shape[0], 1, *xb.shape[2:]), None,
                      [META] * xb.shape[0] if metas is None else metas[i : i + batch])
    return metric.compute(), metric.compute_extra()


def _metrics(gp):
    return {
        "variance_profile_error": wg.VarianceProfileError().use(gp, seed=0),
        "seam_correlation_error": wg.SeamCorrelationError().use(gp, seed=0),
        "seam_band_correlation_error": wg.SeamCorrelationError(band=2).use(gp, seed=0),
        "w2": wg.GaussianW2().use(gp, seed=0),
        "coherence": wg.Coherence().use(gp, seed=0),
    }


@pytest.fixture(scope="module")
def scores(gp, canvases) -> dict[str, dict[str, tuple[float, dict]]]:
    return {name: {k: _score(m, x) for k, m in _metrics(gp).items()} for name, x in canvases.items()}


# --- exact draws score (near) zero, independent windows do not -------------------------------------------------
def test_exact_canvases_score_near_zero(scores):
    s = scores["exact"]
    assert s["variance_profile_error"][0] < 0.06  # sampling noise of a log-variance at N = 600: ~0.05
    assert s["seam_correlation_error"][0] < 0.01 and s["seam_band_correlation_error"][0] < 0.015
    assert s["seam_correlation_error"][1]["within"] < 0.02 and s["seam_band_correlation_error"][1]["within"] < 0.03
    assert s["coherence"][0] == 1.0 and s["coherence"][1]["exact"] == 1.0 and s["coherence"][1]["pairs"] == 1.0
    # W2 of N exact draws is the sampling noise: of the order of the exact reference's value
    assert s["w2"][0] < 3 * s["w2"][1]["exact"] and s["w2"][1]["exact"] < 1.5
    for k, (v, extra) in s.items():  # the exact reference is itself near zero
        if k != "coherence" and k != "w2":
            assert extra["exact"] < 0.06, k


def test_independent_windows_score_clearly_worse(scores):
    ex, ind = scores["exact"], scores["independent"]
    assert ind["seam_correlation_error"][0] > 0.5 > 50 * ex["seam_correlation_error"][0]
    assert ind["seam_band_correlation_error"][0] > 0.3
    assert ind["seam_correlation_error"][1]["inside"] < 0.02  # the windows themselves are exact: only seams fail
    assert ind["coherence"][0] < 0.6 and ind["coherence"][1]["pairs"] < 0.9
    assert ind["w2"][0] > 3 * ex["w2"][0]
    # every column still has the true marginal: the variance profile cannot see seams
    assert ind["variance_profile_error"][0] < 0.06


def test_coherent_but_uncoupled_windows_show_in_the_within_component_error(scores):
    unc, ex = scores["uncoupled"], scores["exact"]
    assert unc["coherence"][1]["pieces"] > 0.97  # every piece has its canvas's component ...
    # ... but the seams break its correlation: plain within components, diluted in the pooled value by the
    # between-component variance (which uncoupled windows of one component reproduce)
    assert unc["seam_correlation_error"][1]["within"] > 0.8 > 50 * ex["seam_correlation_error"][1]["within"]
    assert unc["seam_band_correlation_error"][1]["within"] > 0.3
    assert 0.1 < unc["seam_correlation_error"][0] < 0.4
    # a jump inside a smooth-component window makes the rough component likelier: whole windows flip
    assert unc["coherence"][0] < 0.7 and ex["coherence"][1]["pieces"] == 1.0


def test_averaging_overlaps_shows_as_variance_lost_there(scores):
    avg, ex = scores["averaged"], scores["exact"]
    assert avg["variance_profile_error"][1]["min_ratio"] < 0.7 < ex["variance_profile_error"][1]["min_ratio"]
    assert avg["variance_profile_error"][1]["overlap"] > 5 * ex["variance_profile_error"][1]["overlap"]
    assert avg["variance_profile_error"][0] > 3 * ex["variance_profile_error"][0]


# --- seam_ratio -----------------------------------------------------------------------------------------------
def test_seam_ratio_is_one_on_exact_canvases_and_above_with_steps(canvases):
    ratio, log_ratio = SeamRatio(), SeamLogRatio()
    exact = _score(ratio, canvases["exact"])[0]
    assert 0.85 < exact < 1.15
    assert _score(log_ratio, canvases["exact"])[0] == pytest.approx(abs(math.log(exact)))
    assert _score(ratio, canvases["step"])[0] > 5
    assert _score(ratio, canvases["independent"])[0] > 5
    rows = ratio.update(canvases["step"][:4].float(), torch.zeros(4, 1, 1, L), torch.ones(4, 1, 1, L), None, [META] * 4)
    assert rows.shape == (4,) and bool((rows > 1).all())


def test_seam_ratio_works_on_any_canvas_shape(gp):
    g = torch.Generator().manual_seed(4)
    x = gp.sample(200 * 6, g, L)[0].reshape(200, 3, 2, L)  # 3 channels, 2 rows: 6 exact fields per canvas
    seams = {"seams": torch.tensor([40, 90])}
    ratio = SeamRatio()
    assert 0.8 < _score(ratio, x, [seams] * 200)[0] < 1.2
    x[..., 90:] -= 0.5
    assert _score(ratio, x, [seams] * 200)[0] > 5
    # layout from the options: explicit seams, or window + stride
    assert SeamRatio(seams=[40, 90]).values(x[:2], x[:2], torch.ones(2, 1, 2, L), [None] * 2, [{}] * 2).shape == (2,)
    fields = gp.sample(50, torch.Generator().manual_seed(9), L)[0]
    assert 0.5 < _score(SeamRatio(window=N_WIN, stride=STRIDE), fields, [{}] * 50)[0] < 1.5


# --- layout -----------------------------------------------------------------------------------------------------
def test_layout_helpers():
    assert WINDOWS.tolist() == [[0, 32], [24, 56], [48, 80], [72, 104], [96, 128]]
    assert SEAMS.tolist() == [32, 56, 80, 104]
    assert torch.equal(strided_windows(L, N_WIN, 0.75), WINDOWS)  # task=wide's stride: a fraction if <= 1
    with pytest.raises(ConfigError, match="not windows"):
        strided_windows(100, 32, 24)
    # the geometry from any two of window / count / stride (the canvas length gives the third)
    for opts in ({"window": 32, "stride": 24}, {"window": 32, "stride": 0.75}, {"count": 5, "stride": 0.75},
                 {"count": 5, "stride": 24}):
        w, s = Layout(**opts).of({}, L)
        assert torch.equal(w, WINDOWS) and torch.equal(s, SEAMS), opts
    # grown from the middle window: it wins both its overlaps, the outer windows lose theirs
    w, s = Layout(count=5, stride=0.75, extend="both").of({}, L)
    assert torch.equal(w, WINDOWS) and s.tolist() == [24, 48, 80, 104]
    w, s = Layout().of({"windows": WINDOWS.tolist()}, L)  # seams from the windows (earlier wins)
    assert torch.equal(s, SEAMS)
    with pytest.raises(DataError, match="unknown"):
        Layout().of({}, L)
    with pytest.raises(DataError, match="unknown"):
        Layout().of({"seams": SEAMS}, L, need_windows=True)
    with pytest.raises(DataError, match="columns 1"):
        Layout().of({"seams": [0]}, L)
    with pytest.raises(DataError, match="not 4"):
        Layout(window=32, stride=24, count=4).of({}, L)


def test_a_run_shares_one_layout(gp, canvases):
    m = wg.SeamCorrelationError().use(gp, seed=0)
    x = canvases["exact"][:4].float()
    m.update(x, x, torch.ones(4, 1, 1, L), None, [META] * 4)
    with pytest.raises(DataError, match="one layout"):
        m.update(x, x, torch.ones(4, 1, 1, L), None, [{"seams": torch.tensor([50])}] * 4)


# --- the run: bind_run, config, csv --------------------------------------------------------------------------------
def test_bind_run_builds_the_process_and_the_layout_from_the_run(gp, canvases):
    m = wg.Coherence()
    m.bind_run(_run_cfg(), list(range(100, 100 + 60)))
    assert m.gp.same_parameters(gp)
    v, extra = _score(m, canvases["exact"][:60], [{}] * 60)  # no meta: the GP's length, the task's count and stride
    assert v == 1.0 and extra["exact"] == 1.0
    assert torch.equal(m._windows, WINDOWS) and torch.equal(m._seams, SEAMS)
    ratio = SeamRatio()
    ratio.bind_run(_run_cfg(extend="both"))  # backbone-free: the window size from the count and the length
    _score(ratio, canvases["exact"][:8], [{}] * 8)
    assert ratio.layout.geometry(L).tolist() == WINDOWS.tolist()
    # the reference draws: seeded by (run seed, sample index), independent of the batch
    a = wg.exact_canvases(gp, L, 0, [100, 101])
    assert torch.equal(a[1], wg.exact_canvases(gp, L, 0, [101])[0]) and not torch.equal(a[0], a[1])
    with pytest.raises(ConfigError, match="backbone=gp, not backbone=gmm"):
        wg.Coherence().bind_run(_run_cfg("gmm"))
    with pytest.raises(ConfigError, match="no seed"):
        wg.GaussianW2().bind_run(_run_cfg(seed=None))
    wg.GaussianW2(reference=False).bind_run(_run_cfg(seed=None))  # no reference: no seed needed
    with pytest.raises(ConfigError, match="needs the run"):
        wg.GaussianW2().update(canvases["exact"][:2].float(), torch.zeros(2, 1, 1, L), torch.ones(2, 1, 1, L))


def test_the_metric_set_builds_with_its_directions(tmp_path, canvases):
    mset = prepare_metrics(OmegaConf.load(CONF / "metrics" / "wide_gp.yaml"))
    assert mset.directions() == {"variance_profile_error": False, "seam_correlation_error": False,
                                 "seam_band_correlation_error": False, "w2": False, "coherence": True,
                                 "seam_log_ratio": False}
    mset.bind_run(_run_cfg(), list(range(40)))
    x = canvases["averaged"][:40].float()
    for m in mset.metrics.values():
        m.update(x, torch.zeros_like(x), torch.ones(40, 1, 1, L), [None] * 40, [META] * 40)
        assert math.isfinite(m.compute())


def test_the_variance_profile_is_exposed_and_written(gp, canvases, tmp_path):
    m = wg.VarianceProfileError(profile_csv=str(tmp_path / "{method}-{seed}-{digest}.csv"))
    m.bind_run(_run_cfg(), list(range(N)))
    _score(m, canvases["averaged"])
    prof = m.profile()
    assert len(prof["position"]) == L and prof["seam"][32] == 1 and prof["windows"][30] == 2 and prof["windows"][10] == 1
    assert min(prof["variance"][24:32]) < 0.7 * prof["true_variance"][0]
    files = list(tmp_path.glob("test-0-*.csv"))
    assert len(files) == 1
    with files[0].open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == L and set(rows[0]) >= {"position", "variance", "true_variance", "log_ratio", "exact_variance"}
