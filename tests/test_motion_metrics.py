"""The motion measures: the embedding formulas (alm/motion/embedding_metrics.py) on hand-made embeddings, and the
metric classes of the evaluation stage (alm/metrics/motion.py) on hand-made motions with the tiny evaluator."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from alm.errors import DataError
from alm.motion import embedding_metrics as em


# -- the formulas -----------------------------------------------------------------------------------------
def _cloud(n=200, d=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)) @ np.diag([1.0, 2.0, 0.5, 1.5])


def test_fid_of_a_set_with_itself_is_zero_and_a_shift_gives_the_squared_mean_difference():
    x = _cloud()
    assert abs(em.fid(x, x)) < 1e-8
    shift = np.array([0.3, -1.0, 2.0, 0.0])
    assert em.fid(x + shift, x) == pytest.approx(float(shift @ shift), abs=1e-7)  # same covariance: ||d mu||^2
    # a scaled set: closed form for commuting covariances, tr(C1 + C2 - 2 (C1 C2)^1/2) = (1 - 2)^2 tr(C)
    c, centred = np.cov(x, rowvar=False), x - x.mean(0)
    assert em.fid(2 * centred, centred) == pytest.approx(float(np.trace(c)), rel=1e-6)
    with pytest.raises(DataError, match="at least 2"):
        em.fid(x[:1], x)


def test_matching_score_is_the_mean_text_motion_distance():
    t = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    assert em.matching_score(t, t) == 0.0
    m = t + np.array([[3.0, 4.0], [0.0, 0.0], [0.0, -1.0]])  # distances 5, 0, 1
    np.testing.assert_allclose(em.matching_distances(t, m), [5.0, 0.0, 1.0])
    assert em.matching_score(t, m) == pytest.approx(2.0)
    np.testing.assert_allclose(em.distance_matrix(t, m)[0], [5.0, math.sqrt(2), math.sqrt(5)])


def test_r_precision_is_one_when_each_text_sits_on_its_motion_and_the_others_are_far():
    motion = 10.0 * np.eye(32, 32)
    np.testing.assert_allclose(em.r_precision(motion, motion, group=32), [1.0, 1.0, 1.0])
    # a hand case in one group of 4: text i's nearest motions (own motion's rank)
    m = np.array([[0.0], [1.0], [2.0], [10.0]])
    t = np.array([[0.0],    # own motion first
                  [1.9],    # motion 2 (0.1) before its own (0.9): rank 2
                  [0.0],    # motions 0 (0), 1 (1) before its own (2): rank 3
                  [2.0]])   # motions 2, 1, 0 before its own (8): rank 4
    hits = em.top_k_hits(t, m, top_k=3)
    assert hits.tolist() == [[True, True, True], [False, True, True], [False, False, True], [False, False, False]]
    np.testing.assert_allclose(em.r_precision(t, m, group=4), [0.25, 0.5, 0.75])


def test_r_precision_groups_are_consecutive_and_an_incomplete_last_group_is_dropped():
    m = np.arange(8, dtype=float)[:, None]
    # the first group of 4 is perfect; the second has every text on motion 0 of its own group
    t = np.concatenate([m[:4], np.full((4, 1), 4.0)])
    np.testing.assert_allclose(em.r_precision(t, m, group=4, top_k=1), [(4 + 1) / 8])
    np.testing.assert_allclose(em.r_precision(t[:7], m[:7], group=4, top_k=1), [1.0])  # 3 left over: dropped
    with pytest.raises(DataError, match="one group of 32"):
        em.r_precision(t, m)


def test_diversity_of_identical_vectors_is_zero_and_is_seeded():
    assert em.diversity(np.ones((400, 3)), times=300) == 0.0
    x = _cloud(n=400)
    assert em.diversity(x, seed=1) == em.diversity(x, seed=1) != em.diversity(x, seed=2)
    two = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])  # 2 draws of 2 distinct indices out of 3
    rng = np.random.default_rng(5)
    a, b = rng.choice(3, 2, replace=False), rng.choice(3, 2, replace=False)
    assert em.diversity(two, times=2, seed=5) == pytest.approx(float(np.linalg.norm(two[a] - two[b], axis=1).mean()))
    with pytest.raises(DataError, match="more than 300"):
        em.diversity(x[:300])


def test_replication_statistics_are_the_mean_and_1_96_std_over_sqrt_r():
    mean, interval = em.replication_statistics([1.0, 2.0, 3.0, 4.0])
    # std (ddof 0) of 1..4 = sqrt(1.25); 1.96 * sqrt(1.25) / sqrt(4)
    assert mean == 2.5 and interval == pytest.approx(1.96 * math.sqrt(1.25) / 2)
    mean, interval = em.replication_statistics([[0.5, 0.7], [0.5, 0.9]])  # R-precision columns
    np.testing.assert_allclose(mean, [0.5, 0.8])
    np.testing.assert_allclose(interval, [0.0, 1.96 * 0.1 / math.sqrt(2)])
    assert em.replication_statistics([3.0]) == (3.0, 0.0)


# -- the metric classes -------------------------------------------------------------------------------------
from alm.errors import ConfigError  # noqa: E402
from alm.metrics import prepare_metrics  # noqa: E402
from alm.metrics import motion as mm  # noqa: E402
from alm.metrics.base import MissingWeightsError  # noqa: E402
from alm.motion.evaluator import load_evaluator, write_tiny_evaluator  # noqa: E402
from alm.motion.skeleton import PARENTS, reference_offsets  # noqa: E402

CONF = Path(__file__).resolve().parents[1] / "conf" / "metrics"
L = 24  # frames of the canvas
CAPTIONS = [["a/DET", "person/NOUN", "walk/VERB", "forward/ADV"], ["someone/PRON", "jump/VERB", "up/ADP"],
            ["a/DET", "man/NOUN", "wave/VERB", "with/ADP", "his/DET", "right/ADJ", "hand/NOUN"],
            ["the/DET", "person/NOUN", "turn/VERB", "around/ADV", "slowly/ADV"]]


def _tpose() -> torch.Tensor:
    """(22, 3) the reference skeleton's rest pose, lowest joint on the ground, root at x = z = 0."""
    off, p = reference_offsets(), torch.zeros(22, 3, dtype=torch.float64)
    for j in range(1, 22):
        p[j] = p[PARENTS[j]] + off[j]
    p[:, 1] -= p[:, 1].min()
    return p


