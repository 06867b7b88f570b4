"""Side-by-side speed of sampling methods, and of the bare network calls they make.

    python scripts/bench.py --methods alm,alm_fused,syncsde --batch 4 --steps 20
    python scripts/bench.py --backbone sd15-tiny --batch 1,4      # also against the authors' loop
    python scripts/bench.py --task wide                           # wide images: windows of one canvas
    python scripts/bench.py --task video                          # long videos: windows along the frames (tiny LaVie)
    python scripts/bench.py --task motion                         # motions (tiny CondMDI) vs the authors' CondMDI loop

For every backbone (default: a tiny random-weight pixel ``UNet2DModel``, 32x32x3,
block_out_channels=(32, 64), and the Gaussian mixture ``gmm`` when ``alm.backbones.gmm`` exists),
every method samples the same batch of problems (x0 random, a centre-box mask, X_t from
``alm.sampling.invert`` computed once, outside the timing) through the shared core
``alm.sampling.reverse``. One untimed run per method records the forward calls it makes (batch
size, timestep, condition, autograd) and counts them with ``CallCounter``; the "bare network" time
replays exactly those calls as plain ``backbone.eps`` calls on random inputs, with no method logic.
Repetitions are interleaved (rep 1: method A, bare A, method B, bare B, ...; rep 2: ...) and the
median is reported, so machine load affects all rows alike.

Columns: batch (images per batch; the authors' loop takes them one at a time), evals/sample/step
(network evaluations per sample per step), calls/step (forward calls per step for the whole batch),
s/sample (median seconds / batch size), ratio vs syncsde (s/sample over syncsde's, or over the first
method's when syncsde is not run), vs authors' loop (see below; "-" when it does not run), core
overhead (method time / bare network time: 1.00 means the method costs nothing beyond its network
calls), spread (max/min - 1 of the method's timed repetitions: a large value means the machine was
busy).

Authors' loop (text-conditional latent backbones: ``sd15*``, ``sd21base*``, ``sdxl*``): one more row,
``authors_loop``, runs ALM the way the authors' code does (``alm.reference``, the loop the equivalence
tests hold ``method=alm`` to): one image at a time, three raw UNet calls per step (e(Y), e(E), then
the conditional + unconditional pair for CFG in one call), diffusers' ``DDIMScheduler.step``, with
``conf/method/alm.yaml``'s weights, on the same model, problem, trajectory, initial noise, steps and
guidance. Before timing, the bench prints the largest difference between its output and our ``alm``
(and stops if they disagree); the column "vs authors' loop" is s/sample over the authors' loop's, at
the same batch. Problems use text prompts on these backbones; timings exclude the (shared) DDIM
inversion and VAE decoding, as for every row.

Wide images (``--task wide``; ``make bench TASK=wide``): every sample is a canvas of ``--windows`` windows of
the backbone's size at ``--stride`` (``task=wide``'s geometry, ``alm.tasks.windows.windows_problem``: the
paper's 5 windows at 0.75 by default), all windows of all canvases rows of one batch, text prompts, no source.
Default backbone: the tiny SD 2.1-base miniature ``sd21base-tiny`` (the paper's wide-image backbone; a random
UNet of channels (32, 64) on 4x16x16 latents, so the network is cheap and the method's own work weighs more
than on the real model); default batches 1 and 4 canvases; default methods ``alm`` (the authors' sequential
order), ``alm_parallel``, ``alm_fused``, ``syncsde``, ``synctweedies``, ``multidiffusion``, ``ddim``. The
first row, ``authors_loop``, is ``alm.reference.reference_wide_alm``: the authors' wide-image loop, one canvas
at a time (e(Y) of all windows in one call, e(E_j) window by window, then CFG of all windows in one call);
before timing, the bench prints the largest difference between its stitched canvas and our ``alm``'s (and
stops if they disagree). Columns are per canvas: evals/canvas/step, calls/canvas/step (forward calls per step
for the whole batch over the batch size: below 1 when canvases share calls), s/canvas; "vs authors' loop" is
s/canvas over the authors' loop's at the same batch. The stitched canvas's VAE decoding is not timed.

Long videos (``--task video``; ``make bench TASK=video``): the same along the frame axis (``task=video``: 12
windows at a stride of half a clip), default backbone the tiny LaVie miniature ``lavie-tiny``, and the authors'
loop run along the frames (``reference_wide_alm(axis=-3)``); a "canvas" is a video.

Motions (``--task motion``; ``make bench TASK=motion``): ``alm`` on a batch of 8 synthetic motions (random
normalised features, lengths 40-64, ``mask=first_half``, X_t fresh forward noise as ``task=motion``) on the tiny
CondMDI ``condmdi-tiny`` (64 frames), 25 strided DDPM steps, text guidance 2.5, 3 reps; the first row,
``authors_loop``, is ``alm.reference.reference_motion_alm`` one motion at a time (4 U-Net calls of batch 1 per
step: e(Y), e(E), the conditional and the unconditional x_0), strided as CondMDI's ``respace.py`` strides, with
the same per-motion noise streams. Columns are per motion; a last line gives both wall times for the batch and
the ratio. The agreement check allows ``MOTION_AGREEMENT`` (relative): the two loops use CondMDI's float64 and
diffusers' float32 cosine tables (see there).

Methods are ``conf/method/<name>.yaml`` built as a run builds them (``alm.config.build`` from their
``_target_``), with their published weights (``tuned@method=none``; ``ddim`` is the cheapest: one guided
evaluation per step). Backbones (``--backbone`` or
``--backbones``, comma-separated): ``unet`` (the tiny UNet above) or any ``conf/backbone/<name>.yaml``,
built as the runner builds it (``alm.config.compose`` + ``alm.config.build``; ``--backbone-override
key=value`` sets its values, e.g. ``path=/models/ddpm-cifar10``).
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from alm.backbones.base import Backbone, Cond  # noqa: E402
from alm.errors import ALMError  # noqa: E402
from alm.methods.base import Method, Problem  # noqa: E402
from alm.observation import Trajectory  # noqa: E402
from alm.rng import SampleGenerators  # noqa: E402
from alm.sampling import CallCounter, invert, reverse  # noqa: E402
from alm.schedule import Schedule, make_schedule  # noqa: E402

CONF = ROOT / "conf"
DDPM_LINEAR = {
    "_class_name": "DDIMScheduler", "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02,
    "beta_schedule": "linear", "steps_offset": 0, "set_alpha_to_one": True, "clip_sample": False,
}


class BenchError(Exception):
    """A one-line reason why the benchmark cannot run."""


# --- backbones and methods --------------------------------------------------------------------------

def tiny_unet_backbone(size: int = 32, channels: int = 3, classes: int = 10) -> Backbone:
    """A random-weight class-conditional pixel UNet2DModel built from config (no download).

    Class-conditional (``classes`` + 1 null embedding) so that classifier-free guidance runs as in the
    paper's setting: ALM then makes 4 evaluations per step (fused: 3) against SyncSDE's 2.
    """
    from diffusers import UNet2DModel

    from alm.backbones.diffusers_unet import DiffusersUNet

    torch.manual_seed(0)
    model = UNet2DModel(
        sample_size=size, in_channels=channels, out_channels=channels, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8, num_class_embeds=classes + 1,
    )
    return DiffusersUNet.from_model(model, DDPM_LINEAR, num_classes=classes, name="unet_tiny")


def _compose(group: str, name: str, overrides: list[str], extra: tuple[str, ...] = ()) -> Any:
    from alm.config import compose

    try:
        cfg = compose([f"{group}={name}", *extra] + [f"{group}.{o}" for o in overrides])
    except Exception as err:  # Hydra's override / composition errors
        raise BenchError(f"conf/{group}/{name}.yaml: {str(err).splitlines()[0]}") from None
    return cfg[group]


def make_backbone(name: str, overrides: list[str]) -> Backbone:
    if name in ("unet", "unet_tiny"):
        return tiny_unet_backbone()
    if not (CONF / "backbone" / f"{name}.yaml").is_file():
        raise BenchError(f"unknown backbone {name!r}: use 'unet' or one of conf/backbone/*.yaml")
    from alm.config import build

    return build(_compose("backbone", name, overrides))


def default_backbones() -> list[str]:
    names = ["unet"]
    if (CONF / "backbone" / "gmm.yaml").is_file():
        names.append("gmm")
    return names


def make_method(name: str) -> Method:
    """A method by name: ``conf/method/<name>.yaml`` built as a run builds it."""
    from alm.config import build

    if not (CONF / "method" / f"{name}.yaml").is_file():
        raise BenchError(f"unknown method {name!r}: use one of conf/method/*.yaml")
    # the published weights of conf/method/<name>.yaml, not the default backbone's tuned ones (conf/tuned/)
    return build(_compose("method", name, [], extra=("tuned@method=none",)))


# --- recording and replaying the network calls ------------------------------------------------------

@dataclass
class Call:
    """One batched forward call as the core made it."""

    shape: tuple[int, ...]
    t: int
    cond: Cond
    grad: bool


class Recorder(Backbone):
    """Passes everything to ``inner`` and records the shape, timestep, condition and grad mode of each call."""

    def __init__(self, inner: Backbone):
        super().__init__()
        self.inner = inner
        self.scheduler_config = inner.scheduler_config
        self.sample_shape = inner.sample_shape
        self.data_shape = inner.data_shape
        self.conditional = inner.conditional
        self.calls: list[Call] = []

    def eps(self, z, t, cond):
        self.calls.append(Call(tuple(z.shape), int(t.reshape(-1)[0]), cond, torch.is_grad_enabled()))
        return self.inner.eps(z, t, cond)

    def null_cond(self, batch):
        return self.inner.null_cond(batch)

    def make_cond(self, labels, batch):
        return self.inner.make_cond(labels, batch)


def bare_inputs(calls: list[Call], device, dtype) -> list[tuple[torch.Tensor, torch.Tensor, Cond, bool]]:
    gen = torch.Generator().manual_seed(0)
    return [
        (torch.randn(c.shape, generator=gen).to(device=device, dtype=dtype),
         torch.full((c.shape[0],), c.t, dtype=torch.long, device=device), c.cond, c.grad)
        for c in calls
    ]


def run_bare(backbone: Backbone, inputs) -> None:
    """The recorded calls as plain eps calls (a backward pass where the method took a gradient)."""
    for z, t, cond, grad in inputs:
        if grad:
            with torch.enable_grad():
                z = z.detach().requires_grad_(True)
                torch.autograd.grad(backbone.eps(z, t, cond).sum(), z)
        else:
            with torch.no_grad():
                backbone.eps(z, t, cond)


# --- the authors' loop ------------------------------------------------------------------------------

AUTHORS = "authors_loop"
#: prompts of the text-conditional problems (words of the tiny models' vocabulary, alm.backbones.tiny)
PROMPTS = ("a photo of a cat", "a painting of a dog in winter", "a portrait of a person", "a landscape in autumn")


def takes_text(backbone: Backbone) -> bool:
    """A text-conditional latent backbone (Stable Diffusion family): prompts, and the authors' loop applies."""
    from alm.backbones.latent import LatentDiffusion

    return isinstance(backbone, LatentDiffusion)


