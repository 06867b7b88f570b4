"""Run an experiment definition (experiments/*.yaml): every run, then one table and one grid.

    python scripts/run_experiment.py experiments/gmm.yaml [--num-samples N] [extra overrides ...]

Runs land in the same folders ``python run.py <overrides>`` would use, so finished runs are reused
(and interrupted ones resumed); the table records the command that made it.
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alm import io  # noqa: E402
from alm.config import compose, run_dir_for  # noqa: E402
from alm.errors import ALMError  # noqa: E402
from alm.runner import markdown_table, run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiment", type=Path)
    ap.add_argument("--only", default="", help="comma-separated run labels to run (default: all)")
    ap.add_argument("--output", type=Path, default=None, help="table folder (default: the experiment's)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides applied to every run")
    args = ap.parse_intermixed_args(argv)

    exp = OmegaConf.load(args.experiment)
    output = args.output or ROOT / exp.output
    labels = [l for l in exp.runs if not args.only or l in args.only.split(",")]
    summaries, grids = [], []
    t_start = time.perf_counter()
    try:
        for label in labels:
            overrides = list(exp.get("overrides", [])) + list(exp.runs[label]) + list(args.overrides)
            cfg = compose(overrides)
            run_dir = run_dir_for(cfg, overrides)
            print(f"[{label}] {' '.join(overrides)}\n  -> {run_dir}", flush=True)
            summary = run(cfg, run_dir)
            summary["method"] = label
            summaries.append(summary)
            grids.append((label, run_dir))
    except ALMError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - t_start

    output.mkdir(parents=True, exist_ok=True)
    columns = list(exp.columns)
    command = "python scripts/run_experiment.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    header = f"# {exp.name}\n\n{exp.get('description', '').strip()}\n\nMade by `{command}` (make target: `{exp.get('make', '')}`); wall time of this invocation {wall:.0f} s.\n\n"
    (output / "table.md").write_text(header + markdown_table(summaries, columns=columns) + "\n" + exp.get("notes", ""))
    with open(output / "table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(summaries)
    write_comparison_grid(grids, output / "grid.png", rows=int(exp.get("grid_rows", 6)))
    print((output / "table.md").read_text())
    return 0


def write_comparison_grid(grids: list[tuple[str, Path]], path: Path, rows: int) -> None:
    """Rows = samples; columns = source, masked input, then each run's output (in table order)."""
    if not grids:
        return
    table = []
    for i in range(rows):
        files = [d / "samples" / f"{i:05d}.pt" for _, d in grids]
        if not all(f.exists() for f in files):
            break
        first = torch.load(files[0], weights_only=False)
        row = [first["source"], first["masked"]] + [torch.load(f, weights_only=False)["output"].clamp(-1, 1) for f in files]
        table.append(row)
    if table:
        io.save_png(io.grid(table), path, min_size=256)
        (path.parent / "grid_columns.txt").write_text("source, masked, " + ", ".join(l for l, _ in grids) + "\n")


if __name__ == "__main__":
    sys.exit(main())
