"""The shipped embedded backbone (weights/embedded): it loads, it draws the asked digits, and every inpainting
method runs end to end on it with the MNIST metrics (the default `python run.py` configuration)."""

from __future__ import annotations

import pytest
import torch

from alm.classifier import load_classifier, predict
from alm.config import compose
from alm.rng import SampleGenerators
from alm.config import build
from alm.runner import run
from alm.sampling import reverse
from alm.schedule import make_schedule

INPAINT_METHODS = ["alm", "alm_fused", "alm_wo_alm", "alm_wo_cond", "alm_wo_joint", "syncsde", "bld",
                   "recon_guidance", "recon_guidance_imputation", "ddim"]


@pytest.fixture(scope="module")
def backbone():
    return build(compose([]).backbone).eval()


def test_default_config_is_alm_on_the_embedded_backbone():
    cfg = compose([])
    assert (cfg.backbone.name, cfg.dataset.name, cfg.dataset.split, cfg.method.name, cfg.mask.name) == \
        ("embedded", "mnist", "test", "alm", "mixed")


def test_shipped_weights_load(backbone):
    assert backbone.conditional and backbone.num_classes == 10 and backbone.null_class == 10
    assert backbone.model_prediction_type == "v_prediction" and backbone.sample_shape == (1, 32, 32)
    assert 0.9e6 < sum(p.numel() for p in backbone.parameters()) < 1.5e6
    assert backbone.scheduler_config["prediction_type"] == "epsilon"  # v is converted to eps


def test_shipped_weights_draw_the_asked_digits(backbone):
    """Class-conditional DDIM (20 steps, guidance 2) from the shipped weights, judged by the shipped classifier."""
    from alm.config import build_method
    from alm.methods.base import Problem

    labels = torch.arange(10).repeat(2)
    cfg = compose(["method=ddim", "sampler.steps=20", "sampler.guidance=2.0"])
    schedule = make_schedule(backbone.scheduler_config, 20)
    gens = SampleGenerators(seed=0, indices=list(range(len(labels))))
    shape = (len(labels), *backbone.sample_shape)
    problem = Problem(x0=torch.zeros(shape), mask=torch.ones(len(labels), 1, 32, 32), cond=backbone.make_cond(labels.tolist(), len(labels)))
    method = build_method("ddim")
    with torch.no_grad():
        out = reverse(backbone, method, problem, schedule, gens, guidance=float(cfg.sampler.guidance))
    probs = predict(load_classifier(), out.clamp(-1, 1))
    recognised = float((probs.argmax(1) == labels).float().mean())
    assert recognised >= 0.9, f"only {recognised:.0%} of class-conditional samples are the asked digit"


@pytest.mark.parametrize("method", INPAINT_METHODS)
def test_every_inpainting_method_runs_on_the_embedded_backbone(method, tmp_path):
    cfg = compose([f"method={method}", "num_samples=2", "batch_size=2", "sampler.steps=4", "metrics=mnist",
                   "metrics.fid=null", "metrics.kid=null", "progress=false"])
    summary = run(cfg, tmp_path / "r")
    assert summary["samples"] == 2
    for k in ("mse", "ssim", "class_score", "class_consistency", "evaluations", "seconds"):
        assert k in summary and summary[k] == summary[k], k  # present and not NaN
    sample = torch.load(tmp_path / "r" / "samples" / "00000.pt", weights_only=False)
    assert sample["output"].shape == (1, 32, 32) and torch.isfinite(sample["output"]).all()
    assert 0.0 <= summary["class_consistency"] <= 1.0