def batch_labels(backbone: Backbone, batch: int) -> list:
    if takes_text(backbone):
        return [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    return [i % 10 for i in range(batch)]


class RawRecorder:
    """Wraps a ``UNetCall`` of ``alm.reference`` and records each call (for the bare-network replay)."""

    def __init__(self, unet: Callable):
        self.unet = unet
        self.calls: list[tuple[tuple[int, ...], torch.Tensor, list]] = []

    def __call__(self, z, t, conds):
        self.calls.append((tuple(z.shape), t, list(conds) if isinstance(conds, (list, tuple)) else conds))
        return self.unet(z, t, conds)


def authors_pieces(backbone: Backbone, steps: int, labels: list):
    """What the authors' loops call, one image at a time: the raw text UNet, diffusers' DDIM scheduler with
    ``steps`` set, each image's prompt condition and the empty prompt's."""
    from alm.reference import ddim_scheduler, text_unet_call

    return (text_unet_call(backbone.denoiser.model), ddim_scheduler(backbone.scheduler_config, steps),
            [backbone.make_cond([label], 1) for label in labels], backbone.null_cond(1))


@dataclass
class AuthorsLoop:
    """ALM as the authors' code runs it (``alm.reference.reference_alm``) over a batch problem: image by
    image, each with its own prompt, slice of the trajectory and mask."""

    backbone: Backbone
    problem: Problem
    steps: int
    guidance: float
    w1: float
    w2: float
    labels: list

    def __post_init__(self):
        self.unet, self.scheduler, self.conds, self.null = authors_pieces(self.backbone, self.steps, self.labels)
        traj, mask = self.problem.observation.trajectory, self.problem.mask  # per image, as the authors hold them
        self.inverted = [[traj[i, b : b + 1] for i in range(traj.shape[0])] for b in range(traj.shape[1])]
        self.masks = [mask[b : b + 1] for b in range(mask.shape[0])]

    def __call__(self, noise: torch.Tensor, unet: Optional[Callable] = None) -> torch.Tensor:
        from alm.reference import reference_alm

        outs = []
        with torch.no_grad():
            for b in range(noise.shape[0]):
                outs.append(reference_alm(unet or self.unet, noise[b : b + 1], self.inverted[b], self.masks[b],
                                          self.conds[b], self.null, self.scheduler, guidance=self.guidance,
                                          w1=self.w1, w2=self.w2))
        return torch.cat(outs)


def authors_weights(method: Method) -> tuple[float, float]:
    """(w1, w2) of an ``alm`` in the authors' form, or a BenchError saying why the loop cannot run it."""
    from alm.methods.alm import ALM

    if not isinstance(method, ALM) or method.order != "reference" or method.iterations != 1 or not method.likelihood \
            or method.lam1 != method.w1:
        raise BenchError(f"the authors' loop runs ALM in its reference form (order=reference, iterations=1, "
                         f"w_cond tied to w1); conf/method/alm.yaml gives {method}")
    return float(method.w1), float(method.w2)


def bare_raw_inputs(calls, device, dtype) -> list[tuple[torch.Tensor, torch.Tensor, list]]:
    gen = torch.Generator().manual_seed(0)
    return [(torch.randn(shape, generator=gen).to(device=device, dtype=dtype), t, conds) for shape, t, conds in calls]


def run_bare_raw(unet: Callable, inputs) -> None:
    with torch.no_grad():
        for z, t, conds in inputs:
            unet(z, t, conds)


# --- the benchmark ----------------------------------------------------------------------------------

def center_box_mask(batch: int, shape: tuple[int, ...], fraction: float = 0.5) -> torch.Tensor:
    """(B, 1, H, W): 1 (to generate) in a centred box of ``fraction`` of each side, 0 elsewhere."""
    h, w = shape[-2:]
    bh, bw = max(1, round(h * fraction)), max(1, round(w * fraction))
    mask = torch.zeros(batch, 1, h, w)
    mask[..., (h - bh) // 2 : (h - bh) // 2 + bh, (w - bw) // 2 : (w - bw) // 2 + bw] = 1
    return mask


def make_problem(backbone: Backbone, batch: int, schedule: Schedule) -> Problem:
    shape = tuple(backbone.sample_shape)
    x0 = torch.rand((batch, *shape), generator=torch.Generator().manual_seed(1)) * 2 - 1
    x0 = x0.to(backbone.device)
    mask = center_box_mask(batch, shape).to(backbone.device)
    mask = mask if len(shape) == 3 else mask.reshape(batch, *([1] * len(shape)))
    cond = backbone.make_cond(batch_labels(backbone, batch), batch) if backbone.conditional else None
    trajectory = invert(backbone, x0, schedule, cond)
    return Problem(x0=x0, mask=mask, cond=cond, observation=Trajectory(trajectory))


@dataclass
class Row:
    backbone: str
    batch: int
    method: str
    evals_per_sample_step: float
    calls_per_step: float
    method_times: list[float] = field(default_factory=list)
    bare_times: list[float] = field(default_factory=list)

    @property
    def method_s(self) -> float:
        return statistics.median(self.method_times)

    @property
    def bare_s(self) -> float:
        return statistics.median(self.bare_times)

    @property
    def spread(self) -> float:
        """max/min - 1 of the method's times: a large value means a noisy (loaded) machine."""
        return max(self.method_times) / min(self.method_times) - 1


def _timed(fn: Callable[[], Any]) -> float:
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if cuda:  # wait for queued kernels, or the time is only the launch time
        torch.cuda.synchronize()
    return time.perf_counter() - start


#: largest |ours - authors' loop| / max(1, max |authors' loop|) accepted, by the UNet's dtype: batched and
#: per-image calls round differently (float32, tiny SD, 10 steps: ~2e-6 observed); the smallest one-term
#: change of the update among alm.reference.MUTATIONS (the sign of w2 at the authors' w2 = 0.005) gives ~1e-2
AGREEMENT = {torch.float64: 1e-6, torch.float32: 1e-4}
AGREEMENT_HALF = 2e-2  # float16 / bfloat16


def agreement(backbone: Backbone) -> float:
    return AGREEMENT.get(getattr(backbone.denoiser, "model_dtype", torch.float32), AGREEMENT_HALF)


def bench_backbone(bb_name: str, backbone: Backbone, methods: dict[str, Method], args) -> list[Row]:
    """Every method (and the authors' loop where it applies) at every batch size, repetitions interleaved."""
    schedule = make_schedule(backbone.scheduler_config, args.steps, kind=args.sampler)
    with_authors = takes_text(backbone) and not args.no_authors_loop and args.sampler == "ddim"
    rows, jobs = [], []
    for batch in args.batch:
        problem = make_problem(backbone, batch, schedule)
        indices = range(batch)
        dtype = problem.x0.dtype

        def sample(bb: Backbone, method: Method, counter: Optional[CallCounter] = None,
                   problem=problem, indices=indices) -> torch.Tensor:
            return reverse(bb, method, problem, schedule, SampleGenerators(args.seed, indices),
                           guidance=args.guidance, sampler=args.sampler, counter=counter)

        outputs = {}
        for name, method in methods.items():
            recorder, counter = Recorder(backbone), CallCounter()
            outputs[name] = sample(recorder, method, counter)  # untimed: counts the calls, and warms up
            inputs = bare_inputs(recorder.calls, backbone.device, dtype)
            run_bare(backbone, inputs)  # warm-up of the bare path
            row = Row(bb_name, batch, name, counter.evaluations / (batch * args.steps), counter.calls / args.steps)
            rows.append(row)
            jobs.append((row, (lambda sample=sample, method=method: sample(backbone, method)),
                         (lambda inputs=inputs: run_bare(backbone, inputs))))
        if with_authors:
            alm = methods.get("alm") or make_method("alm")
            w1, w2 = authors_weights(alm)
            loop = AuthorsLoop(backbone, problem, args.steps, args.guidance, w1, w2, batch_labels(backbone, batch))
            noise = SampleGenerators(args.seed, indices).randn(backbone.sample_shape, backbone.device, dtype)  # our Y_T
            got = outputs["alm"] if "alm" in outputs else sample(backbone, alm)
            job = authors_job(backbone, bb_name, batch, args.steps, loop, noise, got, dtype,
                              f"authors' loop| = {{diff:.2e}} over {batch} image(s)", f"w1={w1:g}, w2={w2:g}")
            rows.append(job[0])
            jobs.append(job)
    time_jobs(jobs, args.reps)
    return rows


def authors_job(backbone, bb_name: str, batch: int, steps: int, loop, noise, got, dtype, what: str, weights: str,
                tolerance: Optional[float] = None):
    """The authors'-loop row and its timing job, after checking that the loop's output equals ours (``got``):
    otherwise the ratio would compare different computations. ``what`` names the comparison ({diff} filled in);
    ``tolerance`` (relative) defaults to ``agreement(backbone)``."""
    recorder = RawRecorder(loop.unet)
    want = loop(noise, recorder)  # untimed: the sanity check, counts the calls, and warms up
    diff, scale = (got - want).abs().max().item(), max(1.0, want.abs().max().item())
    print(f"# sanity, {bb_name} batch {batch}: max |alm - " + what.format(diff=diff) +
          f" (outputs up to {scale:.2f}; {weights})")
    tolerance = agreement(backbone) if tolerance is None else tolerance
    if not diff <= tolerance * scale:
        raise BenchError(f"{bb_name}: our alm and the {what.split('|')[0]} differ by {diff:.3g} (> {tolerance:g} "
                         f"x {scale:.3g}): the ratio would compare different computations")
    raw = bare_raw_inputs(recorder.calls, backbone.device, dtype)
    run_bare_raw(loop.unet, raw)
    evaluations = sum(shape[0] for shape, _, _ in recorder.calls)
    row = Row(bb_name, batch, AUTHORS, evaluations / (batch * steps), len(recorder.calls) / steps)
    return (row, (lambda: loop(noise)), (lambda: run_bare_raw(loop.unet, raw)))


def time_jobs(jobs: list, reps: int) -> None:
    """Interleaved repetitions over (row, method run, bare-network run) jobs: rep 1 of every job, then rep 2, ..."""
    for _ in range(reps):
        for row, run_method, run_net in jobs:
            row.method_times.append(_timed(run_method))
            row.bare_times.append(_timed(run_net))


# --- wide images: the windows of one canvas ---------------------------------------------------------

WIDE_METHODS = "alm,alm_parallel,alm_fused,syncsde,synctweedies,multidiffusion,ddim"
WIDE_BACKBONE = "sd21base-tiny"
VIDEO_BACKBONE = "lavie-tiny"  # --task video: the paper's video backbone's miniature (windows along frames, axis -3)


@dataclass
class WideAuthorsLoop:
    """ALM on wide images as the authors' code runs it (``alm.reference.reference_wide_alm``): canvas by
    canvas, each with its own prompt, the windows of one canvas in the authors' order."""

    backbone: Backbone
    geometry: Any  # alm.windows.WindowGeometry (anchor 0: the canvas grows to the right)
    steps: int
    guidance: float
    w1: float
    w2: float
    labels: list
    axis: int = -1

    def __post_init__(self):
        if self.geometry.anchor != 0:
            raise BenchError("the authors' wide loop grows the canvas to the right from window 0")
        self.unet, self.scheduler, self.conds, self.null = authors_pieces(self.backbone, self.steps, self.labels)

    def __call__(self, noise: torch.Tensor, unet: Optional[Callable] = None) -> torch.Tensor:
        """Canvas noise (B, C, H, L) -> stitched canvas latents (B, C, H, L)."""
        from alm.reference import reference_wide_alm

        g, outs = self.geometry, []
        with torch.no_grad():
            for b in range(noise.shape[0]):
                outs.append(reference_wide_alm(unet or self.unet, noise[b : b + 1], self.conds[b], self.null,
                                               self.scheduler, size=g.size, stride=g.stride, count=g.count,
                                               guidance=self.guidance, w1=self.w1, w2=self.w2, axis=self.axis))
        return torch.cat(outs)


def wide_geometry(backbone: Backbone, args):
    from alm.windows import geometry_for

    axis = -3 if args.task == "video" else -1
    return geometry_for(int(backbone.sample_shape[axis]), args.stride, args.windows, axis=axis)


def bench_wide(bb_name: str, backbone: Backbone, methods: dict[str, Method], args) -> list[Row]:
    """Every method on batches of canvases (and the authors' wide loop first, on text backbones), repetitions
    interleaved. A row's "sample" is a canvas: its evaluations and seconds are per canvas."""
    from alm.tasks.windows import windows_problem

    g = wide_geometry(backbone, args)
    schedule = make_schedule(backbone.scheduler_config, args.steps, kind=args.sampler)
    with_authors = takes_text(backbone) and not args.no_authors_loop and args.sampler == "ddim"
    canvas = list(backbone.sample_shape)
    canvas[g.axis] = g.length
    rows, jobs = [], []
    for batch in args.batch:
        labels, indices = batch_labels(backbone, batch), range(batch)
        with torch.no_grad():  # the method only matters for an observed source (none here)
            problem = windows_problem(backbone, next(iter(methods.values())), g, batch, labels, schedule)
        dtype = problem.x0.dtype

        def sample(bb: Backbone, method: Method, counter: Optional[CallCounter] = None,
                   problem=problem, indices=indices) -> torch.Tensor:
            z = reverse(bb, method, problem, schedule, SampleGenerators(args.seed, indices),
                        guidance=args.guidance, sampler=args.sampler, counter=counter)
            return g.stitch(z)

        group, outputs = [], {}
        for name, method in methods.items():
            recorder, counter = Recorder(backbone), CallCounter()
            outputs[name] = sample(recorder, method, counter)  # untimed: counts the calls, and warms up
            inputs = bare_inputs(recorder.calls, backbone.device, dtype)
            run_bare(backbone, inputs)
            row = Row(bb_name, batch, name, counter.evaluations / (batch * args.steps), counter.calls / args.steps)
            group.append((row, (lambda sample=sample, method=method: sample(backbone, method)),
                          (lambda inputs=inputs: run_bare(backbone, inputs))))
        if with_authors:
            alm = methods.get("alm") or make_method("alm")
            w1, w2 = authors_weights(alm)
            loop = WideAuthorsLoop(backbone, g, args.steps, args.guidance, w1, w2, labels, axis=g.axis)
            noise = SampleGenerators(args.seed, indices).randn(tuple(canvas), backbone.device, dtype)  # our canvas noise
            got = outputs["alm"] if "alm" in outputs else sample(backbone, alm)
            group.insert(0, authors_job(backbone, bb_name, batch, args.steps, loop, noise, got, dtype,
                                        f"authors' wide loop| = {{diff:.2e}} over {batch} canvas(es) of {g.count} windows "
                                        f"at stride {g.stride}", f"w1={w1:g}, w2={w2:g}"))
        rows += [row for row, _, _ in group]
        jobs += group
    time_jobs(jobs, args.reps)
    return rows

# --- motions: CondMDI's text-to-motion U-Net ------------------------------------------------------------

MOTION_BACKBONE = "condmdi-tiny"  # --task motion: the paper's motion network's miniature (64 frames, random weights)
MOTION_METHODS = "alm"
MOTION_BATCH, MOTION_STEPS, MOTION_REPS = 8, 25, 3  # < 2 min on one thread with the authors' loop
#: captions of the synthetic motions (any text: the tiny CLIP tower is random, on CLIP's real tokenizer)
CAPTIONS = ("a person walks forward", "someone jumps up twice", "a man waves with his right hand", "a person sits down")
#: --task motion's relative agreement: the authors' loop derives its tables from CondMDI's float64 cosine
#: ``alphas_cumprod`` (the backbone's, as their ``GaussianDiffusion``), our core from diffusers' float32 one
#: (``alm.schedule``; up to 5e-4 apart relative to 1 - ab near t = 0), and the batched float32 text tower rounds
#: differently from one caption at a time; through 50 strided steps of the random tiny U-Net that gives ~3e-4
#: (observed, float32 and float64 alike: ~2e-13 in float64 with both tables and the text rows aligned). The
#: smallest one-term change of the update (the sign of w2 at w2 = 0.005) gives ~0.8.
MOTION_AGREEMENT = 2e-3


class SyntheticMotions:
    """``count`` random motions in the backbone's space: normalised features N(0, 1) on each motion's valid frames
    (lengths 40..64, clipped to the backbone's frames), decoded to raw features, zero beyond the length (as
    ``alm.data.humanml3d`` pads), with a caption each. ``item(i)`` depends on ``i`` only."""

    name = "synthetic_motions"

    def __init__(self, backbone: Backbone, seed: int = 0):
        self.backbone, self.seed = backbone, seed
        self.shape = tuple(backbone.data_shape)

    def __getitem__(self, i: int):
        from alm.data.base import Item

        features, _, frames = self.shape
        lo, hi = min(40, frames), min(64, frames)
        length = lo + (7 * i) % (hi - lo + 1)
        z = torch.zeros(self.shape)
        z[..., :length] = torch.randn((features, 1, length), generator=torch.Generator().manual_seed(1000 * self.seed + i))
        with torch.no_grad():
            x = self.backbone.decode(z.to(self.backbone.device)).cpu() * (torch.arange(frames) < length)
        caption = CAPTIONS[i % len(CAPTIONS)]
        return Item(x, caption, {"length": length, "caption": caption, "tokens": [], "name": f"synthetic_{i}"})


def is_condmdi(backbone: Backbone) -> bool:
    from alm.backbones.condmdi import CondMDIMotion

    return isinstance(backbone, CondMDIMotion)


@dataclass
class MotionAuthorsLoop:
    """ALM on motions as the authors' CondMDI-based code runs it (``alm.reference.reference_motion_alm``): motion
    by motion, each with its own caption (encoded alone), mask and noise stream; x_0-predicting U-Net calls of
    batch 1 (e(Y), e(E), then the conditional and the unconditional x_0 of CondMDI's ``ClassifierFreeSampleModel``).

    Fewer steps than the 1000 training timesteps are run as CondMDI's ``respace.py`` runs them (``SpacedDiffusion``:
    the tables of the kept timesteps' ``alphas_cumprod``, betas ``1 - ab_t / ab_prev``; ``_WrappedModel``: the
    network sees the original timestep of step index i) on OUR grid (``alm.schedule``), so that both compute the
    same thing (CondMDI's ``space_timesteps`` would keep 0, 20, 41, ..., 999 for 50 steps, ours 0, 20, ..., 980).
    Noise: the per-sample generators of ``alm.rng`` drawn in the core's order (as tests/test_motion_reference.py)."""

    backbone: Backbone
    batch: Any  # alm.tasks.base.Batch
    schedule: Schedule
    guidance: float
    w1: float
    w2: float
    imputation: bool
    seed: int

    def __post_init__(self):
        bb, sched = self.backbone, self.schedule
        ts = sched.timesteps.flip(0)  # ascending: step index i -> its training timestep (their timestep_map)
        self.table = bb.alphas_cumprod.double()[ts.cpu()]  # CondMDI's own table, at the kept timesteps
        ab, ab_prev = sched.ab.flip(0), sched.ab_prev.flip(0)
        if not torch.equal(ab_prev[1:], ab[:-1]) or float(ab_prev[0]) != 1.0:
            raise BenchError(f"{len(sched)} steps: the grid's previous levels are not its own timesteps (t - T // n), "
                             "which the respaced authors' loop needs: use a step count dividing the training steps")

        def unet(z, i, cond):  # their model(x, t, **y) under _WrappedModel: index -> timestep
            return bb.predict_x0(z, ts[i : i + 1], cond)

        self.unet = unet
        b = self.batch
        with torch.no_grad():
            self.motions = [bb.encode(b.sources[j : j + 1]) for j in range(len(b.indices))]
            self.observed = [b.masks[j] < 0.5 for j in range(len(b.indices))]  # their inpainting_mask (True = kept)
            self.conds = [bb.make_cond([label], 1) for label in b.labels]
        self.null = bb.null_cond(1)

    def __call__(self, noise: Any = None, unet: Optional[Callable] = None) -> torch.Tensor:
        """The batch's motions one at a time (``noise`` unused: each motion draws from its own generator)."""
        from alm.reference import reference_motion_alm

        outs = []
        with torch.no_grad():
            for j, index in enumerate(self.batch.indices):
                gens = SampleGenerators(self.seed, [index])
                dtype = self.motions[j].dtype

                def draw(gens=gens, dtype=dtype):
                    return gens.randn_rows(1, self.backbone.sample_shape, device=self.backbone.device, dtype=dtype)

                y = draw()  # Y_T first, as the core draws it
                outs.append(reference_motion_alm(unet or self.unet, y, self.motions[j], self.observed[j], self.conds[j],
                                                 self.null, self.table, guidance=self.guidance, w1=self.w1, w2=self.w2,
                                                 draw=draw, imputation=self.imputation))
        return torch.cat(outs)


def bench_motion(bb_name: str, backbone: Backbone, methods: dict[str, Method], args) -> list[Row]:
    """Every method on batches of synthetic motions (mask first_half, X_t fresh forward noise of the observed
    frames), the authors' loop first (CondMDI backbones, DDPM), repetitions interleaved. Text encoding and the
    problem's set-up are outside the timing, for both."""
    from alm.motion.frame_masks import FrameMasks
    from alm.tasks.motion import Motion

    schedule = make_schedule(backbone.scheduler_config, args.steps, kind=args.sampler)
    with_authors = is_condmdi(backbone) and not args.no_authors_loop and args.sampler == "ddpm"
    task, masks, dataset = Motion(render=0), FrameMasks("first_half"), SyntheticMotions(backbone, args.seed)
    rows, jobs = [], []
    for batch in args.batch:
        indices = list(range(batch))
        data = task.load(dataset, masks, indices, backbone.device)
        group, outputs = [], {}
        for name, method in methods.items():
            problem = task.problem(backbone, method, data, schedule)  # X_t only for a method that reads it

            def sample(bb: Backbone, method: Method = method, counter: Optional[CallCounter] = None,
                       problem=problem) -> torch.Tensor:
                return reverse(bb, method, problem, schedule, SampleGenerators(args.seed, indices),
                               guidance=args.guidance, sampler=args.sampler, counter=counter)

            recorder, counter = Recorder(backbone), CallCounter()
            outputs[name] = sample(recorder, counter=counter)  # untimed: counts the calls, and warms up
            inputs = bare_inputs(recorder.calls, backbone.device, problem.x0.dtype)
            run_bare(backbone, inputs)
            row = Row(bb_name, batch, name, counter.evaluations / (batch * args.steps), counter.calls / args.steps)
            group.append((row, (lambda sample=sample: sample(backbone)), (lambda inputs=inputs: run_bare(backbone, inputs))))
        if with_authors:
            alm = methods.get("alm") or make_method("alm")
            w1, w2 = authors_weights(alm)
            loop = MotionAuthorsLoop(backbone, data, schedule, args.guidance, w1, w2, bool(alm.imputation), args.seed)
            if "alm" in outputs:
                got = outputs["alm"]
            else:
                got = reverse(backbone, alm, task.problem(backbone, alm, data, schedule),
                              schedule, SampleGenerators(args.seed, indices), guidance=args.guidance, sampler=args.sampler)
            group.insert(0, authors_job(backbone, bb_name, batch, args.steps, loop, None, got, got.dtype,
                                        f"authors' motion loop| = {{diff:.2e}} over {batch} motion(s) of "
                                        f"{backbone.sample_shape[-1]} frames", f"w1={w1:g}, w2={w2:g}",
                                        tolerance=MOTION_AGREEMENT))
        rows += [row for row, _, _ in group]
        jobs += group
    time_jobs(jobs, args.reps)
    return rows


def motion_summary(rows: list[Row]) -> None:
    """(a)-(d) of the motion comparison in words, per batch: our batched core against the authors' loop."""
    for key in dict.fromkeys((r.backbone, r.batch) for r in rows):
        group = {r.method: r for r in rows if (r.backbone, r.batch) == key}
        ours, theirs = group.get("alm"), group.get(AUTHORS)
        if ours is None or theirs is None:
            continue
        b = ours.batch
        print(f"# {key[0]}, {b} motions: our batched core {ours.method_s:.3g} s ({ours.evals_per_sample_step:g} "
              f"evaluations and {ours.calls_per_step / b:.3g} calls per motion per step), the authors' loop one motion "
              f"at a time {theirs.method_s:.3g} s ({theirs.evals_per_sample_step:g} evaluations and "
              f"{theirs.calls_per_step / b:.3g} calls per motion per step): ours takes {ours.method_s / theirs.method_s:.2f}x "
              f"the authors' time ({theirs.method_s / ours.method_s:.2f}x faster)")


HEADER = ["backbone", "batch", "method", "evals/sample/step", "calls/step", "s/sample", "bare s/sample",
          "ratio vs syncsde", "vs authors' loop", "core overhead", "spread"]


def unit_of(task: str) -> str:
    """What one sample is: a canvas (--task wide; --task video: a video), a motion (--task motion), or an image."""
    return {"wide": "canvas", "video": "canvas", "motion": "motion"}.get(task, "sample")


def header(task: str = "inpaint") -> list[str]:
    unit = unit_of(task)
    if unit == "sample":
        return HEADER
    # the reference is the authors' loop, and calls are per sample (below 1 when samples share calls)
    return ["backbone", "batch", "method", f"evals/{unit}/step", f"calls/{unit}/step", f"s/{unit}", f"bare s/{unit}",
            "vs authors' loop", "core overhead", "spread"]


#: --task wide: a sample is a canvas, and the reference is the authors' wide loop
WIDE_HEADER = header("wide")


def print_table(rows: list[Row], task: str = "inpaint") -> list[dict]:
    unit = unit_of(task)
    columns = header(task)
    out = []
    for key in dict.fromkeys((r.backbone, r.batch) for r in rows):
        group = [r for r in rows if (r.backbone, r.batch) == key]
        ref = next((r for r in group if r.method == "syncsde"), group[0])
        authors = next((r for r in group if r.method == AUTHORS), None)
        for r in group:
            row = {
                "backbone": r.backbone, "batch": str(r.batch), "method": r.method,
                f"evals/{unit}/step": f"{r.evals_per_sample_step:.2f}", "calls/step": f"{r.calls_per_step:.2f}",
                f"calls/{unit}/step": f"{r.calls_per_step / r.batch:.2f}",
                f"s/{unit}": f"{r.method_s / r.batch:.4g}", f"bare s/{unit}": f"{r.bare_s / r.batch:.4g}",
                "ratio vs syncsde": f"{r.method_s / ref.method_s:.2f}" + ("" if ref.method == "syncsde" else f" (vs {ref.method})"),
                "vs authors' loop": f"{r.method_s / authors.method_s:.2f}" if authors else "-",
                "core overhead": f"{r.method_s / r.bare_s:.2f}",
                "spread": f"{100 * r.spread:.0f}%",
            }
            out.append({h: row[h] for h in columns})
    widths = {h: max(len(h), *(len(row[h]) for row in out)) for h in columns}
    print("  ".join(h.ljust(widths[h]) for h in columns))
    print("  ".join("-" * widths[h] for h in columns))
    for row in out:
        print("  ".join(row[h].ljust(widths[h]) for h in columns))
    return out


def _batches(text: str) -> list[int]:
    try:
        sizes = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected batch sizes like 4 or 1,4") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: batch sizes must be positive")
    return list(dict.fromkeys(sizes))


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=("inpaint", "wide", "video", "motion"), default="inpaint",
                   help="inpaint: one image per sample (default); wide: canvases of overlapping windows (task=wide); "
                        "video: the same along the frames (task=video: 12 windows at a stride of 0.5); motion: "
                        "HumanML3D-shaped motions, first half observed (task=motion), vs the authors' CondMDI loop")
    p.add_argument("--methods", default=None,
                   help=f"comma-separated method names (default: alm,alm_fused,syncsde,bld; --task wide: {WIDE_METHODS}; "
                        f"--task motion: {MOTION_METHODS})")
    p.add_argument("--backbones", "--backbone", dest="backbones", default=None,
                   help="comma-separated: unet, or conf/backbone names such as sd15-tiny "
                        f"(default: unet[,gmm]; --task wide: {WIDE_BACKBONE}; --task motion: {MOTION_BACKBONE})")
    p.add_argument("--backbone-override", action="append", default=[], metavar="KEY=VALUE",
                   help="a value of the conf/backbone file (repeatable), e.g. path=/models/ddpm")
    p.add_argument("--batch", type=_batches, default=None,
                   help="batch size(s), comma-separated, e.g. 1,4 (default: 4; --task wide: 1,4 canvases; "
                        f"--task motion: {MOTION_BATCH} motions)")
    p.add_argument("--windows", type=int, default=None, help="--task wide: windows per canvas (task.windows; default 5, "
                   "--task video 12)")
    p.add_argument("--stride", type=float, default=None,
                   help="--task wide: window stride, a fraction of the window or (> 1) latent columns (task.stride)")
    p.add_argument("--steps", type=int, default=None, help=f"sampling steps (default 20; --task motion {MOTION_STEPS})")
    p.add_argument("--reps", type=int, default=None,
                   help=f"timed repetitions (after one untimed run; default 5, --task motion {MOTION_REPS})")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    p.add_argument("--sampler", choices=("ddim", "ddpm"), default=None, help="default ddim; --task motion: ddpm (CondMDI's)")
    p.add_argument("--guidance", type=float, default=None,
                   help="CFG scale (the paper's 7.5; --task motion: CondMDI's text scale 2.5; unconditional backbones ignore it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-authors-loop", action="store_true", help="skip the authors'-loop row on text backbones")
    p.add_argument("--csv", default=None, help="also write the table to this CSV file (with the command)")
    args = p.parse_args(argv)
    motion = args.task == "motion"
    args.steps = args.steps if args.steps is not None else MOTION_STEPS if motion else 20
    args.reps = args.reps if args.reps is not None else MOTION_REPS if motion else 5
    args.sampler = args.sampler or ("ddpm" if motion else "ddim")
    args.guidance = args.guidance if args.guidance is not None else 2.5 if motion else 7.5
    if args.steps < 1 or args.reps < 1:
        p.error("--steps and --reps must be positive")
    wide = args.task in ("wide", "video")
    if args.task == "video":  # task=video's geometry unless given
        args.windows = 12 if args.windows is None else args.windows
        args.stride = 0.5 if args.stride is None else args.stride
    args.windows = 5 if args.windows is None else args.windows
    args.stride = 0.75 if args.stride is None else args.stride
    if args.batch is None:
        args.batch = [1, 4] if wide else [MOTION_BATCH] if motion else [4]
    if args.methods is None:
        args.methods = WIDE_METHODS if wide else MOTION_METHODS if motion else "alm,alm_fused,syncsde,bld"
    if args.stride.is_integer() and args.stride > 1:
        args.stride = int(args.stride)  # entries, as task.stride
    return args


