"""HumanML3D's 263 motion features: the layout, joints <-> features, and the two root representations.

Notation
--------
T frames, j = 0..21 joints (``alm.motion.skeleton``), p_j[t] in R^3 world positions (metres, y up),
p_0 the root (pelvis). The root's heading is a rotation about +y stored as a HALF-ANGLE theta:

    q(theta) = (cos theta, 0, sin theta, 0)        (w, x, y, z) quaternion = rotation by 2 theta about +y
    R(theta) = the rotation of q(theta); it maps the world into the root's frame (the body faces +z)

so a body facing (sin psi, 0, cos psi) has theta = -psi / 2. Per frame t (CondMDI
``scripts/motion_process.py``, ``extract_features`` / ``recover_root_rot_pos``):

| features | name             | relative root ("rel", HumanML3D's files)                                     |
|----------|------------------|------------------------------------------------------------------------------|
| 0        | ``ROOT_ROT``     | r[t] = theta[t+1] - theta[t], rad per frame                                  |
| 1:3      | ``ROOT_XZ``      | v[t] = (R(theta[t+1]) (p_0[t+1] - p_0[t]))_{x,z}, metres per frame, in the   |
|          |                  | NEXT frame's root frame                                                      |
| 3        | ``ROOT_Y``       | (p_0[t])_y, metres                                                           |
| 4:67     | ``RIC``          | ric_j[t] = R(theta[t]) (p_j[t] - (p_0[t]_x, 0, p_0[t]_z)), j = 1..21 (21 x 3) |
| 67:193   | ``ROT6D``        | joints 1..21 (21 x 6): the first two columns of the rotation matrix of the   |
|          |                  | joint's local quaternion from HumanML3D's inverse kinematics                  |
| 193:259  | ``LOCAL_VEL``    | R(theta[t]) (p_j[t+1] - p_j[t]), j = 0..21 (22 x 3), in THIS frame's root frame |
| 259:263  | ``FOOT_CONTACT`` | 1 if |p_f[t+1] - p_f[t]|^2 < 0.002 m^2 else 0, f = 7, 10, 8, 11 (left ankle,  |
|          |                  | left foot, right ankle, right foot)                                          |

Absolute root ("abs", CondMDI's ``use_abs3d`` data, ``new_joint_vecs_abs_3d``): features 0..2 are
theta[t] (rad; 0 at frame 0 for data converted from "rel") and the world root (p_0[t])_{x,z} (metres);
features 3..262 are the relative ones unchanged, root height included (CondMDI ``data/dataset.py``,
``HumanML3D.motion_to_abs_data``: ``sample_abs[..., 0] = rot_ang``, ``sample_abs[..., [1, 2]] =
r_pos[..., [0, 2]]``; its rotation augmentation, ``Text2MotionDatasetV2.__getitem__``, adds an angle a to
feature 0 and maps features 1, 2 by R(a)^T: the whole motion turned about y).

T joint frames give T-1 feature rows (the last frame only closes the velocities). Recovering the
relative representation starts at theta[0] = 0 and the root at x = z = 0: theta[t] = sum_{s<t} r[s],
p_0[t]_{x,z} = sum_{s<t} R(theta[s+1])^T v[s]; the absolute representation reads them directly
(CondMDI ``recover_root_rot_pos(..., abs_3d=True)``); then p_j[t] = R(theta[t])^T ric_j[t] + root xz.

Joints -> features (HumanML3D ``process_file``, ``features_from_joints`` here):

1. ``canonicalise_joints``: retarget onto the reference skeleton (scale the root path by the ratio of the
   right leg's length, then rebuild every bone with its reference length along its own direction; HumanML3D
   does this as IK then FK, ``uniform_skeleton``, which is the same map); put the lowest joint of the whole
   clip on y = 0; move frame 0's root to x = z = 0; rotate about y so that frame 0 faces +z
   (facing = y x ((r_hip - l_hip) + (r_shoulder - l_shoulder))).
2. ``extract_features``: HumanML3D's inverse kinematics with a smoothed facing direction gives theta and
   the 6-D rotations; then the table above.

HumanML3D quirks that ``extract_features`` reproduces on purpose (the data were made with them):

- the facing direction of the inverse kinematics (``Skeleton.inverse_kinematics_np``) unpacks
  ``face_joint_indx = [2, 1, 17, 16]`` as (l_hip, r_hip, ...), so it uses (l_hip - r_hip) + (r_shoulder -
  l_shoulder): the hip term has the opposite sign of step 1's. It still points roughly forward because
  the shoulders are wider than the hips, but it exaggerates a twist of the torso (shoulders turned 40
  degrees against the hips of the reference skeleton: about 90 degrees), and a pose with shoulder span ==
  hip span has no facing (NaN);
- that direction is smoothed with a Gaussian of sigma = 20 frames (scipy ``gaussian_filter1d``, truncate
  4, mode ``nearest``), and frame 0's root rotation is the identity whatever the pose;
- every arm chain starts from the ROOT rotation (not spine3's): joints 13 and 14's local rotations are
  relative to the root;
- r[t] = arcsin of the y component of q[t+1] q[t]^-1 (q[t] the w >= 0 quaternion of each frame): at a
  frame where the heading passes -z (theta jumps from -pi/2 to +pi/2 or back) that product has w < 0 and
  r[t] gets the wrong sign, so a recovered clip is turned by 4 |r[t]| (a few degrees) from that frame on,
  and its root path bends accordingly. ``fix_heading_wrap=True`` takes the w >= 0 product instead (exact
  recovery for any turning; NOT what HumanML3D's files contain).

Differences from HumanML3D's code: arithmetic is float64 (HumanML3D computes the IK quaternions in
float32), and where HumanML3D's quaternion between two exactly opposite directions is 0/0 = NaN, we take
the 180-degree rotation about an axis perpendicular to them. ``abs_to_rel`` / ``rel_to_abs`` convert
features 0..2 algebraically; CondMDI's own evaluation instead recovers joints and re-extracts every
feature (``abs3d_to_rel`` / ``rel_to_abs3d``): ``abs_to_rel_via_joints`` / ``rel_to_abs_via_joints``.

Layout helpers: the model's tensors are features-major (B, 263, 1, L); the functions here take
frames-major (..., T, 263) (``to_frames_major`` / ``from_frames_major``).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from alm.errors import DataError
from alm.motion.skeleton import (
    FACE_JOINTS,
    FEET_LEFT,
    FEET_RIGHT,
    LEG_JOINTS,
    N_JOINTS,
    T2M_KINEMATIC_CHAIN,
    bone_lengths,
    raw_offsets,
    reference_bone_lengths,
    reference_offsets,
)

Tensor = torch.Tensor

N_FEATURES = 263
ROOT_ROT = slice(0, 1)
ROOT_XZ = slice(1, 3)
ROOT_Y = slice(3, 4)
RIC = slice(4, 4 + 21 * 3)                      # 4:67
ROT6D = slice(RIC.stop, RIC.stop + 21 * 6)       # 67:193
LOCAL_VEL = slice(ROT6D.stop, ROT6D.stop + 22 * 3)  # 193:259
FOOT_CONTACT = slice(LOCAL_VEL.stop, LOCAL_VEL.stop + 4)  # 259:263
SLICES = {"root_rot": ROOT_ROT, "root_xz": ROOT_XZ, "root_y": ROOT_Y, "ric": RIC, "rot6d": ROT6D,
          "local_vel": LOCAL_VEL, "foot_contact": FOOT_CONTACT}
REPRESENTATIONS = ("abs", "rel")
FEET_THRESHOLD = 0.002     # m^2 per frame (HumanML3D process_file(positions, 0.002))
FACING_SIGMA = 20.0        # frames (Skeleton.inverse_kinematics_np, smooth_forward=True)
_Y = (0.0, 1.0, 0.0)
_Z = (0.0, 0.0, 1.0)


# -- layout -------------------------------------------------------------------------------------------
def to_frames_major(batch: Tensor) -> Tensor:
    """(B, 263, 1, L) features-major (CondMDI's model layout) -> (B, L, 263) (a view)."""
    if batch.dim() != 4 or batch.shape[1] != N_FEATURES or batch.shape[2] != 1:
        raise DataError(f"expected motions of shape (B, {N_FEATURES}, 1, L), got {tuple(batch.shape)}")
    return batch[:, :, 0, :].transpose(1, 2)


def from_frames_major(x: Tensor) -> Tensor:
    """(B, L, 263) -> (B, 263, 1, L) (a view)."""
    _check_features(x)
    if x.dim() != 3:
        raise DataError(f"expected frames-major motions of shape (B, L, {N_FEATURES}), got {tuple(x.shape)}")
    return x.transpose(1, 2).unsqueeze(2)


def _check_features(x: Tensor) -> None:
    if x.dim() < 2 or x.shape[-1] != N_FEATURES:
        raise DataError(f"expected features of shape (..., T, {N_FEATURES}), got {tuple(x.shape)}")


def _check_representation(representation: str) -> None:
    if representation not in REPRESENTATIONS:
        raise DataError(f"unknown motion representation {representation!r}; known: {', '.join(REPRESENTATIONS)}")


def _check_joints(joints: Tensor, min_frames: int = 1) -> None:
    if joints.dim() < 3 or joints.shape[-2:] != (N_JOINTS, 3) or joints.shape[-3] < min_frames:
        raise DataError(f"expected joints of shape (..., T, {N_JOINTS}, 3) with T >= {min_frames}, "
                        f"got {tuple(joints.shape)}")


# -- quaternions (w, x, y, z), Hamilton product; CondMDI common/quaternion.py conventions ----------------
def _qmul(q: Tensor, r: Tensor) -> Tensor:
    """q r (q applied after r)."""
    w1, x1, y1, z1 = q.unbind(-1)
    w2, x2, y2, z2 = r.unbind(-1)
    return torch.stack((w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
                        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
                        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2), dim=-1)


def _qinv(q: Tensor) -> Tensor:
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def _qrot(q: Tensor, v: Tensor) -> Tensor:
    """Rotate v by the unit quaternion q: v + 2 (w (u x v) + u x (u x v)), u = q's vector part."""
    shape = torch.broadcast_shapes(q.shape[:-1], v.shape[:-1])
    q, v = q.expand(shape + (4,)), v.expand(shape + (3,))
    u, w = q[..., 1:], q[..., :1]
    uv = torch.linalg.cross(u, v, dim=-1)
    return v + 2 * (w * uv + torch.linalg.cross(u, uv, dim=-1))


def _qbetween(v0: Tensor, v1: Tensor) -> Tensor:
    """The shortest-arc unit quaternion rotating direction v0 onto v1 (CondMDI quaternion.py, qbetween):
    normalise(|v0||v1| + v0.v1, v0 x v1). Exactly opposite directions (0/0 there): 180 degrees about an
    axis perpendicular to v0."""
    v0, v1 = torch.broadcast_tensors(v0, v1)
    scale = torch.sqrt((v0 ** 2).sum(-1, keepdim=True) * (v1 ** 2).sum(-1, keepdim=True))
    q = torch.cat([scale + (v0 * v1).sum(-1, keepdim=True), torch.linalg.cross(v0, v1, dim=-1)], dim=-1)
    norm = torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    opposite = norm <= 1e-12 * scale
    if bool(opposite.any()):
        axis = torch.linalg.cross(v0, v0.new_tensor([1.0, 0.0, 0.0]).expand_as(v0), dim=-1)
        along_x = torch.linalg.vector_norm(axis, dim=-1, keepdim=True) <= 1e-6 * scale.sqrt()
        axis = torch.where(along_x, torch.linalg.cross(v0, v0.new_tensor([0.0, 1.0, 0.0]).expand_as(v0), dim=-1),
                           axis)
        axis = axis / torch.linalg.vector_norm(axis, dim=-1, keepdim=True).clamp_min(1e-300)
        q = torch.where(opposite, torch.cat([torch.zeros_like(norm), axis], dim=-1), q)
        norm = torch.where(opposite, torch.ones_like(norm), norm)
    return q / norm


def _yaw_quat(theta: Tensor) -> Tensor:
    """(...,) half-angles -> (..., 4) q(theta) = (cos theta, 0, sin theta, 0)."""
    zero = torch.zeros_like(theta)
    return torch.stack([torch.cos(theta), zero, torch.sin(theta), zero], dim=-1)


def _quat_to_matrix(q: Tensor) -> Tensor:
    """(..., 4) -> (..., 3, 3) (CondMDI quaternion.py, quaternion_to_matrix: scaled by 2 / |q|^2)."""
    r, i, j, k = q.unbind(-1)
    two_s = 2.0 / (q * q).sum(-1)
    m = torch.stack((1 - two_s * (j * j + k * k), two_s * (i * j - k * r), two_s * (i * k + j * r),
                     two_s * (i * j + k * r), 1 - two_s * (i * i + k * k), two_s * (j * k - i * r),
                     two_s * (i * k - j * r), two_s * (j * k + i * r), 1 - two_s * (i * i + j * j)), dim=-1)
    return m.reshape(q.shape[:-1] + (3, 3))


def _matrix_to_cont6d(m: Tensor) -> Tensor:
    """(..., 3, 3) -> (..., 6): the first column, then the second (quaternion_to_cont6d)."""
    return torch.cat([m[..., :, 0], m[..., :, 1]], dim=-1)


def _cont6d_to_matrix(c: Tensor) -> Tensor:
    """(..., 6) -> (..., 3, 3) by Gram-Schmidt (CondMDI quaternion.py, cont6d_to_matrix)."""
    x = c[..., 0:3] / torch.linalg.vector_norm(c[..., 0:3], dim=-1, keepdim=True)
    z = torch.linalg.cross(x, c[..., 3:6], dim=-1)
    z = z / torch.linalg.vector_norm(z, dim=-1, keepdim=True)
    y = torch.linalg.cross(z, x, dim=-1)
    return torch.stack([x, y, z], dim=-1)


# -- features -> root and joints ---------------------------------------------------------------------
def recover_root_rot_pos(x: Tensor, representation: str = "abs") -> tuple[Tensor, Tensor, Tensor]:
    """(..., T, 263) -> (q (..., T, 4), root position (..., T, 3), theta (..., T)) (CondMDI
    ``recover_root_rot_pos``; see the module's table). Relative: theta[0] = 0, root x = z = 0 at frame 0."""
    _check_features(x)
    _check_representation(representation)
    if representation == "abs":
        theta = x[..., 0]
        q = _yaw_quat(theta)
        xz = x[..., 1:3]
    else:
        theta = torch.cumsum(torch.cat([torch.zeros_like(x[..., :1, 0]), x[..., :-1, 0]], dim=-1), dim=-1)
        q = _yaw_quat(theta)
        step = torch.zeros(x.shape[:-1] + (3,), dtype=x.dtype, device=x.device)
        step[..., 1:, 0] = x[..., :-1, 1]
        step[..., 1:, 2] = x[..., :-1, 2]
        step = _qrot(_qinv(q), step)          # v[t-1] back into the world with R(theta[t])^T
        xz = torch.cumsum(step, dim=-2)[..., [0, 2]]
    pos = torch.stack([xz[..., 0], x[..., 3], xz[..., 1]], dim=-1)
    return q, pos, theta


def recover_joints(x: Tensor, representation: str = "abs") -> Tensor:
    """(..., T, 263) features -> (..., T, 22, 3) joint positions, metres, y up (CondMDI ``recover_from_ric``):
    p_j = R(theta)^T ric_j + (root x, 0, root z), p_0 = the root."""
    q, root, _ = recover_root_rot_pos(x, representation)
    ric = x[..., RIC].reshape(x.shape[:-1] + (N_JOINTS - 1, 3))
    joints = _qrot(_qinv(q)[..., None, :], ric)
    joints = joints + torch.stack([root[..., 0], torch.zeros_like(root[..., 0]), root[..., 2]], dim=-1)[..., None, :]
    return torch.cat([root[..., None, :], joints], dim=-2)


def recover_joints_from_rotations(x: Tensor, representation: str = "abs",
                                  offsets: Optional[Tensor] = None) -> Tensor:
    """(..., T, 263) -> (..., T, 22, 3) by forward kinematics of the 6-D rotations on the reference
    skeleton (CondMDI ``recover_from_rot`` / ``Skeleton.forward_kinematics_cont6d``): every chain starts
    from the matrix of q(theta) (as HumanML3D's IK starts from it), p_child = p_parent + M o_child with M
    the product along the chain of that matrix and the local matrices of the 6-D features. ``offsets``
    (22, 3) default to ``reference_offsets()``."""
    q, root, _ = recover_root_rot_pos(x, representation)
    if offsets is None:
        offsets = reference_offsets(x.dtype)
    offsets = offsets.to(device=x.device, dtype=x.dtype)
    local = _cont6d_to_matrix(x[..., ROT6D].reshape(x.shape[:-1] + (N_JOINTS - 1, 6)))
    root_m = _quat_to_matrix(q)
    out: list[Optional[Tensor]] = [None] * N_JOINTS
    out[0] = root
    for chain in T2M_KINEMATIC_CHAIN:
        m = root_m
        for parent, child in zip(chain[:-1], chain[1:]):
            m = m @ local[..., child - 1, :, :]
            out[child] = (m @ offsets[child][:, None])[..., 0] + out[parent]
    return torch.stack(out, dim=-2)


# -- absolute <-> relative root ---------------------------------------------------------------------------
def rel_to_abs(x: Tensor, lengths: Optional[Sequence[int]] = None) -> Tensor:
    """Relative -> absolute root: features 0..2 become theta[t] and the world root x, z recovered from the
    velocities (theta[0] = 0, root at x = z = 0; CondMDI ``motion_to_abs_data``). With ``lengths`` (one per
    leading batch row of a (B, T, 263) input) frames at or beyond a length are set to zero."""
    _check_features(x)
    _, root, theta = recover_root_rot_pos(x, "rel")
    out = x.clone()
    out[..., 0] = theta
    out[..., 1] = root[..., 0]
    out[..., 2] = root[..., 2]
    return _zero_padding(out, lengths)


def abs_to_rel(x: Tensor, lengths: Optional[Sequence[int]] = None) -> Tensor:
    """Absolute -> relative root: r[t] = theta[t+1] - theta[t], v[t] = (R(theta[t+1]) (p_0[t+1] - p_0[t]))_{x,z}.
    The last frame (frame ``length - 1`` with ``lengths``) has no successor: it repeats the previous frame's
    r and v, as CondMDI duplicates the last row after re-extracting (``motion_to_rel_data``); a one-frame
    motion gets 0. With ``lengths`` frames at or beyond a length are set to zero. The absolute heading and
    position of frame 0 are not kept: recovering the result starts at theta = 0 and x = z = 0 (the same
    motion, rotated about y and moved)."""
    _check_features(x)
    out = x.clone()
    if x.shape[-2] >= 2:
        theta = x[..., 0]
        q_next = _yaw_quat(theta[..., 1:])
        step = torch.zeros(x.shape[:-2] + (x.shape[-2] - 1, 3), dtype=x.dtype, device=x.device)
        step[..., 0] = x[..., 1:, 1] - x[..., :-1, 1]
        step[..., 2] = x[..., 1:, 2] - x[..., :-1, 2]
        v = _qrot(q_next, step)
        out[..., :-1, 0] = theta[..., 1:] - theta[..., :-1]
        out[..., :-1, 1] = v[..., 0]
        out[..., :-1, 2] = v[..., 2]
    last = _last_frames(x, lengths)
    for index, t in last:
        out[index + (t, slice(0, 3))] = out[index + (t - 1, slice(0, 3))] if t >= 1 else 0.0
    return _zero_padding(out, lengths)


def _last_frames(x: Tensor, lengths: Optional[Sequence[int]]) -> list[tuple[tuple, int]]:
    """(leading index, the last valid frame) of every sequence in x (..., T, 263)."""
    T = x.shape[-2]
    if lengths is None:
        leading = x.shape[:-2]
        return [(idx, T - 1) for idx in _indices(leading)]
    if x.dim() != 3 or len(lengths) != x.shape[0]:
        raise DataError(f"lengths need features of shape (B, T, {N_FEATURES}) and one length per row; "
                        f"got {tuple(x.shape)} and {len(lengths)} lengths")
    out = []
    for b, n in enumerate(lengths):
        n = int(n)
        if not 1 <= n <= T:
            raise DataError(f"length {n} outside 1..{T}")
        out.append(((b,), n - 1))
    return out


def _indices(shape: Sequence[int]) -> list[tuple]:
    out: list[tuple] = [()]
    for size in shape:
        out = [idx + (i,) for idx in out for i in range(size)]
    return out


def _zero_padding(x: Tensor, lengths: Optional[Sequence[int]]) -> Tensor:
    if lengths is None:
        return x
    for (b,), last in _last_frames(x, lengths):
        x[b, last + 1:] = 0.0
    return x


# -- joints -> features ------------------------------------------------------------------------------------
def canonicalise_joints(joints: Tensor, retarget: bool = True) -> Tensor:
    """(..., T, 22, 3) -> the same clip as HumanML3D's ``process_file`` places it before extracting features:
    retargeted onto the reference skeleton (``retarget``), lowest joint on y = 0, frame 0's root at x = z = 0,
    frame 0 facing +z (steps 1 of the module docstring). Float64."""
    _check_joints(joints)
    p = joints.to(torch.float64)
    if retarget:
        p = _retarget(p)
    p = p.clone()
    floor = p[..., 1].amin(dim=(-1, -2), keepdim=True)
    p[..., 1] = p[..., 1] - floor
    first = p[..., 0, 0, :]
    p = p - (first * first.new_tensor([1.0, 0.0, 1.0]))[..., None, None, :]
    r_hip, l_hip, sdr_r, sdr_l = FACE_JOINTS
    f0 = p[..., 0, :, :]
    across = (f0[..., r_hip, :] - f0[..., l_hip, :]) + (f0[..., sdr_r, :] - f0[..., sdr_l, :])
    forward = _facing(across)
    q = _qbetween(forward, forward.new_tensor(_Z))
    return _qrot(q[..., None, None, :], p)


def _facing(across: Tensor) -> Tensor:
    """Unit forward direction y x across/|across| (normalised again), as process_file computes it."""
    across = across / torch.linalg.vector_norm(across, dim=-1, keepdim=True)
    forward = torch.linalg.cross(across.new_tensor(_Y).expand_as(across), across, dim=-1)
    return forward / torch.linalg.vector_norm(forward, dim=-1, keepdim=True)


def _retarget(p: Tensor) -> Tensor:
    """HumanML3D ``uniform_skeleton``: root path scaled by L_ref(legs) / L(legs) of frame 0 (legs = bones of
    joints 5 and 8), every bone rebuilt with its reference length along its own direction. (HumanML3D does
    IK then FK; the FK's accumulated rotation of a bone is the IK's rotation of u_j onto that bone, so each
    bone keeps its direction and gets the reference length: the same map.)"""
    src = bone_lengths(p[..., 0, :, :])
    ref = reference_bone_lengths(p.dtype).to(p.device)
    scale = (ref[LEG_JOINTS[0]] + ref[LEG_JOINTS[1]]) / (src[..., LEG_JOINTS[0]] + src[..., LEG_JOINTS[1]])
    out: list[Optional[Tensor]] = [None] * N_JOINTS
    out[0] = p[..., 0, :] * scale[..., None, None]
    for chain in T2M_KINEMATIC_CHAIN:
        for parent, child in zip(chain[:-1], chain[1:]):
            bone = p[..., child, :] - p[..., parent, :]
            out[child] = out[parent] + ref[child] * bone / torch.linalg.vector_norm(bone, dim=-1, keepdim=True)
    return torch.stack(out, dim=-2)


def _gaussian_smooth(x: Tensor, sigma: float) -> Tensor:
    """scipy ``gaussian_filter1d(x, sigma, axis=-2, mode='nearest')`` (truncate 4): along the frames of
    (..., T, C), edges repeated."""
    radius = int(4.0 * sigma + 0.5)
    k = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    weights = torch.exp(-0.5 * (k / sigma) ** 2)
    weights = weights / weights.sum()
    T = x.shape[-2]
    idx = torch.clamp(torch.arange(-radius, T + radius, device=x.device), 0, T - 1)
    padded = x[..., idx, :]
    out = torch.zeros_like(x)
    for i in range(2 * radius + 1):
        out = out + weights[i] * padded[..., i:i + T, :]
    return out


def _inverse_kinematics(p: Tensor) -> Tensor:
    """(..., T, 22, 3) -> (..., T, 22, 4) local quaternions as HumanML3D's ``Skeleton.inverse_kinematics_np``
    with smooth_forward=True (the quirks are listed in the module docstring)."""
    l_hip, r_hip, sdr_r, sdr_l = FACE_JOINTS  # HumanML3D's own unpacking of [2, 1, 17, 16]
    across = (p[..., r_hip, :] - p[..., l_hip, :]) + (p[..., sdr_r, :] - p[..., sdr_l, :])
    across = across / torch.linalg.vector_norm(across, dim=-1, keepdim=True)
    forward = torch.linalg.cross(across.new_tensor(_Y).expand_as(across), across, dim=-1)
    forward = _gaussian_smooth(forward, FACING_SIGMA)
    forward = forward / torch.linalg.vector_norm(forward, dim=-1, keepdim=True)
    root = _qbetween(forward, forward.new_tensor(_Z))
    root = root.clone()
    root[..., 0, :] = root.new_tensor([1.0, 0.0, 0.0, 0.0])  # root_quat[0] = identity
    quats: list[Optional[Tensor]] = [None] * N_JOINTS
    quats[0] = root
    u = raw_offsets(p.dtype).to(p.device)
    for chain in T2M_KINEMATIC_CHAIN:
        rot = root
        for parent, child in zip(chain[:-1], chain[1:]):
            v = p[..., child, :] - p[..., parent, :]
            v = v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)
            to_bone = _qbetween(u[child].expand_as(v), v)
            local = _qmul(_qinv(rot), to_bone)
            quats[child] = local
            rot = _qmul(rot, local)
    return torch.stack(quats, dim=-2)


