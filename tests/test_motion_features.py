"""HumanML3D features: layout, joints -> features -> joints, the two root representations, hand-made motions.

The motions are built here from the reference skeleton: every bone keeps its reference length, the hip and
shoulder bones keep their rest directions (so the body faces its heading exactly), the others swing.
"""

from __future__ import annotations

import math

import pytest
import torch

from alm.errors import DataError
from alm.motion import features as F
from alm.motion.skeleton import (
    FPS,
    JOINT_NAMES,
    PARENTS,
    REFERENCE_BONE_LENGTHS,
    T2M_KINEMATIC_CHAIN,
    bone_lengths,
    raw_offsets,
    reference_bone_lengths,
)

D = torch.float64
FIXED = (1, 2, 13, 14, 16, 17)  # hip and shoulder bones: the facing direction


def _fk(directions: torch.Tensor, root: torch.Tensor) -> torch.Tensor:
    """(T, 22, 3) bone directions, (T, 3) root -> (T, 22, 3) positions with the reference bone lengths."""
    lengths = reference_bone_lengths(D)
    out = [None] * 22
    out[0] = root
    for chain in T2M_KINEMATIC_CHAIN:
        for a, b in zip(chain[:-1], chain[1:]):
            d = directions[:, b]
            out[b] = out[a] + lengths[b] * d / d.norm(dim=-1, keepdim=True)
    return torch.stack(out, dim=1)


