"""Motion ALM on the shared core equals the authors' CondMDI-style loop (alm.reference.reference_motion_alm) in float64.

The network is a toy x_0-predicting text-conditional 1-D conv net (the step does not care what is inside);
the masks are the paper's, relative to each motion's length, with zero padding beyond it; 1000 DDPM steps
on the cosine table, text guidance 2.5, fresh forward noise for X_t at every step.
"""

from __future__ import annotations

import pytest
import torch

from alm import reference
from alm.backbones.base import Backbone
from alm.data.base import Item
from alm.methods.alm import ALM
from alm.motion.frame_masks import FrameMasks, frame_mask, observed_frames
from alm.rng import SampleGenerators
from alm.sampling import reverse
from alm.schedule import make_schedule
from alm.tasks.motion import Motion

DT = torch.float64
FEATURES, FRAMES = 5, 12
COSINE = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "prediction_type": "sample",
          "clip_sample": False, "set_alpha_to_one": True, "steps_offset": 0}


class ToyMotionBackbone(Backbone):
    """x_0 = tanh(conv(z) + time + text): a stand-in with CondMDI's interface (x_0 prediction, text, normalisation)."""

    conditional = True

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.sample_shape = self.data_shape = (FEATURES, 1, FRAMES)
        self.scheduler_config = dict(COSINE)
        self.conv = torch.nn.Conv1d(FEATURES, FEATURES, 3, padding=1).to(DT)
        with torch.no_grad():
            for p in self.conv.parameters():
                p.copy_(0.4 * torch.randn(p.shape, generator=g, dtype=DT))
        self.register_buffer("text_proj", torch.randn(4, FEATURES, generator=g, dtype=DT))
        self.register_buffer("mean", torch.randn(FEATURES, 1, 1, generator=g, dtype=DT))
        self.register_buffer("std", 0.5 + torch.rand(FEATURES, 1, 1, generator=g, dtype=DT))
        self.register_buffer("ab", make_schedule(COSINE, 1000).ab.flip(0))  # ab[t], t = 0..999

    def x0(self, z, t, cond):
        h = self.conv(z[:, :, 0]) + torch.sin(t.to(DT) / 100.0)[:, None, None] + (cond @ self.text_proj)[:, :, None]
        return torch.tanh(h)[:, :, None]

    def eps(self, z, t, cond):
        ab = self.ab[t].reshape(-1, 1, 1, 1)
        return (z - ab.sqrt() * self.x0(z, t, cond)) / (1 - ab).sqrt()

    def make_cond(self, labels, batch):
        return torch.stack([torch.tensor([len(s), s.count("a"), s.count(" "), 1.0], dtype=DT) / 10 for s in labels])

    def null_cond(self, batch):
        return torch.zeros(batch, 4, dtype=DT)

    def encode(self, x):
        return (x - self.mean) / self.std

    def decode(self, z):
        return z * self.std + self.mean

    def mask_to_sample(self, mask):
        return mask


class ToyMotions:
    name = "toy_motions"
    shape = (FEATURES, 1, FRAMES)

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(100 + i)
        length = 8 + (i % 3) * 2
        x = torch.zeros(FEATURES, 1, FRAMES, dtype=DT)
        x[..., :length] = torch.randn(FEATURES, 1, length, generator=g, dtype=DT)
        return Item(x, f"a person walks {'a' * i}", {"length": length, "caption": "", "tokens": [], "name": str(i)})


def ours(backbone, kind, indices, imputation=False, w1=1.0, w2=0.005, seed=3):
    task, method = Motion(render=0), ALM(w1=w1, w2=w2, imputation=imputation)
    batch = task.load(ToyMotions(), FrameMasks(kind), indices, torch.device("cpu"))
    schedule = make_schedule(backbone.scheduler_config, 1000, kind="ddpm")
    problem = task.problem(backbone, method, batch, schedule)
    problem.x0, problem.mask = problem.x0.to(DT), problem.mask.to(DT)
    return reverse(backbone, method, problem, schedule, SampleGenerators(seed, indices), guidance=2.5, sampler="ddpm"), batch


def theirs(backbone, kind, index, imputation=False, w1=1.0, w2=0.005, seed=3):
    item = ToyMotions()[index]
    gens = SampleGenerators(seed, [index])
    draw = lambda: gens.randn_rows(1, backbone.sample_shape, dtype=DT)  # noqa: E731
    observed = frame_mask(kind, item.meta["length"], FRAMES).to(DT) < 0.5
    c, null = backbone.make_cond([item.label], 1), backbone.null_cond(1)
    model = lambda x, t, cond: backbone.x0(x, torch.tensor([t]), cond)  # noqa: E731
    y = draw()  # Y_T first, as the core draws it
    return reference.reference_motion_alm(model, y, backbone.encode(item.image[None]), observed, c, null,
                                          backbone.ab, guidance=2.5, w1=w1, w2=w2, draw=draw, imputation=imputation)


@pytest.mark.parametrize("kind,imputation", [("first_half", False), ("middle_half", False), ("inbetween", True)])
def test_motion_alm_equals_the_authors_loop_in_float64(kind, imputation):
    torch.manual_seed(0)
    backbone = ToyMotionBackbone()
    indices = [0, 1, 2]
    got, _ = ours(backbone, kind, indices, imputation)
    for j, i in enumerate(indices):
        want = theirs(backbone, kind, i, imputation)[0]
        assert torch.allclose(got[j], want, atol=1e-10, rtol=0), float((got[j] - want).abs().max())


def test_the_comparison_is_sensitive_to_the_weights_and_the_move():
    backbone = ToyMotionBackbone()
    got, _ = ours(backbone, "first_half", [1])
    for w1, w2 in ((1.0, 0.05), (0.5, 0.005)):
        other = theirs(backbone, "first_half", 1, w1=w1, w2=w2)[0]
        assert (got[0] - other).abs().max() > 1e-6


def test_imputation_keeps_the_observed_frames_exactly():
    backbone = ToyMotionBackbone()
    got, batch = ours(backbone, "first_half", [0, 2], imputation=True)
    x0 = backbone.encode(batch.sources)
    keep = batch.masks < 0.5
    assert torch.allclose(got.masked_select(keep), x0.masked_select(keep), atol=1e-12)
    plain, _ = ours(backbone, "first_half", [0, 2])
    assert not torch.allclose(plain.masked_select(keep), x0.masked_select(keep), atol=1e-3)


def test_motion_masks_follow_condmdi():
    assert observed_frames("first_half", 10) == [5, 6, 7, 8, 9]
    assert observed_frames("last_half", 10) == [0, 1, 2, 3, 4]
    assert observed_frames("middle_half", 10) == [0, 1, 7, 8, 9]  # 10 // 4 = 2, 30 // 4 = 7
    assert observed_frames("inbetween", 25, every=10) == [0, 10, 20]
    m = frame_mask("first_half", 6, 9)
    assert m.shape == (1, 1, 9) and m.reshape(-1).tolist() == [1, 1, 1, 0, 0, 0, 1, 1, 1]  # padding is generated
