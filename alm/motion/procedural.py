"""Procedural human motions of the t2m skeleton: joint rotations -> joint positions by forward kinematics.

A clip is made in four passes, all float64 numpy on one clip:

1. **Controls** (``Controls``): per-frame channels (speeds, turn rate, gait frequency and duty, foot lift,
   pelvis crouch, torso lean, arm swing, wave weights, ...) of one action family (``FAMILIES``), or of two
   families blended over ``blend`` frames (a transition). Integrating the turn rate gives the heading psi,
   integrating the body-frame velocity gives the support point S (the ground point the feet are placed
   around); integrating the gait frequency gives the gait phase phi.
2. **Footsteps** (``plan_steps``): each foot is planted (world-fixed) between swings. A swing starts when
   the foot's phase passes the duty factor (and the gait is on, or the foot is off its standing spot),
   and lands when the phase completes its cycle, at the standing spot of the support point predicted for
   the middle of the next stance. Mid-swing the foot partly follows the body (it keeps up with an
   accelerating body). Jumps lift both feet together. Some landings SLIDE (probability ``slide``: the toe
   touches down on time 5-10 cm short of its spot and slides there over ``SLIDE_FRAMES`` frames): the
   data's controlled skating.
3. **Legs** (``two_bone_frames``): analytic two-bone inverse kinematics of hip -> knee -> ankle for the
   ankle position that puts the toe joint on its footstep; the pelvis is lowered where a leg could not
   reach (``reachable_height``). The solution is written as joint rotations.
4. **Forward kinematics** (``forward_kinematics``): every joint's local rotation R_j (pelvis: its world
   rotation), the global rotations G_j = G_parent(j) R_j, positions p_j = p_parent(j) + G_parent(j) o_j.

Notation
--------
| symbol      | meaning                                                                               |
|-------------|---------------------------------------------------------------------------------------|
| x, y, z     | world axes, metres; y up, the ground is y = 0                                          |
| body frame  | x = the body's left, y = up, z = forward (the t2m skeleton's reference frame)         |
| psi         | heading: the body faces (sin psi, 0, cos psi); psi grows when turning LEFT             |
| R_a(t)      | rotation by t radians about axis a (right-handed)                                      |
| d_j         | ``REST_DIRECTIONS[j]``: unit direction of bone parent(j) -> j in the rest pose          |
| L_j         | ``REFERENCE_BONE_LENGTHS[j]`` (alm.motion.skeleton), HumanML3D's target skeleton        |
| o_j         | ``rest_offsets()`` = L_j d_j                                                            |
| beta        | foot pitch from the rest foot: > 0 heel up / toes down, < 0 toes up                    |
| phi         | gait phase (cycles); the left foot's phase is phi, the right foot's phi + 1/2          |
| duty        | fraction of a gait cycle a foot is on the ground (walk ~0.62, run ~0.35)              |

Rest pose: bone lengths are HumanML3D's (so retargeting is the identity and every feature of
``alm.motion.features`` is exact), bone DIRECTIONS are a natural standing pose (hips below and beside the
pelvis, spine slightly S-shaped, collars up and out, shoulders out, arms hanging, feet pitched down by
``FOOT_PITCH``), rounded from the first frame of HumanML3D's example motion 000021 (CondMDI
``resources/dataset/000021.npy``, body frame, left/right symmetrised). Shoulders (+-0.20 m) are wider than
hips (+-0.06 m), which HumanML3D's facing direction needs (alm.motion.features, quirks).

Everything is a pure function of a ``numpy.random.Generator`` and the configuration: ``make_clip(rng,
frames)`` returns the same ``Clip`` for the same generator state. The action families, their parameters
and captions, and the measured skating: docs/synthetic_motion.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from alm.motion.skeleton import FPS, N_JOINTS, PARENTS, REFERENCE_BONE_LENGTHS

DT = 1.0 / FPS
GRAVITY = 9.81            # m/s^2, the flight of a jump
WARMUP = 30               # frames simulated before a clip's first frame (the gait settles)
FOOT_PITCH = 0.40         # rad: the rest foot points this far below horizontal (toe joint below the ankle)
STAND_HEIGHT = 0.93       # m: the pelvis of the standing pose (knees slightly bent)
TOE_FORWARD = 0.12        # m: a standing toe joint is this far ahead of the support point
REACH = 0.99              # a leg is never stretched beyond this fraction of thigh + shin
MAX_HEADING = math.radians(150)  # |psi - psi at frame 0| never exceeds it (HumanML3D's heading-wrap quirk)
SLIDE_FRAMES = 2          # frames a sliding landing slides after its touch-down

FAMILIES = ("walk", "jog", "run", "sidestep", "jump", "turn", "wave", "sit", "stand")
LOCOMOTION = ("walk", "jog", "run", "sidestep")

# body-frame rest directions (x left, y up, z forward), joint order of alm.motion.skeleton
_REST = {
    1: (0.55, -0.83, -0.10), 2: (-0.55, -0.83, -0.10),        # hips: below and beside the pelvis
    3: (0.0, 0.95, -0.30), 6: (0.0, 0.98, 0.18), 9: (0.0, 1.0, 0.05),  # spine: slight S
    4: (0.0, -1.0, 0.0), 5: (0.0, -1.0, 0.0),                  # thighs
    7: (0.0, -1.0, 0.0), 8: (0.0, -1.0, 0.0),                  # shins
    10: (0.0, -math.sin(FOOT_PITCH), math.cos(FOOT_PITCH)),     # feet, pitched down
    11: (0.0, -math.sin(FOOT_PITCH), math.cos(FOOT_PITCH)),
    12: (0.0, 1.0, -0.08), 15: (0.0, 0.7, 0.7),                # neck, head
    13: (0.55, 0.83, -0.10), 14: (-0.55, 0.83, -0.10),         # collars: up and out
    16: (0.98, -0.10, -0.12), 17: (-0.98, -0.10, -0.12),       # shoulders: out
    18: (0.10, -0.99, -0.05), 19: (-0.10, -0.99, -0.05),       # upper arms: hanging
    20: (0.15, -0.95, 0.25), 21: (-0.15, -0.95, 0.25),         # forearms: slightly forward
}
REST_DIRECTIONS: np.ndarray = np.zeros((N_JOINTS, 3))
for _j, _d in _REST.items():
    REST_DIRECTIONS[_j] = np.asarray(_d) / np.linalg.norm(_d)


def rest_offsets() -> np.ndarray:
    """(22, 3) o_j = L_j d_j: the rest pose's bones with HumanML3D's reference lengths."""
    return REST_DIRECTIONS * np.asarray(REFERENCE_BONE_LENGTHS)[:, None]


# -- rotations -------------------------------------------------------------------------------------------
def rot(axis: int, angle) -> np.ndarray:
    """(..., 3, 3) rotation by ``angle`` (array, radians) about world axis 0 = x, 1 = y, 2 = z."""
    a = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    out = np.zeros(a.shape + (3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    out[..., axis, axis] = 1.0
    out[..., i, i] = c
    out[..., j, j] = c
    out[..., i, j] = -s
    out[..., j, i] = s
    return out


def _normalise(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def forward_kinematics(root: np.ndarray, local: np.ndarray, offsets: Optional[np.ndarray] = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Root positions (T, 3) and local rotations (T, 22, 3, 3) -> joint positions (T, 22, 3) and global
    rotations (T, 22, 3, 3): G_0 = R_0, G_j = G_parent R_j, p_j = p_parent + G_parent o_j. ``offsets``
    default to ``rest_offsets()``. (Joint indices are topologically ordered: parent(j) < j.)"""
    o = rest_offsets() if offsets is None else offsets
    glob = np.empty_like(local)
    pos = np.empty(root.shape[:-1] + (N_JOINTS, 3))
    glob[..., 0, :, :] = local[..., 0, :, :]
    pos[..., 0, :] = root
    for j in range(1, N_JOINTS):
        p = PARENTS[j]
        pos[..., j, :] = pos[..., p, :] + glob[..., p, :, :] @ o[j]
        glob[..., j, :, :] = glob[..., p, :, :] @ local[..., j, :, :]
    return pos, glob