def extract_features(joints: Tensor, feet_threshold: float = FEET_THRESHOLD, *,
                     fix_heading_wrap: bool = False) -> Tensor:
    """(..., T, 22, 3) joint positions -> (..., T-1, 263) relative features, WITHOUT canonicalising (CondMDI
    ``extract_features``; HumanML3D ``process_file`` after its canonicalisation). Float64 inside; returns
    the input's floating dtype (float32 for other inputs)."""
    _check_joints(joints, min_frames=2)
    dtype = joints.dtype if joints.is_floating_point() else torch.float32
    p = joints.to(torch.float64)
    T = p.shape[-3]
    # foot contacts: squared displacement of (ankle, foot) below the threshold
    step = p[..., 1:, :, :] - p[..., :-1, :, :]
    moved = (step ** 2).sum(-1)
    contact_l = (moved[..., list(FEET_LEFT)] < feet_threshold).to(p.dtype)
    contact_r = (moved[..., list(FEET_RIGHT)] < feet_threshold).to(p.dtype)

    quats = _inverse_kinematics(p)
    cont6d = _matrix_to_cont6d(_quat_to_matrix(quats))          # (..., T, 22, 6)
    r_rot = quats[..., :, 0, :]                                  # (..., T, 4)
    root_vel = _qrot(r_rot[..., 1:, :], p[..., 1:, 0, :] - p[..., :-1, 0, :])
    r_vel = _qmul(r_rot[..., 1:, :], _qinv(r_rot[..., :-1, :]))
    if fix_heading_wrap:
        r_vel = torch.where(r_vel[..., :1] < 0, -r_vel, r_vel)
    rot_vel = torch.arcsin(torch.clamp(r_vel[..., 2], -1.0, 1.0))

    local = p.clone()
    local[..., 0] = local[..., 0] - p[..., 0:1, 0]
    local[..., 2] = local[..., 2] - p[..., 0:1, 2]
    ric = _qrot(r_rot[..., :, None, :], local)                  # (..., T, 22, 3)
    local_vel = _qrot(r_rot[..., :-1, None, :], step)           # (..., T-1, 22, 3)

    lead = p.shape[:-3]
    data = torch.cat([
        rot_vel[..., None],
        root_vel[..., [0, 2]],
        ric[..., :-1, 0, 1:2],
        ric[..., :-1, 1:, :].reshape(lead + (T - 1, 63)),
        cont6d[..., :-1, 1:, :].reshape(lead + (T - 1, 126)),
        local_vel.reshape(lead + (T - 1, 66)),
        contact_l, contact_r,
    ], dim=-1)
    return data.to(dtype)


