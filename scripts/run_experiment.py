"""Run an experiment definition (experiments/*.yaml): sweeps, every run, one table and one grid.

    python scripts/run_experiment.py experiments/gmm.yaml [--only a,b] [--sweeps] [--output DIR] [overrides ...]

An experiment has ``overrides`` (common to all runs), ``runs`` (label -> overrides), optionally
``sweeps`` (label -> base overrides + a grid, run on the ``validation`` overrides; the best grid
point by the paper's rank rule over ``rank`` becomes the extra run "<label> (tuned)" on the test
set), and ``columns``. Runs land in the same folders ``python run.py <overrides>`` would use, so
finished runs are reused and interrupted ones resumed; the table records the command that made it.
A run that diverges (NaN, or a blow-up beyond ``alm.sampling.MAX_ABS``) is a row of NaN metrics with a
note, ranked last, in the table as in a sweep.

``reference: {label, overrides, metrics: [fid, kid]}``: a run made first (after the common overrides, like a
row) whose outputs are those metrics' reference set (``reference: {run: <its folder>, num: <its num_samples>}``,
``alm/metrics/fid.py``); it is in the cost table but neither evaluated, ranked nor drawn. ``grid_style: wide``
draws the grid as wide strips (``alm.figures.wide_strip``), one row per sample (the first ``grid_rows``),
one column per run; ``grid_style: video`` draws, for each of the first ``grid_rows`` samples, one Fig. 7-style
strip per run (every ``strip_every``-th frame) and a side-by-side MP4 / GIF of the runs
(``alm.figures.video_comparison``). ``smoke.evaluate``: more evaluation config overrides in smoke mode, full keys as in
``evaluate.config`` (tiny stand-in networks: ``++metrics.clip.model=...``); ``smoke.linear_heads: {<key>: <in>}``:
a seeded random ``nn.Linear(in, 1)`` state dict written under ``$ALM_CACHE_DIR/smoke-weights/`` and given to
that evaluation config key (e.g. ``metrics.aesthetic.head_path``). ``figures: {<name>: {_target_: <function>,
<options>}}``: figures of the finished rows, each ``function(runs=[(label, run_dir, num_samples)], output=<table
folder>, **options)`` (``run_figure``; e.g. experiments/wide_gp.yaml's variance profiles).
``replications: R``: every run made R times, ``label #r`` with ``seed=r``, and ``replications.md|csv`` folds the
evaluation per label into mean ± 95% interval with the Rank on the means (``alm.replications``; the motion
tables' protocol); ``--only alm`` runs every replication of ``alm``. ``smoke.prepare: [<function>]``: functions
``f(cache_dir) -> {ENV_VAR: folder}`` that write stand-in data / weights for a smoke run and point the configs' env
variables at them (e.g. ``alm.motion.smoke.smoke_environment``: a synthetic HumanML3D folder); ``smoke.metrics``:
the evaluation's metric set in smoke mode (e.g. ``motion-tiny``: a tiny random evaluator).
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import shlex
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alm.config import compose  # noqa: E402
from alm.run_names import run_dir_for  # noqa: E402
from alm.errors import ALMError, ConfigError, NumericalError  # noqa: E402
from alm.evaluate import evaluate_experiment, evaluate_runs, plan_evaluation  # noqa: E402
from alm.figures import comparison_grid, sweep_plot, video_comparison, wide_strip  # noqa: E402
from alm.ranking import rank_column  # noqa: E402
from alm.replications import base_label, expand  # noqa: E402
from alm.runner import run  # noqa: E402
from alm.sampling import MAX_ABS  # noqa: E402
from alm.tables import markdown_table  # noqa: E402


def plain_run_dir(cfg, overrides: list[str]) -> Path | None:
    """For a row that sets the task's post-processing keys (the "*" rows' ``task.blend``...), the folder of
    the same row without them: the runner post-processes its samples instead of sampling them again
    (it checks that the folder holds the same config but those keys). None for any other row."""
    from alm.fingerprint import task_class

    keys = {f"task.{k}" for k in task_class(cfg.task).postprocess_keys}
    plain = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in keys]
    if len(plain) == len(overrides):
        return None
    return run_dir_for(compose(plain), plain)


def run_one(overrides: list[str], label: str) -> dict:
    cfg = compose(overrides)
    run_dir = run_dir_for(cfg, overrides)
    print(f"[{label}] {' '.join(overrides)}\n  -> {run_dir}", flush=True)
    summary = run(cfg, run_dir, reuse_from=plain_run_dir(cfg, overrides))
    return {"method": label, **{k: v for k, v in summary.items() if k != "method"}, "_dir": run_dir,
            "_n": int(cfg.num_samples)}


def merge_overrides(*groups: list[str]) -> list[str]:
    """Concatenate override lists; a key given again takes the later value (in the earlier position), so
    ``dataset.split=test`` + ``dataset.split=val`` is one override and one run folder name."""
    merged: dict[str, str] = {}
    for group in groups:
        for o in group:
            merged[o.split("=", 1)[0].lstrip("+~")] = o
    return list(merged.values())


def grid_points(grid) -> list[list[str]]:
    points = [[]]
    for key, values in grid.items():
        points = [p + [f"{key}={v}"] for p in points for v in values]
    return points


def sweep_directions(exp, plan) -> dict[str, bool]:
    """The sweep's rank rule: the experiment's ``rank`` (metric -> higher|lower), else the evaluation stage's."""
    if "rank" in exp:
        return {k: v == "higher" for k, v in exp.rank.items()}
    if plan is not None:
        return plan.mset.directions()
    raise ConfigError("an experiment with sweeps needs `rank:` or an `evaluate:` section to choose by")


