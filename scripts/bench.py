"""Side-by-side speed of sampling methods, and of the bare network calls they make.

    python scripts/bench.py --methods alm,alm_fused,syncsde --batch 4 --steps 20

For every backbone (default: a tiny random-weight pixel ``UNet2DModel``, 32x32x3,
block_out_channels=(32, 64), and the Gaussian mixture ``gmm`` when ``alm.backbones.gmm`` exists),
every method samples the same batch of problems (x0 random, a centre-box mask, X_t from
``alm.sampling.invert`` computed once, outside the timing) through the shared core
``alm.sampling.reverse``. One untimed run per method records the forward calls it makes (batch
size, timestep, condition, autograd) and counts them with ``CallCounter``; the "bare network" time
replays exactly those calls as plain ``backbone.eps`` calls on random inputs, with no method logic.
Repetitions are interleaved (rep 1: method A, bare A, method B, bare B, ...; rep 2: ...) and the
median is reported, so machine load affects all rows alike.

Columns: evals/sample/step (network evaluations per sample per step), calls/step (batched forward
calls per step), s/sample (median seconds / batch size), ratio vs syncsde (s/sample over syncsde's,
or over the first method's when syncsde is not run), core overhead (method time / bare network time:
1.00 means the method costs nothing beyond its network calls), spread (max/min - 1 of the method's
timed repetitions: a large value means the machine was busy).

Methods come from the registry ``alm.methods.get_method``: a name with a ``conf/method/<name>.yaml``
is built from that file (its ``kind`` and parameters), any other name is passed to ``get_method``
as is (``ddim`` is the cheapest: one guided evaluation per step). Backbones: ``unet`` (the tiny UNet above) or any ``conf/backbone/<name>.yaml``
(``--backbone-override key=value`` sets its values, e.g. ``path=/models/ddpm-cifar10``).
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


def _compose(group: str, name: str, overrides: list[str]) -> Any:
    from alm.config import compose

    try:
        cfg = compose([f"{group}={name}"] + [f"{group}.{o}" for o in overrides])
    except Exception as err:  # Hydra's override / composition errors
        raise BenchError(f"conf/{group}/{name}.yaml: {str(err).splitlines()[0]}") from None
    return cfg[group]


def make_backbone(name: str, overrides: list[str]) -> Backbone:
    if name in ("unet", "unet_tiny"):
        return tiny_unet_backbone()
    if not (CONF / "backbone" / f"{name}.yaml").is_file():
        raise BenchError(f"unknown backbone {name!r}: use 'unet' or one of conf/backbone/*.yaml")
    from alm.runner import build

    return build(_compose("backbone", name, overrides))


def default_backbones() -> list[str]:
    names = ["unet"]
    if (CONF / "backbone" / "gmm.yaml").is_file():
        names.append("gmm")
    return names


def make_method(name: str) -> Method:
    """A method by name: a ``conf/method/<name>.yaml``, or a kind for ``get_method(name)``."""
    from alm.methods import get_method

    if (CONF / "method" / f"{name}.yaml").is_file():
        from alm.runner import method_from_config

        return method_from_config(_compose("method", name, []))
    return get_method(name)


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
    cond = backbone.make_cond([i % 10 for i in range(batch)], batch) if backbone.conditional else None
    trajectory = invert(backbone, x0, schedule, cond)
    return Problem(x0=x0, mask=mask, cond=cond, trajectory=trajectory)


@dataclass
class Row:
    backbone: str
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


def bench_backbone(bb_name: str, backbone: Backbone, methods: dict[str, Method], args) -> list[Row]:
    schedule = make_schedule(backbone.scheduler_config, args.steps, kind=args.sampler)
    problem = make_problem(backbone, args.batch, schedule)
    indices = range(args.batch)
    dtype = problem.x0.dtype

    def sample(bb: Backbone, method: Method, counter: Optional[CallCounter] = None) -> torch.Tensor:
        return reverse(bb, method, problem, schedule, SampleGenerators(args.seed, indices),
                       guidance=args.guidance, sampler=args.sampler, counter=counter)

    rows, jobs = [], []
    for name, method in methods.items():
        recorder, counter = Recorder(backbone), CallCounter()
        sample(recorder, method, counter)  # untimed: counts the calls, and warms up
        inputs = bare_inputs(recorder.calls, backbone.device, dtype)
        run_bare(backbone, inputs)  # warm-up of the bare path
        row = Row(bb_name, name, counter.evaluations / (args.batch * args.steps), counter.calls / args.steps)
        rows.append(row)
        jobs.append((row, method, inputs))
    for _ in range(args.reps):  # interleaved repetitions
        for row, method, inputs in jobs:
            row.method_times.append(_timed(lambda: sample(backbone, method)))
            row.bare_times.append(_timed(lambda: run_bare(backbone, inputs)))
    return rows


def print_table(rows: list[Row], batch: int) -> list[dict]:
    header = ["backbone", "method", "evals/sample/step", "calls/step", "s/sample", "bare s/sample",
              "ratio vs syncsde", "core overhead", "spread"]
    out = []
    for bb in dict.fromkeys(r.backbone for r in rows):
        group = [r for r in rows if r.backbone == bb]
        ref = next((r for r in group if r.method == "syncsde"), group[0])
        for r in group:
            out.append({
                "backbone": r.backbone, "method": r.method,
                "evals/sample/step": f"{r.evals_per_sample_step:.2f}", "calls/step": f"{r.calls_per_step:.2f}",
                "s/sample": f"{r.method_s / batch:.4g}", "bare s/sample": f"{r.bare_s / batch:.4g}",
                "ratio vs syncsde": f"{r.method_s / ref.method_s:.2f}" + ("" if ref.method == "syncsde" else f" (vs {ref.method})"),
                "core overhead": f"{r.method_s / r.bare_s:.2f}",
                "spread": f"{100 * r.spread:.0f}%",
            })
    widths = {h: max(len(h), *(len(row[h]) for row in out)) for h in header}
    print("  ".join(h.ljust(widths[h]) for h in header))
    print("  ".join("-" * widths[h] for h in header))
    for row in out:
        print("  ".join(row[h].ljust(widths[h]) for h in header))
    return out


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="alm,alm_fused,syncsde", help="comma-separated method names")
    p.add_argument("--backbones", default=None, help="comma-separated: unet, or conf/backbone names (default: unet[,gmm])")
    p.add_argument("--backbone-override", action="append", default=[], metavar="KEY=VALUE",
                   help="a value of the conf/backbone file (repeatable), e.g. path=/models/ddpm")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--reps", type=int, default=5, help="timed repetitions (after one untimed run)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    p.add_argument("--sampler", choices=("ddim", "ddpm"), default="ddim")
    p.add_argument("--guidance", type=float, default=7.5, help="CFG scale (the paper's 7.5; unconditional backbones ignore it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--csv", default=None, help="also write the table to this CSV file (with the command)")
    args = p.parse_args(argv)
    if args.batch < 1 or args.steps < 1 or args.reps < 1:
        p.error("--batch, --steps and --reps must be positive")
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
        backbones = args.backbones.split(",") if args.backbones else default_backbones()
        print(f"# batch {args.batch}, {args.steps} {args.sampler} steps, guidance {args.guidance}, "
              f"median of {args.reps} interleaved reps, torch threads {torch.get_num_threads()}, device {args.device}")
        rows = []
        for bb_name in backbones:
            backbone = make_backbone(bb_name.strip(), args.backbone_override).to(args.device)
            print(f"# {bb_name}: sample shape {tuple(backbone.sample_shape)}")
            rows += bench_backbone(bb_name.strip(), backbone, methods, args)
    except (BenchError, ALMError) as err:
        print(f"bench: {err}", file=sys.stderr)
        return 2
    table = print_table(rows, args.batch)
    _warn_if_loaded()
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            f.write("# " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]) + "\n")
            writer = csv.DictWriter(f, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
