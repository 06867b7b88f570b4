"""The exact Gaussian-process testbed of long videos (backbone=gp_video, metrics=video_gp, experiments/video_gp.yaml;
docs/wide_gp.md, "Long video"): the Kronecker eps against a dense one, the clip's canvas law, the 1-D backbone
unchanged, the metrics at their ideal on exact clips, and a run end to end."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import load_script
from hydra.utils import instantiate
from omegaconf import OmegaConf

from alm.backbones.gp import GaussianProcessMixture
from alm.config import compose
from alm.errors import ConfigError, DataError
from alm.metrics import prepare_metrics
from alm.metrics import wide_gp as wg
from alm.metrics.seams import SeamRatio, seams_from_windows, strided_windows
from alm.parts import build_parts
from alm.rng import SampleGenerators

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
EXPERIMENT = ROOT / "experiments" / "video_gp.yaml"
TIMESTEPS = [0, 1, 10, 100, 500, 999]

TINY = [  # both kernels over frames and pixels, three components, unequal weights, a spatial override each
    {"weight": 0.2, "mean": -0.5, "kernel": "matern52", "length_scale": 1.5, "variance": 0.09, "spatial_length_scale": 0.8},
    {"weight": 0.5, "mean": 0.3, "kernel": "se", "length_scale": 2.5, "variance": 0.04},
    {"weight": 0.3, "mean": 0.0, "kernel": "se", "length_scale": 0.7, "variance": 0.25, "spatial_kernel": "matern52"},
]
# task=video on backbone=gp_video: 12 windows of 16 frames at stride 8 -> 104 frames
FRAMES, WINDOW, STRIDE, COUNT = 104, 16, 8, 12
WINDOWS = strided_windows(FRAMES, WINDOW, STRIDE)
SEAMS = seams_from_windows(WINDOWS)
META = {"windows": WINDOWS.tolist(), "seams": SEAMS.tolist(), "axis": -3}
N = 300  # exact clips scored


@pytest.fixture(scope="module")
def tiny() -> GaussianProcessMixture:
    return GaussianProcessMixture(frames=4, frame_size=[2, 3], components=TINY, nugget=1e-3)


@pytest.fixture(scope="module")
def video() -> GaussianProcessMixture:
    return instantiate(OmegaConf.load(CONF / "backbone" / "gp_video.yaml"))


def _dense_eps(gp: GaussianProcessMixture, z: torch.Tensor, t: int) -> torch.Tensor:
    """eps from the dense covariances A_k = ab Sigma_k + (1-ab) I (float64 solves, no Kronecker structure)."""
    ab = float(gp.alphas_cumprod[t])
    d = gp.canvas_distribution()
    zf = z.reshape(z.shape[0], -1)
    eye = torch.eye(zf.shape[1], dtype=torch.float64)
    solved, logits = [], []
    for k in range(gp.num_components):
        a = ab * d["covs"][k] + (1 - ab) * eye
        diff = zf - ab**0.5 * d["means"][k]
        s = torch.linalg.solve(a, diff.T).T
        solved.append(s)
        logits.append(math.log(float(d["weights"][k])) - 0.5 * ((diff * s).sum(-1) + torch.linalg.slogdet(a)[1]))
    r = torch.softmax(torch.stack(logits, -1), -1)
    return (1 - ab) ** 0.5 * (r[..., None] * torch.stack(solved, 1)).sum(1)


def _noisy(gp: GaussianProcessMixture, n: int, t: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x0, _ = gp.sample(n, g)
    ab = float(gp.alphas_cumprod[t])
    z = ab**0.5 * x0 + (1 - ab) ** 0.5 * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    z[:2] *= 3  # far out: extreme responsibilities
    return z


# --- the process ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", TIMESTEPS)
def test_the_kronecker_eps_is_the_dense_eps(tiny, t):
    z = _noisy(tiny, 40, t)
    assert z.shape == (40, 1, 4, 2, 3)
    got = tiny.eps(z, torch.full((40,), t), None)
    assert got.shape == z.shape
    torch.testing.assert_close(got.reshape(40, -1), _dense_eps(tiny, z, t), rtol=1e-9, atol=1e-11)


def test_mixed_timesteps_dtype_and_the_default_window(tiny, video):
    z = _noisy(tiny, 6, 300)
    t = torch.tensor([0, 300, 999, 0, 300, 999])
    rows = torch.cat([tiny.eps(z[i : i + 1], t[i : i + 1], None) for i in range(6)])
    torch.testing.assert_close(tiny.eps(z, t, None), rows, rtol=0, atol=1e-13)
    assert tiny.eps(z.float(), t, None).dtype == torch.float32
    zv = _noisy(video, 4, 400, seed=2)  # the default: 16 frames of 4x4 pixels, 256 entries
    torch.testing.assert_close(video.eps(zv, torch.full((4,), 400), None).reshape(4, -1), _dense_eps(video, zv, 400),
                               rtol=1e-8, atol=1e-10)
    with pytest.raises(DataError, match=r"expects \(B, 1, 16, 4, 4\)"):
        video.eps(torch.zeros(2, 1, 1, 256), torch.tensor([0, 0]), None)


def test_densities_are_the_dense_gaussians(tiny):
    from torch.distributions import MultivariateNormal

    x, _ = tiny.sample(20, torch.Generator().manual_seed(5), 7)  # a longer clip: 7 frames
    d = tiny.canvas_distribution(7)
    want = torch.stack([MultivariateNormal(d["means"][k], covariance_matrix=d["covs"][k]).log_prob(x.reshape(20, -1))
                        for k in range(3)], -1)
    torch.testing.assert_close(tiny.component_log_likelihoods(x), want, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("length", [4, 9, 20])
def test_every_window_of_the_canvas_law_is_the_window_law(tiny, length):
    win, can = tiny.canvas_distribution(), tiny.canvas_distribution(length)
    p = tiny.pixels
    for a in range(length - tiny.length + 1):
        sl = slice(a * p, (a + tiny.length) * p)  # frames a .. a+4, every pixel
        assert torch.equal(can["means"][:, sl], win["means"])
        torch.testing.assert_close(can["covs"][:, sl, sl], win["covs"], rtol=0, atol=1e-15)
    # separable: frame f, pixel p and frame g, pixel q covary as K_t[f, g] K_s[p, q] (+ nugget on the diagonal)
    kt, ks = tiny.temporal_matrix(tiny.components[1], length), tiny.spatial_covariances()[1]
    assert float(can["covs"][1, 1 * p + 2, 3 * p + 5]) == pytest.approx(float(kt[1, 3] * ks[2, 5]), rel=1e-12)


def test_exact_clip_draws_have_the_canvas_law(video):
    x, k = video.sample(3000, torch.Generator().manual_seed(0), 24)
    assert x.shape == (3000, 1, 24, 4, 4) and x.dtype == torch.float64
    d = video.canvas_distribution(24)
    flat = x.reshape(3000, -1)
    for c in range(2):
        xc = flat[k == c]
        assert float((xc.mean(0) - d["means"][c]).abs().max()) < 0.05
        err = torch.cov(xc.T) - d["covs"][c]  # entry-wise sampling std about 0.0625 * sqrt(2 / 1500) = 0.0023
        assert float(err.abs().max()) < 0.015 and float(err.abs().mean()) < 0.003
    assert torch.equal(video.sample(2, torch.Generator().manual_seed(1))[0],
                       video.sample(2, torch.Generator().manual_seed(1))[0])
    # the default's components are told apart by 2 frames already (docs/wide_gp.md)
    assert float((video.log_responsibilities(x[:, :, :2]).argmax(-1) == k).double().mean()) > 0.99


def test_the_1d_backbone_is_unchanged():
    """Numbers of the 1-D default computed by the code before the frame layout existed, to 1e-12 relative (the
    BLAS of another CPU or thread count changes the last bits: 1e-14 observed)."""
    gp = GaussianProcessMixture()
    assert gp.sample_shape == (1, 1, 32) and gp.frame_size is None and gp.pixels == 1 and gp.axis == -1
    assert sorted(gp.state_dict()) == ["alphas_cumprod", "component_means", "log_weights", "window_covs"]
    x, k = gp.sample(3, torch.Generator().manual_seed(0), 40)
    assert x.sum().item() == pytest.approx(29.07348657225743, rel=1e-12, abs=0) and k.tolist() == [1, 1, 0]
    assert x[0, 0, 0, :3].tolist() == pytest.approx([0.7500771606694066, 0.7175317242324122, 0.6605013013950648], rel=1e-12)
    z = torch.linspace(-2, 2, 5 * 32, dtype=torch.float64).reshape(5, 1, 1, 32)
    e = gp.eps(z, torch.tensor([0, 10, 500, 999, 250]), None)
    assert e.sum().item() == pytest.approx(51.61253925728176, rel=1e-12, abs=0)
    assert e.abs().sum().item() == pytest.approx(63.29662661161555, rel=1e-12, abs=0)
    assert e[1, 0, 0, :3].tolist() == pytest.approx([-0.4841780764615049, 0.09728005865685951, -0.01202437390870301], rel=1e-12)
    assert gp.log_prob(x[..., :20]).tolist() == pytest.approx([49.830639006479956, 45.66075126215935, 26.61315736491662],
                                                              rel=1e-12)


def test_the_yaml_and_bad_configs(video):
    assert video.sample_shape == video.data_shape == (1, 16, 4, 4) and video.axis == -3 and video.pixels == 16
    assert video.analytic and not video.conditional and video.length == 16
    assert not video.same_parameters(GaussianProcessMixture(length=16))
    with pytest.raises(ConfigError, match="frame count"):
        GaussianProcessMixture(length=8, frames=16)
    with pytest.raises(ConfigError, match="frame_size"):
        GaussianProcessMixture(frames=16, frame_size=[4, 0])
    with pytest.raises(ConfigError, match="needs backbone.frames"):
        GaussianProcessMixture(frame_size=[4, 4])
    with pytest.raises(ConfigError, match="spatial_kernel"):
        GaussianProcessMixture(frames=4, components=[{"spatial_kernel": "rbf"}])
    with pytest.raises(ConfigError, match="nugget"):
        GaussianProcessMixture(frames=30, nugget=0.0, components=[{"kernel": "se", "length_scale": 20.0}],
                               spatial_length_scale=5.0)


# --- the metrics ----------------------------------------------------------------------------------------------------
def test_low_rank_w2_is_the_full_w2():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(20, 50, generator=g, dtype=torch.float64) @ torch.randn(50, 50, generator=g, dtype=torch.float64) * 0.2
    a = torch.randn(50, 50, generator=g, dtype=torch.float64)
    cov2, mean2 = a @ a.T / 50 + 0.1 * torch.eye(50, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
    full = wg.gaussian_w2(x.mean(0), wg.empirical_covariance(x), mean2, cov2)
    # rel 1e-6: the full formula takes square roots of the rounding-level eigenvalues of its rank-19 matrix
    assert wg.gaussian_w2_samples(x, mean2, cov2) == pytest.approx(full, rel=1e-6)


def _stitch(windows: list[torch.Tensor]) -> torch.Tensor:
    """Window clips (n, 1, 16, h, w) -> canvases (n, 1, 104, h, w), the earlier window winning every overlap."""
    canvas = torch.zeros(windows[0].shape[0], 1, FRAMES, *windows[0].shape[3:], dtype=torch.float64)
    for j in reversed(range(COUNT)):
        a, b = WINDOWS[j].tolist()
        canvas[:, :, a:b] = windows[j]
    return canvas


def _score(metric, x: torch.Tensor, meta=META, batch: int = 100):
    metric.reset()
    for i in range(0, x.shape[0], batch):
        xb = x[i : i + batch].float()
        metric.update(xb, torch.zeros_like(xb), torch.ones_like(xb), None, [meta] * xb.shape[0])
    return metric.compute(), metric.compute_extra()


@pytest.fixture(scope="module")
def scores(video) -> dict[str, dict[str, tuple[float, dict]]]:
    g = torch.Generator().manual_seed(11)
    clips = {"exact": video.sample(N, g, FRAMES)[0],
             "independent": _stitch([video.sample(N, g)[0] for _ in range(COUNT)])}
    out = {}
    for name, x in clips.items():
        metrics = {"variance_profile_error": wg.VarianceProfileError(), "seam_correlation_error": wg.SeamCorrelationError(),
                   "seam_band_correlation_error": wg.SeamCorrelationError(band=2), "w2": wg.GaussianW2(),
                   "coherence": wg.Coherence()}
        out[name] = {k: _score(m.use(video, seed=0), x) for k, m in metrics.items()}
        out[name]["seam_ratio"] = _score(SeamRatio(), x)
    return out


def test_exact_clips_score_at_their_ideal(scores):
    """N = 300 exact clips of 104 frames. Tolerances from the sample size: a log-variance has a sampling std of
    sqrt(2 / N) = 0.08 per entry, less averaged over a frame's 16 correlated pixels; a correlation's std is at most
    (1 - rho^2) / sqrt(N) <= 0.06 per pair, averaged over 256 pairs a seam and 11 seams; W2 of N exact draws is
    its own noise floor (the reference draws, another N)."""
    s = scores["exact"]
    assert s["variance_profile_error"][0] < 0.08 and s["variance_profile_error"][1]["exact"] < 0.08
    assert s["variance_profile_error"][1]["min_ratio"] > 0.75
    for key in ("seam_correlation_error", "seam_band_correlation_error"):
        v, extra = s[key]
        assert v < 0.03 and extra["exact"] < 0.03 and extra["inside"] < 0.03, key
        assert abs(v - extra["inside"]) < 0.015, key  # the seams are like any other frame boundary
        assert extra["within"] < 0.06, key
    assert s["w2"][0] < 1.3 * s["w2"][1]["exact"] and s["w2"][1]["exact"] < 1.3 * s["w2"][0]
    assert s["coherence"][0] == 1.0 and s["coherence"][1]["pieces"] == 1.0 and s["coherence"][1]["exact"] == 1.0
    assert 0.9 < s["seam_ratio"][0] < 1.1  # pooled over 300 x 11 seams


def test_independent_windows_show_at_the_seams(scores):
    ex, ind = scores["exact"], scores["independent"]
    assert ind["seam_correlation_error"][0] > 0.5 > 20 * ex["seam_correlation_error"][0]
    assert ind["seam_correlation_error"][1]["inside"] < 0.03  # each window is exact: only the seams fail
    assert ind["variance_profile_error"][0] < 0.08  # every frame keeps its marginal: the profile cannot see seams
    assert ind["coherence"][1]["pieces"] < 0.01 and ind["w2"][0] > 1.5 * ex["w2"][0]
    assert ind["seam_ratio"][0] > 20


def test_the_metrics_refuse_the_wrong_axis_and_shape(video, scores):
    x = video.sample(4, torch.Generator().manual_seed(1), FRAMES)[0].float()
    m = wg.VarianceProfileError().use(video, seed=0)
    with pytest.raises(DataError, match="axis -1"):
        m.update(x, x, torch.ones_like(x), None, [{**META, "axis": -1}] * 4)
    with pytest.raises(DataError, match="clips"):
        m.update(x.reshape(4, 1, 1, -1), x, torch.ones_like(x), None, [META] * 4)
    one_d = wg.VarianceProfileError().use(GaussianProcessMixture(), seed=0)
    with pytest.raises(DataError, match="frame layout"):  # clips scored against the 1-D field
        one_d.update(x, x, torch.ones_like(x), None, [META] * 4)
    with pytest.raises(DataError, match="axis -3"):  # a 1-D canvas whose meta says frames
        f = GaussianProcessMixture().sample(4, torch.Generator().manual_seed(1), 40)[0].float()
        one_d.update(f, f, torch.ones_like(f), None, [{"seams": [32], "axis": -3}] * 4)


def test_the_metric_set_and_the_profile(video):
    mset = prepare_metrics(OmegaConf.load(CONF / "metrics" / "video_gp.yaml"))
    cfg = OmegaConf.create({"seed": 0, "backbone": OmegaConf.load(CONF / "backbone" / "gp_video.yaml"),
                            "task": {"name": "video", "windows": COUNT, "stride": 0.5, "extend": "right", "axis": -3}})
    mset.bind_run(cfg, list(range(30)))
    x = video.sample(30, torch.Generator().manual_seed(2), FRAMES)[0].float()
    for name, m in mset.metrics.items():
        m.update(x, torch.zeros_like(x), torch.ones_like(x), [None] * 30, [META] * 30)
        assert math.isfinite(m.compute()), name
    prof = mset.metrics["variance_profile_error"].profile()
    assert len(prof["position"]) == FRAMES and prof["seam"][16] == 1 and prof["windows"][12] == 2
    assert prof["true_variance"][0] == pytest.approx(0.0625 + 1e-4 + 0.25)


# --- the runs ---------------------------------------------------------------------------------------------------------
def test_exact_clips_are_the_gp_draws_of_each_sample_generator():
    cfg = compose(["backbone=gp_video", "dataset=unconditional", "task=video", "method=exact", "seed=3"])
    parts = build_parts(cfg)
    from alm.runner import sample

    batch = parts.task.load(parts.dataset, parts.masks, [0, 5], parts.device)
    clips, _ = sample(parts, batch, cfg)
    assert clips.shape == (2, 1, FRAMES, 4, 4)
    for j, i in enumerate([0, 5]):
        want, _ = parts.backbone.sample(1, SampleGenerators(3, [i]).generators[0], FRAMES)
        assert torch.allclose(clips[j].double(), want[0], atol=1e-6)
    assert batch.metas[0]["seams"] == SEAMS.tolist() and batch.metas[0]["axis"] == -3


def test_every_row_and_sweep_point_composes_on_the_same_clip():
    driver = load_script("run_experiment")
    exp = OmegaConf.load(EXPERIMENT)
    common = list(exp.overrides)
    assert set(exp.rank) <= set(exp.columns) and "exact" in exp.unranked
    assert not any(c.endswith("_exact") for c in exp.rank)
    rows = {label: (driver.merge_overrides(common, list(o)), 0) for label, o in exp.runs.items()}
    for label, sweep in exp.sweeps.items():
        for point in (driver.grid_points(sweep.grid)[0], driver.grid_points(sweep.grid)[-1]):
            rows[f"{label} {' '.join(point)}"] = (driver.merge_overrides(common, list(exp.validation), list(sweep.base),
                                                                         point), 1)
    assert {"alm", "alm_parallel", "alm_fused", "syncsde", "synctweedies", "multidiffusion", "ddim",
            "exact"} <= set(exp.runs)
    for label, (overrides, seed) in rows.items():
        cfg = compose(overrides)
        assert cfg.backbone.name == "gp_video" and cfg.task.name == "video" and int(cfg.seed) == seed, label
        parts = build_parts(cfg)
        g = parts.task.geometry(parts.backbone)
        assert (g.length, g.count, g.stride, g.axis) == (FRAMES, COUNT, STRIDE, -3), label


def test_a_run_end_to_end(tmp_path):
    """python run.py task=video backbone=gp_video ... metrics=video_gp: samples, videos, the evaluation stage."""
    cmd = [sys.executable, str(ROOT / "run.py"), "task=video", "backbone=gp_video", "dataset=unconditional",
           "method=alm", "metrics=video_gp", "num_samples=4", "batch_size=4", "sampler.steps=8", "threads=1",
           "progress=false", f"paths.runs={tmp_path}"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    (summary,) = list(tmp_path.rglob("summary.json"))
    import json

    s = json.loads(summary.read_text())
    assert s["samples"] == 4 and s["evaluations"] > 0
    for key in ("variance_profile_error", "seam_correlation_error", "seam_band_correlation_error", "w2", "coherence",
                "seam_ratio", "variance_profile_error_exact", "coherence_pieces"):
        assert math.isfinite(s[key]), key
    run_dir = summary.parent
    assert (run_dir / "videos" / "00000_output.mp4").is_file() and (run_dir / "images" / "00000_output.png").is_file()
    from alm import run_folder

    record = run_folder.load_sample(run_dir, 0)
    assert tuple(record["output"].shape) == (1, FRAMES, 4, 4) and record["meta"]["axis"] == -3
