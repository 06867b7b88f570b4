"""The 22-joint "t2m" skeleton of HumanML3D: joint names, kinematic tree, reference bone lengths.

Notation
--------
| symbol          | meaning                                                                       |
|-----------------|-------------------------------------------------------------------------------|
| J = 22          | joints, in SMPL's body order (``JOINT_NAMES``); joint 0 (pelvis) is the root   |
| parent(j)       | ``PARENTS[j]``: the joint that joint j hangs from (-1 for the root)            |
| u_j             | ``T2M_RAW_OFFSETS[j]``: the unit direction of bone parent(j) -> j in the        |
|                 | skeleton's reference frame (x = the body's left, y = up, z = forward)           |
| L_j             | ``REFERENCE_BONE_LENGTHS[j]``: |p_j - p_parent(j)| of HumanML3D's target        |
|                 | skeleton, metres (L_0 = 0)                                                       |
| o_j = L_j u_j   | ``reference_offsets()``: the target skeleton's offsets                          |

Positions are metres with y up; HumanML3D's motions are sampled at ``FPS`` = 20 frames per second.
The kinematic tree is five chains (``T2M_KINEMATIC_CHAIN``: right leg, left leg, spine to head, right
arm, left arm; the arms start at spine3 = joint 9), as in HumanML3D's ``paramUtil.py``
(``t2m_kinematic_chain``, ``t2m_raw_offsets``); CondMDI ships the same file
(``data_loaders/humanml/utils/paramUtil.py``).

Reference bone lengths: HumanML3D retargets every motion onto the skeleton of its example motion
``000021`` (``process_file`` -> ``uniform_skeleton``, target ``Skeleton.get_offsets_joints(example[0])``).
We derived ``REFERENCE_BONE_LENGTHS`` once by reading that file (CondMDI ships it as
``resources/dataset/000021.npy``, (180, 52, 3) joint positions): L_j = |p_j - p_parent(j)| of its
FIRST frame for the 22 body joints, printed at float32 precision (HumanML3D stores the offsets as
float32 tensors). The file itself is not part of this project.

Index sets used by HumanML3D's feature extraction (CondMDI ``scripts/motion_process.py``, module
constants ``fid_l``, ``fid_r``, ``face_joint_indx``, ``l_idx1``/``l_idx2``): ``FEET_LEFT`` / ``FEET_RIGHT``
(ankle, foot) give the foot-contact features; ``FACE_JOINTS`` = (r_hip, l_hip, r_shoulder, l_shoulder)
give the facing direction; ``LEG_JOINTS`` (right knee, right ankle) give the retargeting scale. The
skating measure of CondMDI/GMD uses the two foot joints ``SKATING_FEET`` = (10, 11).
"""

from __future__ import annotations

import torch

FPS = 20
N_JOINTS = 22

JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist",
)

# HumanML3D paramUtil.py, t2m_kinematic_chain: right leg, left leg, spine-head, right arm, left arm
T2M_KINEMATIC_CHAIN: tuple[tuple[int, ...], ...] = (
    (0, 2, 5, 8, 11),
    (0, 1, 4, 7, 10),
    (0, 3, 6, 9, 12, 15),
    (9, 14, 17, 19, 21),
    (9, 13, 16, 18, 20),
)

# HumanML3D paramUtil.py, t2m_raw_offsets: the unit bone directions u_j (x left, y up, z forward)
T2M_RAW_OFFSETS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),   # 0 pelvis (root)
    (1, 0, 0),   # 1 left_hip
    (-1, 0, 0),  # 2 right_hip
    (0, 1, 0),   # 3 spine1
    (0, -1, 0),  # 4 left_knee
    (0, -1, 0),  # 5 right_knee
    (0, 1, 0),   # 6 spine2
    (0, -1, 0),  # 7 left_ankle
    (0, -1, 0),  # 8 right_ankle
    (0, 1, 0),   # 9 spine3
    (0, 0, 1),   # 10 left_foot
    (0, 0, 1),   # 11 right_foot
    (0, 1, 0),   # 12 neck
    (1, 0, 0),   # 13 left_collar
    (-1, 0, 0),  # 14 right_collar
    (0, 0, 1),   # 15 head
    (0, -1, 0),  # 16 left_shoulder
    (0, -1, 0),  # 17 right_shoulder
    (0, -1, 0),  # 18 left_elbow
    (0, -1, 0),  # 19 right_elbow
    (0, -1, 0),  # 20 left_wrist
    (0, -1, 0),  # 21 right_wrist
)

# |p_j - p_parent(j)| in frame 0 of HumanML3D's example motion 000021 (see the module docstring), metres
REFERENCE_BONE_LENGTHS: tuple[float, ...] = (
    0.0,          # 0 pelvis
    0.10310018,   # 1 left_hip
    0.10986772,   # 2 right_hip
    0.13160272,   # 3 spine1
    0.39358923,   # 4 left_knee
    0.3901261,    # 5 right_knee
    0.14316383,   # 6 spine2
    0.43221495,   # 7 left_ankle
    0.42570755,   # 8 right_ankle
    0.057362135,  # 9 spine3
    0.14338109,   # 10 left_foot
    0.14954089,   # 11 right_foot
    0.2193494,    # 12 neck
    0.13745014,   # 13 left_collar
    0.14336078,   # 14 right_collar
    0.103108704,  # 15 head
    0.13155773,   # 16 left_shoulder
    0.12300328,   # 17 right_shoulder
    0.25692463,   # 18 left_elbow
    0.26313227,   # 19 right_elbow
    0.2660105,    # 20 left_wrist
    0.26971763,   # 21 right_wrist
)

# CondMDI scripts/motion_process.py: fid_l, fid_r (ankle, foot), face_joint_indx, l_idx1 / l_idx2
FEET_LEFT: tuple[int, int] = (7, 10)
FEET_RIGHT: tuple[int, int] = (8, 11)
FACE_JOINTS: tuple[int, int, int, int] = (2, 1, 17, 16)  # r_hip, l_hip, r_shoulder, l_shoulder
LEG_JOINTS: tuple[int, int] = (5, 8)                      # right knee, right ankle: the legs' scale
# CondMDI utils/metrics.py, calculate_skating_ratio: "10 left, 11 right foot"
SKATING_FEET: tuple[int, int] = (10, 11)


def parents() -> list[int]:
    """``PARENTS``: parent(j) for every joint (-1 for the root), read off the kinematic chains."""
    out = [-1] * N_JOINTS
    for chain in T2M_KINEMATIC_CHAIN:
        for parent, child in zip(chain[:-1], chain[1:]):
            out[child] = parent
    return out


PARENTS: tuple[int, ...] = tuple(parents())


def raw_offsets(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(22, 3) unit bone directions u_j."""
    return torch.tensor(T2M_RAW_OFFSETS, dtype=dtype)


def reference_bone_lengths(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(22,) L_j of the target skeleton, metres."""
    return torch.tensor(REFERENCE_BONE_LENGTHS, dtype=dtype)


def reference_offsets(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(22, 3) o_j = L_j u_j: HumanML3D's target-skeleton offsets."""
    return raw_offsets(dtype) * reference_bone_lengths(dtype)[:, None]


def bone_lengths(joints: torch.Tensor) -> torch.Tensor:
    """(..., 22, 3) positions -> (..., 22) |p_j - p_parent(j)| (0 for the root)."""
    idx = torch.tensor([max(p, 0) for p in PARENTS], device=joints.device)
    lengths = torch.linalg.vector_norm(joints - joints[..., idx, :], dim=-1)
    return lengths