def _yaw(points: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
    """Rotate (T, ..., 3) about +y by psi (T,): +z -> (sin psi, 0, cos psi)."""
    c, s = torch.cos(psi), torch.sin(psi)
    while c.dim() < points.dim() - 1:
        c, s = c[..., None], s[..., None]
    x, y, z = points.unbind(-1)
    return torch.stack([x * c + z * s, y, -x * s + z * c], dim=-1)


def _motion(T: int, psi=None, root_xz=None, swing: float = 0.3, bob: float = 0.01, seed: int = 0) -> torch.Tensor:
    """A canonical clip (T, 22, 3): reference bones, frame 0 faces +z with its root at x = z = 0, floor y = 0."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(T, dtype=D)
    amp = torch.randn(22, 3, generator=g, dtype=D) * swing
    amp[list(FIXED)] = 0.0
    phase = torch.rand(22, generator=g, dtype=D) * 2 * math.pi
    dirs = raw_offsets(D)[None] + amp[None] * torch.sin(0.2 * t[:, None, None] + phase[None, :, None])
    body = _fk(dirs, torch.zeros(T, 3, dtype=D))
    psi = torch.zeros(T, dtype=D) if psi is None else psi
    joints = _yaw(body, psi)
    if root_xz is not None:
        joints[..., 0] += root_xz[:, None, 0]
        joints[..., 2] += root_xz[:, None, 1]
    joints[..., 1] += bob * torch.sin(0.3 * t)[:, None]     # the body bobs a little
    joints[..., 1] -= joints[..., 1].min()
    joints[..., 0] -= joints[0, 0, 0]
    joints[..., 2] -= joints[0, 0, 2]
    return joints


def _walk(T=60, seed=0):
    t = torch.arange(T, dtype=D)
    psi = 0.8 * torch.sin(math.pi * t / (2 * (T - 1)))           # a gentle left turn, 0 -> 0.8 rad
    step = 0.04 * torch.stack([torch.sin(psi), torch.cos(psi)], dim=-1)
    root_xz = torch.cumsum(step, dim=0) - step[0]
    return _motion(T, psi, root_xz, seed=seed)


# -- skeleton and layout --------------------------------------------------------------------------------
def test_skeleton_constants():
    assert len(JOINT_NAMES) == 22 and JOINT_NAMES[10] == "left_foot" and JOINT_NAMES[11] == "right_foot"
    assert PARENTS[0] == -1 and PARENTS[10] == 7 and PARENTS[14] == 9 and PARENTS[21] == 19
    assert sorted(j for chain in T2M_KINEMATIC_CHAIN for j in chain[1:]) == list(range(1, 22))
    assert torch.equal(raw_offsets().norm(dim=-1)[1:], torch.ones(21, dtype=D))
    rest = _fk(raw_offsets(D)[None], torch.zeros(1, 3, dtype=D))[0]
    assert torch.allclose(bone_lengths(rest), torch.tensor(REFERENCE_BONE_LENGTHS, dtype=D), atol=1e-12)
    assert FPS == 20


def test_layout_slices_tile_263_features():
    parts = [F.ROOT_ROT, F.ROOT_XZ, F.ROOT_Y, F.RIC, F.ROT6D, F.LOCAL_VEL, F.FOOT_CONTACT]
    assert [s.start for s in parts[1:]] == [s.stop for s in parts[:-1]]
    assert parts[0].start == 0 and parts[-1].stop == F.N_FEATURES == 263
    assert (F.RIC.start, F.ROT6D.start, F.LOCAL_VEL.start, F.FOOT_CONTACT.start) == (4, 67, 193, 259)


def test_frames_major_round_trip_and_errors():
    batch = torch.randn(2, 263, 1, 7)
    x = F.to_frames_major(batch)
    assert x.shape == (2, 7, 263) and torch.equal(x[1, 3], batch[1, :, 0, 3])
    assert torch.equal(F.from_frames_major(x), batch)
    with pytest.raises(DataError):
        F.to_frames_major(torch.randn(2, 262, 1, 7))
    with pytest.raises(DataError):
        F.recover_joints(torch.randn(5, 263), representation="relative")
    with pytest.raises(DataError):
        F.extract_features(torch.randn(1, 22, 3))


# -- joints -> features -> joints ------------------------------------------------------------------------
def test_round_trip_reproduces_a_canonical_clip():
    joints = _walk()
    assert torch.allclose(F.canonicalise_joints(joints), joints, atol=1e-10)
    feats = F.features_from_joints(joints)
    assert feats.shape == (59, 263) and feats.dtype == D
    assert torch.allclose(F.recover_joints(feats, "rel"), joints[:-1], atol=1e-9)
    assert torch.allclose(F.recover_joints(F.rel_to_abs(feats), "abs"), joints[:-1], atol=1e-9)
    # the 6-D rotations: forward kinematics on the reference skeleton gives the same joints
    assert torch.allclose(F.recover_joints_from_rotations(feats, "rel"), joints[:-1], atol=1e-9)
    assert torch.allclose(F.recover_joints_from_rotations(F.rel_to_abs(feats), "abs"), joints[:-1], atol=1e-9)
    # the velocities, by their definitions: local ones in this frame's root frame, the root's in the next's
    q, _, _ = F.recover_root_rot_pos(feats, "rel")
    local = F._qrot(q[:, None, :], joints[1:] - joints[:-1])
    assert torch.allclose(feats[:, F.LOCAL_VEL].reshape(-1, 22, 3), local, atol=1e-12)
    root = F._qrot(q[1:], joints[1:-1, 0] - joints[:-2, 0])
    assert torch.allclose(feats[:-1, F.ROOT_XZ], root[:, [0, 2]], atol=1e-12)
    f32 = F.features_from_joints(joints.float())
    assert f32.dtype == torch.float32 and torch.allclose(F.recover_joints(f32, "rel"), joints[:-1].float(), atol=1e-5)


def test_canonicalisation_removes_placement_heading_and_scale():
    joints = _walk(seed=1)
    moved = _yaw(joints, torch.full((joints.shape[0],), 1.1, dtype=D)) + joints.new_tensor([3.0, 0.4, -2.0])
    backwards = _yaw(joints, torch.full((joints.shape[0],), math.pi, dtype=D))  # facing -z: 180 degrees
    bigger = joints * 1.15
    reference = F.features_from_joints(joints)
    for other in (moved, backwards, bigger):
        assert torch.allclose(F.canonicalise_joints(other), joints, atol=1e-9)
        assert torch.allclose(F.features_from_joints(other), reference, atol=1e-9)
        assert torch.allclose(F.recover_joints(F.features_from_joints(other), "rel"), joints[:-1], atol=1e-9)
    # without retargeting the larger body stays larger
    assert not torch.allclose(F.canonicalise_joints(bigger, retarget=False), joints, atol=1e-3)


def test_walking_straight_at_one_metre_per_second():
    T = 40
    root_xz = torch.stack([torch.zeros(T, dtype=D), 0.05 * torch.arange(T, dtype=D)], dim=-1)  # 1 m/s at 20 fps
    joints = _motion(T, root_xz=root_xz, swing=0.0, bob=0.0)
    feats = F.features_from_joints(joints)
    assert torch.allclose(feats[:, F.ROOT_ROT], torch.zeros(T - 1, 1, dtype=D), atol=1e-12)
    assert torch.allclose(feats[:, F.ROOT_XZ], feats.new_tensor([0.0, 0.05]).expand(T - 1, 2), atol=1e-12)
    vel = feats[:, F.LOCAL_VEL].reshape(T - 1, 22, 3)
    assert torch.allclose(vel, feats.new_tensor([0.0, 0.0, 0.05]).expand(T - 1, 22, 3), atol=1e-12)
    assert torch.equal(feats[:, F.FOOT_CONTACT], torch.zeros(T - 1, 4, dtype=D))  # 0.05^2 > 0.002
    # the same walk at 0.8 m/s moves the feet 0.04^2 = 0.0016 < 0.002 per frame: contacts
    slow = F.features_from_joints(_motion(T, root_xz=root_xz * 0.8, swing=0.0, bob=0.0))
    assert torch.equal(slow[:, F.FOOT_CONTACT], torch.ones(T - 1, 4, dtype=D))


def test_turning_at_a_constant_rate_gives_a_constant_rotation_velocity():
    T, omega = 200, 0.01                               # rad per frame, 2 rad in all (no wrap)
    psi = omega * torch.arange(T, dtype=D)
    feats = F.features_from_joints(_motion(T, psi=psi, swing=0.0))
    r = feats[:, 0]
    # away from the ends (81 frames: the facing filter's reach) the heading is exact: r = -omega / 2
    inner = r[80:T - 82]
    assert torch.allclose(inner, torch.full_like(inner, -omega / 2), atol=1e-12)
    assert bool((r < 0).all())
    assert torch.allclose(feats[:, F.ROOT_XZ], torch.zeros(T - 1, 2, dtype=D), atol=1e-12)


def test_heading_wrap_reproduces_humanml3d_and_can_be_fixed():
    T, omega = 120, 0.05                               # 6 rad: the heading passes -z
    joints = _motion(T, psi=omega * torch.arange(T, dtype=D), swing=0.1)
    default = F.features_from_joints(joints)
    fixed = F.features_from_joints(joints, fix_heading_wrap=True)
    assert bool((fixed[:, 0] < 0).all())
    # HumanML3D: r has the wrong sign at the one frame where theta passes -pi/2 (the heading passes -z)
    flipped = torch.nonzero(default[:, 0] != fixed[:, 0]).flatten()
    assert flipped.numel() == 1 and default[flipped, 0] == -fixed[flipped, 0] and default[flipped, 0] > 0
    assert torch.equal(default[:, 1:], fixed[:, 1:])
    assert torch.allclose(F.recover_joints(fixed, "rel"), joints[:-1], atol=1e-9)
    wrong = (F.recover_joints(default, "rel") - joints[:-1]).abs().amax(dim=(-1, -2))
    assert wrong[: int(flipped) + 1].max() < 1e-9 and wrong[int(flipped) + 1:].min() > 0.01


def test_foot_contacts_follow_a_planted_foot():
    T = 12
    rest = _fk(raw_offsets(D)[None], torch.tensor([[0.0, 0.95, 0.0]], dtype=D))[0]
    joints = rest.expand(T, 22, 3).clone()
    t = torch.arange(T, dtype=D)
    joints[:, [8, 11], 2] += 0.06 * t[:, None]           # the right ankle and foot slide, the left stay
    feats = F.extract_features(joints)
    contacts = feats[:, F.FOOT_CONTACT]                   # l ankle, l foot, r ankle, r foot
    assert torch.equal(contacts, torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=D).expand(T - 1, 4))
    joints[:, [8, 11], 2] = rest[[8, 11], 2] + 0.04 * t[:, None]   # 0.04^2 = 0.0016 < 0.002
    assert torch.equal(F.extract_features(joints)[:, F.FOOT_CONTACT], torch.ones(T - 1, 4, dtype=D))
    assert torch.equal(F.extract_features(joints, feet_threshold=0.001)[:, F.FOOT_CONTACT],
                       torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=D).expand(T - 1, 4))


def test_rotations_of_the_rest_pose_and_a_bent_knee():
    T = 3
    dirs = raw_offsets(D)[None].expand(T, 22, 3).clone()
    rest = _fk(dirs, torch.tensor([[0.0, 0.95, 0.0]], dtype=D).expand(T, 3))
    rot = F.extract_features(rest)[:, F.ROT6D].reshape(T - 1, 21, 6)
    assert torch.allclose(rot, rot.new_tensor([1.0, 0, 0, 0, 1, 0]).expand(T - 1, 21, 6), atol=1e-12)
    # the left shin (knee -> ankle, joint 7) points forward instead of down: joint 7's rotation maps
    # u = (0, -1, 0) onto (0, 0, 1) about the axis u x v; its child, the foot, keeps its rest direction
    # relative to the shin (so it points up), and no other joint moves
    dirs[:, 7] = dirs.new_tensor([0.0, 0.0, 1.0])
    dirs[:, 10] = dirs.new_tensor([0.0, 1.0, 0.0])
    bent = F.extract_features(_fk(dirs, torch.tensor([[0.0, 0.95, 0.0]], dtype=D).expand(T, 3)))
    m = F._cont6d_to_matrix(bent[:, F.ROT6D].reshape(T - 1, 21, 6))
    u, v = dirs.new_tensor([0.0, -1.0, 0.0]), dirs.new_tensor([0.0, 0.0, 1.0])
    assert torch.allclose(m[:, 6] @ u, v.expand(T - 1, 3), atol=1e-12)
    assert torch.allclose(m[:, 6] @ torch.linalg.cross(u, v), torch.linalg.cross(u, v).expand(T - 1, 3), atol=1e-12)
    assert torch.allclose(m[:, 9], torch.eye(3, dtype=D).expand(T - 1, 3, 3), atol=1e-12)
    others = [j for j in range(21) if j not in (6, 9)]
    assert torch.allclose(m[:, others], torch.eye(3, dtype=D).expand(T - 1, 19, 3, 3), atol=1e-12)


def test_the_root_faces_humanml3ds_way_on_a_twisted_torso():
    # shoulders turned 40 degrees against the hips: HumanML3D's IK faces y x ((l_hip - r_hip) + (r_sdr - l_sdr))
    T = 3
    dirs = raw_offsets(D)[None].expand(T, 22, 3).clone()
    dirs[:, 13] = _yaw(dirs[:, 13], torch.full((T,), 0.7, dtype=D))
    dirs[:, 14] = _yaw(dirs[:, 14], torch.full((T,), 0.7, dtype=D))
    p = _fk(dirs, torch.tensor([[0.0, 0.95, 0.0]], dtype=D).expand(T, 3))
    feats = F.extract_features(p)
    across = (p[0, 1] - p[0, 2]) + (p[0, 17] - p[0, 16])
    psi = math.atan2(float(across[2]), float(-across[0]))          # forward = (across_z, 0, -across_x)
    assert abs(psi) > 0.1
    assert torch.allclose(feats[0, 0], torch.tensor(-psi / 2, dtype=D), atol=1e-12)  # theta[0] = 0, theta[1]
    assert torch.allclose(feats[1, 0], torch.tensor(0.0, dtype=D), atol=1e-12)
    # process_file's canonicalisation uses the other sign of the hip term: here 0.40 rad, against 1.56
    correct = (p[0, 2] - p[0, 1]) + (p[0, 17] - p[0, 16])
    assert abs(math.atan2(float(correct[2]), float(-correct[0])) - psi) > 1.0


def test_facing_filter_is_scipys_gaussian_filter():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = torch.randn(3, 50, 3, generator=torch.Generator().manual_seed(0), dtype=D)
    want = ndimage.gaussian_filter1d(x.numpy(), 20.0, axis=-2, mode="nearest")
    assert torch.allclose(F._gaussian_smooth(x, 20.0), torch.from_numpy(want), atol=1e-12)


# -- absolute <-> relative -----------------------------------------------------------------------------------
def _random_rel(B=2, T=9, seed=0):
    x = torch.randn(B, T, 263, generator=torch.Generator().manual_seed(seed), dtype=D) * 0.1
    x[..., -1, 0:3] = x[..., -2, 0:3]                  # the last row repeats its root velocity (CondMDI)
    return x


def test_abs_rel_round_trips():
    x = _random_rel()
    a = F.rel_to_abs(x)
    assert torch.equal(a[..., 3:], x[..., 3:]) and torch.equal(a[..., 0, 0:3], torch.zeros(2, 3, dtype=D))
    assert torch.allclose(a[..., 0], torch.cumsum(torch.cat([torch.zeros(2, 1, dtype=D), x[..., :-1, 0]], -1), -1))
    assert torch.allclose(F.abs_to_rel(a), x, atol=1e-12)
    assert torch.allclose(F.rel_to_abs(F.abs_to_rel(a)), a, atol=1e-12)
    assert torch.allclose(F.recover_joints(a, "abs"), F.recover_joints(x, "rel"), atol=1e-12)
    y = x.clone()
    y[..., -1, 0:3] += 1.0                             # a last row of its own is not kept
    back = F.abs_to_rel(F.rel_to_abs(y))
    assert torch.allclose(back[..., :-1, :], y[..., :-1, :], atol=1e-12)
    assert torch.allclose(back[..., -1, 0:3], y[..., -2, 0:3], atol=1e-12)


def test_abs_to_rel_with_lengths_and_a_moved_start():
    x = _random_rel(T=12)
    a = F.rel_to_abs(x)
    padded = a.clone()
    padded[0, 7:] = 0.0
    rel = F.abs_to_rel(padded, lengths=[7, 12])
    assert torch.equal(rel[0, 7:], torch.zeros(5, 263, dtype=D))
    assert torch.allclose(rel[0, :6], x[0, :6], atol=1e-12) and torch.allclose(rel[0, 6, :3], x[0, 5, :3], atol=1e-12)
    assert torch.allclose(rel[1], x[1], atol=1e-12)
    # an absolute start of its own (heading, place): relative recovery gives the same motion, turned
    # about y by the start's heading q(0.3) and moved to x = z = 0
    moved = a.clone()
    moved[..., 0] += 0.3
    moved[..., 1] += 2.0
    j_moved = F.recover_joints(moved, "abs")
    start = j_moved[:, :1, :1, :] * j_moved.new_tensor([1.0, 0.0, 1.0])
    expected = F._qrot(F._yaw_quat(torch.tensor(0.3, dtype=D)), j_moved - start)
    assert torch.allclose(F.recover_joints(F.abs_to_rel(moved), "rel")[:, :-1], expected[:, :-1], atol=1e-12)
    with pytest.raises(DataError):
        F.abs_to_rel(a, lengths=[13, 2])


def test_conversions_through_joints_on_a_straight_walk():
    T = 30
    root_xz = torch.stack([torch.zeros(T, dtype=D), 0.03 * torch.arange(T, dtype=D)], dim=-1)
    feats = F.features_from_joints(_motion(T, root_xz=root_xz, swing=0.0, bob=0.0))      # (29, 263)
    a = F.rel_to_abs(feats)
    via = F.abs_to_rel_via_joints(a)
    assert torch.allclose(via, feats, atol=1e-9)
    assert torch.allclose(F.rel_to_abs_via_joints(feats), a, atol=1e-9)
    padded = torch.cat([a, torch.zeros(5, 263, dtype=D)])[None]
    assert torch.allclose(F.abs_to_rel_via_joints(padded, lengths=[29])[0, :29], feats, atol=1e-9)
    assert torch.equal(F.abs_to_rel_via_joints(padded, lengths=[29])[0, 29:], torch.zeros(5, 263, dtype=D))
