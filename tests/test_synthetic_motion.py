"""dataset=synthetic_motion: procedural clips whose HumanML3D features are exact (alm/motion/procedural.py,
alm/data/synthetic_motion.py). Seeded; small splits, generated in memory or in a temporary cache."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from alm.data.synthetic_motion import (STD_FLOOR, Settings, SyntheticMotion, clip_features, feature_stats,
                                       make_clip)
from alm.errors import ConfigError
from alm.motion import procedural
from alm.motion.features import (FOOT_CONTACT, N_FEATURES, abs_to_rel, canonicalise_joints, features_from_joints,
                                 recover_joints, recover_joints_from_rotations, rel_to_abs)
from alm.motion.geometry import skating_ratio
from alm.motion.skeleton import FEET_LEFT, FEET_RIGHT, bone_lengths, reference_bone_lengths
from alm.motion.word_vectors import POS_CATEGORIES

SETTINGS = Settings()
N_CLIPS = 40


@pytest.fixture(scope="module")
def clips():
    """The first N_CLIPS test clips and their features (frames, 263) as the data set computes them."""
    made = [make_clip(SETTINGS, "test", i) for i in range(N_CLIPS)]
    feats = clip_features(np.stack([c.joints for c in made]))
    return made, torch.from_numpy(feats)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ALM_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "synthetic_motion"


# -- the kinematics on hand-made inputs ------------------------------------------------------------------
def test_rotations_follow_the_right_hand_rule():
    x, y, z = np.eye(3)
    assert np.allclose(procedural.rot(0, math.pi / 2) @ y, z)  # about x: y -> z
    assert np.allclose(procedural.rot(1, math.pi / 2) @ z, x)  # about y: z -> x (a left turn faces +x)
    assert np.allclose(procedural.rot(2, math.pi / 2) @ x, y)  # about z: x -> y


def test_forward_kinematics_of_the_rest_pose_and_of_a_bent_knee():
    offsets = procedural.rest_offsets()
    local = np.broadcast_to(np.eye(3), (2, 22, 3, 3)).copy()
    local[1, 4] = procedural.rot(0, math.pi / 2)  # frame 1: left knee joint turned 90 degrees about x
    root = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    joints, _ = procedural.forward_kinematics(root, local, offsets)
    # rest pose: each joint is its parent plus its offset
    assert np.allclose(joints[0, 4], joints[0, 1] + offsets[4])
    assert np.allclose(joints[0, 7], joints[0, 4] + offsets[7])
    # the shin (bone 4 -> 7, rest along -y) now points along R_x(90) (-y) = -z (backward), length kept
    shin = joints[1, 7] - joints[1, 4]
    assert np.allclose(shin, [0.0, 0.0, -procedural.REFERENCE_BONE_LENGTHS[7]])
    assert np.allclose(joints[1, :7], joints[0, :7]) and np.allclose(joints[1, 8], joints[0, 8])
    # bones keep HumanML3D's reference lengths
    assert torch.allclose(bone_lengths(torch.from_numpy(joints)), reference_bone_lengths().expand(2, 22))


def test_two_bone_ik_reaches_a_target_with_the_knee_toward_the_pole():
    hip = np.array([[0.0, 0.9, 0.0]])
    ankle = np.array([[0.0, 0.2, 0.3]])
    pole = np.array([[0.0, 0.0, 1.0]])
    l1, l2 = 0.39, 0.43
    g_hip, g_knee, reached = procedural.two_bone_frames(hip, ankle, pole, l1, l2)
    knee = hip + g_hip[0] @ np.array([0.0, -l1, 0.0])
    end = knee + g_knee[0] @ np.array([0.0, -l2, 0.0])
    assert np.allclose(end, ankle) and np.allclose(reached, ankle)
    assert knee[0, 2] > (hip[0, 2] + ankle[0, 2]) / 2  # the knee bends forward (toward the pole)
    for g in (g_hip[0], g_knee[0]):
        assert np.allclose(g @ g.T, np.eye(3)) and np.isclose(np.linalg.det(g), 1.0)
    # out of reach: the leg stretches toward the target
    _, _, far = procedural.two_bone_frames(hip, np.array([[0.0, -2.0, 0.0]]), pole, l1, l2)
    assert np.allclose(far, [[0.0, 0.9 - (l1 + l2), 0.0]])


def test_erode_smooth_never_exceeds_its_input():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50).cumsum()
    y = procedural._erode_smooth(x)
    assert (y <= x + 1e-12).all() and np.abs(np.diff(y)).max() < np.abs(np.diff(x)).max()


def test_caption_tokens_lemmatise_nouns_and_verbs_only():
    text, tokens = procedural.caption_of("a/DET person/NOUN walks:walk/VERB forward/ADV then/ADV turns:turn/VERB "
                                         "left/ADV with/ADP both/DET hands:hand/NOUN")
    assert text == "a person walks forward then turns left with both hands"
    assert tokens == ["a/DET", "person/NOUN", "walk/VERB", "forward/ADV", "then/ADV", "turn/VERB", "left/ADV",
                      "with/ADP", "both/DET", "hand/NOUN"]


# -- the data --------------------------------------------------------------------------------------------------
def test_items_are_pure_functions_of_split_seed_and_index():
    a = SyntheticMotion(split="test", sizes={"test": 6}, cache=False)
    b = SyntheticMotion(split="test", sizes={"test": 3}, cache=False)  # a smaller split: the same first clips
    alone = clip_features(make_clip(SETTINGS, "test", 2).joints[None])[0]
    assert a.shape == (N_FEATURES, 1, 64) and len(a) == 6
    for i in range(3):
        x, y = a[i], b[i]
        assert torch.equal(x.image, y.image) and x.label == y.label and x.meta == y.meta
    assert torch.allclose(a[2].image[:, 0, :].T, torch.from_numpy(alone), atol=1e-5)
    item = a[1]
    assert item.image.dtype == torch.float32 and item.meta["length"] == 64 and item.meta["name"] == "test_00001"
    assert item.label == item.meta["caption"] and item.meta["action"] == [p["family"] for p in item.meta["params"]]
    # splits and seeds are other streams
    val = SyntheticMotion(split="val", sizes={"val": 3}, cache=False)
    other = SyntheticMotion(split="test", sizes={"test": 3}, seed=1, cache=False)
    for i in range(3):
        assert not torch.equal(a[i].image, val[i].image) and not torch.equal(a[i].image, other[i].image)
    with pytest.raises(IndexError):
        a[6]


def test_recovered_joints_are_the_generated_joints(clips):
    made, feats = clips
    joints = torch.from_numpy(np.stack([c.joints for c in made]))
    target = canonicalise_joints(joints)[:, :-1]                   # T + 1 joint frames give T feature rows
    assert (recover_joints(feats.double()) - target).abs().max() < 1e-4
    # the 6-D rotations of the features rebuild the same skeleton (HumanML3D's own FK)
    assert (recover_joints_from_rotations(feats.double()) - target).abs().max() < 1e-4
    # the generator's FK: bones of HumanML3D's reference lengths, the local rotations give the joints
    assert torch.allclose(bone_lengths(joints), reference_bone_lengths().expand(N_CLIPS, 65, 22), atol=1e-9)
    c = made[0]
    again, _ = procedural.forward_kinematics(c.root, c.local)
    assert np.allclose(again, c.joints, atol=1e-12)
    # heading stays within +-150 degrees of frame 0 (HumanML3D's root rotation wraps at 180)
    assert max(c.heading_range for c in made) <= procedural.MAX_HEADING


def test_foot_contacts_are_one_where_the_generator_plants_the_feet(clips):
    made, feats = clips
    planted = torch.from_numpy(np.stack([c.contact for c in made])) > 0.5        # (N, frames, 4)
    contact = feats[..., FOOT_CONTACT] > 0.5
    assert planted.float().mean() > 0.4                                             # most frames have a planted foot
    assert contact[planted].all()
    # and planted joints really stay put (the generator's flag is not vacuous)
    joints = np.stack([c.joints for c in made])
    feet = list(FEET_LEFT) + list(FEET_RIGHT)
    moved = np.linalg.norm(joints[:, 1:, feet] - joints[:, :-1, feet], axis=-1)   # (N, frames, 4)
    assert moved[planted.numpy()].max() < 1e-9
    assert moved[~planted.numpy()].max() > 0.05


def test_features_round_trip_through_abs_and_rel(clips):
    made, feats = clips
    rel = features_from_joints(torch.from_numpy(np.stack([c.joints for c in made[:8]])))
    absolute = rel_to_abs(rel)
    assert torch.allclose(absolute.float(), feats[:8], atol=1e-5)                  # the items are rel_to_abs(rel)
    back = abs_to_rel(absolute)
    # the last row's root velocities have no successor frame: abs_to_rel repeats the previous row's
    assert torch.allclose(back[:, :-1], rel[:, :-1], atol=1e-9) and torch.allclose(back[:, -1, 3:], rel[:, -1, 3:])
    item = feats.double()
    assert torch.allclose(rel_to_abs(abs_to_rel(item)), item, atol=1e-9)


def test_every_family_appears_alone_and_in_transitions():
    made = [make_clip(SETTINGS, "val", i) for i in range(160)]
    singles = {c.actions[0] for c in made if len(c.actions) == 1}
    firsts = {c.actions[0] for c in made if len(c.actions) == 2}
    seconds = {c.actions[1] for c in made if len(c.actions) == 2}
    assert singles == set(procedural.FAMILIES)
    assert 0.35 < np.mean([len(c.actions) == 2 for c in made]) < 0.65
    assert len(firsts) >= 6 and len(seconds) >= 6
    for c in made:
        if len(c.actions) == 2:
            assert c.actions[0] != c.actions[1] and 0 < c.params[1]["start"] < SETTINGS.frames
            assert 10 <= c.params[1]["blend"] <= 20
    only = Settings(families=("walk",), transition=0.0)
    assert {tuple(make_clip(only, "val", i).actions) for i in range(5)} == {("walk",)}


def test_captions_and_tokens_parse(clips):
    made, _ = clips
    verbs = {"walk": "walk", "jog": "jog", "run": "run", "sidestep": ("sidestep", "step"), "jump": "jump",
             "turn": "turn", "wave": "wave", "sit": ("sit", "stand"), "stand": "stand"}
    allowed = set(POS_CATEGORIES) | {"CCONJ", "SCONJ"}
    for c in made:
        words = c.caption.rstrip(".").split(" ")
        assert c.caption.endswith(".") and len(words) == len(c.tokens) <= 20
        for word, token in zip(words, c.tokens):
            lemma, pos = token.rsplit("/", 1)
            assert re.fullmatch(r"[a-z]+", lemma) and pos in allowed, token
            assert lemma == word or pos in ("NOUN", "VERB"), token
        lemmas = [t.split("/")[0] for t in c.tokens]
        for family in c.actions:
            want = verbs[family] if isinstance(verbs[family], tuple) else (verbs[family],)
            assert any(v in lemmas for v in want), (family, c.caption)
        if len(c.actions) == 2:
            assert "then/ADV" in c.tokens


def test_walks_skate_a_few_percent():
    walks = Settings(families=("walk",), transition=0.0)
    made = [make_clip(walks, "train", i) for i in range(24)]
    joints = recover_joints(torch.from_numpy(clip_features(np.stack([c.joints for c in made]))).double())
    ratio = float(skating_ratio(joints).mean())
    assert 0.005 < ratio < 0.2
    no_slide = Settings(families=("walk",), transition=0.0, slide=0.0)
    made = [make_clip(no_slide, "train", i) for i in range(24)]
    joints = recover_joints(torch.from_numpy(clip_features(np.stack([c.joints for c in made]))).double())
    assert float(skating_ratio(joints).mean()) < ratio  # the slides are what skates


def test_stats_and_the_cache(cache_dir):
    ds = SyntheticMotion(split="val", sizes={"train": 12, "val": 4})
    mean, std = ds.stats()
    assert mean.shape == std.shape == (N_FEATURES,) and mean.dtype == torch.float32
    assert torch.isfinite(mean).all() and torch.isfinite(std).all() and (std >= STD_FLOOR).all()
    train = SyntheticMotion(split="train", sizes={"train": 12}, cache=False)
    feats = torch.stack([train[i].image[:, 0, :].T for i in range(12)]).numpy()
    m2, s2 = feature_stats(feats)
    assert torch.allclose(mean, m2) and torch.allclose(std, s2)
    assert len(list(cache_dir.glob("stats-train-12-*.npz"))) == 1
    assert len(list(cache_dir.glob("train-12-*/features.npy"))) == 1
    # read back from the cache: the same items and stats
    again = SyntheticMotion(split="val", sizes={"train": 12, "val": 4})
    fresh = SyntheticMotion(split="val", sizes={"val": 4}, cache=False)
    assert all(torch.equal(again[i].image, fresh[i].image) and again[i].meta == fresh[i].meta for i in range(4))
    m3, s3 = again.stats()
    assert torch.equal(mean, m3) and torch.equal(std, s3)
    # another generator setting is another cache entry
    SyntheticMotion(split="val", sizes={"val": 4}, slide=0.0)[0]
    assert len(list(cache_dir.glob("val-4-*"))) == 2


def test_bad_settings_are_one_line_config_errors():
    for kwargs in ({"split": "dev"}, {"frames": 4}, {"sizes": {"test": 0}}, {"sizes": {"dev": 3}},
                   {"slide": 1.5}, {"families": ["fly"]}, {"families": []}):
        with pytest.raises(ConfigError) as err:
            SyntheticMotion(**kwargs)
        assert "\n" not in str(err.value)


def test_config_composes_and_builds(cache_dir):
    from alm.config import build, compose

    node = compose(["dataset=synthetic_motion", "dataset.sizes.test=2", "dataset.frames=32"]).dataset
    ds = build(node)
    assert isinstance(ds, SyntheticMotion) and ds.shape == (N_FEATURES, 1, 32) and len(ds) == 2
    assert ds.sizes["train"] == 4000 and ds.settings.seed == 0 and ds.input_files() == {}
    item = ds[1]
    assert item.image.shape == (N_FEATURES, 1, 32) and item.meta["length"] == 32
