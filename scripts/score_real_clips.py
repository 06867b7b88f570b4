"""The moving-digits video measures on REAL clips: the ceiling row of ``results/video_digits``.

The data set's own 104-frame clips (``dataset=moving_digits``, test digits, the same digits and order as the
table's videos) are scored by exactly the metrics of ``conf/metrics/video_digits.yaml``, with the layout of
``task=video`` (12 windows of 16 frames at a stride of 8) in their meta, as a run's samples would carry it. The
clips come from the data set's generator seed ``--clip-seed`` (default 1): other starts and velocities than the
Frechet distance's reference set (seed 0), so ``fd`` is the distance between two real sets of those digits.

    python scripts/score_real_clips.py --out results/video_digits/real_clips.md [--num 30]
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from alm.errors import ALMError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="markdown table to write")
    ap.add_argument("--num", type=int, default=20, help="clips (the table's num_samples)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--clip-seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        from alm import io
        from alm.config import build, compose
        from alm.metrics import prepare_metrics
        from alm.windows import geometry_for

        cfg = compose(["task=video", "backbone=moving_digits", "dataset=moving_digits", f"dataset.split={args.split}",
                       "metrics=video_digits", f"num_samples={args.num}"])
        data = build(cfg.dataset, seed=args.clip_seed)
        metric_set = prepare_metrics(cfg.metrics)
        metric_set.bind_run(cfg, list(range(args.num)))
        metric_set.setup("cpu")
        g = geometry_for(16, float(cfg.task.stride), int(cfg.task.windows), str(cfg.task.extend), int(cfg.task.axis))
        layout = {"windows": g.spans().tolist(), "seams": g.seams().tolist(), "axis": int(cfg.task.axis)}
        items = [data[i] for i in range(args.num)]
        clips = torch.stack([it.image for it in items])
        labels, metas = [it.label for it in items], [{**it.meta, **layout} for it in items]
        mask = torch.zeros(clips.shape[0], 1, *clips.shape[2:])
        row = {}
        for name, metric in metric_set.metrics.items():
            metric.reset()
            for i in range(0, args.num, metric_set.batch_size):
                sl = slice(i, i + metric_set.batch_size)
                metric.update(clips[sl], clips[sl], mask[sl], labels[sl], metas[sl])
            row[name] = metric.compute()
    except ALMError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    command = shlex.join(["python", "scripts/score_real_clips.py", *argv])
    cols = list(row)
    fmt = [f"{v:.4g}" if isinstance(v, float) and math.isfinite(v) else str(v) for v in row.values()]
    text = "\n".join([
        "# Moving digits: the measures on real clips (the ceiling of results/video_digits)",
        "",
        f"{args.num} real 104-frame clips of the {args.split} digits (dataset=moving_digits, the table's digits in its",
        f"order; starts and velocities from the data set's seed {args.clip_seed}, not the FD reference's seed 0), scored",
        "by conf/metrics/video_digits.yaml with task=video's layout (12 windows of 16 frames, stride 8).",
        "",
        f"Made by `{command}` (make target: `make table-video-digits`).",
        "",
        "| clips | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
        "| real | " + " | ".join(fmt) + " |",
        "",
    ])
    io.atomic_write_bytes(Path(args.out), text.encode())
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