def diverged_note(err: NumericalError) -> str:
    """A table's note for a run that diverged: what it produced and at which step (no sample list)."""
    found = re.search(r"produced (.+?) at step (\d+)", str(err))
    return f"diverged: {found[1]} at step {found[2]}" if found else "diverged"


def run_or_diverged(overrides: list[str], label: str, keys) -> dict:
    """``run_one``, or for a run that diverges the row marked so: NaN for ``keys`` (it ranks last), a note."""
    try:
        return run_one(overrides, label)
    except NumericalError as err:  # a diverging setting is a result, not the end of the table or the sweep
        print(f"  diverged: {err}", flush=True)
        return {"method": label, **{k: math.nan for k in keys if k != "method"}, "note": diverged_note(err)}


def sweep_row(overrides: list[str], label: str, plan, directions) -> dict:
    """One grid point: sample it (resumable), then add the evaluation stage's summary when there is one."""
    row = run_or_diverged(overrides, label, directions)
    if "_dir" not in row:  # diverged
        return row
    if plan is not None:
        (res,) = evaluate_runs([(label, row["_dir"], row["_n"])], plan.mset, plan.cfg)
        row.update({k: v for k, v in res.summary.items() if k not in ("label", "samples")})
    return row


def sweep_plots(label: str, sweep, rows: list[dict], directions: dict[str, bool], output: Path) -> list[Path]:
    """One figure per swept key: every ranked metric against it, one line per setting of the other keys."""
    paths = []
    keys = list(sweep.grid)
    for key in keys:
        points = [{**r, "param": float(r["_values"][key]),
                   "series": " ".join(f"{k.split('.')[-1]}={r['_values'][k]}" for k in keys if k != key)}
                  for r in rows]
        name = f"sweep_{label}_{key.split('.')[-1]}.png".replace(" ", "_").replace("*", "_blend")
        paths.append(sweep_plot(points, key, list(directions), output / name, directions))
    return paths


