"""Run an experiment definition (experiments/*.yaml): sweeps, every run, one table and one grid.

    python scripts/run_experiment.py experiments/gmm.yaml [--only a,b] [--output DIR] [overrides ...]

An experiment has ``overrides`` (common to all runs), ``runs`` (label -> overrides), optionally
``sweeps`` (label -> base overrides + a grid, run on the ``validation`` overrides; the best grid
point by the paper's rank rule over ``rank`` becomes the extra run "<label> (tuned)" on the test
set), and ``columns``. Runs land in the same folders ``python run.py <overrides>`` would use, so
finished runs are reused and interrupted ones resumed; the table records the command that made it.
"""

from __future__ import annotations

import argparse
import csv
import math
import shlex
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alm.config import compose, run_dir_for  # noqa: E402
from alm.errors import ALMError, NumericalError  # noqa: E402
from alm.evaluate import evaluate_experiment, plan_evaluation  # noqa: E402
from alm.figures import comparison_grid  # noqa: E402
from alm.ranking import rank_column  # noqa: E402
from alm.runner import markdown_table, run  # noqa: E402


def run_one(overrides: list[str], label: str) -> dict:
    cfg = compose(overrides)
    run_dir = run_dir_for(cfg, overrides)
    print(f"[{label}] {' '.join(overrides)}\n  -> {run_dir}", flush=True)
    summary = run(cfg, run_dir)
    return {"method": label, **{k: v for k, v in summary.items() if k != "method"}, "_dir": run_dir}


def grid_points(grid) -> list[list[str]]:
    points = [[]]
    for key, values in grid.items():
        points = [p + [f"{key}={v}"] for p in points for v in values]
    return points


def run_sweeps(exp, common: list[str], extra: list[str], output: Path) -> dict[str, list[str]]:
    """Run each sweep's grid on the validation split; return label -> chosen overrides."""
    if not exp.get("sweeps"):
        return {}
    directions = {k: v == "higher" for k, v in exp.rank.items()}
    chosen, lines = {}, []
    for label, sweep in exp.get("sweeps", {}).items():
        rows = []
        for point in grid_points(sweep.grid):
            overrides = common + list(exp.get("validation", [])) + list(sweep.base) + point + extra
            try:
                row = run_one(overrides, f"{label} sweep")
            except NumericalError as err:  # a diverging setting is a result of the sweep: it ranks last
                print(f"  diverged: {err}", flush=True)
                row = {k: math.nan for k in directions} | {"posterior_loglik": math.nan, "note": "diverged (NaN)"}
            rows.append({**row, "setting": " ".join(point), "_point": point})
        ranks = rank_column(rows, directions)
        for r, k in zip(rows, ranks):
            r["rank"] = k
        best = min(range(len(rows)), key=lambda i: (ranks[i], i))
        chosen[label] = list(sweep.base) + rows[best]["_point"]
        lines.append(f"## {label}: chosen `{rows[best]['setting']}`\n")
        lines.append(markdown_table(rows, columns=["setting", *directions, "posterior_loglik", "rank", "note"]))
    if chosen:
        rule = ", ".join(f"{k} ({v})" for k, v in exp.rank.items())
        head = (f"# Sweeps of {exp.name}\n\nValidation overrides: `{' '.join(exp.get('validation', []))}`. "
                f"Chosen per method: rank 1 by the paper's rule over {rule}.\n\n")
        (output / "sweep.md").write_text(head + "\n".join(lines))
    return chosen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiment", type=Path)
    ap.add_argument("--only", default="", help="comma-separated run labels to run (default: all)")
    ap.add_argument("--output", type=Path, default=None, help="table folder (default: the experiment's)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides applied to every run")
    args = ap.parse_intermixed_args(argv)

    exp = OmegaConf.load(args.experiment)
    output = args.output or ROOT / exp.output
    only = set(args.only.split(",")) if args.only else None
    common, extra = list(exp.get("overrides", [])), list(args.overrides)
    output.mkdir(parents=True, exist_ok=True)
    summaries = []
    t_start = time.perf_counter()
    try:
        plan = plan_evaluation(exp.evaluate) if "evaluate" in exp else None  # metric weights checked before sampling
        runs = {l: list(o) for l, o in exp.runs.items()}
        for label, overrides in run_sweeps(exp, common, extra, output).items():
            runs[f"{label} (tuned)"] = overrides
        for label, overrides in runs.items():
            if only is None or label in only:
                summaries.append({**run_one(common + overrides + extra, label), "setting": " ".join(overrides)})
    except ALMError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - t_start

    columns = list(exp.columns)
    if "rank" in exp:
        ranked = [s for s in summaries if s["method"] not in set(exp.get("unranked", []))]
        for s, k in zip(ranked, rank_column(ranked, {k: v == "higher" for k, v in exp.rank.items()})):
            s["rank"] = k
        columns.append("rank")
    command = "python scripts/run_experiment.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    header = f"# {exp.name}\n\n{exp.get('description', '').strip()}\n\nMade by `{command}` (make target: `{exp.get('make', '')}`); wall time of this invocation {wall:.0f} s.\n\n"
    (output / "table.md").write_text(header + markdown_table(summaries, columns=columns) + "\n" + exp.get("notes", ""))
    with open(output / "table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(summaries)
    grids = [(s["method"], s["_dir"]) for s in summaries if s["method"] in set(exp.get("grid", [s["method"] for s in summaries]))]
    if grids:
        comparison_grid(grids, output / "grid.png", rows=int(exp.get("grid_rows", 6)))
    print((output / "table.md").read_text())
    if plan is not None:  # the evaluation stage: evaluation_table.md / .csv, evaluation_rows.csv, figures
        try:
            print(evaluate_experiment(plan, [(s["method"], s["_dir"]) for s in summaries], output, command))
        except ALMError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
