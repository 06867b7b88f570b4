"""The embedded backbone's quality floor: are its class-conditional samples the digits they were asked to be?

For each guidance scale, ``--per-class`` samples of every digit 0-9 are drawn with the project's own core
(``alm.sampling.reverse`` + the ``ddim`` method: a ``Problem`` with ``x0`` zeros and ``mask`` ones, i.e.
nothing observed; ``--steps`` DDIM steps, classifier-free guidance ``--guidance``; sample ``i`` draws its
noise from the generator of ``(seed, i)``, so the batch size changes nothing) and judged by the MNIST
classifier (``alm.classifier``, weights/classifier) through the same metric code as the evaluation stage:

- recognised: the share of samples the classifier puts in the intended class (``class_consistency``);
  floor ``--floor`` (default 0.90);
- class score: the mean probability of the intended class (``class_score``);
- FID(samples, test) on the classifier's penultimate features (``alm.metrics.fid.FID``), beside the
  real-vs-real floor FID(train, test) computed with the SAME number of images (the first N of the
  digit-interleaved train split, N = 10 x per-class), since FID grows as N shrinks.

    python scripts/embedded_quality.py                                  # weights/embedded -> results/embedded/quality.md
    python scripts/embedded_quality.py --guidance 1 2 3 --per-class 20  # a guidance sweep
    python scripts/embedded_quality.py --weights /tmp/emb --out /tmp/quality.md

Writes a Markdown table (``--out``) with the command and a grid of the first 10 samples per digit
beside it (``<out stem>_g<guidance>.png``). Exit status: 0 if every guidance scale meets the floor,
3 if one does not (the table is written anyway), 1 on an error (missing weights: one line).
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from alm.errors import ALMError, CheckpointError  # noqa: E402

NUM_CLASSES = 10
EMBEDDED_HINT = ("train and export it: python scripts/train_embedded.py --minutes 120 && "
                 "python scripts/train_embedded.py --export weights/embedded")


def load_backbone(weights: Path):
    from alm.backbones.diffusers_unet import DiffusersUNet

    if not weights.is_dir():
        raise CheckpointError(f"the embedded backbone {weights} is missing; {EMBEDDED_HINT}")
    return DiffusersUNet(path=str(weights), name="embedded", missing_hint=EMBEDDED_HINT).eval()


@torch.no_grad()
def sample_digits(backbone, per_class: int, guidance: float, steps: int, seed: int, batch_size: int,
                  progress: bool = True) -> tuple[torch.Tensor, list[int]]:
    """``per_class`` samples of each digit, digit-interleaved (sample i is digit i % 10); data space [-1, 1]."""
    from tqdm.auto import tqdm

    from alm.config import build_method
    from alm.methods.base import Problem
    from alm.rng import SampleGenerators
    from alm.sampling import reverse
    from alm.schedule import make_schedule

    labels = [i % NUM_CLASSES for i in range(per_class * NUM_CLASSES)]
    schedule = make_schedule(backbone.scheduler_config, steps)
    method = build_method("ddim")
    shape = tuple(backbone.sample_shape)
    out = []
    for start in tqdm(range(0, len(labels), batch_size), desc=f"sample g={guidance:g}", unit="batch", disable=not progress):
        idx = range(start, min(len(labels), start + batch_size))
        b = len(idx)
        problem = Problem(x0=torch.zeros(b, *shape), mask=torch.ones(1, *shape),
                          cond=backbone.make_cond([labels[i] for i in idx], b))
        y = reverse(backbone, method, problem, schedule, SampleGenerators(seed, idx), guidance=guidance)
        out.append(backbone.decode(y).clamp(-1, 1).cpu())
    return torch.cat(out), labels


def judge(samples: torch.Tensor, labels: list[int], classifier: Optional[str]) -> dict:
    """class_consistency (overall and per digit) and class_score of samples against their intended labels."""
    from alm.metrics.classifier import ClassConsistency, ClassScore

    mask = torch.ones(samples.shape[0], 1, *samples.shape[-2:])
    hit = ClassConsistency(path=classifier).update(samples, samples, mask, labels)
    score = ClassScore(path=classifier).update(samples, samples, mask, labels)
    y = torch.tensor(labels)
    return {"recognised": float(hit.mean()), "class_score": float(score.mean()),
            "per_class": [float(hit[y == c].mean()) for c in range(NUM_CLASSES)]}


def fid(fake: torch.Tensor, real: torch.Tensor, classifier: Optional[str], batch_size: int = 250) -> float:
    """FID(fake, real) on the classifier's features, with the evaluation stage's FID (reference = the 'sources')."""
    from alm.metrics.fid import FID

    node = {"_target_": "alm.classifier.load_classifier_features", "path": classifier, "name": "mnist_classifier"}
    metric = FID(feature=node, reference="sources")
    chunks = max(1, -(-max(len(fake), len(real)) // batch_size))
    for f, r in zip(torch.tensor_split(fake, chunks), torch.tensor_split(real, chunks)):
        metric.update(f, r, torch.ones(len(f), 1, *f.shape[-2:]))
    return metric.compute()


def backbone_steps(weights: Path) -> str:
    """The training steps recorded in the export's TRAINING.md (``- steps: N``), if any."""
    path = weights / "TRAINING.md"
    found = re.search(r"^- steps: (\d+)", path.read_text(), re.M) if path.is_file() else None
    return found.group(1) if found else "?"