def run_sweeps(exp, common: list[str], extra: list[str], output: Path, plan=None,
               only: set[str] | None = None) -> dict[str, list[str]]:
    """Run each sweep's grid on the validation split; return label -> chosen overrides.

    Each point is judged by the evaluation stage when the experiment has one (the same metrics as its
    table), chosen by the paper's rank rule, and plotted against each swept key (``sweep_<label>_<key>.png``).
    """
    if not exp.get("sweeps"):
        return {}
    directions = sweep_directions(exp, plan)
    chosen, lines = {}, []
    for label, sweep in exp.get("sweeps", {}).items():
        if only is not None and f"{label} (tuned)" not in only:  # --only "alm (tuned)" runs the alm sweep
            continue
        rows = []
        for point in grid_points(sweep.grid):
            overrides = merge_overrides(common, list(exp.get("validation", [])), list(sweep.base), point, extra)
            row = sweep_row(overrides, f"{label} sweep", plan, directions)
            rows.append({**row, "setting": " ".join(point), "_point": point,
                         "_values": {p.split("=", 1)[0]: p.split("=", 1)[1] for p in point}})
        ranks = rank_column(rows, directions)
        for r, k in zip(rows, ranks):
            r["rank"] = k
        best = min(range(len(rows)), key=lambda i: (ranks[i], i))
        chosen[label] = list(sweep.base) + rows[best]["_point"]
        shown = [*directions, *[c for c in exp.get("sweep_columns", []) if c not in directions]]
        plots = sweep_plots(label, sweep, rows, directions, output)
        lines.append(f"## {label}: chosen `{rows[best]['setting']}`\n")
        lines.append(markdown_table(rows, columns=["setting", *shown, "rank", "note"]))
        lines.append("Plots: " + ", ".join(f"[{p.name}]({p.name})" for p in plots) + "\n")
    if chosen:
        rule = ", ".join(f"{k} ({'higher' if v else 'lower'})" for k, v in directions.items())
        head = (f"# Sweeps of {exp.name}\n\nValidation overrides: `{' '.join(exp.get('validation', []))}`. "
                f"Chosen per method: rank 1 by the paper's rule over {rule}; a tie goes to the first point in "
                f"grid order. Diverged points (NaN, or values beyond {MAX_ABS:g} while sampling) rank last.\n\n")
        name = "sweep.md" if only is None else f"sweep_{'_'.join(sorted(chosen))}.md".replace(" ", "_")
        (output / name).write_text(head + "\n".join(lines))
    return chosen


def smoke_overrides(exp, overrides: list[str]) -> list[str]:
    """Swap real backbones for their tiny miniatures (``smoke.backbones``) in an override list."""
    swap = dict(exp.smoke.get("backbones", {}))
    out = []
    for o in overrides:
        key, _, value = o.partition("=")
        out.append(f"backbone={swap[value]}" if key == "backbone" and value in swap else o)
    return out


def apply_smoke(exp):
    """The experiment as its smoke run: tiny backbones, the ``smoke.overrides``, stand-in data folders,
    metrics whose weights are missing left out, output under results/runs/smoke/ (never committed)."""
    import os

    from alm.data.smoke import make_smoke_data

    if "smoke" not in exp:
        raise ConfigError("this experiment has no smoke: section")
    exp = OmegaConf.create(OmegaConf.to_container(exp))
    exp.overrides = smoke_overrides(exp, list(exp.get("overrides", []))) + list(exp.smoke.get("overrides", []))
    exp.runs = {label: smoke_overrides(exp, list(o)) for label, o in exp.runs.items()}
    for sweep in exp.get("sweeps", {}).values():
        sweep.base = smoke_overrides(exp, list(sweep.base))
    if "reference" in exp:
        exp.reference.overrides = smoke_overrides(exp, list(exp.reference.overrides))
    if "evaluate" in exp:
        heads = []
        for option, dim in exp.smoke.get("linear_heads", {}).items():  # a stand-in head file per metric option
            cache = Path(os.environ.get("ALM_CACHE_DIR", "~/.cache/alm")).expanduser()
            path = write_linear_head(cache / "smoke-weights" / f"{option}-{int(dim)}.pth", int(dim))
            heads.append(f'++{option}="{quotable(path)}"')
        if "metrics" in exp.smoke:  # a metric set with tiny stand-in networks (e.g. motion-tiny)
            exp.evaluate.metrics = str(exp.smoke.metrics)
        exp.evaluate.overrides = list(exp.evaluate.get("overrides", [])) + ["skip_unavailable=true"]
        exp.evaluate.config = list(exp.evaluate.get("config", [])) + list(exp.smoke.get("evaluate", [])) + heads
    cache = Path(os.environ.get("ALM_CACHE_DIR", "~/.cache/alm")).expanduser()
    if exp.smoke.get("data", False):
        os.environ["ALM_DATA"] = str(make_smoke_data(cache / "smoke-data"))
    for target in exp.smoke.get("prepare", []):  # functions(cache) -> {env var: stand-in folder}, e.g. motion data
        from hydra.utils import get_method

        os.environ.update({k: str(v) for k, v in get_method(str(target))(cache).items()})
    if "replications" in exp.smoke:
        exp.replications = int(exp.smoke.replications)
    exp.output = f"results/runs/smoke/{Path(str(exp.output)).name}"
    return exp


