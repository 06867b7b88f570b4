"""Evaluation metrics: masked variants against torchmetrics, FID/KID, weights checks (offline), tiny CLIP."""

from __future__ import annotations

import json

import pytest
import torch
from torchmetrics.functional import mean_squared_error
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from alm.errors import ConfigError, DataError
from alm.metrics import MissingWeightsError, prepare_metrics
from alm.metrics.base import masked_mean, square_views
from alm.metrics.fid import FID, KID
from alm.metrics.lpips import LPIPS
from alm.metrics.pixel import MSE, PSNR, SSIM


def _images(b=3, c=3, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.rand(b, c, h, w, generator=g) * 2 - 1
    out = (src + 0.3 * torch.randn(b, c, h, w, generator=g)).clamp(-1, 1)
    return out, src


def _unit(x):
    return (x + 1) / 2


# -- masked metrics = torchmetrics with a full mask ------------------------------------------------------
@pytest.mark.parametrize("region", ["hole", "full"])
def test_pixel_metrics_with_a_full_mask_equal_torchmetrics(region):
    out, src = _images()
    ones = torch.ones(3, 1, 16, 16)
    o, r = _unit(out), _unit(src)
    mse = MSE(region=region).update(out, src, ones)
    psnr = PSNR(region=region).update(out, src, ones)
    ssim = SSIM(region=region).update(out, src, ones)
    ref_mse = torch.stack([mean_squared_error(o[i], r[i]) for i in range(3)])
    torch.testing.assert_close(mse.float(), ref_mse, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(psnr.float(), peak_signal_noise_ratio(o, r, data_range=1.0, reduction="none", dim=(1, 2, 3)),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ssim.float(), structural_similarity_index_measure(o, r, data_range=1.0, reduction="none"),
                               rtol=1e-5, atol=1e-6)


def test_masked_metric_aggregates_equal_torchmetrics_streaming_objects():
    metric_psnr, metric_ssim = PSNR(region="known"), SSIM(region="known")
    tm_psnr = PeakSignalNoiseRatio(data_range=1.0, reduction="elementwise_mean", dim=(1, 2, 3))
    tm_ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
    for seed in range(2):
        out, src = _images(b=2, seed=seed)
        zeros = torch.zeros(2, 1, 16, 16)  # the known region (1 - mask) is then the whole image
        metric_psnr.update(out, src, zeros)
        metric_ssim.update(out, src, zeros)
        tm_psnr.update(_unit(out), _unit(src))
        tm_ssim.update(_unit(out), _unit(src))
    assert metric_psnr.compute() == pytest.approx(float(tm_psnr.compute()), rel=1e-5)
    assert metric_ssim.compute() == pytest.approx(float(tm_ssim.compute()), rel=1e-5)


def test_masked_mse_counts_every_channel_of_the_region_once():
    # RGB error of 0.5 ([0,1] scale) in a 4x4 hole of a 8x8 image, none outside: BrushNet's bug (a 3-channel
    # sum over a 1-channel count) would give 3x the true value
    src = torch.zeros(1, 3, 8, 8)
    out = src.clone()
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    out[..., 2:6, 2:6] = 1.0  # data space 0 -> 1 is 0.5 on the [0, 1] scale
    assert float(MSE(region="hole").update(out, src, mask)) == pytest.approx(0.25)
    assert float(MSE(region="known").update(out, src, mask)) == pytest.approx(0.0)
    assert float(MSE(region="full").update(out, src, mask)) == pytest.approx(0.25 * 16 / 64)
    torch.testing.assert_close(masked_mean(torch.ones(1, 3, 2, 2), torch.zeros(1, 1, 2, 2)).isnan(), torch.tensor([True]))


@pytest.mark.filterwarnings("ignore:.*RANDOM weights")
def test_lpips_masked_with_a_full_mask_equals_the_torchmetrics_network():
    out, src = _images(b=2, h=32, w=32)
    metric_full, metric_hole = LPIPS(net="squeeze", pretrained=False), LPIPS(net="squeeze", pretrained=False, region="hole")
    metric_full.setup("cpu")
    for p in metric_full.net.lins.parameters():  # random lin weights, made non-negative: a proper distance
        p.data.abs_()
    metric_hole.net = metric_full.net  # the same random network
    ones = torch.ones(2, 1, 32, 32)
    full = metric_full.update(out, src, ones)
    hole = metric_hole.update(out, src, ones)
    torch.testing.assert_close(hole, full, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(full.float(), metric_full.net(out, src).reshape(-1), rtol=1e-6, atol=1e-7)  # torchmetrics' forward
    assert float(metric_full.update(src, src, ones).abs().max()) < 1e-6
    # a hole where the images agree scores 0 (each layer averaged over the hole only)
    same = src.clone()
    same[..., 16:, :] = out[..., 16:, :]
    top = torch.zeros(2, 1, 32, 32)
    top[..., :16, :] = 1
    assert float(metric_hole.update(same, src, top).max()) < float(metric_hole.update(same, src, 1 - top).min())


def test_regions_and_views_are_validated():
    with pytest.raises(ConfigError, match="region"):
        MSE(region="inside")
    with pytest.raises(ConfigError, match="region"):
        FID(feature={"_target_": "alm.metrics.features.PixelFeatures"}, region="hole")
    x = torch.arange(2 * 1 * 4 * 18, dtype=torch.float).view(2, 1, 4, 18)
    tiles, v = square_views(x, "tiles")
    assert v == 5 and tiles.shape == (10, 1, 4, 4)
    torch.testing.assert_close(tiles[4], x[0, :, :, 14:18])  # the last tile is aligned to the end


# -- weights that are not on disk: a one-line error at the start ----------------------------------------
def test_lpips_with_missing_weights_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError, match="alexnet-owt-7be5be79.pth") as err:
        LPIPS(net="alex").check_available()
    assert "\n" not in str(err.value) and "download" in str(err.value)


def test_inception_fid_with_missing_weights_or_package(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError, match="torch-fidelity|weights-inception-2015-12-05") as err:
        FID(feature=2048).check_available()
    assert "\n" not in str(err.value)
    with pytest.raises(MissingWeightsError, match="weights-inception-2015-12-05|torch-fidelity"):
        KID(feature=2048).check_available()


def test_clip_with_missing_weights_names_the_repo(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from alm.metrics.clip import AestheticScore, CLIPScore

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(MissingWeightsError, match="timm/vit_large_patch14_clip_224.openai") as err:
        CLIPScore().check_available()
    assert "\n" not in str(err.value)
    with pytest.raises(MissingWeightsError, match="vit_large_patch14"):
        AestheticScore(head_path=str(tmp_path / "sa_0_4_vit_l_14_linear.pth")).check_available()
    with pytest.raises(ConfigError, match="region"):
        CLIPScore(region="hole")


def test_prepare_metrics_fails_at_start_or_skips_with_a_warning(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    node = {"name": "t", "lpips": {"_target_": "alm.metrics.lpips.LPIPS"}, "mse": {"_target_": "alm.metrics.pixel.MSE"}}
    with pytest.raises(MissingWeightsError, match=r"^metrics\.lpips: .*alexnet-owt-7be5be79\.pth.*skip_unavailable=true\)$"):
        prepare_metrics(node)
    mset = prepare_metrics({**node, "skip_unavailable": True})
    assert list(mset.metrics) == ["mse"] and list(mset.skipped) == ["lpips"]
    assert "warning: metrics.lpips left out" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown key"):
        prepare_metrics({"msee": 1})
    assert list(prepare_metrics({**node, "lpips": None}).metrics) == ["mse"]  # metrics.lpips=null drops it


# -- metric sets: basic (the runner's default), gmm; directions, the run hook ------------------------------
def _metric_set(name: str):
    from alm.evaluate import compose_evaluate

    return prepare_metrics(compose_evaluate([f"metrics={name}"]).metrics)


def test_basic_set_is_the_runners_former_per_sample_columns():
    """metrics=basic: mse, mse_hole, psnr (not ranked), ssim, the same classes (and numbers) as the rows the
    runner wrote itself (alm.sample_metrics.image_metrics, gone: it called these classes on the CPU)."""
    mset = _metric_set("basic")
    assert list(mset.metrics) == ["mse", "mse_hole", "psnr", "ssim"] and mset.name == "basic"
    assert mset.directions() == {"mse": False, "mse_hole": False, "ssim": True}
    assert all(m.per_sample and m.aggregate == "mean" for m in mset.metrics.values())
    out, src = _images(b=4, c=1, h=8, w=8)
    mask = torch.zeros(4, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    former = {"mse": MSE(), "mse_hole": MSE(region="hole"), "psnr": PSNR(), "ssim": SSIM()}
    for k, metric in mset.metrics.items():
        assert torch.equal(metric.update(out, src, mask), former[k].update(out, src, mask)), k


def test_a_metric_without_direction_must_not_be_ranked():
    node = {"name": "t", "variance_ratio": {"_target_": "alm.metrics.gmm.VarianceRatio"}}
    with pytest.raises(ConfigError, match=r"^metrics\.variance_ratio: .*no better direction; set rank: false$"):
        prepare_metrics(node)
    mset = prepare_metrics({"name": "t", "variance_ratio": {"_target_": "alm.metrics.gmm.VarianceRatio", "rank": False}})
    assert mset.directions() == {} and mset.metrics["variance_ratio"].higher_is_better is None


def test_gmm_set_columns_and_directions():
    mset = _metric_set("gmm")
    per_sample = {k: m.aggregate for k, m in mset.metrics.items() if m.per_sample}
    assert per_sample == {"component": None, "component_weight": "mean", "coherent": "mean", "posterior_loglik": "compute",
                          "variance_ratio": "compute", "mse": "mean", "mse_hole": "mean", "psnr": "mean", "ssim": "mean"}
    assert [k for k, m in mset.metrics.items() if not m.per_sample] == [
        "coherence", "tv", "energy_distance", "variance_log_error", "posterior_loglik_exact"]
    assert mset.directions() == {"coherence": True, "tv": False, "energy_distance": False, "variance_log_error": False}


def test_the_run_hook_binds_the_runs_config_and_checks_it():
    from omegaconf import OmegaConf

    from alm.config import compose
    from alm.metrics.gmm import Coherence

    assert MSE().bind_run(None, [0, 1]) is None  # a metric of the images alone ignores the run
    unbound = Coherence()
    with pytest.raises(ConfigError, match="bind_run"):
        unbound.update(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8), torch.ones(2, 1, 8, 8))
    mset = _metric_set("gmm")
    with pytest.raises(ConfigError, match=r"^metrics\.component: .*backbone=gmm, not backbone=sd15-tiny$"):
        mset.bind_run(compose(["backbone=sd15-tiny"]))  # the check the runner can make before sampling
    gmm_cfg = OmegaConf.create(OmegaConf.to_container(compose(["backbone=gmm", "dataset=gmm", "seed=7"]), resolve=True))
    mset.bind_run(gmm_cfg, [3, 4])
    ed = mset.metrics["energy_distance"]
    assert ed.mixture.num_components == 12 and ed.run_seed == 7 and ed.indices == [3, 4]
    with pytest.raises(ConfigError, match="energy distance"):
        mset.metrics["energy_distance"].__class__(draws=0)


# -- FID / KID -----------------------------------------------------------------------------------------
def test_fid_and_kid_of_a_set_against_itself_are_zero():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(96, 1, 8, 8, generator=g) * 2 - 1
    y = (0.5 * x + 0.3 + 0.3 * torch.randn(96, 1, 8, 8, generator=g)).clamp(-1, 1)  # another distribution
    feature = {"_target_": "alm.metrics.features.RandomConvFeatures", "in_channels": 1, "num_features": 8}
    ones = torch.ones(96, 1, 8, 8)

    def score(cls, a, b, **kw):
        m = cls(feature=feature, **kw)
        m.setup("cpu")
        for i in range(0, 96, 32):  # streaming over batches
            m.update(a[i : i + 32], b[i : i + 32], ones[i : i + 32])
        return m.compute()

    fid_same, fid_diff = score(FID, x, x), score(FID, y, x)
    assert abs(fid_same) < 1e-6 * fid_diff and fid_diff > 0
    kid_same, kid_diff = score(KID, x, x, subset_size=48, subsets=50), score(KID, y, x, subset_size=48, subsets=50)
    assert abs(kid_same) < 0.05 * kid_diff
    assert score(KID, x, x, subset_size=1000) == pytest.approx(score(KID, x, x, subset_size=1000))  # seeded subsets


def test_fid_feature_network_from_config_and_cached_reference_statistics(tmp_path, tmp_path_factory):
    from _eval_runs import gmm_runs
    from omegaconf import OmegaConf

    run_dir = gmm_runs(tmp_path_factory)["alm"]
    dataset = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml").dataset, resolve=True)
    node = {
        "fid": {"_target_": "alm.metrics.fid.FID", "feature": {"_target_": "alm.metrics.features.PixelFeatures"},
                "reference": {"dataset": dataset, "split": "seed0", "num": 16}, "cache_dir": str(tmp_path)},
    }
    data = [torch.load(run_dir / "samples" / f"{i:05d}.pt", weights_only=False) for i in range(4)]
    out, src, mask = (torch.stack([d[k] for d in data]) for k in ("output", "source", "mask"))

    def fid_value():
        mset = prepare_metrics(node)
        mset.setup("cpu")
        mset.metrics["fid"].update(out, src, mask)
        return mset.metrics["fid"].compute()

    first = fid_value()
    cached = list(tmp_path.glob("reference/PixelFeatures-*/gmm-seed0-8x8-n16-*.pt"))
    assert len(cached) == 1
    stats = torch.load(cached[0], weights_only=True)
    assert int(stats["real_features_num_samples"]) == 16
    assert fid_value() == pytest.approx(first)  # from the cache
    with pytest.raises(ConfigError, match="feature"):
        FID(feature=123)


# -- CLIP score and aesthetic score with a tiny random open_clip model ------------------------------------
TINY_CLIP = {"embed_dim": 16,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    import open_clip

    path = tmp_path_factory.mktemp("clip") / "alm-test-tiny-clip.json"
    path.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(path)
    return "alm-test-tiny-clip"


@pytest.mark.filterwarnings("ignore:.*RANDOM weights")
def test_clip_score_plumbing_with_a_tiny_random_model(tiny_clip):
    from alm.metrics.clip import CLIPScore

    torch.manual_seed(0)
    metric = CLIPScore(model=tiny_clip, pretrained=None, prompt="a photo of {label}", class_names=["cat", "dog"])
    metric.check_available()
    metric.setup("cpu")
    out, src = _images(b=3, c=1, h=40, w=40)
    vals = metric.update(out, src, torch.ones(3, 1, 40, 40), labels=[0, 1, 0], metas=[{}, {}, {}])
    assert vals.shape == (3,) and bool(((vals >= 0) & (vals <= 100)).all())
    assert metric.text_of(1, {}, 0) == "a photo of dog"
    # the same image and text score the same; the mean is the aggregate
    assert float(vals[0]) == pytest.approx(float(metric.update(out[:1], src[:1], torch.ones(1, 1, 40, 40), [0], [{}])[0]), abs=1e-4)
    plain = CLIPScore(model=tiny_clip, pretrained=None)
    assert plain.text_of(None, {"prompt": "a red barn"}, 0) == "a red barn"
    with pytest.raises(DataError, match="no text"):
        plain.text_of(3, {}, 0)


@pytest.mark.filterwarnings("ignore:.*RANDOM weights")
def test_aesthetic_score_plumbing_on_wide_images(tiny_clip, tmp_path):
    from alm.metrics.clip import AestheticScore

    torch.manual_seed(0)
    head = torch.nn.Linear(16, 1)
    torch.save(head.state_dict(), tmp_path / "head.pth")
    metric = AestheticScore(model=tiny_clip, pretrained=None, head_path=str(tmp_path / "head.pth"), views="tiles")
    metric.check_available()
    metric.setup("cpu")
    wide = torch.rand(2, 3, 16, 64) * 2 - 1
    vals = metric.update(wide, wide, torch.ones(2, 1, 16, 64))
    tiles, _ = square_views(wide, "tiles")
    per_tile = metric.head(metric.clip.image_embeddings(tiles)).view(2, 4)
    torch.testing.assert_close(vals.float(), per_tile.mean(1).detach(), rtol=1e-5, atol=1e-6)
    torch.save(torch.nn.Linear(8, 1).state_dict(), tmp_path / "bad.pth")
    bad = AestheticScore(model=tiny_clip, pretrained=None, head_path=str(tmp_path / "bad.pth"))
    with pytest.raises(ConfigError, match="does not fit"):
        bad.setup("cpu")
