"""Train, export and sample the project's embedded backbones: class-conditional pixel DDPMs on MNIST
(``--data mnist``, ``backbone=embedded``) and on the shipped textures (``--data textures``, ``backbone=texture``).

The model is a diffusers ``UNet2DModel`` (32x32, 1 channel, ~1.1 M parameters: channels 32/64/64,
one ResNet block per level, self-attention at 8x8) with ``num_class_embeds=11``: digits 0-9 and
label 10 = the null class (``DiffusersUNet``'s convention), trained with 10% label dropout so that
classifier-free guidance works. Data: the ``train`` split of ``alm.data.mnist`` (4,000 images); or,
with ``--data textures``, random 32x32 crops (flipped half the time) of the ``train`` rows of brick, grass
and gravel (``alm.data.textures``; 3 classes + null class 3), drawn afresh at every step; or, with
``--data moving_digits --arch video`` (``backbone=moving_digits``), 16-frame clips of a train digit
moving and bouncing in a 32x32 frame (``alm.data.moving_digits``, drawn afresh at every step), fed to a
wider UNet (channels 64/64/128, ~3.3 M parameters) with the 16 frames as its 16 input and output
channels: one 2-D UNet call per clip, ~16x cheaper on a CPU than a UNet applied per frame with
temporal layers (measured: diffusers' ``UNet3DConditionModel`` at channels 32/64/64 took 17 s per
training step of 8 clips), and its first convolution sees every frame at once, which is all a window
of 16 frames needs.

Noise schedule and target, chosen for how the model is used (DDIM 50 steps, DDIM inversion):

- ``squaredcos_cap_v2`` (cosine) betas, 1000 steps. The linear schedule destroys a 32x32 image
  within the first ~60% of its timesteps, so most of its training and of a 50-step DDIM grid is
  spent on levels that are pure noise, and few steps remain where the image is actually formed;
  the cosine schedule spreads the log-SNR evenly (Nichol & Dhariwal 2021), which matters most for
  small images and short samplers.
- ``v_prediction`` (Salimans & Ho 2022). With eps-prediction, x0_hat = (z - sqrt(1-ab) eps)/sqrt(ab)
  amplifies the network's error by 1/sqrt(ab) at high noise, which is where DDIM commits to the
  global layout and to the background level: an under-trained eps model gives "recognisable digits
  on noisy grey backgrounds". The v target is well-conditioned at every level (it is ~ -x0 at high
  noise and ~eps at low noise), so the flat -1 background is learned directly. ``DiffusersUNet``
  converts v to eps with the model's own schedule, so every method sees a plain eps model.
- The scheduler config keeps diffusers' DDIM defaults (``timestep_spacing: leading``,
  ``set_alpha_to_one: true``, no clipping): the 50-step grid is 980, 960, ..., 0, whose first level
  (ab = 1e-3) is noise-dominated yet numerically benign for the v->eps conversion and inversion.

Training: AdamW (lr 4e-4, 500 warm-up steps, then constant; weight decay 0.01), grad-norm clipping
at 1, batch 64, EMA of the weights (decay 0.999, with the usual (1+n)/(10+n) ramp); the EMA weights
are what is exported. No augmentation (flips are wrong for digits). Every random draw of step ``n``
comes from generators seeded by ``(seed, n)`` and the data order of epoch ``e`` by ``(seed, e)``
(``alm.rng.sample_seed``), so a resumed run is identical to an uninterrupted one.

Run folder (default ``runs/train_embedded/``; ``runs/train_textures/`` for textures; gitignored): ``checkpoint.pt`` (model, EMA,
optimizer, step, RNG state, config, the command of every session; written atomically every
``--save-minutes`` and at the end, also on SIGTERM/SIGINT), ``checkpoint_prev.pt`` (the one
before), ``loss.csv`` (one row per step).

    python scripts/train_embedded.py --minutes 100            # train (resumes from the run folder)
    python scripts/train_embedded.py --steps 20000            # ... up to a total step count
    python scripts/train_embedded.py --export weights/embedded   # EMA weights -> diffusers folder
    python scripts/train_embedded.py --sample 8 --guidance 2  # grid PNG: 8 samples per digit (class)
    python scripts/train_embedded.py --data textures --minutes 100   # the texture model (backbone=texture)

``--export`` writes ``unet/`` (config + safetensors), ``scheduler/scheduler_config.json``,
``TRAINING.md`` (commands, steps, wall time, final loss) and ``loss.csv``; it loads with
``DiffusersUNet(path=...)`` (``backbone=embedded``). ``--sample`` samples with the project's own
core (``alm.sampling.reverse`` + the ``ddim`` method, mask all ones), from the run's checkpoint or
from ``--weights DIR`` (an exported folder).
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import shlex
import shutil
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from alm.errors import ALMError, CheckpointError, ConfigError  # noqa: E402
from alm.rng import sample_seed  # noqa: E402

FORMAT = 1
#: classes per data set; label NUM_CLASSES is the null class (10 for the digits, 3 for the textures)
DATA_CLASSES = {"mnist": 10, "textures": 3, "moving_digits": 10}
#: data whose samples are clips (1, FRAMES, 32, 32), fed to the UNet with the frames as its channels
CLIP_FRAMES = {"moving_digits": 16}
NUM_CLASSES = DATA_CLASSES["mnist"]
ARCHS: dict[str, dict[str, Any]] = {
    # ~1.1 M parameters; 0.6-0.7 s per step at batch 64 on one CPU thread
    "small": dict(
        block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=8, attention_head_dim=32,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    ),
    # ~3.3 M parameters, for clips with their 16 frames as channels (--data moving_digits); ~2 s per step
    # at batch 32 on one CPU thread
    "video": dict(
        block_out_channels=(64, 64, 128), layers_per_block=1, norm_num_groups=8, attention_head_dim=32,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    ),
    # for tests: a few thousand parameters
    "tiny": dict(
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
    ),
}
SCHEDULER: dict[str, Any] = dict(
    num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction",
    clip_sample=False, set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading",
)
# hyperparameters that define the run (stored in the checkpoint; a resume must not change them)
RUN_KEYS = ("data", "arch", "batch_size", "lr", "warmup", "weight_decay", "grad_clip", "ema_decay", "p_uncond", "seed")
RUN_DEFAULTS = {"data": "mnist"}  # keys older checkpoints do not store
# random streams (alm.rng.sample_seed(seed, index, stream))
STREAM_STEP, STREAM_EPOCH, STREAM_CROPS = 101, 102, 103


# --- model and data ---------------------------------------------------------------------------------

def model_config(arch: str, data: str = "mnist") -> dict[str, Any]:
    if arch not in ARCHS:
        raise ConfigError(f"--arch {arch!r}: expected one of {', '.join(ARCHS)}")
    channels = CLIP_FRAMES.get(data, 1)
    return dict(sample_size=32, in_channels=channels, out_channels=channels, num_class_embeds=DATA_CLASSES[data] + 1,
                **ARCHS[arch])


def build_model(arch: str, seed: int, data: str = "mnist") -> torch.nn.Module:
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(**model_config(arch, data))


def alphas_cumprod() -> torch.Tensor:
    from diffusers import DDIMScheduler

    return DDIMScheduler(**SCHEDULER).alphas_cumprod.float()


def train_data() -> tuple[torch.Tensor, torch.Tensor]:
    from alm.data.mnist import MNISTDataset

    data = MNISTDataset(split="train")
    return data.images.contiguous(), torch.tensor(data.labels, dtype=torch.long)


class MNISTBatches:
    """Batch ``step`` of the MNIST train split in epoch-wise random order."""

    def __init__(self, seed: int):
        self.images, self.labels = train_data()
        self.order = BatchOrder(len(self.labels), seed)

    def batch(self, step: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.order.batch(step, size)
        return self.images[idx], self.labels[idx]


class TextureBatches:
    """Batch ``step``: random crops of the textures' train rows from the generator of (seed, step)."""

    def __init__(self, seed: int):
        from alm.data.textures import band

        self.band, self.seed = band("train"), seed

    def batch(self, step: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        from alm.data.textures import random_crops

        g = torch.Generator().manual_seed(sample_seed(self.seed, step, STREAM_CROPS))
        return random_crops(self.band, size, 32, g)


class MovingDigitBatches:
    """Batch ``step``: clips of random train digits with random motion (``alm.data.moving_digits``) from
    the generator of (seed, step), frames as channels: (size, 16, 32, 32)."""

    def __init__(self, seed: int):
        self.seed = seed

    def batch(self, step: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        from alm.data.moving_digits import random_clips

        g = torch.Generator().manual_seed(sample_seed(self.seed, step, STREAM_CROPS))
        clips, labels, _ = random_clips("train", size, CLIP_FRAMES["moving_digits"], g)
        return clips[:, 0], labels


def training_batches(data: str, seed: int):
    return {"mnist": MNISTBatches, "textures": TextureBatches, "moving_digits": MovingDigitBatches}[data](seed)


class BatchOrder:
    """Epoch-wise random permutations: position p of the stream is image perm_{p // N}[p % N]."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.perms = n, seed, {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self.perms:
            g = torch.Generator().manual_seed(sample_seed(self.seed, epoch, STREAM_EPOCH))
            self.perms = {epoch: torch.randperm(self.n, generator=g), **{k: v for k, v in self.perms.items() if k >= epoch - 1}}
        return self.perms[epoch]

    def batch(self, step: int, size: int) -> torch.Tensor:
        pos = range(step * size, (step + 1) * size)
        return torch.stack([self._perm(p // self.n)[p % self.n] for p in pos])


def training_loss(model, x0, labels, step: int, cfg: dict, ab_table: torch.Tensor) -> torch.Tensor:
    """The v-prediction loss of one batch; all randomness from the generator of (seed, step)."""
    g = torch.Generator().manual_seed(sample_seed(cfg["seed"], step, STREAM_STEP))
    b = x0.shape[0]
    drop = torch.rand(b, generator=g) < cfg["p_uncond"]
    labels = torch.where(drop, torch.full_like(labels, DATA_CLASSES[cfg.get("data", "mnist")]), labels)
    t = torch.randint(0, ab_table.numel(), (b,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    ab = ab_table[t].view(-1, 1, 1, 1)
    z = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    v = ab.sqrt() * noise - (1 - ab).sqrt() * x0  # v-prediction target (Salimans & Ho 2022)
    pred = model(z, t, class_labels=labels).sample
    return torch.nn.functional.mse_loss(pred, v)


def lr_at(step: int, cfg: dict) -> float:
    return cfg["lr"] * min(1.0, (step + 1) / max(1, cfg["warmup"]))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float) -> None:
    d = min(decay, (1 + step) / (10 + step))
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1 - d)


# --- checkpoints ------------------------------------------------------------------------------------

def save_checkpoint(path: Path, state: dict) -> None:
    """Atomic: write a temporary file, keep the previous checkpoint as *_prev.pt, then rename."""
    tmp = path.with_suffix(".pt.tmp")
    torch.save(state, tmp)
    if path.exists():
        os.replace(path, path.with_name(path.stem + "_prev.pt"))
    os.replace(tmp, path)


def load_checkpoint(run_dir: Path) -> dict:
    path = run_dir / "checkpoint.pt"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint in {run_dir}; train first: python scripts/train_embedded.py --minutes N --run-dir {run_dir}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise CheckpointError(f"cannot read {path}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None


def read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


LOG_FIELDS = ("step", "loss", "lr", "grad_norm", "seconds")


def truncate_log(path: Path, step: int) -> None:
    """Keep the rows of steps < ``step`` (rows after the checkpoint are redone on resume)."""
    rows = [r for r in read_log(path) if int(r["step"]) < step]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        w.writeheader()
        w.writerows(rows)


# --- training ---------------------------------------------------------------------------------------

def train(args: argparse.Namespace, run_dir: Path) -> None:
    from tqdm import tqdm

    cfg = {k: getattr(args, k) for k in RUN_KEYS}
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = run_dir / "checkpoint.pt", run_dir / "loss.csv"
    model = build_model(cfg["arch"], cfg["seed"], cfg["data"])
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    step, train_seconds, sessions = 0, 0.0, []
    if ckpt_path.is_file():
        state = load_checkpoint(run_dir)
        stored = {**RUN_DEFAULTS, **state["config"]}
        differ = {k: (stored[k], cfg[k]) for k in RUN_KEYS if stored[k] != cfg[k]}
        if differ:
            raise ConfigError(f"{ckpt_path} was trained with other settings {differ} (checkpoint, now); "
                              f"use the same options or another --run-dir")
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng_torch"])
        step, train_seconds, sessions = state["step"], state["train_seconds"], state["sessions"]
        print(f"resuming {ckpt_path} at step {step} ({train_seconds / 60:.1f} min trained)", flush=True)
    truncate_log(log_path, step)
    data = training_batches(cfg["data"], cfg["seed"])
    ab_table = alphas_cumprod()
    session = {"command": args.command, "start_utc": utc_now(), "start_step": step}
    sessions = sessions + [session]
    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signum

    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    t_start = time.monotonic()
    t_saved = t_start
    seconds_at_start = train_seconds
    budget_s = args.minutes * 60 if args.minutes is not None else math.inf
    target = args.steps if args.steps is not None else math.inf

    def checkpoint(loss: Optional[float]) -> None:
        now = time.monotonic()
        session.update(end_utc=utc_now(), end_step=step, seconds=now - t_start)
        save_checkpoint(ckpt_path, {
            "format": FORMAT, "config": cfg, "model_config": model_config(cfg["arch"], cfg["data"]), "scheduler": SCHEDULER,
            "step": step, "train_seconds": seconds_at_start + now - t_start, "last_loss": loss,
            "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
            "rng_torch": torch.get_rng_state(), "sessions": sessions,
        })

    loss_value = None
    bar = tqdm(total=None if target == math.inf else int(target), initial=step, unit="step", dynamic_ncols=True,
               mininterval=1.0 if sys.stderr.isatty() else 30.0, desc=f"train {cfg['data']}")
    smooth = None
    try:
        with open(log_path, "a", newline="") as logf:
            log = csv.writer(logf)
            while step < target and time.monotonic() - t_start < budget_s and stop["signal"] is None:
                x0, labels = data.batch(step, cfg["batch_size"])
                lr = lr_at(step, cfg)
                for group in opt.param_groups:
                    group["lr"] = lr
                loss = training_loss(model, x0, labels, step, cfg, ab_table)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"]))
                opt.step()
                ema_update(ema, model, step, cfg["ema_decay"])
                loss_value = float(loss.detach())
                step += 1
                elapsed = seconds_at_start + time.monotonic() - t_start
                log.writerow([step - 1, repr(loss_value), f"{lr:.6g}", f"{grad_norm:.4g}", f"{elapsed:.1f}"])
                logf.flush()
                smooth = loss_value if smooth is None else 0.99 * smooth + 0.01 * loss_value
                bar.update(1)
                bar.set_postfix(loss=f"{smooth:.4f}", refresh=False)
                if time.monotonic() - t_saved >= args.save_minutes * 60:
                    checkpoint(loss_value)
                    t_saved = time.monotonic()
                    print(f"\n{utc_now()} step {step} loss(avg) {smooth:.4f}: saved {ckpt_path}", flush=True)
    finally:
        bar.close()
        for s, h in old_handlers.items():
            signal.signal(s, h)
    checkpoint(loss_value)
    why = f"signal {stop['signal']}" if stop["signal"] is not None else ("step target" if step >= target else "time budget")
    print(f"{utc_now()} stopped at step {step} ({why}); saved {ckpt_path}", flush=True)


# --- export -----------------------------------------------------------------------------------------

def ema_model(state: dict) -> torch.nn.Module:
    from diffusers import UNet2DModel

    model = UNet2DModel(**state["model_config"])
    model.load_state_dict(state["ema"])
    return model.eval().requires_grad_(False)


def export(run_dir: Path, out: Path, command: str) -> None:
    """EMA weights -> a diffusers pipeline-style folder (unet/, scheduler/) + TRAINING.md + loss.csv."""
    from diffusers import DDIMScheduler

    state = load_checkpoint(run_dir)
    out = out.expanduser().resolve()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ema_model(state).save_pretrained(tmp / "unet", safe_serialization=True)
    DDIMScheduler(**state["scheduler"]).save_pretrained(tmp / "scheduler")
    if (run_dir / "loss.csv").is_file():
        shutil.copy2(run_dir / "loss.csv", tmp / "loss.csv")
    (tmp / "TRAINING.md").write_text(training_md(state, read_log(run_dir / "loss.csv"), command))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"exported the EMA weights of step {state['step']} to {out} ({size / 1e6:.1f} MB)", flush=True)


def training_md(state: dict, rows: list[dict], command: str) -> str:
    cfg, n_params = state["config"], sum(v.numel() for v in state["ema"].values())
    rows = [r for r in rows if int(r["step"]) < state["step"]]
    last = [float(r["loss"]) for r in rows[-500:]]
    final = f"{sum(last) / len(last):.4f} (mean of the last {len(last)} steps; last step {float(rows[-1]['loss']):.4f})" if last else "n/a"
    data = cfg.get("data", "mnist")
    head = HEADERS[data]
    lines = [*head, "",
        f"- steps: {state['step']} (batch {cfg['batch_size']}), training wall time {state['train_seconds'] / 60:.1f} min on CPU",
        f"- final training loss (v-prediction MSE): {final}",
        f"- model: diffusers UNet2DModel, {n_params / 1e6:.2f} M parameters, arch `{cfg['arch']}`: "
        f"`{json.dumps(state['model_config'])}`",
        f"- scheduler: `{json.dumps(state['scheduler'])}`",
        f"- optimisation: `{json.dumps(cfg)}`",
        "- loss log: `loss.csv` (step, loss, lr, grad_norm, cumulative seconds)",
        "",
        "## Commands (one per training session, in order; each resumes the previous checkpoint)",
        "",
        "| started (UTC) | steps | minutes | command |",
        "|---|---|---|---|",
    ]
    for s in state["sessions"]:
        lines.append(f"| {s['start_utc']} | {s['start_step']} -> {s.get('end_step', '?')} | "
                     f"{s.get('seconds', 0) / 60:.1f} | `{s['command']}` |")
    lines += ["", f"Exported at {utc_now()} with `{command}`.", ""]
    return "\n".join(lines)


HEADERS = {
    "mnist": [
        "# The embedded backbone: class-conditional pixel diffusion on MNIST",
        "",
        "Trained by `scripts/train_embedded.py` (its docstring explains the choices) on the `train` split of",
        "`alm.data.mnist` (4,000 images, 32x32, 1 channel, [-1, 1]); these are the EMA weights.",
        "Load with `backbone=embedded` (`DiffusersUNet(path=weights/embedded)`); label 10 is the null class.",
    ],
    "textures": [
        "# The texture backbone: class-conditional pixel diffusion on brick, grass and gravel",
        "",
        "Trained by `scripts/train_embedded.py --data textures` (its docstring explains the choices) on random",
        "32x32 crops of the `train` rows of `alm.data.textures` (scikit-image's brick, grass, gravel at 256 px,",
        "1 channel, [-1, 1]); these are the EMA weights. Load with `backbone=texture`; label 3 is the null class.",
    ],
    "moving_digits": [
        "# The moving-digits backbone: class-conditional pixel diffusion on 16-frame clips of a moving digit",
        "",
        "Trained by `scripts/train_embedded.py --data moving_digits --arch video` (its docstring explains the choices)",
        "on clips drawn afresh at every step from `alm.data.moving_digits` (a `train`-split MNIST digit shrunk to",
        "16 px, bouncing in a 32x32 frame); the UNet takes the clip's 16 frames as its 16 channels. These are the",
        "EMA weights. Load with `backbone=moving_digits` (`alm.backbones.frames`); label 10 is the null class.",
    ],
}


# --- sampling ---------------------------------------------------------------------------------------

def sample_grid(args: argparse.Namespace, run_dir: Path) -> Path:
    """``--sample N``: N class-conditional samples per digit (rows 0..9), DDIM through alm's core."""
    import numpy as np
    from PIL import Image

    from alm.backbones.diffusers_unet import DiffusersUNet
    from alm.config import build_method
    from alm.methods.base import Problem
    from alm.rng import SampleGenerators
    from alm.sampling import reverse
    from alm.schedule import make_schedule

    from alm.backbones.frames import FramesAsChannels

    kind = FramesAsChannels if args.data in CLIP_FRAMES else DiffusersUNet  # clips: the frames are the channels
    if args.weights:
        backbone, where = kind(path=args.weights, name="embedded"), str(args.weights)
    else:
        state = load_checkpoint(run_dir)
        backbone = kind.from_model(ema_model(state), state["scheduler"], name="embedded")
        where = f"{run_dir / 'checkpoint.pt'} step {state['step']}"
    n = args.sample
    classes = DATA_CLASSES[args.data]
    labels = [d for d in range(classes) for _ in range(n)]
    batch = len(labels)
    shape = (batch, *backbone.sample_shape) if hasattr(backbone, "sample_shape") else (batch, 1, 32, 32)
    problem = Problem(x0=torch.zeros(shape), mask=torch.ones(1, *shape[1:]), cond=backbone.make_cond(labels, batch))
    schedule = make_schedule(backbone.scheduler_config, args.sample_steps)
    t0 = time.monotonic()
    with torch.no_grad():
        x = reverse(backbone, build_method("ddim"), problem, schedule, SampleGenerators(args.seed, range(batch)),
                    guidance=args.guidance)
    x = backbone.decode(x).clamp(-1, 1)
    out = Path(args.out) if args.out else run_dir / f"samples_g{args.guidance:g}.png"
    if args.data in CLIP_FRAMES:  # one strip of every frame per clip, labelled with its class
        from alm import io, video_io

        io.save_png(video_io.comparison([video_io.strip(x[k], 1, label=str(labels[k])) for k in range(batch)]), out)
        print(f"{batch} clips ({args.sample_steps} DDIM steps, guidance {args.guidance:g}) from {where} in "
              f"{time.monotonic() - t0:.0f} s -> {out}", flush=True)
        return out
    img = ((x + 1) * 127.5).round().to(torch.uint8)[:, 0].numpy()  # (B, H, W)
    h, w = img.shape[1:]
    grid = np.full((classes * (h + 2) + 2, n * (w + 2) + 2), 128, np.uint8)
    for k in range(batch):
        r, c = divmod(k, n)
        grid[2 + r * (h + 2): 2 + r * (h + 2) + h, 2 + c * (w + 2): 2 + c * (w + 2) + w] = img[k]
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).resize((grid.shape[1] * args.zoom, grid.shape[0] * args.zoom), Image.Resampling.NEAREST).save(out)
    print(f"{batch} samples ({args.sample_steps} DDIM steps, guidance {args.guidance:g}) from {where} in "
          f"{time.monotonic() - t0:.0f} s -> {out}", flush=True)
    return out


# --- command line -----------------------------------------------------------------------------------

def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def command_line(argv: list[str]) -> str:
    """The command as typed from the project folder (recorded in the checkpoint and TRAINING.md)."""
    return shlex.join(["python", "scripts/train_embedded.py", *argv])


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="mnist", choices=sorted(DATA_CLASSES), help="what to train on")
    p.add_argument("--run-dir", default=None, help="checkpoint + loss log (resumed if present; default runs/train_embedded "
                   "for mnist, runs/train_textures for textures)")
    p.add_argument("--minutes", type=float, default=None, help="wall-time budget of this session")
    p.add_argument("--steps", type=int, default=None, help="train up to this total step count")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--save-minutes", type=float, default=5.0, help="checkpoint interval")
    p.add_argument("--arch", default="small", choices=sorted(ARCHS))
    p.add_argument("--tiny", action="store_true", help="for tests: --arch tiny --batch-size 8")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--p-uncond", type=float, default=0.1, help="label dropout (-> null class 10) for CFG")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--export", default=None, metavar="DIR", help="write the EMA weights as a diffusers folder")
    p.add_argument("--sample", type=int, default=None, metavar="N", help="grid PNG of N samples per digit")
    p.add_argument("--weights", default=None, metavar="DIR", help="--sample from an exported folder instead of the checkpoint")
    p.add_argument("--guidance", type=float, default=2.0, help="CFG scale for --sample")
    p.add_argument("--sample-steps", type=int, default=50)
    p.add_argument("--zoom", type=int, default=3)
    p.add_argument("--out", default=None, help="--sample output PNG (default <run-dir>/samples_g<guidance>.png)")
    args = p.parse_args(argv)
    if args.run_dir is None:
        args.run_dir = str(ROOT / "runs" / ("train_embedded" if args.data == "mnist" else f"train_{args.data}"))
    if args.tiny:
        args.arch, args.batch_size = "tiny", 8
    if args.minutes is None and args.steps is None and args.export is None and args.sample is None:
        p.error("nothing to do: give --minutes/--steps (train), --export DIR and/or --sample N")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    args.command = command_line(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    run_dir = Path(args.run_dir).expanduser().resolve()
    try:
        if args.minutes is not None or args.steps is not None:
            train(args, run_dir)
        if args.export:
            export(run_dir, Path(args.export), args.command)
        if args.sample:
            sample_grid(args, run_dir)
    except ALMError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        torch.set_num_threads(threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
