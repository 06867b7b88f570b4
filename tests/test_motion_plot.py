"""Motion pictures (alm.motion.plot): frame choice, view, colours by role, shapes, files, determinism.

The motion is hand-made: a T-pose of the 22 t2m joints facing +z, walking (translated) 0.1 m per frame
along +z for 30 frames. Observed poses are orange, generated blue: pixels are told apart by hue.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from alm import io, video_io
from alm.errors import ConfigError, DataError
from alm.motion import plot

T = 30
# a T-pose (metres, y up, facing +z, the body's left at +x): pelvis, hips, spine, legs, feet, neck,
# collars, head, arms stretched sideways
TPOSE = np.array([
    [0.0, 0.95, 0.0], [0.1, 0.9, 0.0], [-0.1, 0.9, 0.0], [0.0, 1.05, 0.0], [0.1, 0.5, 0.0],
    [-0.1, 0.5, 0.0], [0.0, 1.2, 0.0], [0.1, 0.08, 0.0], [-0.1, 0.08, 0.0], [0.0, 1.35, 0.0],
    [0.1, 0.0, 0.12], [-0.1, 0.0, 0.12], [0.0, 1.5, 0.0], [0.08, 1.45, 0.0], [-0.08, 1.45, 0.0],
    [0.0, 1.65, 0.03], [0.2, 1.45, 0.0], [-0.2, 1.45, 0.0], [0.45, 1.45, 0.0], [-0.45, 1.45, 0.0],
    [0.7, 1.45, 0.0], [-0.7, 1.45, 0.0],
])


def walk(n: int = T, step: float = 0.1) -> np.ndarray:
    return TPOSE[None] + np.arange(n)[:, None, None] * np.array([0.0, 0.0, step])


def prefix(n_observed: int, n: int = T) -> np.ndarray:
    return np.arange(n) < n_observed


def orange(img: np.ndarray) -> np.ndarray:
    r, g, b = (img[..., k].astype(int) for k in range(3))
    return (r - b > 80) & (r > g)


def blue(img: np.ndarray) -> np.ndarray:
    r, b = img[..., 0].astype(int), img[..., 2].astype(int)
    return b - r > 60


def test_shown_frames_are_the_regular_frames_and_the_run_boundaries():
    assert plot.shown_frames(prefix(15), 10) == [0, 14, 15, 20, 29]  # 10 is too close to 14
    assert plot.shown_frames(np.ones(T, bool), 10) == [0, 10, 20, 29]
    # a per-frame alternating mask: too many runs, only the first / last observed and generated frames
    assert plot.shown_frames(np.arange(T) % 2 == 0, 10) == [0, 1, 10, 20, 28, 29]
    with pytest.raises(ConfigError):
        plot.shown_frames(prefix(15), 0)


def test_the_strip_frame_turns_travel_and_facing_into_the_view():
    # travel along +z becomes +x' (time runs to the right), with the floor at y = 0
    p = plot._to_strip(walk(), plot._strip_frame(walk()))
    np.testing.assert_allclose(p[:, 0, 0], 0.1 * np.arange(T), atol=1e-12)
    np.testing.assert_allclose(p[:, 0, 2], 0.0, atol=1e-12)
    assert p[..., 1].min() == 0.0
    # standing still: the first pose faces the camera (+z'), its left hip at +x', whichever way it faced
    turn = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # about y: +z -> +x
    for still in (np.repeat(TPOSE[None], 5, 0), np.repeat(TPOSE[None] @ turn.T, 5, 0)):
        q = plot._to_strip(still, plot._strip_frame(still))
        np.testing.assert_allclose(q[0, 1] - q[0, 0], [0.1, -0.05, 0.0], atol=1e-12)


def test_strip_colours_follow_the_observed_frames_left_to_right():
    first = plot.motion_strip(walk(), prefix(15))
    o, b = orange(first), blue(first)
    assert o.sum() > 200 and b.sum() > 200
    assert 0.5 < o.sum() / b.sum() < 2.0
    cols = np.arange(first.shape[1])[None, :]
    assert (cols * o).sum() / o.sum() < (cols * b).sum() / b.sum()  # observed (first half) on the left
    second = plot.motion_strip(walk(), ~prefix(15))
    o, b = orange(second), blue(second)
    assert (cols * o).sum() / o.sum() > (cols * b).sum() / b.sum()
    # all observed, or only the observed frames kept by the valid length: no blue at all
    assert blue(plot.motion_strip(walk(), np.ones(T, bool))).sum() == 0
    assert blue(plot.motion_strip(walk(), prefix(15), length=15)).sum() == 0


def test_strip_shape_dtype_title_and_determinism():
    a = plot.motion_strip(walk(), prefix(15))
    assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
    assert np.array_equal(a, plot.motion_strip(torch.from_numpy(walk()), torch.from_numpy(prefix(15))))
    titled = plot.motion_strip(walk(), prefix(15), title="a person walks forward")
    assert titled.shape[0] > a.shape[0] and titled.shape[1] == a.shape[1]
    # the same poses twice as many pixels per metre: twice the size
    big = plot.motion_strip(walk(), prefix(15), px_per_m=180)
    assert abs(big.shape[1] - 2 * a.shape[1]) <= 2 and abs(big.shape[0] - 2 * a.shape[0]) <= 2


def test_strip_layouts():
    # a T-pose standing still: "auto" spaces its poses, "trajectory" stacks them in one place
    still = np.repeat(TPOSE[None], T, 0)
    spaced = plot.motion_strip(still, prefix(15))
    stacked = plot.motion_strip(still, prefix(15), layout="trajectory")
    assert spaced.shape[1] > 2 * stacked.shape[1]
    assert np.array_equal(spaced, plot.motion_strip(still, prefix(15), layout="spaced"))
    # the walk separates its poses by itself: "auto" keeps the trajectory
    assert np.array_equal(plot.motion_strip(walk(), prefix(15)),
                          plot.motion_strip(walk(), prefix(15), layout="trajectory"))
    with pytest.raises(ConfigError):
        plot.motion_strip(still, prefix(15), layout="sideways")


def test_comparison_rows_share_one_view_and_carry_labels():
    one = plot.comparison_strip([("ALM", walk(), prefix(15))])
    two = plot.comparison_strip([("ALM", walk(), prefix(15)), ("ALM", walk(), prefix(15))])
    h = one.shape[0]
    assert two.shape == (2 * h + 2, one.shape[1], 3)
    assert np.array_equal(two[:h], one) and np.array_equal(two[h + 2:], one)
    unlabelled = plot.motion_strip(walk(), prefix(15))
    margin = one.shape[1] - unlabelled.shape[1]
    assert margin > 0 and (one[:, :margin].max(axis=2) < 100).sum() > 10  # the label's dark pixels
    # a motion 1 m further along is drawn in the first row's view: its poses sit further right
    moved = plot.comparison_strip([("gt", walk(), prefix(15)), ("ALM", walk() + [0.0, 0.0, 1.0], prefix(15))])
    h = (moved.shape[0] - 2) // 2
    top, bottom = moved[:h], moved[h + 2:]
    cols = np.arange(moved.shape[1])[None, :]
    assert (cols * orange(bottom)).sum() / orange(bottom).sum() > (cols * orange(top)).sum() / orange(top).sum() + 20


def test_frames_have_a_fixed_camera_and_colour_each_frame_by_its_role():
    frames = plot.motion_frames(walk(), prefix(15), size=(128, 96))
    assert frames.shape == (T, 96, 128, 3) and frames.dtype == np.uint8
    assert orange(frames[0]).sum() > 20 and blue(frames[0]).sum() == 0
    assert blue(frames[20]).sum() > 20
    assert blue(frames[T - 1]).sum() > 20 and orange(frames[T - 1]).sum() > 0  # the trace of frames 0..14
    assert orange(plot.motion_frames(walk(), prefix(15), size=(128, 96), trail=5)[T - 1]).sum() == 0
    # the label at the top right: "generated" is wider than "observed", in its colour

    def label_width(img: np.ndarray, colour) -> int:
        cols = np.flatnonzero(colour(img[:16]).any(axis=0))
        return int(cols.max() - cols.min())

    assert label_width(frames[20], blue) > label_width(frames[0], orange) > 10
    # the pose walks across a fixed floor: its coloured pixels move right
    cols = np.arange(128)[None, :]

    def centre(img: np.ndarray) -> float:
        m = orange(img) | blue(img)
        m[:16] = False  # the texts' band
        return float((cols * m).sum() / m.sum())

    assert centre(frames[0]) + 30 < centre(frames[T - 1])
    # the floor stays where it is: a pixel the pose never reaches is the same in every frame
    assert (frames == frames[:1]).all(axis=0).any()
    assert np.array_equal(frames, plot.motion_frames(walk(), prefix(15), size=(128, 96)))
    assert plot.motion_frames(walk(), prefix(15), length=10, size=64).shape == (10, 64, 64, 3)


def test_video_files_and_the_runner_formats(tmp_path):
    frames = plot.motion_frames(walk(), prefix(15), size=64)
    mp4, gif = plot.save_motion_video(tmp_path / "0_alm", frames, fps=20)
    assert mp4 == tmp_path / "0_alm.mp4" and gif == tmp_path / "0_alm.gif"
    assert mp4.stat().st_size > 1000 and gif.stat().st_size > 1000
    with Image.open(gif) as im:
        assert im.n_frames == T and im.size == (64, 64)
    clip = plot.frames_as_clip(frames)
    assert clip.shape == (3, T, 64, 64) and clip.min() >= -1 and clip.max() <= 1
    assert np.array_equal(video_io.frames_uint8(clip, min_size=1), frames)
    strip = plot.motion_strip(walk(), prefix(15))
    image = plot.strip_as_tensor(strip)
    assert image.shape == (3, *strip.shape[:2]) and image.dtype == torch.float32
    assert np.array_equal(io.to_uint8(image), strip)
    with pytest.raises(ConfigError):
        plot.strip_as_tensor(strip.astype(np.float32))
    with pytest.raises(ConfigError):
        plot.frames_as_clip(strip)


def test_bad_motions_are_one_line_errors():
    with pytest.raises(DataError, match="22, 3"):
        plot.motion_strip(walk()[:, :21], prefix(15))
    with pytest.raises(DataError, match="one flag per frame"):
        plot.motion_strip(walk(), prefix(15, n=T - 1))
    with pytest.raises(DataError, match="length"):
        plot.motion_frames(walk(), prefix(15), length=0)
    bad = walk()
    bad[3, 4, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        plot.motion_strip(bad, prefix(15))
