"""The inpainting task's pixel blend (the "*" rows) against an independent numpy computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alm.config import compose
from alm.errors import ConfigError
from alm.runner import run
from alm.blend import blend_output, blend_weights


def _reference_blur(m: np.ndarray, k: int) -> np.ndarray:
    """Separable Gaussian, OpenCV's sigma for sigma=0, reflect-101 borders (numpy's 'reflect')."""
    sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8
    x = np.arange(k) - k // 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    g /= g.sum()
    p = np.pad(m, k // 2, mode="reflect")
    rows = np.stack([np.convolve(r, g, mode="valid") for r in p])
    return np.stack([np.convolve(c, g, mode="valid") for c in rows.T]).T


@pytest.mark.parametrize("k", [21, 5])
def test_blend_weights_match_reference(k):
    rng = np.random.default_rng(0)
    m = np.zeros((40, 48))
    m[10:25, 5:30] = 1
    m[rng.random(m.shape) < 0.05] = 1
    ref = 1 - (1 - m) * (1 - _reference_blur(m, k))
    got = blend_weights(torch.tensor(m)[None, None], k)[0, 0].numpy()
    assert np.abs(got - ref).max() < 1e-5
    assert np.all(got[m == 1] == 1) and got.min() >= 0


def test_blend_keeps_hole_and_far_source():
    src, out = torch.zeros(1, 1, 32, 32), torch.ones(1, 1, 32, 32)
    m = torch.zeros(1, 1, 32, 32)
    m[..., 12:20, 12:20] = 1
    b = blend_output(out, src, m, 5, mode="float")
    assert torch.all(b[m == 1] == 1) and b[..., 0, 0] == 0 and 0 < b[..., 11, 15] < 1


def test_blend_in_a_run_and_bad_kernel(tmp_path):
    fast = ["backbone=gmm", "dataset=gmm", "mask=center", "method=alm", "num_samples=2", "sampler.steps=5", "progress=false",
            "task.blend_mode=float"]  # the mixture's values are not 8-bit levels: the authors' rounding refuses them
    run(compose(fast + ["task.blend=true", "task.blend_kernel=3"]), tmp_path / "a")
    d = torch.load(tmp_path / "a" / "samples" / "00000.pt", weights_only=False)
    # mask=center observes rows/cols 2..5; more than the kernel radius (1) from the hole the source is kept
    assert torch.allclose(d["output"][..., 3:5, 3:5], d["source"][..., 3:5, 3:5])
    assert not torch.allclose(d["output"][..., 2, 2:6], d["source"][..., 2, 2:6])  # the blurred border mixes
    with pytest.raises(ConfigError, match="blend_kernel"):
        run(compose(fast + ["task.blend=true", "task.blend_kernel=4"]), tmp_path / "b")
    with pytest.raises(ConfigError, match="too large"):
        run(compose(fast + ["task.blend=true", "task.blend_kernel=21"]), tmp_path / "c")