def save_grid(samples: torch.Tensor, per_row: int, path: Path, zoom: int = 2) -> None:
    """The first ``per_row`` samples of each digit: one row per digit (samples are digit-interleaved)."""
    from torchvision.utils import save_image

    k = min(per_row, samples.shape[0] // NUM_CLASSES)
    rows = samples[: k * NUM_CLASSES].view(k, NUM_CLASSES, *samples.shape[1:]).transpose(0, 1).flatten(0, 1)
    rows = torch.nn.functional.interpolate(rows, scale_factor=zoom, mode="nearest")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image((rows + 1) / 2, str(path), nrow=k, padding=2, pad_value=0.5)


def markdown(args: argparse.Namespace, rows: list[dict], floor_fid: float, n: int, weights: Path, seconds: float) -> str:
    lines = [
        "# Embedded backbone: quality floor",
        "",
        f"Command: `{args.command}`",
        "",
        f"Backbone `{weights}` (training steps: {backbone_steps(weights)}); {args.per_class} samples per digit "
        f"({n} in all), DDIM {args.steps} steps through `alm.sampling.reverse` (method `ddim`, nothing observed), "
        f"seed {args.seed}. Judge: the MNIST classifier `{args.classifier or 'weights/classifier'}` "
        "(see its TRAINING.md). FID on its 96-d penultimate features against the 500-image test split; "
        f"the real-vs-real floor uses the first {n} images of the train split (same N). {seconds / 60:.1f} min.",
        "",
        f"| guidance | recognised (floor {args.floor:.2f}) | class score | FID(samples, test) | FID(train, test) | pass |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['guidance']:g} | {r['recognised']:.3f} | {r['class_score']:.3f} | {r['fid']:.2f} | "
                     f"{floor_fid:.2f} | {'yes' if r['recognised'] >= args.floor else '**no**'} |")
    lines += ["", "Recognised, per digit:", "",
              "| guidance | " + " | ".join(str(c) for c in range(NUM_CLASSES)) + " |",
              "|---|" + "---|" * NUM_CLASSES]
    for r in rows:
        lines.append(f"| {r['guidance']:g} | " + " | ".join(f"{a:.2f}" for a in r["per_class"]) + " |")
    lines += ["", "Samples (first 10 per digit, one row per digit): "
              + ", ".join(f"[g={r['guidance']:g}]({r['grid']})" for r in rows), ""]
    return "\n".join(lines)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=str(ROOT / "weights" / "embedded"), help="the exported backbone folder")
    p.add_argument("--classifier", default=None, help="classifier weights folder (default: weights/classifier)")
    p.add_argument("--per-class", type=int, default=50, help="samples per digit")
    p.add_argument("--guidance", type=float, nargs="+", default=[2.0], help="CFG scale(s)")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=100, help="samples per batch (does not change any sample)")
    p.add_argument("--floor", type=float, default=0.90, help="minimum share recognised as the intended digit")
    p.add_argument("--out", default=str(ROOT / "results" / "embedded" / "quality.md"))
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    args = p.parse_args(argv)
    if args.per_class < 1 or args.steps < 1 or args.batch_size < 1:
        p.error("--per-class, --steps and --batch-size must be positive")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    args.command = shlex.join(["python", "scripts/embedded_quality.py", *argv])
    torch.set_num_threads(args.threads)
    weights, out = Path(args.weights).expanduser().resolve(), Path(args.out).expanduser().resolve()
    try:
        from alm import io
        from alm.classifier import check_classifier
        from alm.data.mnist import MNISTDataset

        check_classifier(args.classifier)  # both checks before any sampling
        backbone = load_backbone(weights)
        t0 = time.monotonic()
        n = args.per_class * NUM_CLASSES
        test = MNISTDataset(split="test").images
        train = MNISTDataset(split="train", size=min(n, 4000)).images
        floor_fid = fid(train, test, args.classifier)
        rows = []
        for g in args.guidance:
            samples, labels = sample_digits(backbone, args.per_class, g, args.steps, args.seed, args.batch_size, args.progress)
            row = {"guidance": g, **judge(samples, labels, args.classifier), "fid": fid(samples, test, args.classifier)}
            grid = out.with_name(f"{out.stem}_g{g:g}.png")
            save_grid(samples, 10, grid)
            row["grid"] = grid.name
            rows.append(row)
            print(f"guidance {g:g}: recognised {row['recognised']:.3f}, class score {row['class_score']:.3f}, "
                  f"FID(samples, test) {row['fid']:.2f} (FID(train, test) {floor_fid:.2f})", flush=True)
        io.atomic_write_bytes(out, markdown(args, rows, floor_fid, n, weights, time.monotonic() - t0).encode())
    except ALMError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    ok = all(r["recognised"] >= args.floor for r in rows)
    print(f"{'PASS' if ok else 'FAIL'}: floor {args.floor:.2f} -> {out}", flush=True)
    return 0 if ok else 3


if __name__ == "__main__":
    sys.exit(main())
