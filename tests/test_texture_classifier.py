"""The texture judge (alm.classifier, weights/texture_classifier) and the strip metrics built on it:
class_score and class_agreement on square tiles, FID / KID of tiles against the real strips (conf/metrics/textures.yaml)."""

from __future__ import annotations

import pytest
import torch

from alm.classifier import TEXTURE_WEIGHTS, DigitClassifier, load_classifier, predict
from alm.data.textures import CLASSES, TextureStrips, band, random_crops
from alm.errors import CheckpointError
from alm.evaluate import main
from alm.metrics import MissingWeightsError
from alm.metrics.classifier import ClassAgreement, ClassConsistency, ClassScore
from alm.tables import read_csv

PATH = str(TEXTURE_WEIGHTS)


@pytest.fixture(scope="module")
def classifier():
    torch.set_num_threads(1)
    return load_classifier(TEXTURE_WEIGHTS)


@pytest.fixture(scope="module")
def strips():
    """Real (1, 32, 128) strips of the test band: 4 per class, class-interleaved (item i is class i % 3)."""
    data = TextureStrips(split="test", size=12)
    return torch.stack([data[i].image for i in range(12)]), torch.tensor(data.labels)


def test_the_committed_weights_classify_held_out_test_crops(classifier):
    x, y = random_crops(band("test"), 300, 32, torch.Generator().manual_seed(123))
    assert classifier.config["num_classes"] == len(CLASSES) == 3 and not classifier.training
    probs = predict(classifier, x)
    accuracy = float((probs.argmax(1) == y).float().mean())
    assert accuracy >= 0.97, f"test accuracy {accuracy:.3f}: retrain with python scripts/train_classifier.py --data textures"
    assert float(probs[torch.arange(300), y].mean()) > 0.95
    torch.manual_seed(0)
    untrained = DigitClassifier(num_classes=3).eval()
    assert float((predict(untrained, x).argmax(1) == y).float().mean()) < 0.8  # a random network fails
    assert classifier.features(x[:4]).shape == (4, classifier.num_features)


def test_strip_metrics_on_square_tiles(strips):
    images, labels = strips
    n = len(labels)
    ones = torch.ones(n, 1, 32, 128)
    # every tile of a real strip is its class: score ~1, the tiles agree
    score = ClassScore(path=PATH, views="tiles").update(images, images, ones, labels.tolist())
    assert score.shape == (n,) and float(score.min()) > 0.9
    assert float(ClassAgreement(path=PATH).update(images, images, ones).mean()) == 1.0
    # asked for the next class: the probability of the asked class is ~0
    wrong = ((labels + 1) % 3).tolist()
    assert float(ClassScore(path=PATH, views="tiles").update(images, images, ones, wrong).max()) < 0.1
    # half brick, half grass: the tiles disagree; half the tiles keep the label
    mixed = torch.cat([images[0::3][:, :, :, :64], images[1::3][:, :, :, 64:]], dim=-1)
    brick = [0] * len(mixed)
    assert float(ClassAgreement(path=PATH).update(mixed, mixed, ones[:4]).max()) == 0.0
    consistency = ClassConsistency(path=PATH, views="tiles").update(mixed, mixed, ones[:4], brick)
    assert torch.allclose(consistency, torch.full((4,), 0.5, dtype=consistency.dtype))
    score = ClassScore(path=PATH, views="tiles").update(mixed, mixed, ones[:4], brick)
    assert 0.4 < float(score.mean()) < 0.6
    assert ClassAgreement(path=PATH).title == "class agreement (texture classifier)"


#: the layout task=wide writes into every sample's meta (5 windows of 32 at stride 24), read by the seam metrics
LAYOUT = {"windows": [[0, 32], [24, 56], [48, 80], [72, 104], [96, 128]], "seams": [32, 56, 80, 104], "axis": -1}


def _fake_run(root, name, outputs, labels):
    """A run folder as the runner writes it (samples/NNNNN.pt), for strips we choose (all hole: generated)."""
    (root / name / "samples").mkdir(parents=True)
    hole = torch.ones(1, 32, 128)
    for i in range(len(labels)):
        torch.save({"source": outputs[i], "mask": hole, "masked": outputs[i] * 0, "output": outputs[i],
                    "label": int(labels[i]), "meta": {"index": i, **LAYOUT}}, root / name / "samples" / f"{i:05d}.pt")
    return root / name


def test_the_textures_metric_set_on_run_folders(tmp_path, strips, capsys):
    images, labels = strips
    assert len(TextureStrips(split="test")) == 387  # conf/metrics/textures.yaml's reference num (99 here: faster)
    real = _fake_run(tmp_path, "real", images, labels)
    noise = torch.randn(12, 1, 32, 128, generator=torch.Generator().manual_seed(0)).mul(0.3).clamp(-1, 1)
    noisy = _fake_run(tmp_path, "noise", noise, labels)
    args = [str(real), str(noisy), "--out", str(tmp_path / "t"), "metrics=textures", "progress=false", "device=cpu",
            f"metrics.cache_dir={tmp_path / 'cache'}", "metrics.fid.reference.num=99", "metrics.kid.reference.num=99"]
    assert main(args) == 0, capsys.readouterr().err
    table = {r["label"]: r for r in read_csv(tmp_path / "t" / "table.csv")[1]}
    assert float(table["real"]["class_score"]) > 0.9 and float(table["real"]["class_agreement"]) == 1.0
    assert float(table["real"]["fid"]) < 0.2 * float(table["noise"]["fid"])
    assert float(table["real"]["kid"]) < float(table["noise"]["kid"])
    assert float(table["noise"]["class_score"]) < 0.6
    assert float(table["real"]["rank"]) < float(table["noise"]["rank"])
    assert len(list((tmp_path / "cache" / "reference").glob("texture_classifier-*/textures-test-32x32-n99-*.pt"))) == 2  # fid, kid


def test_missing_texture_weights_name_the_texture_training_command(tmp_path):
    missing = tmp_path / "texture_classifier"
    with pytest.raises(CheckpointError, match=r"texture classifier's .* `python scripts/train_classifier.py --data textures`"):
        load_classifier(missing)
    with pytest.raises(MissingWeightsError, match="--data textures"):
        ClassAgreement(path=str(missing)).check_available()
