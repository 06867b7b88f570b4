"""Geometric measures of generated motions, as CondMDI's (= GMD's) HumanML3D evaluation computes them.

Notation
--------
| symbol        | meaning                                                                             |
|---------------|-------------------------------------------------------------------------------------|
| p_j[t]        | joint positions (B, T, 22, 3), metres, y up (``alm.motion.features.recover_joints``) |
| g_j[t]        | the target (ground-truth) joints, same shape                                         |
| n             | a motion's valid length (``lengths``); frames t >= n are padding and never count      |
| K             | the observed frames t < n (``observed``: True / 1 = observed)                         |
| f = 20        | frames per second                                                                     |

Skating (CondMDI ``data_loaders/humanml/utils/metrics.py``, ``calculate_skating_ratio``; identical in GMD):
for each foot j in (10, 11) (left foot, right foot) and each frame pair (t, t+1), t = 0..n-2,

    s_j[t]   = f * |(p_j[t+1] - p_j[t])_{x,z}|                     horizontal speed, m/s
    a_j[t]   = mean of s_j[t-2 .. t+2], zeros outside 0..n-2       (scipy uniform_filter1d, size 5,
                                                                    mode 'constant', origin 0)
    c_j[t]   = p_j[t]_y < 0.05 and p_j[t+1]_y < 0.05                on the ground in both frames (metres)
    skate[t] = OR_j (c_j[t] and s_j[t] > 0.5 and a_j[t] > 0.5)
    ratio    = sum_t skate[t] / (n - 1)

CondMDI calls it on the whole padded array (n = T = 196 for every motion, padding frames included);
``lengths=None`` reproduces that, ``lengths`` restricts it to the valid frames.

Trajectory and keyframe errors (CondMDI ``sample/gmd/condition.py``, ``compute_kps_error_arbitrary``
with traj_only=True / False; ``utils/metrics.py``, ``calculate_trajectory_error`` (strict=True) and
``calculate_keyframe_error``):

    d[t]           = |(p_0[t] - g_0[t])_{x,z}|                      root distance on the ground plane, m
    traj_fail_X    = 1 if any t in K has d[t] > X else 0, X = 0.2, 0.5 m   (1 - all(d <= X): NaN fails)
    kps_fail_X     = |{t in K : d[t] > X}| / |K|
    mean_err       = mean_{t in K} d[t]
    keyframe_error = mean_{t in K} mean_j |p_j[t] - g_j[t]|          all 22 joints, 3-D, m

Per motion; the evaluation averages them over motions (CondMDI averages per batch, then over batches;
its ``kps_fail`` pools the keyframes of a batch: ``sum of counts / sum of |K|`` -- ``n_observed`` and
``n_over_*`` are returned to pool the same way). A motion with no observed frame has mean_err = NaN
and no failure. Differences from CondMDI: CondMDI pads the keyframe lists of a batch to the longest with
index -1 and then counts those padding entries (the error at the array's last frame) in ``traj_fail``
and ``kps_fail``; here only the observed frames count.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from alm.errors import DataError
from alm.motion.skeleton import FPS, N_JOINTS, SKATING_FEET

Tensor = torch.Tensor

SKATE_HEIGHT = 0.05     # m     (calculate_skating_ratio: thresh_height)
SKATE_SPEED = 0.5       # m/s   (thresh_vel)
SKATE_WINDOW = 5        # frames (avg_window)
FAIL_THRESHOLDS = (0.2, 0.5)  # m (calculate_trajectory_error: 20 cm, 50 cm)


def _check_joints(joints: Tensor, name: str = "joints") -> None:
    if joints.dim() != 4 or joints.shape[-2:] != (N_JOINTS, 3):
        raise DataError(f"expected {name} of shape (B, T, {N_JOINTS}, 3), got {tuple(joints.shape)}")


def _lengths(lengths: Optional[Sequence[int]], batch: int, frames: int) -> list[int]:
    if lengths is None:
        return [frames] * batch
    out = [int(n) for n in (lengths.tolist() if isinstance(lengths, Tensor) else lengths)]
    if len(out) != batch:
        raise DataError(f"{len(out)} lengths for a batch of {batch} motions")
    for n in out:
        if not 1 <= n <= frames:
            raise DataError(f"length {n} outside 1..{frames}")
    return out


def observed_from_frame_mask(mask: Tensor) -> Tensor:
    """The project's frame mask (B, 1, 1, L), 1 = generated, 0 = observed -> (B, L) bool, True = observed."""
    if mask.dim() != 4 or mask.shape[1:3] != (1, 1):
        raise DataError(f"expected a frame mask of shape (B, 1, 1, L), got {tuple(mask.shape)}")
    return mask[:, 0, 0, :] < 0.5


def _observed(observed: Tensor, batch: int, frames: int, lengths: list[int]) -> Tensor:
    """(B, T) or (B, 1, 1, T), True / 1 = observed -> (B, T) bool, frames beyond the length cleared."""
    if observed.dim() == 4 and observed.shape[1:3] == (1, 1):
        observed = observed[:, 0, 0, :]
    if observed.shape != (batch, frames):
        raise DataError(f"expected observed frames of shape ({batch}, {frames}) (True = observed), "
                        f"got {tuple(observed.shape)}")
    frame = torch.arange(frames, device=observed.device)
    valid = frame[None, :] < torch.tensor(lengths, device=observed.device)[:, None]
    return observed.bool() & valid