def two_bone_frames(hip: np.ndarray, ankle: np.ndarray, pole: np.ndarray, thigh: float, shin: float
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Analytic IK of a leg (all (T, 3)): the world frames (T, 3, 3) of the hip and knee joints whose FK
    (rest bones along -y) puts the knee in the plane of hip, ankle and ``pole`` (the knee points along
    the pole), and the ankle actually reached (the target, or the closest point at full reach).
    Law of cosines: a = (l1^2 - l2^2 + d^2) / 2d along hip -> ankle, h = sqrt(l1^2 - a^2) along the pole."""
    v = ankle - hip
    d = np.linalg.norm(v, axis=-1, keepdims=True)
    u = v / d
    d = np.clip(d, abs(thigh - shin) + 1e-6, (thigh + shin) * (1 - 1e-12))
    n = _normalise(pole - (pole * u).sum(-1, keepdims=True) * u)
    a = (thigh ** 2 - shin ** 2 + d ** 2) / (2 * d)
    h = np.sqrt(np.maximum(thigh ** 2 - a ** 2, 0.0))
    knee = hip + a * u + h * n
    reached = hip + d * u

    def frame(bone: np.ndarray) -> np.ndarray:
        y = -bone
        z = _normalise(n - (n * y).sum(-1, keepdims=True) * y)
        return np.stack([np.cross(y, z), y, z], axis=-1)  # columns x, y, z

    return frame(_normalise(knee - hip)), frame(_normalise(reached - knee)), reached


def reachable_height(hip_offset: np.ndarray, hip_xz: np.ndarray, ankle: np.ndarray, leg: float) -> np.ndarray:
    """(T,) the highest pelvis y at which a hip (pelvis + ``hip_offset``, horizontal position ``hip_xz``)
    is within ``REACH * leg`` of its ankle target."""
    horiz2 = ((hip_xz - ankle[:, [0, 2]]) ** 2).sum(-1)
    return ankle[:, 1] - hip_offset[:, 1] + np.sqrt(np.maximum((REACH * leg) ** 2 - horiz2, 0.0))


def _erode_smooth(x: np.ndarray, radius: int = 2) -> np.ndarray:
    """Minimum over +-radius frames, then a binomial smoothing of the same radius: the result never
    exceeds x (each smoothed value averages minima over windows that contain its own frame)."""
    n = len(x)
    pad = np.concatenate([np.full(radius, x[0]), x, np.full(radius, x[-1])])
    low = np.min(np.stack([pad[i:i + n] for i in range(2 * radius + 1)]), axis=0)
    kernel = np.array([math.comb(2 * radius, k) for k in range(2 * radius + 1)], dtype=np.float64)
    kernel /= kernel.sum()
    pad = np.concatenate([np.full(radius, low[0]), low, np.full(radius, low[-1])])
    return sum(kernel[i] * pad[i:i + n] for i in range(2 * radius + 1))


# -- small curve helpers -------------------------------------------------------------------------------------
def smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def keys(t: np.ndarray, points: Sequence[tuple[float, float]]) -> np.ndarray:
    """Values at frames ``t`` of a curve through (frame, value) ``points`` (sorted), smoothstep between
    consecutive points, constant before the first and after the last."""
    out = np.full(t.shape, float(points[0][1]))
    for (t0, v0), (t1, v1) in zip(points[:-1], points[1:]):
        if t1 <= t0:
            out = np.where(t >= t1, v1, out)
            continue
        inside = (t >= t0)
        out = np.where(inside, v0 + (v1 - v0) * smoothstep((t - t0) / (t1 - t0)), out)
    return out


def _cycloid(u):
    """0 -> 1 with zero speed at both ends."""
    return u - np.sin(2 * np.pi * u) / (2 * np.pi)


# -- controls --------------------------------------------------------------------------------------------------
#: the blended channels and their standing values
CHANNELS: dict[str, float] = {
    "speed": 0.0,     # m/s forward (body frame; < 0 backward)
    "side": 0.0,      # m/s to the body's left (< 0 right)
    "turn": 0.0,      # rad/s, > 0 turning left
    "freq": 1.0,      # gait cycles per second (two steps per cycle)
    "duty": 0.62,     # stance fraction of a cycle
    "lift": 0.06,     # m toe clearance of a swing
    "width": 0.10,    # m: a toe's distance from the support line
    "gait": 0.0,      # 1 = stepping, 0 = standing (feet step only when off their spot)
    "bob": 0.0,       # m, signed: > 0 pelvis highest at mid-stance (walk), < 0 lowest (run)
    "sway": 0.012,    # m pelvis side sway toward the stance foot
    "crouch": 0.0,    # m added to the pelvis height (<= 0 crouching / sitting)
    "back": 0.0,      # m the pelvis moves backward from the support point (sitting)
    "lean": 0.03,     # rad forward lean of the torso
    "swing": 0.06,    # rad arm swing amplitude (shoulder flexion), opposite to the legs
    "elbow": 0.15,    # rad elbow flexion
    "arms_fwd": 0.0,  # rad both shoulders' flexion (arms forward / up)
    "heel": 0.0,      # rad foot pitch (heel up) of planted or flying feet (jumps)
    "heelrise": 0.3,  # rad heel rise at the end of a stance before a step
    "kick": 0.0,      # 0 walk .. 1 run: a swing's foot moves more with the body and lifts earlier (heel kick)
    "wave_l": 0.0,    # 0..1 left arm raised and waving
    "wave_r": 0.0,
    "wave_amp": 0.35,  # rad elbow oscillation of a wave
    "idle": 1.0,      # weight of the standing micro-motion (sway, breathing)
}


@dataclass
class Controls:
    """Channels (``CHANNELS``) over the simulated frames, plus what is not blended: the jumps' flight
    windows ``flights`` [(takeoff frame, landing frame, rise peak m)], the frames where jumps hold the feet
    (``hold``), the wave phase (rad, per frame) and the per-frame flight rise (m)."""

    n: int
    ch: dict[str, np.ndarray] = field(default_factory=dict)
    flights: list[tuple[float, float, float]] = field(default_factory=list)
    hold: Optional[np.ndarray] = None
    wave_phase: Optional[np.ndarray] = None
    rise: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        for k, v in CHANNELS.items():
            self.ch.setdefault(k, np.full(self.n, v))
        if self.hold is None:
            self.hold = np.zeros(self.n, dtype=bool)
        if self.wave_phase is None:
            self.wave_phase = np.zeros(self.n)
        if self.rise is None:
            self.rise = np.zeros(self.n)


def blend(a: Controls, b: Controls, start: int, frames: int) -> Controls:
    """Channels of ``a`` before ``start``, of ``b`` after ``start + frames``, smoothstep between (a
    transition); flights, holds, wave phases and rises are ``a``'s before ``start`` and ``b``'s after."""
    t = np.arange(a.n)
    w = smoothstep((t - start) / max(frames, 1))
    ch = {k: (1 - w) * a.ch[k] + w * b.ch[k] for k in CHANNELS}
    late = t >= start
    return Controls(a.n, ch, flights=[f for f in a.flights if f[1] < start] + [f for f in b.flights if f[0] >= start],
                    hold=np.where(late, b.hold, a.hold), wave_phase=np.where(late, b.wave_phase, a.wave_phase),
                    rise=np.where(late, b.rise, a.rise))


# -- action families -----------------------------------------------------------------------------------------
# Each family: sample_<family>(rng, role) -> params (JSON-able), need_<family>(params) -> frames the action
# needs from its start, and controls_<family>(params, n, start, rng) -> Controls over the n simulated frames
# with the action's own time tau = t - start (values before start are those at tau = 0).
def _curve(rng: np.random.Generator, p_curve: float, radius: tuple[float, float]) -> dict:
    if rng.random() >= p_curve:
        return {"curve": "straight"}
    return {"curve": "left" if rng.random() < 0.5 else "right", "radius": float(rng.uniform(*radius))}


def _turn_rate(speed: float, params: dict) -> float:
    if params.get("curve", "straight") == "straight":
        return 0.0
    return (1.0 if params["curve"] == "left" else -1.0) * abs(speed) / params["radius"]


def _locomotion(n: int, **values: float) -> Controls:
    c = Controls(n)
    for k, v in values.items():
        c.ch[k] = np.full(n, float(v))
    return c


def sample_walk(rng: np.random.Generator, role: str) -> dict:
    if rng.random() < 0.15:
        return {"direction": "backward", "speed": float(rng.uniform(0.5, 0.9)), "curve": "straight"}
    return {"direction": "forward", "speed": float(rng.uniform(0.7, 1.8)), **_curve(rng, 0.4, (2.5, 7.0))}


def controls_walk(p: dict, n: int, start: int, rng: np.random.Generator) -> Controls:
    v = p["speed"] * (-1.0 if p["direction"] == "backward" else 1.0)
    freq = 0.75 + 0.3 * abs(v) if v > 0 else 0.85
    return _locomotion(n, speed=v, turn=_turn_rate(v, p), freq=freq, duty=0.62, lift=0.07 + 0.02 * abs(v),
                       width=0.09, gait=1.0, bob=0.012 + 0.008 * abs(v), sway=0.015, lean=0.03 + 0.02 * v,
                       swing=0.18 + 0.15 * abs(v), elbow=0.2 + 0.1 * abs(v), heelrise=0.25 + 0.2 * abs(v), idle=0.0)


def sample_jog(rng: np.random.Generator, role: str) -> dict:
    return {"speed": float(rng.uniform(1.9, 2.7)), **_curve(rng, 0.35, (4.0, 9.0))}


def controls_jog(p: dict, n: int, start: int, rng: np.random.Generator) -> Controls:
    v = p["speed"]
    return _locomotion(n, speed=v, turn=_turn_rate(v, p), freq=1.2 + 0.08 * v, duty=0.42, lift=0.13, width=0.08,
                       gait=1.0, bob=-0.025, sway=0.01, lean=0.1, swing=0.5, elbow=1.3, heelrise=0.6, kick=0.6,
                       idle=0.0)


def sample_run(rng: np.random.Generator, role: str) -> dict:
    return {"speed": float(rng.uniform(2.9, 3.8)), **_curve(rng, 0.3, (6.0, 12.0))}


def controls_run(p: dict, n: int, start: int, rng: np.random.Generator) -> Controls:
    v = p["speed"]
    return _locomotion(n, speed=v, turn=_turn_rate(v, p), freq=1.3 + 0.06 * v, duty=0.34, lift=0.24, width=0.07,
                       gait=1.0, bob=-0.035, sway=0.008, lean=0.16, swing=0.75, elbow=1.5, heelrise=0.8, kick=1.0,
                       idle=0.0)


def sample_sidestep(rng: np.random.Generator, role: str) -> dict:
    return {"side": "left" if rng.random() < 0.5 else "right", "speed": float(rng.uniform(0.3, 0.55))}


def controls_sidestep(p: dict, n: int, start: int, rng: np.random.Generator) -> Controls:
    v = p["speed"] * (1.0 if p["side"] == "left" else -1.0)
    # the trailing toe lands at least 2 * width - |v| / (2 freq) = 0.12 m from the leading one
    freq = max(1.0, abs(v) / 0.4)
    return _locomotion(n, side=v, freq=freq, duty=0.65, lift=0.08, width=0.16, gait=1.0, bob=0.01, sway=0.005,
                       lean=0.04, swing=0.05, elbow=0.25, heelrise=0.2, idle=0.0)


def sample_stand(rng: np.random.Generator, role: str) -> dict:
    return {"sway": float(rng.uniform(0.008, 0.02)), "sway_freq": float(rng.uniform(0.25, 0.5))}


def controls_stand(p: dict, n: int, start: int, rng: np.random.Generator) -> Controls:
    c = Controls(n)
    c.ch["sway"] = np.full(n, p["sway"])
    c.ch["freq"] = np.full(n, p["sway_freq"] * 2.0)  # the idle sway follows the (unused) gait phase
    return c


def sample_turn(rng: np.random.Generator, role: str) -> dict:
    angle = float(rng.uniform(60.0, 150.0))
    return {"side": "left" if rng.random() < 0.5 else "right", "angle": angle,
            "duration": float(rng.uniform(0.7, 1.0) * (0.6 + angle / 150.0)), "delay": int(rng.integers(2, 10))}


def need_turn(p: dict) -> int:
    return p["delay"] + int(round(p["duration"] * FPS)) + 8


def controls_turn(p: dict, n: int, start: int, rng: np.random.Generator) -> Controls:
    t = np.arange(n) - start - p["delay"]
    d = p["duration"] * FPS
    sign = 1.0 if p["side"] == "left" else -1.0
    bump = np.where((t >= 0) & (t <= d), np.sin(np.pi * np.clip(t / d, 0, 1)), 0.0)
    c = Controls(n)
    c.ch["turn"] = sign * math.radians(p["angle"]) * np.pi / (2 * d) * bump * FPS  # integrates to the angle
    c.ch["gait"] = keys(t, [(-4, 0.0), (-2, 1.0), (d + 2, 1.0), (d + 4, 0.0)])
    c.ch["freq"] = np.full(n, 1.1)
    c.ch["lift"] = np.full(n, 0.09)
    c.ch["heelrise"] = np.full(n, 0.15)
    c.ch["swing"] = np.full(n, 0.08)
    c.ch["idle"] = 1.0 - c.ch["gait"]
    return c


def sample_wave(rng: np.random.Generator, role: str) -> dict:
    r = rng.random()
    hand = "right" if r < 0.45 else ("left" if r < 0.8 else "both")
    return {"hand": hand, "freq": float(rng.uniform(1.5, 2.5)), "amplitude": float(rng.uniform(0.25, 0.45)),
            "delay": int(rng.integers(0, 8)), "raise": int(rng.integers(8, 13))}


def need_wave(p: dict) -> int:
    return p["delay"] + p["raise"] + 16


def controls_wave(p: dict, n: int, start: int, rng: np.random.Generator) -> Controls:
    t = np.arange(n) - start - p["delay"]
    c = Controls(n)
    up = keys(t, [(0, 0.0), (p["raise"], 1.0)])
    if p["hand"] in ("left", "both"):
        c.ch["wave_l"] = up
    if p["hand"] in ("right", "both"):
        c.ch["wave_r"] = up
    c.ch["wave_amp"] = np.full(n, p["amplitude"])
    c.wave_phase = 2 * np.pi * p["freq"] * np.maximum(t - p["raise"] * 0.5, 0) / FPS
    return c


def sample_jump(rng: np.random.Generator, role: str) -> dict:
    forward = rng.random() < 0.5
    count = 2 if (role == "single" and rng.random() < 0.35) else 1
    return {"kind": "forward" if forward else "in_place", "count": count,
            "height": float(rng.uniform(0.08, 0.3)),
            "distance": float(rng.uniform(0.3, 0.8)) if forward else 0.0,
            "crouch": float(rng.uniform(0.1, 0.2)), "delay": int(rng.integers(2, 8))}


def _flight_frames(height: float) -> float:
    return 2.0 * math.sqrt(2.0 * height / GRAVITY) * FPS


def _jump_schedule(p: dict) -> list[tuple[float, float, float, float]]:
    """(crouch start, takeoff, landing, end of recovery) of each jump, in the action's frames."""
    out = []
    t = float(p["delay"])
    for k in range(p["count"]):
        crouch = t
        takeoff = crouch + (9.0 if k == 0 else 6.0) + 4.0
        landing = takeoff + _flight_frames(p["height"])
        out.append((crouch, takeoff, landing, landing + 15.0))
        t = landing  # the next jump's crouch starts at the landing
    return out


def need_jump(p: dict) -> int:
    return int(math.ceil(_jump_schedule(p)[-1][3])) + 2


def controls_jump(p: dict, n: int, start: int, rng: np.random.Generator) -> Controls:
    t = np.arange(n, dtype=np.float64) - start
    c = Controls(n)
    crouch_keys: list[tuple[float, float]] = [(0.0, 0.0)]
    lean_keys: list[tuple[float, float]] = [(0.0, 0.03)]
    arm_keys: list[tuple[float, float]] = [(0.0, 0.0)]
    heel_keys: list[tuple[float, float]] = [(0.0, 0.0)]
    schedule = _jump_schedule(p)
    dc = p["crouch"]
    speed = np.zeros(n)
    for k, (t0, to, ld, end) in enumerate(schedule):
        push = to - 4.0
        if k == 0:
            crouch_keys += [(t0, 0.0)]
            lean_keys += [(t0, 0.03)]
            arm_keys += [(t0, 0.0)]
            heel_keys += [(push, 0.0)]
        crouch_keys += [(push, -dc), (to, 0.05)]
        lean_keys += [(push, 0.4), (to, 0.1)]
        arm_keys += [(push, -0.6), (to, 1.3)]
        heel_keys += [(to, 0.8), (ld, 0.3), (ld + 3.0, 0.0)]
        flight = ld - to
        v0 = GRAVITY * flight / FPS / 2.0
        s = (t - to) / FPS
        c.rise = np.where((t >= to) & (t <= ld), np.maximum(v0 * s - 0.5 * GRAVITY * s * s, 0.0), c.rise)
        if p["kind"] == "forward":
            speed = np.where((t >= to) & (t < ld), p["distance"] / (flight / FPS), speed)
        c.flights.append((to + start, ld + start, p["height"]))
        if k == len(schedule) - 1:  # the last landing absorbs and recovers; earlier ones crouch for the next
            crouch_keys += [(ld + 5.0, -0.6 * dc), (end, 0.0)]
            lean_keys += [(ld + 5.0, 0.25), (end, 0.03)]
            arm_keys += [(ld + 5.0, 0.3), (end, 0.0)]
    c.ch["crouch"] = keys(t, crouch_keys)
    c.ch["lean"] = keys(t, lean_keys)
    c.ch["arms_fwd"] = keys(t, arm_keys)
    c.ch["heel"] = keys(t, heel_keys)
    c.ch["speed"] = speed
    c.ch["elbow"] = np.full(n, 0.3)
    c.ch["idle"] = keys(t, [(schedule[0][0], 1.0), (schedule[0][0] + 4, 0.0), (schedule[-1][3] - 4, 0.0),
                            (schedule[-1][3], 1.0)])
    c.hold = (t >= schedule[0][0] - 10) & (t <= schedule[-1][2] + 2)
    return c


def sample_sit(rng: np.random.Generator, role: str) -> dict:
    variants = {"single": ("down", "up", "down_up"), "first": ("up",), "second": ("down",)}[role]
    variant = variants[int(rng.integers(len(variants)))]
    duration = float(rng.uniform(1.0, 1.3) if variant == "down_up" else rng.uniform(1.1, 1.8))
    return {"variant": variant, "duration": duration, "seat": float(rng.uniform(0.48, 0.58)),
            "back": float(rng.uniform(0.18, 0.3)), "delay": int(rng.integers(2, 8)),
            "pause": int(rng.integers(3, 10))}


def need_sit(p: dict) -> int:
    d = int(round(p["duration"] * FPS))
    return p["delay"] + (2 * d + p["pause"] if p["variant"] == "down_up" else d) + 4


def controls_sit(p: dict, n: int, start: int, rng: np.random.Generator) -> Controls:
    t = np.arange(n, dtype=np.float64) - start - p["delay"]
    d = p["duration"] * FPS
    if p["variant"] == "down":
        s = keys(t, [(0, 0.0), (d, 1.0)])
    elif p["variant"] == "up":
        s = keys(t, [(0, 1.0), (d, 0.0)])
    else:
        s = keys(t, [(0, 0.0), (d, 1.0), (d + p["pause"], 1.0), (2 * d + p["pause"], 0.0)])
    c = Controls(n)
    c.ch["crouch"] = -(STAND_HEIGHT - p["seat"]) * s
    c.ch["back"] = p["back"] * s
    c.ch["lean"] = 0.03 + 0.55 * np.sin(np.pi * s) + 0.12 * s
    c.ch["arms_fwd"] = 0.5 * np.sin(np.pi * s) + 0.2 * s
    c.ch["elbow"] = 0.15 + 0.8 * s
    c.ch["idle"] = 1.0 - np.sin(np.pi * s)
    return c


@dataclass(frozen=True)
class Family:
    name: str
    sample: Callable[[np.random.Generator, str], dict]
    controls: Callable[[dict, int, int, np.random.Generator], Controls]
    need: Callable[[dict], int]


def _need_constant(frames: int) -> Callable[[dict], int]:
    return lambda p: frames


FAMILY: dict[str, Family] = {
    "walk": Family("walk", sample_walk, controls_walk, _need_constant(14)),
    "jog": Family("jog", sample_jog, controls_jog, _need_constant(14)),
    "run": Family("run", sample_run, controls_run, _need_constant(14)),
    "sidestep": Family("sidestep", sample_sidestep, controls_sidestep, _need_constant(16)),
    "jump": Family("jump", sample_jump, controls_jump, need_jump),
    "turn": Family("turn", sample_turn, controls_turn, need_turn),
    "wave": Family("wave", sample_wave, controls_wave, need_wave),
    "sit": Family("sit", sample_sit, controls_sit, need_sit),
    "stand": Family("stand", sample_stand, controls_stand, _need_constant(12)),
}


# -- trajectories ------------------------------------------------------------------------------------------
@dataclass
class Path:
    """Heading psi (n,), support point S (n, 2) as world (x, z), gait phase phi (n,) in cycles."""

    psi: np.ndarray
    support: np.ndarray
    phase: np.ndarray

    def at(self, t: float) -> tuple[np.ndarray, float]:
        """S and psi at a fractional frame (linear; beyond the last frame extrapolated at the last velocity)."""
        n = len(self.psi)
        if t <= n - 1:
            i = int(min(max(math.floor(t), 0), n - 2))
            w = t - i
            return (1 - w) * self.support[i] + w * self.support[i + 1], (1 - w) * self.psi[i] + w * self.psi[i + 1]
        extra = t - (n - 1)
        return (self.support[-1] + extra * (self.support[-1] - self.support[-2]),
                self.psi[-1] + extra * (self.psi[-1] - self.psi[-2]))

    def time_at_phase(self, target: float) -> float:
        """The fractional frame at which phi reaches ``target`` (phi increases strictly)."""
        ph = self.phase
        if target <= ph[-1]:
            return float(np.interp(target, ph, np.arange(len(ph), dtype=np.float64)))
        return (len(ph) - 1) + (target - ph[-1]) / (ph[-1] - ph[-2])


def integrate(c: Controls, phase0: float) -> Path:
    """psi[t] = sum of turn rates, S[t] = sum of the body-frame velocities turned by psi (midpoint
    headings), phi[t] = phase0 + sum of gait frequencies; all over frames of DT seconds."""
    ch = c.ch
    psi = np.concatenate([[0.0], np.cumsum(0.5 * (ch["turn"][1:] + ch["turn"][:-1]) * DT)])
    mid = np.concatenate([[psi[0]], 0.5 * (psi[1:] + psi[:-1])])
    fwd = np.stack([np.sin(mid), np.cos(mid)], -1)
    left = np.stack([np.cos(mid), -np.sin(mid)], -1)
    vel = np.where(np.arange(c.n) == 0, 0.0, 0.5 * (np.roll(ch["speed"], 1) + ch["speed"]))
    side = np.where(np.arange(c.n) == 0, 0.0, 0.5 * (np.roll(ch["side"], 1) + ch["side"]))
    step = (vel[:, None] * fwd + side[:, None] * left) * DT
    support = np.cumsum(step, axis=0)
    freq = np.where(np.arange(c.n) == 0, 0.0, 0.5 * (np.roll(ch["freq"], 1) + ch["freq"]))
    phase = phase0 + np.cumsum(freq * DT)
    return Path(psi, support, phase)


# -- footsteps --------------------------------------------------------------------------------------------
SIDES = (1.0, -1.0)      # left foot at +x (body frame), right at -x
PHASE_OFFSET = (0.0, 0.5)
TOE_OUT = 0.1            # rad: planted feet turn out by this much
GAIT_ON = 0.25           # a foot steps at its phase once the gait channel exceeds this (or when off its spot)


@dataclass
class Swing:
    """A foot in the air from fractional frame ``t0`` to ``t1``: toe from ``p0`` to ``p1`` (world x, z),
    yaw ``y0`` -> ``y1``; ``kind`` "step" or "jump"; a step rises ``lift`` m, starts with heel pitch
    ``beta0`` and, if ``slide`` > 0, touches down ``slide`` m short of ``p1`` at ``t1 - SLIDE_FRAMES`` and
    slides there; ``kick`` (0 walk .. 1 run) moves the foot more evenly and lifts it earlier."""

    t0: float
    t1: float
    p0: np.ndarray
    p1: np.ndarray
    y0: float
    y1: float
    kind: str = "step"
    lift: float = 0.06
    beta0: float = 0.0
    slide: float = 0.0
    kick: float = 0.0


def stand_spot(path: Path, c: Controls, foot: int, t: float) -> tuple[np.ndarray, float]:
    """Where foot ``foot`` (0 left, 1 right) stands at fractional frame t: toe at S + R(psi) (+-width,
    TOE_FORWARD) on the ground, turned out by TOE_OUT."""
    s, psi = path.at(t)
    i = int(min(max(round(t), 0), c.n - 1))
    w = c.ch["width"][i] * SIDES[foot]
    fwd = np.array([math.sin(psi), math.cos(psi)])
    left = np.array([math.cos(psi), -math.sin(psi)])
    return s + w * left + TOE_FORWARD * fwd, psi + SIDES[foot] * TOE_OUT


def plan_steps(c: Controls, path: Path, rng: np.random.Generator, slide: float) -> list[list[Swing]]:
    """The swings of each foot (module docstring, pass 2). A foot starts planted on its standing spot."""
    n = c.n
    ch = c.ch
    swings: list[list[Swing]] = [[], []]
    spot = [stand_spot(path, c, f, 0.0) for f in (0, 1)]
    busy_until = [-1.0, -1.0]
    lifted_cycle = [math.floor(path.phase[0] + PHASE_OFFSET[f]) - 1 for f in (0, 1)]
    flights = sorted(c.flights)
    next_flight = 0
    for t in range(1, n):
        # a jump: both feet leave at the takeoff and land on their standing spots
        while next_flight < len(flights) and flights[next_flight][0] <= t:
            to, ld, _ = flights[next_flight]
            for f in (0, 1):
                p1, y1 = stand_spot(path, c, f, ld)
                swings[f].append(Swing(to, ld, spot[f][0], p1, spot[f][1], y1, kind="jump"))
                spot[f] = (p1, y1)
                busy_until[f] = ld
            next_flight += 1
        for f in (0, 1):
            if t <= busy_until[f]:
                continue
            phase = path.phase[t] + PHASE_OFFSET[f]
            cycle = math.floor(phase)
            duty = ch["duty"][t]
            if cycle <= lifted_cycle[f] or phase - cycle < duty:
                continue
            lifted_cycle[f] = cycle
            base = cycle - PHASE_OFFSET[f]  # the foot's phase k + x is the path's phase k + x - offset
            t0 = max(path.time_at_phase(base + duty), t - 1.0, busy_until[f])
            t1 = path.time_at_phase(base + 1.0)
            duty_next = ch["duty"][min(int(round(t1)), n - 1)]  # the next stance's duty (it changes in a blend)
            mid = path.time_at_phase(base + 1.0 + duty_next / 2)
            if c.hold[max(int(math.floor(t0)) - 1, 0):min(int(math.ceil(t1)) + 2, n)].any() or t1 - t0 < 1.0:
                continue
            p1, y1 = stand_spot(path, c, f, mid)
            off = np.linalg.norm(p1 - spot[f][0]) > 0.04 or abs(y1 - spot[f][1]) > 0.15
            if ch["gait"][t] < GAIT_ON and not off:
                continue
            travel = float(np.linalg.norm(p1 - spot[f][0]))
            slid = float(rng.uniform(0.05, 0.1)) if (travel > 0.3 and rng.random() < slide) else 0.0
            if slid:  # touch down on time, short of the spot, and slide there during the first frames of stance
                t1 += SLIDE_FRAMES
            heel = ch["heelrise"][t] * min(1.0, travel / 0.4)
            swings[f].append(Swing(t0, t1, spot[f][0], p1, spot[f][1], y1, lift=ch["lift"][t], beta0=heel,
                                   slide=min(slid, 0.5 * travel), kick=ch["kick"][t]))
            spot[f] = (p1, y1)
            busy_until[f] = t1
    return swings


@dataclass
class Feet:
    """Per foot (2, n, ...): toe position (world), foot yaw and pitch beta, and ``fixed`` (2, n-1, 2):
    whether (ankle, toe) keep their position from frame t to t+1 (planted)."""

    toe: np.ndarray
    yaw: np.ndarray
    beta: np.ndarray
    fixed: np.ndarray


def foot_tracks(c: Controls, path: Path, swings: list[list[Swing]]) -> Feet:
    """Toe positions, yaws and pitches of both feet at every frame from their swings (pass 2)."""
    n = c.n
    t = np.arange(n, dtype=np.float64)
    toe = np.zeros((2, n, 3))
    yaw = np.zeros((2, n))
    beta = np.zeros((2, n))
    air = np.zeros((2, n), dtype=bool)
    for f in (0, 1):
        p, y = stand_spot(path, c, f, 0.0)
        toe[f, :, 0], toe[f, :, 2], yaw[f] = p[0], p[1], y
        stance_start = -1e9
        for s in swings[f]:
            after = t >= s.t1
            toe[f, after, 0], toe[f, after, 2], yaw[f, after] = s.p1[0], s.p1[1], s.y1
            inside = (t > s.t0) & (t < s.t1)
            air[f] |= inside
            u = (t[inside] - s.t0) / (s.t1 - s.t0)
            if s.kind == "jump":
                xz = s.p0 + np.outer(u, s.p1 - s.p0)
                h = c.rise[inside] + 0.06 * np.sin(np.pi * u)
                beta[f, inside] = c.ch["heel"][inside]
            else:
                # heel rise over the last 35% of the stance before the lift (toe fixed, ankle up)
                rise_from = s.t0 - 0.35 * min(max(s.t0 - stance_start, 0.0), 20.0)
                rising = (t >= rise_from) & (t <= s.t0)
                beta[f, rising] += s.beta0 * smoothstep((t[rising] - rise_from) / max(s.t0 - rise_from, 1e-9))
                touch = 1.0 - SLIDE_FRAMES / (s.t1 - s.t0) if s.slide > 0 else 1.0
                along = s.p1 - s.p0
                dist = float(np.linalg.norm(along))
                frac = s.slide / dist if dist > 0 else 0.0
                x = np.minimum(u / touch, 1.0)
                q = (1 - 0.5 * s.kick) * _cycloid(x) + 0.5 * s.kick * x
                v = np.clip((u - touch) / max(1 - touch, 1e-9), 0.0, 1.0)
                progress = (1 - frac) * q + frac * (1 - (1 - v) ** 2)  # the slide decelerates to a stop
                xz = s.p0 + np.outer(progress, along)
                # mid-swing the foot follows the body (S): it keeps up with an accelerating body and does not
                # run ahead of a braking one; at lift-off and touch-down (weight sin^2 = 0) it is world-fixed
                s0, _ = path.at(s.t0)
                s1, _ = path.at(s.t0 + touch * (s.t1 - s.t0))
                end = s.p0 + (1 - frac) * along
                follow = path.support[inside] + (s.p0 - s0) + np.outer(q, (end - s1) - (s.p0 - s0))
                m = np.sin(np.pi * x)[:, None] ** 2
                xz = xz + m * (follow - (s.p0 + np.outer((1 - frac) * q, along)))
                h = s.lift * np.sqrt(np.sin(np.pi * x ** (1.0 - 0.35 * s.kick)))
                beta[f, inside] = keys(u, [(0.0, s.beta0), (0.35, 0.3 * s.beta0), (0.75 * touch, -0.25),
                                           (touch, 0.0)])
            toe[f, inside, 0], toe[f, inside, 2], toe[f, inside, 1] = xz[:, 0], xz[:, 1], h
            ang = s.y0 + (s.y1 - s.y0) * smoothstep(u)
            yaw[f, inside] = ang
            stance_start = s.t1
        planted = ~air[f]
        beta[f, planted] += c.ch["heel"][planted]
    still_toe = ~air[:, :-1] & ~air[:, 1:]
    moved = np.abs(np.diff(toe, axis=1)).max(-1) > 0
    still_toe &= ~moved
    still_ankle = still_toe & (np.diff(beta, axis=1) == 0) & (np.diff(yaw, axis=1) == 0)
    return Feet(toe, yaw, beta, np.stack([still_ankle, still_toe], axis=-1))


# -- the body -------------------------------------------------------------------------------------------------
@dataclass
class Body:
    """Joint positions (n, 22, 3) by forward kinematics of ``local`` (n, 22, 3, 3) rotations from ``root``
    (n, 3); ``ik_error`` (n,) the largest distance of a toe from its footstep (0 when every leg reached)."""

    joints: np.ndarray
    local: np.ndarray
    root: np.ndarray
    ik_error: np.ndarray


def pose(c: Controls, path: Path, feet: Feet) -> Body:
    """Pelvis, spine, arms and legs of every frame as local rotations, then forward kinematics (pass 3-4)."""
    n = c.n
    ch = c.ch
    t = np.arange(n, dtype=np.float64)
    offsets = rest_offsets()
    phi = path.phase
    duty = ch["duty"]
    g = ch["gait"]
    # pelvis: heading + gait oscillations (pelvis turns with the swinging leg; the thorax counter-turns)
    yaw_osc = -0.06 * g * np.cos(2 * np.pi * (phi - (1 + duty) / 2))
    idle = ch["idle"]
    idle_sway = idle * np.sin(2 * np.pi * phi * 0.5 + 0.3)
    roll = 0.03 * g * np.cos(2 * np.pi * (phi - duty / 2)) + 0.02 * idle_sway
    pitch = 0.3 * ch["lean"]
    G0 = rot(1, path.psi + yaw_osc) @ rot(0, pitch) @ rot(2, roll)
    fwd = np.stack([np.sin(path.psi), np.zeros(n), np.cos(path.psi)], -1)
    left = np.stack([np.cos(path.psi), np.zeros(n), -np.sin(path.psi)], -1)
    sway = ch["sway"] * np.cos(2 * np.pi * (phi - duty / 2)) * np.maximum(g, idle)
    xz = (np.stack([path.support[:, 0], np.zeros(n), path.support[:, 1]], -1)
          - ch["back"][:, None] * fwd + sway[:, None] * left)
    bob = ch["bob"] * np.cos(4 * np.pi * (phi - duty / 2)) + 0.004 * idle * np.sin(2 * np.pi * 0.25 * t / FPS)
    nominal = STAND_HEIGHT + ch["crouch"] + bob + c.rise

    # ankle targets from the toes: ankle = toe - G_ankle o_foot, G_ankle = R_y(yaw) R_x(beta)
    G_ankle = [rot(1, feet.yaw[f]) @ rot(0, feet.beta[f]) for f in (0, 1)]
    ankle = [feet.toe[f] - G_ankle[f] @ offsets[10 + f] for f in (0, 1)]
    L = REFERENCE_BONE_LENGTHS
    legs = [L[4] + L[7], L[5] + L[8]]                      # thigh + shin, left and right
    hip_off = [G0 @ offsets[h] for h in (1, 2)]
    bound = np.minimum(*[reachable_height(hip_off[f], xz[:, [0, 2]] + hip_off[f][:, [0, 2]], ankle[f], legs[f])
                         for f in (0, 1)])
    height = _erode_smooth(np.minimum(nominal, bound))
    root = xz.copy()
    root[:, 1] = height

    local = np.broadcast_to(np.eye(3), (n, N_JOINTS, 3, 3)).copy()
    local[:, 0] = G0
    # legs by IK; the knee points between the pelvis's and the foot's forward directions
    for f, (hip, knee, ank) in enumerate(((1, 4, 7), (2, 5, 8))):
        hip_pos = root + hip_off[f]
        foot_fwd = np.stack([np.sin(feet.yaw[f]), np.zeros(n), np.cos(feet.yaw[f])], -1)
        pole = _normalise(fwd + foot_fwd)
        G_hip, G_knee, _ = two_bone_frames(hip_pos, ankle[f], pole, L[knee], L[ank])
        local[:, hip] = np.swapaxes(G0, -1, -2) @ G_hip
        local[:, knee] = np.swapaxes(G_hip, -1, -2) @ G_knee
        local[:, ank] = np.swapaxes(G_knee, -1, -2) @ G_ankle[f]
    # spine: forward lean spread over three joints, thorax turned against the pelvis, head kept level
    lean = ch["lean"]
    breathe = 0.01 * idle * np.sin(2 * np.pi * 0.3 * t / FPS)
    for j, share in ((3, 0.3), (6, 0.4), (9, 0.3)):
        local[:, j] = rot(0, share * (lean - pitch) + breathe) @ rot(1, -0.5 * yaw_osc)
    local[:, 12] = rot(0, -0.4 * lean)
    local[:, 15] = rot(0, -0.3 * lean + 0.05 * idle_sway)
    # arms: counter-swing, waves (upper arm out, humerus turned so the elbow lifts the forearm, elbow
    # oscillating), base flexion (jumps, sitting)
    swing_l = ch["swing"] * np.cos(2 * np.pi * (phi - 0.5))
    swing_r = ch["swing"] * np.cos(2 * np.pi * phi)
    for side, (sh, el), sw, wave in ((1.0, (16, 18), swing_l, ch["wave_l"]), (-1.0, (17, 19), swing_r, ch["wave_r"])):
        flex = ch["arms_fwd"] + sw
        elbow = ch["elbow"] + 0.4 * ch["swing"] * (1 + np.cos(2 * np.pi * (phi - (0.5 if side > 0 else 0.0)))) / 2
        wave_elbow = 1.7 + ch["wave_amp"] * np.sin(c.wave_phase)
        abd = (1 - wave) * 0.08 + wave * 1.45
        flex = (1 - wave) * flex + wave * 0.3
        twist = wave * (np.pi / 2)
        elbow = (1 - wave) * elbow + wave * wave_elbow
        local[:, sh] = rot(2, side * abd) @ rot(0, -flex) @ rot(1, side * twist)
        local[:, el] = rot(0, -elbow)
    joints, glob = forward_kinematics(root, local, offsets)
    err = np.maximum(*[np.linalg.norm(joints[:, j] - feet.toe[f], axis=-1) for f, j in ((0, 10), (1, 11))])
    return Body(joints, local, root, err)


# -- captions ------------------------------------------------------------------------------------------------
# "surface[:lemma]/POS" words; as HumanML3D's texts, a NOUN or VERB token is its lemma (except "left"),
# other words are kept as written (HumanML3D ``text_process.py``, ``process_text``; spaCy's tags)
SUBJECTS = ("a/DET person/NOUN", "a/DET man/NOUN", "someone/PRON", "the/DET person/NOUN", "a/DET human/NOUN")
CONNECTORS = ("then/ADV", "and/CCONJ then/ADV")
MAX_CAPTION_WORDS = 20  # the T2M evaluator keeps 20 tokens (alm.motion.word_vectors.MAX_TEXT_LEN)


def _curve_words(p: dict, rng: np.random.Generator) -> str:
    side = p.get("curve", "straight")
    if side == "straight":
        return ""
    if rng.random() < 0.5:
        return f" in/ADP a/DET curve/NOUN to/ADP the/DET {side}/NOUN"
    return f" while/SCONJ turning:turn/VERB {side}/ADV"


def phrase(family: str, p: dict, rng: np.random.Generator) -> str:
    """The verb phrase of one action (tokens as "surface[:lemma]/POS")."""
    if family == "walk":
        if p["direction"] == "backward":
            return "walks:walk/VERB backward/ADV" + (" slowly/ADV" if p["speed"] < 0.65 else "")
        speed = " slowly/ADV" if p["speed"] < 1.0 else (" quickly/ADV" if p["speed"] > 1.5 else "")
        return "walks:walk/VERB forward/ADV" + speed + _curve_words(p, rng)
    if family == "jog":
        return "jogs:jog/VERB forward/ADV" + _curve_words(p, rng)
    if family == "run":
        return "runs:run/VERB forward/ADV" + (" fast/ADV" if p["speed"] > 3.6 else "") + _curve_words(p, rng)
    if family == "sidestep":
        if rng.random() < 0.5:
            return f"sidesteps:sidestep/VERB to/ADP the/DET {p['side']}/NOUN"
        return f"steps:step/VERB sideways/ADV to/ADP the/DET {p['side']}/NOUN"
    if family == "jump":
        where = "forward/ADV" if p["kind"] == "forward" else ("in/ADP place/NOUN" if rng.random() < 0.5 else "up/ADP")
        high = " high/ADV" if p["height"] > 0.24 else ""
        twice = " twice/ADV" if p["count"] == 2 else ""
        return f"jumps:jump/VERB {where}{high}{twice}"
    if family == "turn":
        if p["angle"] >= 130:
            return f"turns:turn/VERB around/ADV to/ADP the/DET {p['side']}/NOUN"
        if p["angle"] <= 75:
            return f"turns:turn/VERB slightly/ADV to/ADP the/DET {p['side']}/NOUN"
        return f"turns:turn/VERB {p['side']}/ADV" + (" on/ADP the/DET spot/NOUN" if rng.random() < 0.4 else "")
    if family == "wave":
        if p["hand"] == "both":
            return "waves:wave/VERB with/ADP both/DET hands:hand/NOUN"
        return f"waves:wave/VERB with/ADP his/DET {p['hand']}/ADJ hand/NOUN"
    if family == "sit":
        return {"down": "sits:sit/VERB down/ADP", "up": "stands:stand/VERB up/ADP",
                "down_up": "sits:sit/VERB down/ADP and/CCONJ stands:stand/VERB up/ADP again/ADV"}[p["variant"]]
    if family == "stand":
        return "stands:stand/VERB still/ADV" if rng.random() < 0.6 else "stands:stand/VERB in/ADP place/NOUN"
    raise ValueError(f"unknown action family {family!r}")


def caption_of(words: str) -> tuple[str, list[str]]:
    """"surface[:lemma]/POS ..." -> (caption text, HumanML3D tokens "lemma_or_word/POS")."""
    surface, tokens = [], []
    for item in words.split():
        text, pos = item.rsplit("/", 1)
        word, _, lemma = text.partition(":")
        surface.append(word)
        tokens.append(f"{lemma if (lemma and pos in ('NOUN', 'VERB')) else word}/{pos}")
    return " ".join(surface), tokens


# -- a clip --------------------------------------------------------------------------------------------------
@dataclass
class Clip:
    """``frames + 1`` frames of joint positions (the features need one more frame than they have rows),
    the planted flags ``contact`` (frames, 4) in HumanML3D's foot-contact order (left ankle, left foot,
    right ankle, right foot) for each frame pair (t, t+1), the caption and its tokens, the action
    families and their parameters, and the generator's diagnostics."""

    joints: np.ndarray
    local: np.ndarray
    root: np.ndarray
    contact: np.ndarray
    caption: str
    tokens: list[str]
    actions: list[str]
    params: list[dict]
    ik_error: float
    heading_range: float


def sample_plan(rng: np.random.Generator, frames: int, transition: float,
                families: Sequence[str] = FAMILIES) -> list[dict]:
    """The actions of a clip: [{"family", "start" (clip frame), "blend" (frames), **params}], one or two.
    The first family is uniform; with probability ``transition`` a second, uniform among the others that
    can follow it (a jump only from standing still), with parameters drawn until both fit the clip (up to
    ``PLAN_TRIES`` draws, then another second family)."""
    first = families[int(rng.integers(len(families)))]
    if rng.random() < transition and len(families) > 1:
        others = [f for f in families if f != first and not (f == "jump" and first in LOCOMOTION)]
        for _ in range(PLAN_TRIES if others else 0):
            second = others[int(rng.integers(len(others)))]
            for _ in range(PLAN_TRIES):
                plan = _transition(rng, frames, first, second)
                if plan is not None:
                    return plan
    for _ in range(PLAN_TRIES):
        p = FAMILY[first].sample(rng, "single")
        if FAMILY[first].need(p) <= frames:
            return [{"family": first, "start": 0, "blend": 0, **p}]
    return [{"family": "stand", "start": 0, "blend": 0, **sample_stand(rng, "single")}]


PLAN_TRIES = 10


def _transition(rng: np.random.Generator, frames: int, first: str, second: str) -> Optional[list[dict]]:
    """Parameters of ``first`` then ``second`` and the blend's start and length, or None if they do not fit."""
    pa = FAMILY[first].sample(rng, "first")
    pb = FAMILY[second].sample(rng, "second")
    blend_frames = int(rng.integers(10, 21))
    if "run" in (first, second):  # speeding up to (or slowing down from) a run takes a few steps
        blend_frames = max(blend_frames, 20)
    elif "jog" in (first, second):
        blend_frames = max(blend_frames, 16)
    if "delay" in pb:  # the second action's event starts once the blend is (half) done
        pb["delay"] += blend_frames // 2 if second == "jump" else blend_frames
    lo = FAMILY[first].need(pa)
    hi = frames - FAMILY[second].need(pb) - (blend_frames if "delay" not in pb else 0)
    if lo > hi:
        return None
    start = int(rng.integers(lo, hi + 1))
    return [{"family": first, "start": 0, "blend": 0, **pa},
            {"family": second, "start": start, "blend": blend_frames, **pb}]


def _params_only(action: dict) -> dict:
    return {k: v for k, v in action.items() if k not in ("family", "start", "blend")}


def controls_of(plan: list[dict], n: int, rng: np.random.Generator) -> Controls:
    """The blended controls of a plan over n simulated frames (clip frame 0 = simulated frame WARMUP)."""
    first = plan[0]
    c = FAMILY[first["family"]].controls(_params_only(first), n, WARMUP, rng)
    for action in plan[1:]:
        start = WARMUP + action["start"]
        b = FAMILY[action["family"]].controls(_params_only(action), n, start, rng)
        c = blend(c, b, start, action["blend"])
    return c


def make_clip(rng: np.random.Generator, frames: int = 64, transition: float = 0.5, slide: float = 0.35,
              families: Sequence[str] = FAMILIES, attempts: int = 20) -> Clip:
    """One clip of ``frames + 1`` joint frames from the generator (module docstring). A plan whose heading
    leaves +-MAX_HEADING of frame 0's is drawn again (HumanML3D's root rotation wraps at 180 degrees)."""
    n = WARMUP + frames + 1
    for attempt in range(attempts):
        plan = sample_plan(rng, frames, transition, families)
        c = controls_of(plan, n, rng)
        path = integrate(c, phase0=float(rng.random()))
        psi = path.psi[WARMUP:]
        heading_range = float(np.abs(psi - psi[0]).max())
        if heading_range > MAX_HEADING and attempt < attempts - 1:
            continue
        swings = plan_steps(c, path, rng, slide)
        feet = foot_tracks(c, path, swings)
        body = pose(c, path, feet)
        if np.isfinite(body.joints).all() or attempt == attempts - 1:
            break
    parts = [SUBJECTS[int(rng.integers(len(SUBJECTS)))], phrase(plan[0]["family"], plan[0], rng)]
    for action in plan[1:]:
        parts += [CONNECTORS[int(rng.integers(len(CONNECTORS)))], phrase(action["family"], action, rng)]
    if len(" ".join(parts).split()) > MAX_CAPTION_WORDS and len(parts) > 2:
        parts[2] = CONNECTORS[0]  # "then" alone: the evaluator reads 20 tokens
    caption, tokens = caption_of(" ".join(parts))
    crop = slice(WARMUP, WARMUP + frames + 1)
    # planted = held still by the plan AND reached by the leg in both frames of the pair
    reached = body.ik_error < 1e-9
    fixed = feet.fixed & (reached[:-1] & reached[1:])[None, :, None]
    contact = fixed[:, WARMUP:WARMUP + frames]                   # (2, frames, 2): (ankle, toe) per foot
    contact = np.concatenate([contact[0], contact[1]], axis=-1).astype(np.float32)
    params = [{"family": a["family"], "start": a["start"], "blend": a["blend"], **_params_only(a)} for a in plan]
    return Clip(joints=body.joints[crop], local=body.local[crop], root=body.root[crop], contact=contact,
                caption=caption + ".", tokens=tokens, actions=[a["family"] for a in plan], params=params,
                ik_error=float(body.ik_error[crop].max()), heading_range=heading_range)
