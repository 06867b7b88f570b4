"""The synthetic-motion T2M evaluator: its training pieces (scripts/train_motion_evaluator.py) on hand-made tensors,
a short training that must be deterministic, and the committed folder (weights/motion_evaluator/) read by the
motion measures of conf/metrics/motion-embedded.yaml exactly as a run reads it: real test motions match their
captions far above chance, shuffled captions do not, and FID tells real motions from corrupted ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "weights" / "motion_evaluator"
CONF = ROOT / "conf" / "metrics" / "motion-embedded.yaml"
N_TEST = 256  # 8 groups of 32: the first test clips (clip i does not depend on the split's size)
TOP3_FLOOR = 0.90     # the committed evaluator: 0.998 on all 500 test clips (TRAINING.md); a margin below it
CHANCE_CEILING = 0.25  # shuffled captions: chance is 3/32 ~ 0.094 (0.085 on all 500 test clips)

TINY = ["--train-items", "48", "--val-items", "32", "--test-items", "-1", "--epochs", "2", "--batch-size", "16",
        "--dim", "8", "--word-dim", "8", "--text-hidden", "16", "--motion-hidden", "16", "--movement-hidden", "16",
        "--movement-latent", "16", "--no-progress"]


@pytest.fixture(scope="module")
def script():
    return load_script("train_motion_evaluator")


@pytest.fixture(scope="module")
def clips(tiny_models_cache, script):
    """The first test and val clips (generated into the module's own cache)."""
    return script.load_split("test", N_TEST), script.load_split("val", N_TEST)


def _metrics(names=None):
    from omegaconf import OmegaConf

    from alm.metrics import prepare_metrics

    cfg = OmegaConf.create({"paths": {"root": str(ROOT)}, "metrics": OmegaConf.load(CONF)})
    return prepare_metrics(cfg.metrics, only=names)


def _run(metric, output, source, metas, batch=32):
    metric.reset()
    mask = torch.ones(output.shape[0], 1, 1, output.shape[-1])
    for s in range(0, len(metas), batch):
        metric.update(output[s:s + batch], source[s:s + batch], mask[s:s + batch], None, metas[s:s + batch])
    return metric.compute()


# -- the pieces, by hand ---------------------------------------------------------------------------------------
def test_the_contrastive_loss_by_hand(script):
    text = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    motion = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0]])
    # d(t_i, m_j): row 0: 1, 3, 1; row 1: 2, 0, sqrt(10); row 2: sqrt(17), 5, 3
    same = torch.zeros(3, 3, dtype=torch.bool)
    loss, pos, neg = script.contrastive_loss(text, motion, same, margin=4.0)
    assert pos.item() == pytest.approx((1 + 0 + 9) / 3)
    hinges = [(4 - 3) ** 2, (4 - 1) ** 2, (4 - 2) ** 2, (4 - 10 ** 0.5) ** 2, 0.0, 0.0]  # sqrt(17), 5 > margin
    assert neg.item() == pytest.approx(sum(hinges) / 6)
    assert loss.item() == pytest.approx(pos.item() + neg.item())
    same[0, 1] = same[1, 0] = True  # captions 0 and 1 are the same: not negatives of each other
    _, _, neg2 = script.contrastive_loss(text, motion, same, margin=4.0)
    assert neg2.item() == pytest.approx(((4 - 1) ** 2 + (4 - 10 ** 0.5) ** 2 + 0.0 + 0.0) / 4)
    codes = script.same_caption([["a/DET"], ["b/NOUN"], ["a/DET"]])
    assert codes.tolist() == [[True, False, True], [False, True, False], [True, False, True]]


def test_the_statistics_average_the_groups_and_weight_the_root_and_the_feet(script):
    g = torch.Generator().manual_seed(0)
    rel = torch.randn(2, 5, 263, generator=g, dtype=torch.float64) * torch.linspace(0.5, 2.0, 263, dtype=torch.float64)
    lengths = torch.tensor([5, 3])
    rel[1, 3:] = 1e6  # beyond the length: never read
    mean, std = script.evaluator_statistics(rel, lengths, feat_bias=5.0)
    frames = torch.cat([rel[0], rel[1, :3]]).numpy()
    np.testing.assert_allclose(mean, frames.mean(0), rtol=1e-5)
    raw = frames.std(0)
    np.testing.assert_allclose(std[4:67], raw[4:67].mean(), rtol=1e-5)       # positions: one std, no bias
    np.testing.assert_allclose(std[67:193], raw[67:193].mean(), rtol=1e-5)   # rotations
    np.testing.assert_allclose(std[193:259], raw[193:259].mean(), rtol=1e-5)  # velocities
    np.testing.assert_allclose(std[1:3], raw[1:3].mean() / 5, rtol=1e-5)       # root x/z velocity, / feat_bias
    np.testing.assert_allclose(std[259:], raw[259:].mean() / 5, rtol=1e-5)    # foot contacts, / feat_bias
    assert std[0] == pytest.approx(raw[0] / 5, rel=1e-5) and std[3] == pytest.approx(raw[3] / 5, rel=1e-5)
    assert mean.dtype == std.dtype == np.float32
    words = script.vocabulary([["walk/VERB", "a/DET"], ["a/DET", "run/VERB", "unk/OTHER"]])
    assert words == ["sos", "eos", "unk", "a", "run", "walk"]
    v = script.word_vectors(words, 4, seed=3)
    assert v.shape == (6, 4) and np.array_equal(v, script.word_vectors(words, 4, seed=3))
    assert not np.array_equal(v, script.word_vectors(words, 4, seed=4))