# -- skating -------------------------------------------------------------------------------------------

def _observed_pair(joints: Tensor, target_joints: Tensor, observed_frames_mask: Tensor,
                   lengths: Optional[Sequence[int]]) -> Tensor:
    """Check a motion against its target (same shape, valid joints) and give the (B, T) observed frames."""
    _check_joints(joints)
    _check_joints(target_joints, "target joints")
    if joints.shape != target_joints.shape:
        raise DataError(f"joints {tuple(joints.shape)} and target joints {tuple(target_joints.shape)} differ")
    B, T = joints.shape[:2]
    return _observed(observed_frames_mask, B, T, _lengths(lengths, B, T)).to(joints.device)

def skating_frames(joints: Tensor) -> Tensor:
    """(B, T, 22, 3) -> (B, T-1) bool skate[t] of the module's table, over all T frames."""
    _check_joints(joints)
    feet = joints[:, :, list(SKATING_FEET), :].to(torch.float64)              # (B, T, 2, 3)
    step = feet[:, 1:, :, :] - feet[:, :-1, :, :]
    speed = torch.linalg.vector_norm(step[..., [0, 2]], dim=-1) * FPS         # (B, T-1, 2)
    # uniform_filter1d(size=5, mode='constant', origin=0): centred mean with zeros outside
    half = SKATE_WINDOW // 2
    padded = F.pad(speed.transpose(1, 2), (half, half))                       # (B, 2, T-1+4)
    avg = padded.unfold(-1, SKATE_WINDOW, 1).mean(-1).transpose(1, 2)         # (B, T-1, 2)
    height = feet[..., 1]
    contact = (height[:, :-1] < SKATE_HEIGHT) & (height[:, 1:] < SKATE_HEIGHT)
    skate = contact & (speed > SKATE_SPEED) & (avg > SKATE_SPEED)
    return skate.any(dim=-1)


def skating_ratio(joints: Tensor, lengths: Optional[Sequence[int]] = None) -> Tensor:
    """(B, T, 22, 3) joints, metres -> (B,) float64 skating ratio of each motion (module docstring).
    ``lengths=None``: all T frames count (CondMDI's evaluation); else the first ``lengths[b]`` frames."""
    _check_joints(joints)
    B, T = joints.shape[:2]
    ns = _lengths(lengths, B, T)
    out = torch.empty(B, dtype=torch.float64)
    for b, n in enumerate(ns):
        if n < 2:
            raise DataError(f"the skating ratio needs at least 2 frames, motion {b} has {n}")
        out[b] = skating_frames(joints[b:b + 1, :n]).double().mean()
    return out


# -- trajectory and keyframe errors ------------------------------------------------------------------
def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    count = mask.sum(dim=-1)
    total = torch.where(mask, values, torch.zeros_like(values)).sum(dim=-1)
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, float("nan")))


def trajectory_error(joints: Tensor, target_joints: Tensor, observed_frames_mask: Tensor,
                     lengths: Optional[Sequence[int]] = None) -> dict[str, Tensor]:
    """Root distance on the ground plane at the observed frames, per motion (module docstring).

    ``observed_frames_mask``: (B, T) or (B, 1, 1, T), True / 1 = observed (the complement of the project's
    frame mask: ``observed_from_frame_mask``). Returns (B,) float64 tensors ``traj_fail_20cm``,
    ``traj_fail_50cm``, ``kps_fail_20cm``, ``kps_fail_50cm``, ``mean_err`` (metres), the counts
    ``n_observed``, ``n_over_20cm``, ``n_over_50cm``, and ``distance`` (B, T) (0 where not observed)."""
    obs = _observed_pair(joints, target_joints, observed_frames_mask, lengths)
    diff = (joints[:, :, 0, :] - target_joints[:, :, 0, :]).to(torch.float64)[..., [0, 2]]
    dist = torch.linalg.vector_norm(diff, dim=-1)                              # (B, T)
    out: dict[str, Tensor] = {"n_observed": obs.sum(-1).double()}
    for x in FAIL_THRESHOLDS:
        cm = f"{round(100 * x)}cm"
        within = torch.where(obs, dist <= x, torch.ones_like(obs))            # NaN compares False: fails
        over = obs & ~(dist <= x)
        out[f"traj_fail_{cm}"] = (~within.all(dim=-1)).double()
        out[f"n_over_{cm}"] = over.sum(-1).double()
        out[f"kps_fail_{cm}"] = torch.where(out["n_observed"] > 0, out[f"n_over_{cm}"] / out["n_observed"].clamp_min(1),
                                            torch.full_like(out["n_observed"], float("nan")))
    out["mean_err"] = _masked_mean(dist, obs)
    out["distance"] = torch.where(obs, dist, torch.zeros_like(dist))
    return out


def keyframe_error(joints: Tensor, target_joints: Tensor, observed_frames_mask: Tensor,
                   lengths: Optional[Sequence[int]] = None) -> Tensor:
    """(B,) float64 mean over the observed frames of the mean over the 22 joints of |p_j[t] - g_j[t]|
    (3-D, metres); NaN for a motion without observed frames. Mask as ``trajectory_error``."""
    obs = _observed_pair(joints, target_joints, observed_frames_mask, lengths)
    per_frame = torch.linalg.vector_norm((joints - target_joints).to(torch.float64), dim=-1).mean(-1)
    return _masked_mean(per_frame, obs)
