"""The MNIST judge (alm.classifier) and the metrics built on it: class_score, class_consistency, FID/KID features."""

from __future__ import annotations

import pytest
import torch

from alm.classifier import DEFAULT_WEIGHTS, DigitClassifier, load_classifier, predict
from alm.data.mnist import MNISTDataset
from alm.errors import CheckpointError
from alm.evaluate import main
from alm.metrics import MissingWeightsError
from alm.metrics.classifier import ClassConsistency, ClassScore
from alm.metrics.fid import FID
from alm.tables import read_csv

FEATURES = {"_target_": "alm.classifier.load_classifier_features", "path": str(DEFAULT_WEIGHTS), "name": "mnist_classifier"}


@pytest.fixture(scope="module")
def test_split():
    data = MNISTDataset(split="test")
    return data.images, torch.tensor(data.labels)


@pytest.fixture(scope="module")
def classifier():
    return load_classifier()


def test_the_committed_weights_reach_98_percent_on_the_test_split(classifier, test_split):
    images, labels = test_split
    assert len(labels) == 500
    assert not classifier.training and sum(p.numel() for p in classifier.parameters()) < 300_000
    probs = predict(classifier, images)
    accuracy = float((probs.argmax(1) == labels).float().mean())
    assert accuracy >= 0.98, f"test accuracy {accuracy:.3f} < 0.98: retrain with python scripts/train_classifier.py"
    assert classifier.features(images[:4]).shape == (4, classifier.num_features)


def _fake_run(root, name, sources, outputs, labels, hole):
    """A run folder as the runner writes it (samples/NNNNN.pt), for outputs we choose."""
    (root / name / "samples").mkdir(parents=True)
    for i in range(len(labels)):
        torch.save({"source": sources[i], "mask": hole, "masked": sources[i] * (1 - hole), "output": outputs[i],
                    "label": int(labels[i]), "meta": {"index": i}}, root / name / "samples" / f"{i:05d}.pt")
    return root / name


def test_class_metrics_on_run_folders_see_what_fid_cannot(tmp_path, classifier, test_split, capsys):
    # 100 test images (10 per digit, interleaved: item i is digit i % 10) with a 16x16 hole.
    # "perfect": the completion is the source itself -> class_consistency is the classifier's accuracy on them;
    # "swapped": each output is the NEXT test image (another digit) -> the same set of images, so FID ~ 0,
    # but no output keeps its source's class.
    images, labels = test_split[0][:100], test_split[1][:100]
    hole = torch.zeros(1, 32, 32)
    hole[:, 8:24, 8:24] = 1
    perfect = _fake_run(tmp_path, "perfect", images, images, labels, hole)
    swapped = _fake_run(tmp_path, "swapped", images, images.roll(-1, 0), labels, hole)
    args = [str(perfect), str(swapped), "--out", str(tmp_path / "t"), "metrics=mnist", "progress=false",
            "--only", "class_score,class_consistency,fid", "device=cpu"]
    assert main(args) == 0, capsys.readouterr().err
    table = {r["label"]: r for r in read_csv(tmp_path / "t" / "table.csv")[1]}
    probs = predict(classifier, images)
    assert float(table["perfect"]["class_consistency"]) == pytest.approx(float((probs.argmax(1) == labels).float().mean()))
    assert float(table["perfect"]["class_score"]) == pytest.approx(float(probs[torch.arange(100), labels].mean()), abs=1e-5)
    assert float(table["perfect"]["class_score"]) > 0.95
    assert float(table["swapped"]["class_consistency"]) <= 0.03 and float(table["swapped"]["class_score"]) < 0.05
    assert abs(float(table["swapped"]["fid"])) < 1e-3 and abs(float(table["perfect"]["fid"])) < 1e-3
    assert float(table["perfect"]["rank"]) < float(table["swapped"]["rank"])
    # the per-sample rows: one 0/1 consistency value per sample
    _, rows = read_csv(tmp_path / "t" / "rows.csv")
    assert {float(r["class_consistency"]) for r in rows} <= {0.0, 1.0} and len(rows) == 200


def test_consistency_against_the_classifiers_call_on_the_source(classifier, test_split):
    images, labels = test_split[0][:50], test_split[1][:50]
    ones = torch.ones(50, 1, 32, 32)
    wrong = (labels + 1) % 10  # labels that disagree with every source
    by_label = ClassConsistency().update(images, images, ones, wrong.tolist())
    by_source = ClassConsistency(target="source").update(images, images, ones, wrong.tolist())
    assert float(by_label.sum()) <= 2 and float(by_source.mean()) == 1.0  # an output equal to its source agrees with it
    assert ClassScore().higher_is_better and ClassConsistency().higher_is_better


def test_fid_on_classifier_features_of_the_test_split_against_itself_is_zero(test_split):
    images = test_split[0]
    fid = FID(feature=FEATURES, reference="sources")
    for chunk in images.split(250):
        fid.update(chunk, chunk, torch.ones(len(chunk), 1, 32, 32))
    assert abs(fid.compute()) < 1e-3
    assert fid.feature_id.startswith("mnist_classifier-")


def test_missing_weights_are_a_one_line_error_at_the_start(tmp_path, test_split, capsys):
    missing = tmp_path / "no_classifier"
    with pytest.raises(CheckpointError, match="python scripts/train_classifier.py") as err:
        load_classifier(missing)
    assert "\n" not in str(err.value)
    with pytest.raises(MissingWeightsError):
        ClassScore(path=str(missing)).check_available()
    images, labels = test_split[0][:10], test_split[1][:10]
    run = _fake_run(tmp_path, "run", images, images, labels, torch.ones(1, 32, 32))
    for only in ("class_score", "class_consistency", "fid", "kid"):
        assert main([str(run), "metrics=mnist", f"paths.root={tmp_path}", "--only", only, "progress=false"]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: metrics.{only}: the MNIST classifier's {tmp_path}/weights/classifier/classifier.safetensors "
                              "is missing; make the weights with `python scripts/train_classifier.py`")
        assert err.count("\n") == 1
    assert not (run / "eval").exists()  # nothing was computed


def test_a_corrupt_weights_file_is_a_one_line_error(tmp_path):
    from alm.classifier import save_classifier

    save_classifier(DigitClassifier(channels=(4, 8, 8)), tmp_path)
    load_classifier(tmp_path)  # round trip of a fresh model
    (tmp_path / "classifier.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot load the MNIST classifier") as err:
        load_classifier(tmp_path)
    assert "\n" not in str(err.value)


def test_skip_unavailable_leaves_out_fid_with_missing_feature_network(tmp_path):
    from omegaconf import OmegaConf

    from alm.metrics import prepare_metrics

    node = OmegaConf.create({
        "skip_unavailable": True,
        "mse": {"_target_": "alm.metrics.pixel.MSE"},
        "fid": {"_target_": "alm.metrics.fid.FID", "feature": {"_target_": "alm.classifier.load_classifier_features", "path": str(tmp_path / "none")}},
    })
    metric_set = prepare_metrics(node)
    assert "fid" in metric_set.skipped and "mse" in metric_set.metrics
