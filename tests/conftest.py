"""Shared fixtures: a toy linear backbone whose eps and gradients are known in closed form."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

from alm.backbones.base import Backbone  # noqa: E402

# One intra-op thread: tiny tensors gain nothing from more, and a shared 2-core machine running
# subprocess tests beside this one slows down badly when threads are oversubscribed.
torch.set_num_threads(1)

LINEAR_SCHEDULER = {
    "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
    "steps_offset": 0, "set_alpha_to_one": True, "clip_sample": False, "prediction_type": "epsilon",
}


class ToyBackbone(Backbone):
    """eps(z, t, c) = a z + d mean(z) + b t/1000 + c (c: per-sample float label; null label 0).

    Deliberately simple so tests can write every method's update by hand.
    """

    conditional = True

    def __init__(self, shape=(1, 4, 4), a: float = 0.3, b: float = 0.1, d: float = 0.2, nan_for: float | None = None):
        super().__init__()
        self.sample_shape = self.data_shape = tuple(shape)
        self.scheduler_config = dict(LINEAR_SCHEDULER)
        self.a, self.b, self.d, self.nan_for = a, b, d, nan_for
        self.register_buffer("_dev", torch.zeros(()))

    def eps(self, z, t, cond):
        c = cond.view(-1, *([1] * (z.dim() - 1))).to(z.dtype)
        out = self.a * z + self.d * z.mean(dim=tuple(range(1, z.dim())), keepdim=True) + self.b * t.view_as(c).to(z.dtype) / 1000 + c
        if self.nan_for is not None:
            out = torch.where(c == self.nan_for, torch.full_like(out, float("nan")), out)
        return out

    def make_cond(self, labels, batch):
        return torch.tensor([float(l) for l in labels])

    def null_cond(self, batch):
        return torch.zeros(batch)


@pytest.fixture
def toy():
    return ToyBackbone()


@pytest.fixture(autouse=True)
def _own_inversion_cache(tmp_path_factory, monkeypatch):
    """Every test gets an empty inversion cache (paths.inversion_cache), never the user's ~/.cache/alm."""
    monkeypatch.setenv("ALM_INVERSION_CACHE_DIR", str(tmp_path_factory.mktemp("inversion-cache")))


@pytest.fixture(scope="module")
def tiny_models_cache(tmp_path_factory):
    """A module's own ALM_CACHE_DIR (where the tiny miniatures are built) and one torch thread."""
    import torch

    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ALM_CACHE_DIR", str(tmp_path_factory.mktemp("alm_cache")))
        yield


def load_script(name: str):
    """``scripts/<name>.py`` as a module (the scripts are not a package), registered in ``sys.modules``
    under ``name`` while it loads (dataclasses look their module up there). The caller may pop it."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow (CI does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache (HF_HOME, HF_HUB_CACHE): no checkpoint can be found in it."""
    cache = tmp_path / "hf"
    (cache / "hub").mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache / "hub"))
    return cache / "hub"