def hand_motion(root_xz: torch.Tensor, wiggle: float = 0.0, seed: int = 0, length: int = L) -> torch.Tensor:
    """Frames-major absolute features (L, 263): heading 0, the root at ``root_xz`` (L, 2) and its rest height,
    the rest pose (plus a seeded ``wiggle`` of the joints), zero beyond ``length``."""
    gen = torch.Generator().manual_seed(seed)
    p = _tpose()
    x = torch.zeros(L, 263, dtype=torch.float64)
    x[:, 1:3] = root_xz
    x[:, 3] = p[0, 1]
    x[:, 4:67] = p[1:].reshape(-1) + wiggle * torch.randn(L, 63, generator=gen, dtype=torch.float64)
    x[:, 67:193] = 0.1 * torch.randn(L, 126, generator=gen, dtype=torch.float64)  # read by the algebraic route
    x[length:] = 0.0
    return x.float()


def batch(motions) -> torch.Tensor:
    return torch.stack(motions).transpose(1, 2).unsqueeze(2)  # (B, L, 263) -> (B, 263, 1, L)


def metas_of(lengths, captions=CAPTIONS):
    return [{"length": n, "caption": "", "tokens": captions[i % len(captions)], "name": str(i)}
            for i, n in enumerate(lengths)]


def walk(speed: float, start=(0.0, 0.0)) -> torch.Tensor:
    t = torch.arange(L, dtype=torch.float64)
    return torch.stack([start[0] + speed * t, start[1] + 0.5 * speed * t], dim=1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_tiny_evaluator(tmp_path_factory.mktemp("t2m_tiny"), seed=0)


def _set(n=8, lengths=None, seed=0):
    lengths = lengths or [20 + (i % 5) for i in range(n)]
    motions = [hand_motion(walk(0.01 * (i + 1)), wiggle=0.02, seed=seed + i, length=lengths[i]) for i in range(n)]
    return batch(motions), lengths


def test_the_configs_build_with_their_directions_and_missing_weights_are_one_line(folder, tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    monkeypatch.setenv("ALM_T2M_EVALUATOR", str(folder))
    mset = prepare_metrics(OmegaConf.load(CONF / "motion.yaml"))
    assert list(mset.metrics) == ["fid", "matching_score", "r_precision", "diversity", "skating_ratio", "traj_fail_20",
                                  "traj_fail_50", "traj_error", "keyframe_error"]
    assert mset.directions() == {"fid": False, "matching_score": False, "r_precision": True, "diversity": True,
                                 "skating_ratio": False,
                                 "traj_fail_20": False, "traj_fail_50": False, "traj_error": False,
                                 "keyframe_error": False}
    assert mset.metrics["fid"].folder == folder and mset.metrics["r_precision"].group == 32
    monkeypatch.setenv("ALM_T2M_EVALUATOR", str(tmp_path / "none"))
    with pytest.raises(MissingWeightsError) as err:
        prepare_metrics(OmegaConf.load(CONF / "motion.yaml"))
    assert "\n" not in str(err.value) and "finest.tar" in str(err.value) and "download_glove.sh" in str(err.value)
    monkeypatch.setenv("ALM_CACHE_DIR", str(tmp_path / "cache"))  # motion-tiny writes its evaluator there
    tiny = prepare_metrics(OmegaConf.load(CONF / "motion-tiny.yaml"))
    assert (tmp_path / "cache" / "t2m_evaluator_tiny" / "t2m/text_mot_match/model/finest.tar").is_file()
    assert tiny.metrics["diversity"].times == 10 and tiny.metrics["r_precision"].group == 8
    with pytest.raises(ConfigError, match="caption_lengths"):
        mm.MatchingScore(folder=str(folder), caption_lengths="cropped")


def test_evaluator_input_converts_normalises_and_zeroes_beyond_the_length(folder):
    from alm.motion.features import abs_to_rel, abs_to_rel_via_joints

    ev = load_evaluator(folder)
    x, lengths = _set(n=3, lengths=[20, 24, 13])
    n = torch.tensor(lengths)
    for conversion, convert in (("algebraic", abs_to_rel), ("joints", abs_to_rel_via_joints)):
        got = mm.evaluator_input(x, n, ev.mean, ev.std, conversion)
        for i, k in enumerate(lengths):
            want = (convert(x[i, :, 0, :k].T.double()) - ev.mean.double()) / ev.std.double()
            torch.testing.assert_close(got[i, :k], want.float(), atol=1e-5, rtol=1e-5)
            assert not got[i, k:].any()
    garbage = x.clone()
    garbage[0, :, 0, 20:] = 5.0  # beyond motion 0's length
    torch.testing.assert_close(mm.evaluator_input(garbage, n, ev.mean, ev.std, "algebraic"),
                               mm.evaluator_input(x, n, ev.mean, ev.std, "algebraic"))
    kept = mm.evaluator_input(garbage, n, ev.mean, ev.std, "algebraic", beyond_length="keep")
    want = (abs_to_rel(garbage[0, :, 0].T.double()) - ev.mean.double()) / ev.std.double()  # all 24 frames
    torch.testing.assert_close(kept[0], want.float(), atol=1e-5, rtol=1e-5)
    with pytest.raises(DataError, match="non-finite"):  # zero padding has no pose to re-extract from
        mm.evaluator_input(x, n, ev.mean, ev.std, "joints", beyond_length="keep")


def _update(metric, out, src, lengths, mask=None, captions=CAPTIONS):
    mask = torch.ones(out.shape[0], 1, 1, out.shape[-1]) if mask is None else mask
    metric.reset()
    vals = metric.update(out, src, mask, None, metas_of(lengths, captions))
    return vals


def test_embedding_metrics_equal_the_formulas_on_the_evaluators_embeddings(folder):
    ev = load_evaluator(folder)
    src, lengths = _set(n=8)
    out, _ = _set(n=8, seed=100)
    n = torch.tensor(lengths)
    motion = ev.motion_embeddings(mm.evaluator_input(out, n, ev.mean, ev.std, "joints"), n).double()
    real = ev.motion_embeddings(mm.evaluator_input(src, n, ev.mean, ev.std, "algebraic"), n).double()
    tokens = [m["tokens"] for m in metas_of(lengths)]
    text = ev.text_embeddings(*ev.encode_captions(tokens, "padded")).double()

    fid = mm.MotionFID(folder=str(folder))
    _update(fid, out, src, lengths)
    assert fid.compute() == pytest.approx(em.fid(motion, real), rel=1e-6)
    match = mm.MatchingScore(folder=str(folder))
    vals = _update(match, out, src, lengths)
    torch.testing.assert_close(vals, torch.from_numpy(em.matching_distances(text, motion)), atol=1e-6, rtol=1e-6)
    assert match.compute() == pytest.approx(em.matching_score(text, motion), rel=1e-6)
    true = mm.MatchingScore(folder=str(folder), caption_lengths="true")
    assert float(_update(true, out, src, lengths)[0]) != pytest.approx(float(vals[0]), rel=1e-3)
    rp = mm.RPrecision(folder=str(folder), group=4)
    rp.reset()
    for s in (slice(0, 3), slice(3, 8)):  # groups of 4 in update order, across update batches
        rp.update(out[s], src[s], torch.ones(out[s].shape[0], 1, 1, L), None, metas_of(lengths)[s])
    want = em.r_precision(text, motion, group=4)
    assert rp.compute() == pytest.approx(want[2])
    assert rp.compute_extra() == pytest.approx({"top1": want[0], "top2": want[1]})
    div = mm.Diversity(folder=str(folder), times=5, seed=3)
    _update(div, out, src, lengths)
    assert div.compute() == pytest.approx(em.diversity(motion, 5, 3))
    assert div.compute_extra() == pytest.approx({"real": em.diversity(real, 5, 3)})


def test_fid_of_outputs_equal_to_the_sources_is_zero_and_identical_outputs_have_no_diversity(folder):
    src, lengths = _set(n=8)
    fid = mm.MotionFID(folder=str(folder), conversion="algebraic")
    _update(fid, src, src, lengths)
    assert abs(fid.compute()) < 1e-6
    moved = src.clone()
    moved[:, 4:67] += 0.05  # every joint 5 cm off: another set of embeddings
    _update(fid, moved, src, lengths)
    assert fid.compute() > 1e-4
    same = batch([hand_motion(walk(0.02), length=20)] * 8)
    div = mm.Diversity(folder=str(folder), times=5)
    _update(div, same, src, [20] * 8)
    assert div.compute() == 0.0 and div.compute_extra()["real"] > 0


def test_text_metrics_need_tokens_and_lengths_in_the_metas(folder):
    src, lengths = _set(n=2)
    match = mm.MatchingScore(folder=str(folder))
    with pytest.raises(DataError, match="tokens"):
        match.update(src, src, torch.ones(2, 1, 1, L), None, [{"length": 20}, {"length": 20}])
    with pytest.raises(DataError, match="length"):
        match.update(src, src, torch.ones(2, 1, 1, L), None, [{"tokens": ["a/DET"]}, {"tokens": ["a/DET"]}])


# -- the geometric classes ------------------------------------------------------------------------------------
def test_trajectory_and_keyframe_errors_of_a_shifted_root_at_the_observed_frames():
    src = batch([hand_motion(walk(0.02), length=20), hand_motion(walk(0.02), length=20)])
    out = src.clone()
    out[0, 1, 0, :] += 0.3   # motion 0: root (and every joint) 30 cm off in x at every frame
    out[1, 2, 0, 10:] += 0.6  # motion 1: 60 cm off in z from frame 10 on
    mask = torch.ones(2, 1, 1, L)
    mask[..., :8] = 0.0       # frames 0..7 observed
    mask[1, ..., 12] = 0.0    # and frame 12 of motion 1
    lengths = [20, 20]

    def value(metric):
        return _update(metric, out, src, lengths, mask).tolist()

    assert value(mm.Trajectory(measure="mean_err")) == pytest.approx([0.3, 0.6 / 9])
    assert value(mm.Trajectory(measure="traj_fail_20cm")) == [1.0, 1.0]
    assert value(mm.Trajectory(measure="traj_fail_50cm")) == [0.0, 1.0]
    assert value(mm.Trajectory(measure="kps_fail_50cm")) == pytest.approx([0.0, 1 / 9])
    assert value(mm.KeyframeError()) == pytest.approx([0.3, 0.6 / 9])  # every joint moves with the root's x/z
    none = torch.ones(2, 1, 1, L)
    assert math.isnan(_update(mm.Trajectory(), out, src, lengths, none)[0])
    assert _update(mm.Trajectory(measure="traj_fail_50cm"), out, src, lengths, none).tolist() == [0.0, 0.0]
    with pytest.raises(ConfigError, match="measure"):
        mm.Trajectory(measure="traj_fail_30cm")


def test_skating_ratio_of_a_gliding_and_a_standing_motion():
    # the rest pose's feet are on the ground: gliding at 1 m/s skates every frame pair, standing never
    glide = hand_motion(torch.stack([0.05 * torch.arange(L, dtype=torch.float64), torch.zeros(L)], 1), length=20)
    stand = hand_motion(torch.zeros(L, 2), length=20)
    vals = _update(mm.SkatingRatio(), batch([glide, stand]), batch([glide, stand]), [20, 20]).tolist()
    assert vals == [1.0, 0.0]
    # CondMDI counts the whole array: the zero padding jumps back to the origin there
    # (feet ~17 cm from the origin: 3.5 m/s over the pair (19, 20), 0.7 m/s on average over its window): 1 of 23 pairs
    whole = _update(mm.SkatingRatio(all_frames=True), batch([stand]), batch([stand]), [20]).tolist()
    assert whole == pytest.approx([1 / 23])


def test_too_few_samples_for_a_group_or_the_pairs_is_a_one_line_error(folder):
    src, lengths = _set(n=3)
    rp, div = mm.RPrecision(folder=str(folder), group=4), mm.Diversity(folder=str(folder), times=3)
    _update(rp, src, src, lengths)
    _update(div, src, src, lengths)
    with pytest.raises(DataError, match="fewer than one group of 4"):
        rp.compute()
    with pytest.raises(DataError, match="times lower"):
        div.compute()