def quotable(path: Path) -> str:
    """``path`` for a double-quoted Hydra override value (a one-line error if it cannot be)."""
    if any(c in str(path) for c in '"$\\'):
        raise ConfigError(f"{path}: a folder with a character (\" $ \\) a Hydra override cannot carry")
    return str(path)


def write_linear_head(path: Path, dim: int) -> Path:
    """A seeded random ``nn.Linear(dim, 1)`` state dict (a stand-in head for a smoke run's metric), once."""
    import torch

    if not path.is_file():
        from alm import io

        gen = torch.Generator().manual_seed(0)
        state = {"weight": torch.randn(1, dim, generator=gen) / dim ** 0.5, "bias": torch.zeros(1)}
        io.atomic_torch_save(state, path)
    return path


def reference_run(exp, common: list[str], extra: list[str]):
    """The experiment's reference run: (label, overrides, folder, num_samples), or None."""
    if "reference" not in exp:
        return None
    ref = exp.reference
    overrides = merge_overrides(common, list(ref.overrides), extra)
    cfg = compose(overrides)
    return str(ref.get("label", "reference")), overrides, run_dir_for(cfg, overrides), int(cfg.num_samples)


def evaluate_spec(exp, reference) -> dict:
    """The experiment's ``evaluate:`` section, with the reference run as the reference of ``reference.metrics``."""
    spec = OmegaConf.to_container(exp.evaluate, resolve=True)
    if reference is not None:
        _, _, folder, num = reference
        refs = [f'{m}.reference={{run:"{quotable(folder)}",num:{num}}}' for m in exp.reference.get("metrics", [])]
        spec["overrides"] = list(spec.get("overrides", [])) + refs
    return spec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiment", type=Path)
    ap.add_argument("--only", default="", help="comma-separated run labels to run (default: all); 'x (tuned)' runs "
                    "sweep x first; with --sweeps, the sweep labels to run")
    ap.add_argument("--sweeps", action="store_true", help="run only the sweeps (sweep.md and plots), not the table")
    ap.add_argument("--smoke", action="store_true", help="the experiment's smoke run: tiny models, stand-in data, "
                    "a few samples, output under results/runs/smoke/")
    ap.add_argument("--output", type=Path, default=None, help="table folder (default: the experiment's)")
    ap.add_argument("--replications", type=int, default=None, help="replications of each row (default: the "
                    "experiment's replications:, e.g. 10 for the motion tables); fewer cost less, wider intervals")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides applied to every run")
    args = ap.parse_intermixed_args(argv)
    command = "python scripts/run_experiment.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    try:
        exp = OmegaConf.load(args.experiment)
        if args.smoke:
            exp = apply_smoke(exp)
    except ALMError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.replications is not None:
        if args.replications < 1:
            print("error: --replications must be at least 1", file=sys.stderr)
            return 1
        exp.replications = args.replications
    output = args.output or ROOT / exp.output
    if "each" not in exp:  # one table
        return run_table(exp, args, output, list(args.overrides), command)
    (key, values), = exp.each.items()  # each: {dataset: [afhq, celebahq]} -> one table per value, in output/<value>/
    status = 0
    for value in values:
        print(f"== {key}={value}", flush=True)
        status = max(status, run_table(exp, args, output / str(value), [f"{key}={value}", *args.overrides], command))
    return status


