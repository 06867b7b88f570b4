"""Skating ratio, trajectory error and keyframe error on hand-made joints (metres, y up, 20 fps)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from alm.errors import DataError
from alm.motion import geometry as G

D = torch.float64


def _still(B=1, T=41, height=0.0):
    """(B, T, 22, 3) motionless joints with every joint at ``height`` (the feet on the ground for 0)."""
    j = torch.zeros(B, T, 22, 3, dtype=D)
    j[..., 1] = height
    return j


def _slide(joints, foot, speed, frames=None, b=0):
    """Move ``foot`` along x at ``speed`` m/s (speed / 20 m per frame) over ``frames`` (default: all)."""
    T = joints.shape[1]
    frames = range(T) if frames is None else frames
    step = torch.zeros(T, dtype=D)
    for t in frames:
        if t + 1 < T:
            step[t + 1] = speed / 20.0
    joints[b, :, foot, 0] = torch.cumsum(step, 0)
    return joints


# -- skating ---------------------------------------------------------------------------------------------
def test_a_foot_sliding_on_the_ground_skates():
    assert G.skating_ratio(_slide(_still(), 10, 1.0)).tolist() == [1.0]
    assert G.skating_ratio(_slide(_still(), 11, 1.0)).tolist() == [1.0]          # either foot counts


def test_planted_slow_lifted_or_ankle_feet_do_not_skate():
    assert G.skating_ratio(_still()).tolist() == [0.0]                            # planted
    assert G.skating_ratio(_slide(_still(), 10, 0.45)).tolist() == [0.0]          # below 0.5 m/s
    assert G.skating_ratio(_slide(_still(height=0.3), 10, 1.0)).tolist() == [0.0]  # in the air
    assert G.skating_ratio(_slide(_still(), 7, 1.0)).tolist() == [0.0]            # an ankle is not a foot
    lifted = _slide(_still(), 10, 1.0)
    lifted[0, 1::2, 10, 1] = 0.06                                                 # every other frame up
    assert G.skating_ratio(lifted).tolist() == [0.0]                              # needs both frames low
    assert G.skating_ratio(_slide(_still(height=0.049), 10, 1.0)).tolist() == [1.0]


def test_the_ratio_counts_frame_pairs_and_the_five_frame_window():
    half = _slide(_still(T=41), 10, 1.0, frames=range(20))                        # pairs 0..19 of 40 slide
    assert G.skating_ratio(half).tolist() == [0.5]
    blip = _slide(_still(T=41), 10, 2.0, frames=[20])                             # one fast pair: window mean 0.4
    assert G.skating_ratio(blip).tolist() == [0.0]
    two = _slide(_still(T=41), 10, 2.0, frames=[20, 21])                          # window mean 0.8 at both
    assert G.skating_ratio(two).tolist() == [2 / 40]


def test_frames_beyond_the_length_are_ignored():
    j = _still(B=2, T=41)
    _slide(j, 10, 1.0, frames=range(30, 40), b=0)
    _slide(j, 10, 1.0, frames=range(0, 10), b=1)
    assert G.skating_ratio(j, lengths=[30, 41]).tolist() == [0.0, 10 / 40]
    assert G.skating_ratio(j, lengths=[30, 21]).tolist() == [0.0, 10 / 20]
    assert G.skating_ratio(j).tolist() == [10 / 40, 10 / 40]                      # CondMDI: the whole array
    with pytest.raises(DataError):
        G.skating_ratio(j, lengths=[42, 3])


def test_skating_matches_the_reference_formula_on_random_feet():
    ndimage = pytest.importorskip("scipy.ndimage")
    g = torch.Generator().manual_seed(0)
    j = torch.cumsum(torch.randn(4, 60, 22, 3, generator=g, dtype=D) * 0.03, dim=1)
    j[..., 1] = j[..., 1].abs() * 0.5
    feet = j[:, :, [10, 11]].numpy()
    speed = np.linalg.norm(feet[:, 1:, :, [0, 2]] - feet[:, :-1, :, [0, 2]], axis=-1) * 20.0
    avg = ndimage.uniform_filter1d(speed, size=5, axis=1, mode="constant", origin=0)
    low = feet[..., 1] < 0.05
    skate = (low[:, :-1] & low[:, 1:] & (speed > 0.5) & (avg > 0.5)).any(-1)
    assert np.array_equal(G.skating_frames(j).numpy(), skate)
    assert np.allclose(G.skating_ratio(j).numpy(), skate.mean(1))
    assert 0 < skate.mean() < 1


# -- trajectory and keyframe errors ------------------------------------------------------------------------
def _pair(B=2, T=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(B, T, 22, 3, generator=g, dtype=D)
    return target.clone(), target


def test_identical_motions_have_no_error():
    joints, target = _pair()
    observed = torch.zeros(2, 20, dtype=torch.bool)
    observed[:, ::5] = True
    out = G.trajectory_error(joints, target, observed, lengths=[20, 20])
    for key in ("traj_fail_20cm", "traj_fail_50cm", "kps_fail_20cm", "kps_fail_50cm", "mean_err"):
        assert out[key].tolist() == [0.0, 0.0], key
    assert out["n_observed"].tolist() == [4.0, 4.0]
    assert G.keyframe_error(joints, target, observed).tolist() == [0.0, 0.0]


def test_a_root_30cm_off_fails_at_20_but_not_at_50cm():
    joints, target = _pair()
    observed = torch.zeros(2, 20, dtype=torch.bool)
    observed[:, [0, 9, 19]] = True
    joints[0, :, :, 0] += 0.18                       # every joint 30 cm off on the ground plane
    joints[0, :, :, 2] += 0.24
    joints[1, 9, 0, [0, 2]] += torch.tensor([0.0, -0.3], dtype=D)   # motion 1: one keyframe's root only
    joints[1, 5, 0, 0] += 5.0                        # an unobserved frame: does not count
    out = G.trajectory_error(joints, target, observed)
    assert out["traj_fail_20cm"].tolist() == [1.0, 1.0]
    assert out["traj_fail_50cm"].tolist() == [0.0, 0.0]
    assert torch.allclose(out["kps_fail_20cm"], torch.tensor([1.0, 1 / 3], dtype=D))
    assert torch.allclose(out["n_over_20cm"], torch.tensor([3.0, 1.0], dtype=D))
    assert torch.allclose(out["mean_err"], torch.tensor([0.3, 0.1], dtype=D))
    assert torch.allclose(out["distance"][1, [5, 9]], torch.tensor([0.0, 0.3], dtype=D))
    assert torch.allclose(G.keyframe_error(joints, target, observed), torch.tensor([0.3, 0.3 / 22 / 3], dtype=D))


def test_height_counts_for_keyframes_not_for_the_trajectory():
    joints, target = _pair(B=1)
    joints[..., 1] += 0.4
    observed = torch.ones(1, 20, dtype=torch.bool)
    assert G.trajectory_error(joints, target, observed)["mean_err"].tolist() == [0.0]
    assert torch.allclose(G.keyframe_error(joints, target, observed), torch.tensor([0.4], dtype=D))


def test_observed_frames_beyond_the_length_and_frame_masks():
    joints, target = _pair()
    joints[:, 15:, :, 0] += 1.0                      # only padding frames differ
    frame_mask = torch.ones(2, 1, 1, 20)             # the project's convention: 1 = generated
    frame_mask[..., ::4] = 0.0                       # observed 0, 4, 8, 12, 16
    observed = G.observed_from_frame_mask(frame_mask)
    assert observed.shape == (2, 20) and observed[0].nonzero().flatten().tolist() == [0, 4, 8, 12, 16]
    out = G.trajectory_error(joints, target, observed, lengths=[15, 20])
    assert out["traj_fail_50cm"].tolist() == [0.0, 1.0] and out["n_observed"].tolist() == [4.0, 5.0]
    assert torch.allclose(out["mean_err"], torch.tensor([0.0, 0.2], dtype=D))
    assert torch.allclose(G.keyframe_error(joints, target, (frame_mask < 0.5).float(), lengths=[15, 20]),
                          torch.tensor([0.0, 0.2], dtype=D))


def test_no_observed_frame_and_bad_inputs():
    joints, target = _pair(B=1)
    none = torch.zeros(1, 20, dtype=torch.bool)
    out = G.trajectory_error(joints, target, none)
    assert math.isnan(out["mean_err"].item()) and out["traj_fail_20cm"].item() == 0.0
    assert math.isnan(G.keyframe_error(joints, target, none).item())
    nan = joints.clone()
    nan[0, 3, 0, 0] = float("nan")
    at3 = torch.zeros(1, 20, dtype=torch.bool)
    at3[0, 3] = True
    assert G.trajectory_error(nan, target, at3)["traj_fail_50cm"].item() == 1.0   # NaN fails, as 1 - all(d <= X)
    with pytest.raises(DataError):
        G.trajectory_error(joints, target[:, :10], none)
    with pytest.raises(DataError):
        G.keyframe_error(joints, target, torch.zeros(1, 19, dtype=torch.bool))
    with pytest.raises(DataError):
        G.skating_ratio(joints[0])