# -- a short training ----------------------------------------------------------------------------------------
def test_a_short_training_is_deterministic_and_its_forward_is_the_metrics_embedding(script, tiny_models_cache,
                                                                                      tmp_path):
    from alm.motion.evaluator import evaluator_files, load_evaluator

    a, b = tmp_path / "a", tmp_path / "b"
    assert script.main([*TINY, "--out", str(a)]) == 0
    assert script.main([*TINY, "--out", str(b)]) == 0
    ckpt_a = torch.load(evaluator_files(a)["checkpoint"], weights_only=True)
    ckpt_b = torch.load(evaluator_files(b)["checkpoint"], weights_only=True)
    assert set(ckpt_a) == {"movement_encoder", "text_encoder", "motion_encoder", "epoch", "iter"}
    for key in ("movement_encoder", "text_encoder", "motion_encoder"):
        assert ckpt_a[key].keys() == ckpt_b[key].keys()
        for name in ckpt_a[key]:
            assert torch.equal(ckpt_a[key][name], ckpt_b[key][name]), f"{key}.{name}"
    for role in ("mean", "std", "glove_data"):
        assert np.array_equal(np.load(evaluator_files(a)[role]), np.load(evaluator_files(b)[role]))
    # another seed trains other weights
    c = tmp_path / "c"
    assert script.main([*TINY, "--out", str(c), "--seed", "1"]) == 0
    ckpt_c = torch.load(evaluator_files(c)["checkpoint"], weights_only=True)
    assert not torch.equal(ckpt_c["text_encoder"]["output_net.3.weight"], ckpt_a["text_encoder"]["output_net.3.weight"])
    # the training's forward is the evaluator's embedding (eval mode), on the metrics' inputs
    ev = load_evaluator(a)
    data = script.load_split("val", 32)
    p = script.prepare(ev, data)
    with torch.no_grad():
        torch.testing.assert_close(script.motion_forward(ev, p.feats, p.lengths), ev.motion_embeddings(p.feats, p.lengths))
    assert int(p.cap_lens.unique()) == 22  # captions read over all max_text_len + 2 tokens (caption_lengths: padded)


# -- the committed evaluator -----------------------------------------------------------------------------------
def test_the_committed_folder_loads_in_the_real_layout_with_the_synthetic_vocabulary(clips):
    from alm.motion.evaluator import load_evaluator, missing_files, num_parameters

    assert missing_files(FOLDER) == []
    ev = load_evaluator(FOLDER)
    assert 100_000 < num_parameters(ev) < 1_000_000
    assert ev.mean.shape == ev.std.shape == (263,) and bool((ev.std > 0).all())
    words = {t.rpartition("/")[0] for m in clips[0].metas for t in m["tokens"]}
    assert words <= set(ev.words.vectors), sorted(words - set(ev.words.vectors))  # no test word reads as unk
    assert (FOLDER / "TRAINING.md").is_file()


def test_real_test_motions_find_their_captions_and_shuffled_captions_do_not(clips):
    test, _ = clips
    mset = _metrics(["r_precision", "matching_score"])
    r_prec = mset.metrics["r_precision"]
    r_prec.setup(torch.device("cpu"))
    top3 = _run(r_prec, test.x, test.x, test.metas)
    extra = r_prec.compute_extra()
    assert top3 > TOP3_FLOOR and extra["top1"] <= extra["top2"] <= top3
    perm = torch.randperm(len(test.metas), generator=torch.Generator().manual_seed(0))
    shuffled = [{**m, "tokens": test.metas[int(j)]["tokens"]} for m, j in zip(test.metas, perm)]
    assert _run(r_prec, test.x, test.x, shuffled) < CHANCE_CEILING
    matching = mset.metrics["matching_score"]
    matching.setup(torch.device("cpu"))
    own = float(matching.values(test.x, test.x, None, None, test.metas).mean())
    other = float(matching.values(test.x, test.x, None, None, shuffled).mean())
    assert own < 0.5 * other


def test_fid_tells_real_motions_from_corrupted_ones(clips, script):
    test, val = clips
    fid = _metrics(["fid"]).metrics["fid"]
    fid.setup(torch.device("cpu"))
    real = _run(fid, val.x, test.x, test.metas)            # other real motions (val) as the outputs
    scale = script.feature_std(val)
    mild = _run(fid, script.with_noise(test.x, test.lengths, scale, 0.1, seed=0), test.x, test.metas)
    noisy = _run(fid, script.with_noise(test.x, test.lengths, scale, 0.3, seed=0), test.x, test.metas)
    held = _run(fid, script.static_pose(test.x, test.lengths), test.x, test.metas)
    print(f"FID vs the test clips: val {real:.3f}, noise 0.1 {mild:.3f}, noise 0.3 {noisy:.3f}, held pose {held:.3f}")
    assert 0 <= real < mild < noisy, (real, mild, noisy)
    assert real < 0.1 * min(noisy, held), (real, noisy, held)


def test_the_config_reads_the_committed_folder():
    mset = _metrics()
    assert list(mset.metrics) == ["fid", "matching_score", "r_precision", "diversity", "skating_ratio", "traj_fail_20",
                                  "traj_fail_50", "traj_error", "keyframe_error"]
    for key in ("fid", "matching_score", "r_precision", "diversity"):
        assert mset.metrics[key].folder == FOLDER and mset.metrics[key].caption_lengths == "padded"
    assert mset.metrics["r_precision"].group == 32 and mset.metrics["diversity"].times == 300