def _warn_if_loaded() -> None:
    """Other processes competing for the cores make multi-threaded timings erratic: say so."""
    if not hasattr(os, "getloadavg") or torch.get_num_threads() == 1:
        return
    load, cores = os.getloadavg()[0], _all_cores()
    if load > cores * 0.9:
        print(f"# note: load average {load:.1f} on {cores} cores during the run: timings are noisy "
              f"(see the spread column); --threads 1 is steadier on a shared machine")


def _all_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads or _all_cores())
    try:
        names = [m.strip() for m in args.methods.split(",") if m.strip()]
        methods = {name: make_method(name) for name in names}
        wide = args.task in ("wide", "video")
        default = ({"wide": [WIDE_BACKBONE], "video": [VIDEO_BACKBONE], "motion": [MOTION_BACKBONE]}.get(args.task)
                   or default_backbones())
        backbones = args.backbones.split(",") if args.backbones else default
        print(f"# task {args.task}, batch {','.join(map(str, args.batch))}, {args.steps} {args.sampler} steps, "
              f"guidance {args.guidance}, median of {args.reps} interleaved reps, torch threads {torch.get_num_threads()}, "
              f"device {args.device}")
        rows = []
        for bb_name in backbones:
            backbone = make_backbone(bb_name.strip(), args.backbone_override).to(args.device)
            if wide:
                g = wide_geometry(backbone, args)
                canvas = list(backbone.sample_shape)
                canvas[g.axis] = g.length
                print(f"# {bb_name}: canvas of {g.count} windows of {tuple(backbone.sample_shape)} at a stride of "
                      f"{g.stride} along {'the frames' if g.axis == -3 else 'the width'}: {tuple(canvas)}")
                rows += bench_wide(bb_name.strip(), backbone, methods, args)
            elif args.task == "motion":
                shape = tuple(backbone.sample_shape)
                print(f"# {bb_name}: motions of shape {shape} ({shape[-1]} frames), mask first_half, X_t fresh forward "
                      "noise of the observed frames")
                rows += bench_motion(bb_name.strip(), backbone, methods, args)
            else:
                print(f"# {bb_name}: sample shape {tuple(backbone.sample_shape)}")
                rows += bench_backbone(bb_name.strip(), backbone, methods, args)
    except (BenchError, ALMError) as err:
        print(f"bench: {err}", file=sys.stderr)
        return 2
    table = print_table(rows, args.task)
    if args.task == "motion":
        motion_summary(rows)
    _warn_if_loaded()
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            command = [sys.executable, *sys.argv] if argv is None else [sys.executable, __file__, *argv]
            f.write("# " + " ".join(shlex.quote(a) for a in command) + "\n")
            writer = csv.DictWriter(f, fieldnames=header(args.task))
            writer.writeheader()
            writer.writerows(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