def features_from_joints(joints: Tensor, feet_threshold: float = FEET_THRESHOLD, *, retarget: bool = True,
                         fix_heading_wrap: bool = False) -> Tensor:
    """(..., T, 22, 3) joint positions (metres, y up) -> (..., T-1, 263) relative features as HumanML3D's
    ``process_file``: ``canonicalise_joints`` then ``extract_features``."""
    dtype = joints.dtype if joints.is_floating_point() else torch.float32
    feats = extract_features(canonicalise_joints(joints, retarget=retarget), feet_threshold,
                             fix_heading_wrap=fix_heading_wrap)
    return feats.to(dtype)


# -- CondMDI's conversions through joints ----------------------------------------------------------------
def _reextract(x: Tensor, representation: str, lengths: Optional[Sequence[int]]) -> Tensor:
    """Joints of x, re-extracted relative features with the last row duplicated (CondMDI
    ``motion_to_rel_data``), per sequence; frames beyond a length are zero."""
    _check_features(x)
    joints = recover_joints(x, representation)
    if lengths is None:
        feats = extract_features(joints)
        return torch.cat([feats, feats[..., -1:, :]], dim=-2)
    out = torch.zeros_like(x)
    for (b,), last in _last_frames(x, lengths):
        n = last + 1
        if n < 2:
            raise DataError("re-extracting features needs motions of at least 2 frames")
        feats = extract_features(joints[b, :n])
        out[b, :n - 1] = feats
        out[b, n - 1] = feats[-1]
    return out


def abs_to_rel_via_joints(x: Tensor, lengths: Optional[Sequence[int]] = None) -> Tensor:
    """CondMDI ``abs3d_to_rel`` (what its evaluation feeds the T2M evaluator): recover the joints of the
    absolute features, re-extract every relative feature from them (``extract_features``, no
    canonicalisation) and repeat the last row. CondMDI runs it on all frames, padding included (its padding
    is the model's output); with ``lengths`` each motion is re-extracted on its valid frames only (zero
    padding has no facing direction) and the padding stays zero."""
    return _reextract(x, "abs", lengths)


def rel_to_abs_via_joints(x: Tensor, lengths: Optional[Sequence[int]] = None) -> Tensor:
    """CondMDI ``rel_to_abs3d`` (how its evaluation makes the absolute ground truth): re-extract from the
    relative features' joints as ``abs_to_rel_via_joints``, then ``rel_to_abs``."""
    return rel_to_abs(_reextract(x, "rel", lengths), lengths)
