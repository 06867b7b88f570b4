"""Tasks, methods and observation providers are plug-ins: a new one is one module + one yaml, outside
the project; X_t's randomness has one fixed order; rows can observe each other's current state."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from alm.config import build_method, compose
from alm.methods.base import Problem
from alm.observation import ForwardNoise, FromState
from alm.rng import SampleGenerators
from alm.sampling import reverse
from alm.schedule import make_schedule
from conftest import LINEAR_SCHEDULER, ToyBackbone

ROOT = Path(__file__).resolve().parent.parent
GMM = ["backbone=gmm", "dataset=gmm", "mask=center", "sampler.steps=5", "num_samples=3", "batch_size=2", "progress=false"]

METHOD_MODULE = '''
from dataclasses import dataclass
from typing import ClassVar

from alm import steps
from alm.errors import ConfigError
from alm.methods.base import Method


@dataclass
class PullToObservation(Method):
    """DDIM, then the observed region pulled a share ``pull`` of the way to X_t."""

    name: ClassVar[str] = "pull"
    reads_x_t: ClassVar[bool] = True
    pull: float = 0.5

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.pull <= 1:
            raise ConfigError(f"method.pull={self.pull} must be in [0, 1]")

    def step(self, y, ctx):
        x = ctx.x_t(y)
        e = ctx.guided((yield ctx.guided_evals(y)))
        return ctx.base_step(y, e) + steps.sync_term(x, y, ctx.mask, self.pull)
'''

TASK_MODULE = '''
from dataclasses import dataclass
from typing import ClassVar

import torch

from alm.methods.base import Problem
from alm.observation import ForwardNoise
from alm.tasks.base import Batch, Task


@dataclass
class NoisyInpaint(Task):
    """Inpainting whose X_t is always fresh forward noise (as motion's), with its own pictures."""

    name: ClassVar[str] = "noisy_inpaint"
    gain: float = 1.0

    def load(self, dataset, masks, indices, device):
        items = [dataset[i] for i in indices]
        images = torch.stack([it.image for it in items]).to(device)
        ms = torch.stack([masks.get(i, tuple(images.shape[-2:])) for i in indices]).to(device)
        return Batch(list(indices), images, ms, [it.label for it in items], [it.meta for it in items])

    def problem(self, backbone, method, batch, schedule, counter=None):
        x0 = backbone.encode(batch.sources * (1 - batch.masks)) * self.gain
        obs = ForwardNoise(x0) if method.reads_x_t else None
        return Problem(x0=x0, mask=backbone.mask_to_sample(batch.masks), cond=backbone.make_cond(batch.labels, len(batch)),
                       observation=obs)

    def pictures(self, record):
        return {"output": record["output"], "difference": record["output"] - record["source"]}
'''


def _extension(tmp_path: Path) -> Path:
    """A folder outside the project with a method and a task module and their yamls."""
    ext = tmp_path / "ext"
    (ext / "conf" / "method").mkdir(parents=True)
    (ext / "conf" / "task").mkdir(parents=True)
    (ext / "my_method.py").write_text(METHOD_MODULE)
    (ext / "my_task.py").write_text(TASK_MODULE)
    (ext / "conf" / "method" / "pull.yaml").write_text("_target_: my_method.PullToObservation\nname: pull\npull: 0.5\n")
    (ext / "conf" / "task" / "noisy_inpaint.yaml").write_text(textwrap.dedent("""\
        # a task may choose its masks and sampler
        defaults:
          - override /mask@_global_.mask: center
          - override /sampler@_global_.sampler: ddpm
        _target_: my_task.NoisyInpaint
        name: noisy_inpaint
        gain: 1.0
        """))
    return ext


def _run(ext: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ext), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, str(ROOT / "run.py"), f"hydra.searchpath=[file://{ext / 'conf'}]", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_a_method_and_a_task_from_outside_the_project_run_end_to_end(tmp_path):
    ext = _extension(tmp_path)
    before = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    out = _run(ext, *GMM, "method=pull", "method.pull=0.25", f"hydra.run.dir={tmp_path / 'm'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert len(list((tmp_path / "m" / "samples").glob("*.pt"))) == 3
    out = _run(ext, *GMM, "task=noisy_inpaint", "method=pull", "sampler.steps=4", f"hydra.run.dir={tmp_path / 't'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "t" / "images" / "00002_difference.png").is_file()
    cfg = (tmp_path / "t" / "config.yaml").read_text()
    assert "name: ddpm" in cfg and "steps: 4" in cfg  # the task chose the sampler; the command line still wins
    # its one-line errors come through: a bad value of the new method, an unknown key
    out = _run(ext, *GMM, "method=pull", "method.pull=2", f"hydra.run.dir={tmp_path / 'bad'}", cwd=tmp_path)
    assert out.returncode == 1 and out.stderr.strip() == "error: method.pull=2.0 must be in [0, 1]"
    out = _run(ext, *GMM, "method=pull", "+method.push=1", f"hydra.run.dir={tmp_path / 'bad2'}", cwd=tmp_path)
    assert out.returncode == 1 and "has no parameter(s) push; it takes: pull" in out.stderr.strip().splitlines()[-1]
    after = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    assert after == before  # no project file was touched


def test_a_task_file_selects_masks_and_sampler(tmp_path):
    """conf/config.yaml lists mask and sampler before task, so a task's `override /mask` works (and a
    user's `mask=` on the command line still wins)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from alm.config import CONF_DIR, register_resolvers

    ext = _extension(tmp_path)
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        base = [f"hydra.searchpath=[file://{ext / 'conf'}]", "task=noisy_inpaint"]
        cfg = hydra_compose(config_name="config", overrides=base)
        assert cfg.mask.name.startswith("center") and cfg.sampler.name == "ddpm"
        cfg = hydra_compose(config_name="config", overrides=[*base, "mask=box", "sampler=ddim"])
        assert cfg.mask.name.startswith("box") and cfg.sampler.name == "ddim"
    GlobalHydra.instance().clear()


# --- X_t's randomness: one fixed order whatever the method does ---------------------------------------

class Recording(ForwardNoise):
    def __init__(self, x0):
        super().__init__(x0)
        self.seen: dict[int, torch.Tensor] = {}

    def x_t(self, i, y):
        x = super().x_t(i, y)
        self.seen.setdefault(i, x.clone())
        return x


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_every_method_sees_the_same_forward_noised_x_t(sampler):
    """SyncSDE takes the sampler's step (DDPM: noise) before it reads X_t, ALM reads X_t first: both see
    the same X_t for the same seed because the observation draws at the start of each step."""
    torch.manual_seed(0)
    net, sched = ToyBackbone((1, 4, 4)), make_schedule(LINEAR_SCHEDULER, 6, sampler)
    x0, mask = torch.randn(3, 1, 4, 4), (torch.rand(3, 1, 4, 4) > 0.5).float()
    seen = {}
    for name in ("alm", "alm_fused", "syncsde"):
        obs = Recording(x0)
        problem = Problem(x0=x0, mask=mask, cond=net.make_cond([0.5, -1.0, 2.0], 3), observation=obs)
        reverse(net, build_method(name), problem, sched, SampleGenerators(4, [0, 1, 2]), guidance=2.0, sampler=sampler)
        seen[name] = obs.seen
    assert len(seen["alm"]) == 6
    for i in range(6):
        assert torch.equal(seen["alm"][i], seen["syncsde"][i]) and torch.equal(seen["alm"][i], seen["alm_fused"][i])
    # and the draw is the per-sample generator's: sample 1 alone sees what it saw in the batch
    obs = Recording(x0[1:2])
    problem = Problem(x0=x0[1:2], mask=mask[1:2], cond=net.make_cond([-1.0], 1), observation=obs)
    reverse(net, build_method("syncsde"), problem, sched, SampleGenerators(4, [1]), guidance=2.0, sampler=sampler)
    assert all(torch.allclose(obs.seen[i][0], seen["syncsde"][i][1]) for i in range(6))


# --- rows that observe each other's current state (windows of a canvas) -----------------------------

def _shift(i, y):
    """Row j observes row j-1's current state (row 0 observes itself): a chain of windows."""
    return torch.cat([y[:1], y[:-1]])


def test_chained_rows_follow_the_authors_sequential_order():
    """With ``FromState(chain=rows one by one)`` ALM's move visits the rows in order, each seeing its
    neighbour AFTER the neighbour moved, then DDIM + sync at the moved point; hand loop below."""
    torch.manual_seed(0)
    net, sched = ToyBackbone((1, 4, 4)), make_schedule(LINEAR_SCHEDULER, 5)
    B = 4
    x0 = torch.zeros(B, 1, 4, 4, dtype=torch.float64)
    mask = torch.ones(B, 1, 4, 4, dtype=torch.float64)
    mask[1:, :, :, :2] = 0  # rows 1.. observe their first two columns; row 0 observes nothing
    net = net.double()
    labels = [0.5, -1.0, 2.0, 1.0]
    chain = [torch.tensor([j]) for j in range(B)]
    w1, w2 = 1.0, 0.3
    method = build_method("alm", w1=w1, w2=w2)
    got = reverse(net, method, Problem(x0=x0, mask=mask, cond=net.make_cond(labels, B), observation=FromState(_shift, chain)),
                  sched, SampleGenerators(3, range(B)))
    # the hand loop, written from docs/method.md §4 / §9
    c = net.make_cond(labels, B).double()
    y = SampleGenerators(3, range(B)).randn((1, 4, 4), dtype=torch.float64)
    for i in range(len(sched)):
        t, ab_t, ab_s = int(sched.timesteps[i]), float(sched.ab[i]), float(sched.ab_prev[i])
        s = math.sqrt((1 - ab_s) / (1 - ab_t)) * math.sqrt(1 - ab_t / ab_s)
        tt = torch.full((1,), t)
        for j in range(B):
            x = _shift(i, y)
            e = (1 - mask[j]) * x[j] + mask[j] * y[j]
            e_y = net.eps(y[j : j + 1], tt, c[j : j + 1])
            e_e = net.eps(e[None], tt, c[j : j + 1])
            y = y.clone()
            y[j] = y[j] + s * mask[j] * (w1 * (e_y[0] - e_e[0]) - w2 * e_e[0])
        x = _shift(i, y)
        e = net.eps(y, torch.full((B,), t), c)
        x0_hat = (y - math.sqrt(1 - ab_t) * e) / math.sqrt(ab_t)
        y = math.sqrt(ab_s) * x0_hat + math.sqrt(1 - ab_s) * e + w1 * s * (1 - mask) * (x - y)
    assert (got - y).abs().max() < 1e-12
    # without the chain every row sees its neighbour's state from before the move: a different answer
    jacobi = reverse(net, method, Problem(x0=x0, mask=mask, cond=net.make_cond(labels, B), observation=FromState(_shift)),
                     sched, SampleGenerators(3, range(B)))
    assert (jacobi - y).abs().max() > 1e-6