def run_table(exp, args, output: Path, extra: list[str], command: str) -> int:
    """Sweeps, runs, the table, the grid and the evaluation stage of one experiment (one ``each`` value)."""
    only = set(args.only.split(",")) if args.only else None
    common = list(exp.get("overrides", []))
    output.mkdir(parents=True, exist_ok=True)
    summaries = []
    t_start = time.perf_counter()
    references = []
    try:
        reference = reference_run(exp, common, extra)
        plan = plan_evaluation(evaluate_spec(exp, reference)) if "evaluate" in exp else None  # weights checked first
        if reference is not None:  # the reference set first: every row (and sweep point) is judged against it
            label, overrides, _, _ = reference
            references.append({**run_one(overrides, label), "setting": " ".join(exp.reference.overrides)})
        runs = {l: list(o) for l, o in exp.runs.items()}
        replications = int(exp.get("replications", 1))  # label -> "label #r" with seed=r (alm.replications)
        sweep_only = {f"{l} (tuned)" for l in only} if (only and args.sweeps) else only  # --sweeps --only alm
        for label, overrides in run_sweeps(exp, common, extra, output, plan, sweep_only).items():
            runs[f"{label} (tuned)"] = overrides
        if args.sweeps:
            if not exp.get("sweeps"):
                raise ConfigError(f"{args.experiment} has no sweeps")
            return 0
        keys = [*exp.columns, *exp.get("rank", {})]
        for label, overrides in expand(runs, replications).items():
            if only is None or label in only or base_label(label) in only:
                row = run_or_diverged(merge_overrides(common, overrides, extra), label, keys)
                summaries.append({**row, "setting": " ".join(overrides)})
    except ALMError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - t_start
    finished = [s for s in summaries if "_dir" in s]  # a diverged row has no samples to show or evaluate

    columns = list(exp.columns) + (["note"] if len(finished) < len(summaries) else [])
    if "rank" in exp:
        ranked = [s for s in summaries if s["method"] not in set(exp.get("unranked", []))]
        for s, k in zip(ranked, rank_column(ranked, {k: v == "higher" for k, v in exp.rank.items()})):
            s["rank"] = k
        columns.append("rank")
    header = f"# {exp.name}\n\n{exp.get('description', '').strip()}\n\nMade by `{command}` (make target: `{exp.get('make', '')}`); wall time of this invocation {wall:.0f} s.\n\n"
    table = references + summaries  # the reference run's cost too (no rank)
    (output / "table.md").write_text(header + markdown_table(table, columns=columns) + "\n" + exp.get("notes", ""))
    with open(output / "table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(table)
    grids = [(s["method"], s["_dir"]) for s in finished if s["method"] in set(exp.get("grid", [s["method"] for s in summaries]))]
    if grids and exp.get("grid_per_run", False):  # runs on different data: one masked | output grid each
        for label, run_dir in grids:
            slug = "".join(c if c.isalnum() else "_" for c in label).strip("_")
            comparison_grid([(label, run_dir)], output / f"grid_{slug}.png", rows=int(exp.get("grid_rows", 6)))
    elif grids and exp.get("grid_style") == "video":  # long videos: per sample, one strip per run + a side-by-side MP4
        n = min(int(exp.get("grid_rows", 3)), min(s["_n"] for s in finished))
        video_comparison(grids, output, samples=list(range(n)), every=int(exp.get("strip_every", 8)))
    elif grids and exp.get("grid_style") == "wide":  # wide images: one strip per run, one row per sample
        n = min(int(exp.get("grid_rows", 6)), min(s["_n"] for s in finished))
        wide_strip(grids, output / "grid.png", samples=list(range(n)), by="sample")
    elif grids:
        comparison_grid(grids, output / "grid.png", rows=int(exp.get("grid_rows", 6)))
    for spec in (exp.get("figures") or {}).values():  # figures: {name: {_target_: a function, its options}}
        try:
            run_figure(spec, finished, output)
        except ALMError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    print((output / "table.md").read_text())
    if plan is not None:  # the evaluation stage: evaluation_table.md / .csv, evaluation_rows.csv, figures
        if args.smoke:  # stand-in networks with random weights (open_clip's draw from torch's generator): the same each time
            import torch

            torch.manual_seed(0)
        try:
            print(evaluate_experiment(plan, [(s["method"], s["_dir"], s["_n"]) for s in finished], output, command))
        except ALMError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        if replications > 1:
            write_replications(plan, output, header, exp.get("notes", ""))
        elif exp.get("combined"):
            write_combined(exp, output, summaries, header)
    return 0


def write_replications(plan, output: Path, header: str, notes: str) -> Path:
    """``replications.md|csv``: the evaluation table's rows folded per method, mean ± 95% interval over the
    replications and the Rank on the means (alm.replications) -- the table to read."""
    from alm.replications import markdown as replication_markdown, summarize
    from alm.tables import read_csv, write_csv

    columns, rows = read_csv(output / "evaluation_table.csv")
    directions = plan.mset.directions()
    metrics = [c for c in columns if c in plan.mset.metrics or c.rsplit("_", 1)[0] in plan.mset.metrics]
    summary = summarize(rows, metrics, directions)
    legend = [l for l in (output / "evaluation_table.md").read_text().splitlines() if l.startswith("- `")]
    (output / "replications.md").write_text(
        header + "\n".join(legend) + "\n- each cell: mean ± 1.96 std / sqrt(R) over the R replications (seeds 0..R-1)"
        + "\n\n" + replication_markdown(summary, metrics, directions) + "\n" + notes)
    write_csv(output / "replications.csv", ["label", *[c for m in metrics for c in (m, f"{m}_ci")], "replications",
                                            *(["rank"] if any("rank" in r for r in summary) else [])], summary)
    print((output / "replications.md").read_text())
    return output / "replications.md"


def run_figure(spec, finished: list[dict], output: Path) -> Path:
    """One entry of an experiment's ``figures:``, ``{_target_: module.function, ...options}``, called as
    ``function(runs=[(label, run_dir, num_samples), ...] of the finished rows, output=<table folder>, **options)``
    (e.g. ``alm.metrics.wide_gp.profile_figure``)."""
    from hydra.utils import get_method

    options = OmegaConf.to_container(spec, resolve=True)
    function = get_method(options.pop("_target_"))
    return function(runs=[(s["method"], s["_dir"], s["_n"]) for s in finished], output=output, **options)


def write_combined(exp, output: Path, summaries: list[dict], header: str) -> Path:
    """``<combined>.md|csv``: the evaluation stage's table (metrics, Rank) with the runs' cost columns
    (``evaluations``, ``seconds`` per sample) beside it -- the one table to read."""
    from alm.tables import markdown, read_csv, to_float, write_csv

    columns, rows = read_csv(output / "evaluation_table.csv")
    cost = {s["method"]: s for s in summaries}
    extra = [c for c in ("evaluations", "seconds") if any(c in s for s in summaries)]
    for r in rows:
        r.update({c: cost.get(r["label"], {}).get(c, "") for c in extra})
        r.update({c: to_float(r[c]) for c in columns if c not in ("label",) and r.get(c, "") != ""})
    ranked = [c for c in columns if c != "rank"] + extra + (["rank"] if "rank" in columns else [])
    name = str(exp.combined)
    legend = [l for l in (output / "evaluation_table.md").read_text().splitlines() if l.startswith("- `")]
    total = sum(float(s.get("seconds", 0.0)) * int(s.get("samples", 0)) for s in summaries)
    (output / f"{name}.md").write_text(
        header + f"Cost of these rows (seconds per sample x samples, summed over all rows; a \"*\" row blended from its "
        f"plain row, and a row equal to another, count that row's cost again): {total / 60:.0f} min.\n\n"
        + "\n".join(legend) + "\n- `evaluations`, `seconds`: network evaluations and wall seconds per sample (not ranked)\n\n"
        + markdown(ranked, rows) + "\n" + exp.get("notes", ""))
    write_csv(output / f"{name}.csv", ranked, rows)
    return output / f"{name}.md"


if __name__ == "__main__":
    sys.exit(main())
