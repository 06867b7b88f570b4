"""The evaluation stage: run folders -> per-sample metric rows -> aggregated tables (separately from sampling).

    python -m alm.evaluate RUN [RUN ...] [--out DIR] [--labels a,b,...] [--only lpips,mse] [--title TEXT]
                           [--allow-incomplete | --common]
                           [metrics=<name>] [metrics.<col>.<option>=...] [device=cpu] [logger=wandb] ...

A RUN is a run folder (it has ``samples/``) or any folder above run folders (every run below it is
evaluated). The remaining ``key=value`` arguments override ``conf/evaluate.yaml`` (Hydra syntax; the
metric set is the ``metrics`` group, ``conf/metrics/*.yaml``).

Every metric is built and its weights checked before any run is read: a missing file is a one-line
error (``metrics.skip_unavailable=true``: a warning, the column left out).

A run's samples are ``0..num_samples-1`` of its ``config.yaml`` (shards share the folder: it is complete
when every shard is). Runs are only compared on the same samples: a run that lacks some of its samples,
or runs of different sizes, are a one-line error naming them and the ways out: finish the run (its
command: ``rerun_command``), ``--allow-incomplete`` (an incomplete run is evaluated on what it has, its
``samples`` cell reads ``4/10 (incomplete)`` and it is left out of the Rank) or ``--common`` (every run
evaluated and ranked on the samples all of them have; cells ``4/10 (common)``). An unreadable sample file
is a one-line error naming the file and the command that recomputes it.

Per run, ``<run>/eval/per_sample.csv`` holds one row per sample and per-sample metric, and
``<run>/eval/values.json`` each metric's config, the samples it saw and, for set metrics (FID, KID), its
value. A metric whose config, samples and evaluated tensor are unchanged is not computed again, so a
table can be rebuilt or extended with a new metric cheaply (``force=true`` recomputes everything).
Aggregation is a separate step: the mean of each per-sample column over the run's samples, plus the set
metrics (a per-sample metric may report its own set-level value instead: ``Metric.aggregate``). Metrics
that need the run itself (the Gaussian-mixture metrics build the run's mixture) get its config.yaml and
sample indices through ``Metric.bind_run`` before their updates. The tables (``table.md``, ``table.csv``;
``rows.csv``: every run's per-sample rows) go to ``--out`` (default: ``<run>/eval/`` for one run,
``results/eval/<metrics name>/`` for several) and record the command that made them. With several runs a Rank column ranks them (``alm.ranking``; each metric's
``higher_is_better``).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch

from alm import io
from alm.errors import ALMError, ConfigError, DataError
from alm.metrics import MetricSet, prepare_metrics
from alm.ranking import rank_column
from alm.run_folder import (EVAL_DIR, STORE_ROWS, STORE_VALUES, default_labels, done_indices, find_runs,  # noqa: F401
                            run_config, sample_files, sample_path)
from alm.tables import markdown, read_csv, write_csv



@dataclass
class RunEval:
    """One run's evaluation: per-sample rows (``sample`` + per-sample metric columns) and its summary."""

    label: str
    run_dir: Path
    rows: list[dict]
    summary: dict
    #: in the Rank column (the CLI leaves incomplete runs out of it: ``--allow-incomplete``)
    ranked: bool = True
    #: index -> the ``cost`` of every sample file read by this evaluation (none when all was cached), so a
    #: caller that needs the costs too (the runner's summary) need not read the files again
    costs: dict = field(default_factory=dict)


# -- config ------------------------------------------------------------------------------------------
def compose_evaluate(overrides: Sequence[str] = ()):
    """Compose ``conf/evaluate.yaml`` with Hydra overrides (outside a Hydra app)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    import yaml
    from omegaconf.errors import OmegaConfBaseException

    from alm.config import CONF_DIR, register_resolvers

    register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            return compose(config_name="evaluate", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException, yaml.YAMLError) as err:
        cause: Optional[BaseException] = err
        while cause is not None and not str(cause).strip():
            cause = cause.__cause__
        lines = [l.strip() for l in str(cause or type(err).__name__).strip().splitlines() if l.strip()]
        raise ConfigError(" ".join(lines[:2])) from None


# -- the per-run store -------------------------------------------------------------------------------
def _load_store(run_dir: Path) -> tuple[dict[int, dict], dict]:
    base = run_dir / EVAL_DIR
    rows: dict[int, dict] = {}
    if (base / STORE_ROWS).is_file():
        _, raw = read_csv(base / STORE_ROWS)
        for r in raw:
            i = int(r.pop("sample"))
            rows[i] = {"sample": i, **{k: float(v) for k, v in r.items() if v not in ("", None)}}
    values = json.loads((base / STORE_VALUES).read_text()) if (base / STORE_VALUES).is_file() else {}
    return rows, values


def _save_store(run_dir: Path, rows: dict[int, dict], values: dict) -> None:
    base = run_dir / EVAL_DIR
    columns = ["sample", *dict.fromkeys(k for r in rows.values() for k in r if k != "sample")]
    write_csv(base / STORE_ROWS, columns, [rows[i] for i in sorted(rows)])
    io.write_json(base / STORE_VALUES, values)


def _stack(items: list[dict], key: str, run_dir: Path) -> torch.Tensor:
    if key not in items[0]:
        raise DataError(f"{run_dir}: samples have no {key!r} tensor (keys: {', '.join(sorted(items[0]))})")
    return torch.stack([d[key].float() for d in items])


def evaluate_run(run_dir: Path, mset: MetricSet, device: torch.device, output_key: str = "output",
                 force: bool = False, progress: bool = True, label: Optional[str] = None,
                 num_samples: Optional[int] = None, indices: Optional[Sequence[int]] = None) -> RunEval:
    """Compute (or reuse) every metric of ``mset`` on one run folder; per-sample rows and the summary.

    ``num_samples``: judge samples ``0..num_samples-1`` (a folder may hold more: runs that differ only in
    ``num_samples`` share it); ``indices``: judge exactly these. Every one of them must be stored (else a
    one-line ``DataError``). Neither: every sample in the folder. Each sample file is read at most once.
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    label = label or run_dir.name
    if indices is None and num_samples is not None:
        indices = range(int(num_samples))
    if indices is None:
        files = sample_files(run_dir)
    else:
        ids, done = sorted({int(i) for i in indices}), done_indices(run_dir)
        missing = [i for i in ids if i not in done]
        if not ids:
            raise DataError(f"{run_dir}: no samples to evaluate")
        if missing:
            raise DataError(f"{run_dir} lacks {len(missing)} of the {len(ids)} samples to evaluate "
                            f"({_spans(missing)}); finish the run: {rerun_command(run_dir)}")
        files = [(i, sample_path(run_dir, i)) for i in ids]
    ids = [i for i, _ in files]
    costs: dict[int, dict] = {}
    rows, values = _load_store(run_dir)

    def fresh(key: str) -> bool:
        v, m = values.get(key), mset.metrics[key]
        if force or not v or v["config"] != mset.configs[key] or v["samples"] != ids or v["output_key"] != output_key:
            return False
        if v.get("version") != m.version:  # the metric's definition changed since
            return False
        if _summary_computed(m) and "value" not in v:
            return False
        return not m.per_sample or all(key in rows.get(i, {}) for i in ids)

    todo = [k for k in mset.metrics if not fresh(k)]
    if todo:
        mset.bind_run(run_config(run_dir), ids, only=todo)  # metrics that need the run (its config, indices)
        for k in todo:
            mset.metrics[k].setup(device)
            mset.metrics[k].reset()
        bar = tqdm(total=len(files), unit="sample", desc=f"evaluate {label}", disable=not progress)
        for start in range(0, len(files), mset.batch_size):
            chunk = files[start : start + mset.batch_size]
            items = [load_sample_file(f, run_dir) for _, f in chunk]
            costs.update((i, d.get("cost", d.get("metrics", {}))) for (i, _), d in zip(chunk, items))
            output = _stack(items, output_key, run_dir).to(device)
            source = _stack(items, "source", run_dir).to(device)
            mask = _stack(items, "mask", run_dir).to(device)
            labels, metas = [d.get("label") for d in items], [d.get("meta") or {} for d in items]
            for k in todo:
                vals = mset.metrics[k].update(output, source, mask, labels, metas)
                if vals is not None:
                    for (i, _), v in zip(chunk, vals.tolist()):
                        rows.setdefault(i, {"sample": i})[k] = v
            bar.update(len(chunk))
        bar.close()
        for k in todo:
            m = mset.metrics[k]
            entry = {"config": mset.configs[k], "version": m.version, "samples": ids, "output_key": output_key,
                     "per_sample": m.per_sample, "higher_is_better": m.higher_is_better, "region": m.region,
                     "title": m.describe()}
            if _summary_computed(m):  # a set metric, or a per-sample one whose summary is its compute()
                entry["value"] = m.compute()
                entry["extra"] = m.compute_extra()
            if m.per_sample:  # values of samples no longer in the run are dropped
                for i in set(rows) - set(ids):
                    rows[i].pop(k, None)
            values[k] = entry
        _save_store(run_dir, {i: rows.get(i, {"sample": i}) for i in sorted(set(rows) | set(ids))}, values)
    run_rows = [{"sample": i, **{k: rows.get(i, {}).get(k, math.nan) for k in mset.metrics if mset.metrics[k].per_sample}}
                for i in ids]
    return RunEval(label, run_dir, run_rows, aggregate(run_rows, mset, values, label), costs=costs)


class UnreadableSampleError(DataError):
    """A sample file that cannot be read (truncated, empty, not a sample record); ``path`` is the file."""

    def __init__(self, path: Path, reason: str, run_dir: Path) -> None:
        super().__init__(f"{path}: unreadable sample ({reason}); run the run's command again to recompute it: "
                         f"{rerun_command(run_dir)}")
        self.path = Path(path)


def load_sample_file(path: Path, run_dir: Path) -> dict:
    """One sample file; an unreadable one is a one-line ``UnreadableSampleError`` naming it and the command
    that recomputes it (the runner treats an unreadable sample as missing)."""
    try:
        record = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - zip, pickle, EOF errors: all mean a damaged file
        reason = (str(err).strip().splitlines() or [""])[0].split(". ")[0][:120] or type(err).__name__
        raise UnreadableSampleError(path, reason, run_dir) from None
    if not isinstance(record, dict):
        raise UnreadableSampleError(path, f"a {type(record).__name__}, not a sample record", run_dir)
    return record


def rerun_command(run_dir: Path) -> str:
    """The command that finishes or repairs a run (it computes the run's missing samples, and the runner
    treats an unreadable one as missing): ``python run.py <its overrides>`` from ``<run>/.hydra/overrides.yaml``
    when Hydra wrote it (``shard_index``/``shard_count`` left out: one process then does every shard),
    otherwise ``python run.py ... hydra.run.dir=<run>`` (the run's config is its ``config.yaml``)."""
    import yaml

    path = Path(run_dir) / ".hydra" / "overrides.yaml"
    if path.is_file():
        try:
            overrides = [str(o) for o in yaml.safe_load(path.read_text()) or []]
        except (yaml.YAMLError, TypeError):
            overrides = None
        if overrides is not None:
            keep = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] not in ("shard_index", "shard_count")]
            return shlex.join(["python", "run.py", *keep])
    value = str(run_dir) if all(c.isalnum() or c in "/._-+@" for c in str(run_dir)) else f'"{run_dir}"'
    return f"python run.py ... {shlex.quote('hydra.run.dir=' + value)} (the run's config: {Path(run_dir) / 'config.yaml'})"


def _spans(ids: Sequence[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    spans: list[list[int]] = []
    for i in ids:
        if spans and i == spans[-1][1] + 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans) or "none"


def _summary_computed(m) -> bool:
    """Whether a metric's summary value is its ``compute()`` (set metrics; per-sample ``aggregate="compute"``)."""
    return not m.per_sample or m.aggregate == "compute"


def aggregate(rows: Sequence[Mapping[str, Any]], mset: MetricSet, values: Mapping[str, dict], label: str) -> dict:
    """The summary of one run: mean of each per-sample column (finite values), then the set metrics.

    A per-sample metric with ``aggregate="compute"`` reports its own set-level value instead of the mean,
    one with ``aggregate=None`` no summary value (its rows only)."""
    summary: dict[str, Any] = {"label": label, "samples": len(rows)}
    for k, m in mset.metrics.items():
        if m.per_sample and m.aggregate is None:
            continue
        if m.per_sample and m.aggregate != "compute":
            vals = [float(r[k]) for r in rows if isinstance(r.get(k), (int, float)) and math.isfinite(r[k])]
            summary[k] = sum(vals) / len(vals) if vals else math.nan
        else:
            summary[k] = float(values[k]["value"])
            for suffix, v in values[k].get("extra", {}).items():
                summary[f"{k}_{suffix}"] = float(v)
    return summary


# -- tables ------------------------------------------------------------------------------------------
def table_columns(mset: MetricSet, summaries: Sequence[Mapping[str, Any]]) -> list[str]:
    cols = ["label", "samples"]
    for k in mset.metrics:
        cols += [c for c in summaries[0] if c == k or (c.startswith(k + "_") and c not in mset.metrics)] if summaries else [k]
    return list(dict.fromkeys(cols))


def write_tables(results: Sequence[RunEval], mset: MetricSet, out_dir: Path, command: str, title: str = "",
                 rank: bool = True, prefix: str = "", notes: Sequence[str] = ()) -> str:
    """``table.md`` / ``table.csv`` (one row per run) and ``rows.csv`` (every sample of every run).

    Runs with ``ranked=False`` get an empty Rank cell; ``notes``: more lines for the column list."""
    out_dir = Path(out_dir)
    summaries = [dict(r.summary) for r in results]
    columns = table_columns(mset, summaries)
    directions = mset.directions()
    ranked = [s for s, r in zip(summaries, results) if r.ranked]
    if rank and len(summaries) > 1 and ranked and directions:
        for s, k in zip(ranked, rank_column(ranked, directions)):
            s["rank"] = k
        columns.append("rank")
    arrows = {k: (k if m.higher_is_better is None else f"{k} ↑" if m.higher_is_better else f"{k} ↓")
              for k, m in mset.metrics.items()}
    lines = [f"# {title or 'Evaluation: ' + mset.name}", "", f"Made by `{command}`.", ""]
    for k, m in mset.metrics.items():
        ranked = "" if mset.ranked.get(k, True) else ", not ranked"
        better = ("no better direction" if m.higher_is_better is None
                  else f"{'higher' if m.higher_is_better else 'lower'} is better")
        lines.append(f"- `{k}`: {m.describe()} ({better}{ranked})")
    for k, why in mset.skipped.items():
        lines.append(f"- `{k}`: left out ({why})")
    if "rank" in columns:
        lines.append("- `rank`: the paper's rule over the ranked columns (rank each, average, rank the averages)")
    lines += [f"- {n}" for n in notes]
    lines.append("")
    runs_line = "Runs: " + "; ".join(f"{r.label} = `{r.run_dir}`" for r in results)
    md = "\n".join(lines) + "\n" + markdown(columns, summaries, arrows) + "\n" + runs_line + "\n"
    out_dir.mkdir(parents=True, exist_ok=True)
    io.atomic_write_bytes(out_dir / f"{prefix}table.md", md.encode())
    write_csv(out_dir / f"{prefix}table.csv", columns, summaries)
    sample_cols = ["label", "sample", *[k for k, m in mset.metrics.items() if m.per_sample]]
    write_csv(out_dir / f"{prefix}rows.csv", sample_cols, [{"label": r.label, **row} for r in results for row in r.rows])
    return md


# -- one call for a list of runs (CLI, experiments, runner) --------------------------------------------
def evaluate_runs(runs: Sequence[tuple], mset: MetricSet, cfg: Any, logger_node: Any = None) -> list[RunEval]:
    """Evaluate ``(label, run_dir)`` or ``(label, run_dir, samples)`` entries, ``samples`` the run's
    ``num_samples`` (an int) or the sample indices to judge (see ``evaluate_run``)."""
    from alm.loggers import make_logger
    from alm.config import resolve_device

    device = resolve_device(str(cfg.get("device", "auto")))
    results = []
    for label, run_dir, *limit in runs:
        which = limit[0] if limit else None
        res = evaluate_run(run_dir, mset, device, output_key=str(cfg.get("output_key", "output")),
                           force=bool(cfg.get("force", False)), progress=bool(cfg.get("progress", True)), label=label,
                           num_samples=which if isinstance(which, int) else None,
                           indices=None if which is None or isinstance(which, int) else which)
        if logger_node is not None:
            with make_logger(logger_node, run_dir, run_config(run_dir), job_type="evaluate") as logger:
                logger.log_samples(res.rows)
                logger.log_summary(res.summary, Path(run_dir) / "grid.png")
        results.append(res)
    return results


@dataclass
class EvaluationPlan:
    """An experiment's ``evaluate:`` section, composed and checked (weights on disk) before sampling."""

    cfg: Any
    mset: MetricSet
    spec: dict


def plan_evaluation(spec: Mapping[str, Any]) -> EvaluationPlan:
    """``evaluate: {metrics: <name>, overrides: [<col>.<opt>=v, ...], only: [...], config: [k=v, ...],
    title: ..., rank: true, figures: {grid: {runs: [...], rows: 6}}}`` -> a checked plan."""
    from omegaconf import DictConfig, OmegaConf

    spec = OmegaConf.to_container(spec, resolve=True) if isinstance(spec, DictConfig) else dict(spec)
    unknown = set(spec) - {"metrics", "overrides", "only", "config", "title", "rank", "figures", "output_key"}
    if unknown:
        raise ConfigError(f"evaluate: unknown key(s) {', '.join(sorted(unknown))}")
    overrides = [f"metrics={spec.get('metrics', 'pixel')}", *[f"metrics.{o}" for o in spec.get("overrides", [])],
                 *spec.get("config", [])]
    if "output_key" in spec:
        overrides.append(f"output_key={spec['output_key']}")
    cfg = compose_evaluate(overrides)
    return EvaluationPlan(cfg, prepare_metrics(cfg.metrics, only=spec.get("only")), spec)


def evaluate_experiment(plan: EvaluationPlan, runs: Sequence[tuple], output: Path, command: str) -> str:
    """Evaluate an experiment's ``(label, run_dir[, num_samples])`` runs; ``output/evaluation.md|csv``,
    ``evaluation_rows.csv`` and its figures."""
    results = evaluate_runs(runs, plan.mset, plan.cfg, plan.cfg.get("logger"))
    md = write_tables(results, plan.mset, output, command, title=plan.spec.get("title", ""),
                      rank=bool(plan.spec.get("rank", True)), prefix="evaluation_")
    grid = (plan.spec.get("figures") or {}).get("grid")
    if grid:
        from alm.figures import comparison_grid

        by_label = {r[0]: r[1] for r in runs}
        wanted = grid.get("runs") or [r[0] for r in runs]
        missing = [l for l in wanted if l not in by_label]
        if missing:
            raise ConfigError(f"evaluate.figures.grid.runs: no run labelled {', '.join(missing)}")
        comparison_grid([(l, by_label[l]) for l in wanted], output / grid.get("file", "comparison.png"),
                        rows=int(grid.get("rows", 6)), output_key=str(plan.cfg.get("output_key", "output")))
    return md


# -- which samples the command line compares ------------------------------------------------------------
@dataclass
class RunSamples:
    """What a run folder asks for and holds: ``asked`` = its config's ``num_samples`` (without a config.yaml:
    the highest stored index + 1), ``stored`` = the stored samples among ``0..asked-1``."""

    asked: int
    stored: list[int]

    @property
    def complete(self) -> bool:
        return len(self.stored) == self.asked

    @staticmethod
    def of(run_dir: Path) -> "RunSamples":
        cfg, done = run_config(run_dir), done_indices(run_dir)
        n = cfg.get("num_samples") if cfg is not None else None
        asked = int(n) if n is not None else max(done, default=-1) + 1
        return RunSamples(asked, sorted(i for i in done if i < asked))


@dataclass
class Selection:
    """The samples each run is evaluated on, its ``samples`` cell if flagged, whether it is ranked, and a
    line for the table saying why."""

    runs: list[tuple[str, Path, list[int]]]
    cells: list[Optional[str]]
    ranked: list[bool]
    note: str = ""


def select_samples(runs: Sequence[tuple[str, Path]], allow_incomplete: bool = False, common: bool = False) -> Selection:
    """Compare runs on the same samples only (see the module doc): refuse an incomplete run unless
    ``allow_incomplete`` (then flagged and unranked) and runs of different sizes; ``common`` evaluates
    every run on the samples all of them have."""
    have = [RunSamples.of(r) for _, r in runs]
    if common:
        shared = sorted(set.intersection(*(set(h.stored) for h in have)))
        if not shared:
            raise DataError("--common: the runs have no stored sample in common")
        return Selection([(l, r, shared) for l, r in runs], [f"{len(shared)}/{h.asked} (common)" for h in have],
                         [True] * len(runs), f"`samples`: every run is evaluated on the same {len(shared)} samples, "
                         f"those all of them have (--common); n/m = n of the m samples its config asks for")
    incomplete = [(l, r, h) for (l, r), h in zip(runs, have) if not h.complete]
    if incomplete and not allow_incomplete:
        many = len(incomplete) > 1
        which = ", ".join(f"{l} has {len(h.stored)}/{h.asked} samples" for l, _, h in incomplete)
        commands = "; ".join(rerun_command(r) for _, r, _ in incomplete)
        raise DataError(f"incomplete run{'s' if many else ''}: {which}; finish {'them' if many else 'it'}: {commands}; "
                        "or pass --allow-incomplete (tabled unranked) or --common (every run compared on the samples "
                        "all of them have)")
    sizes = [(l, h.asked) for (l, _), h in zip(runs, have) if h.complete]
    if len({n for _, n in sizes}) > 1:
        which = ", ".join(f"{l} {n}" for l, n in sizes)
        raise DataError(f"the runs have different samples (samples 0..n-1 of each: {which}); pass --common to "
                        "evaluate every run on the samples all of them have")
    return Selection([(l, r, h.stored) for (l, r), h in zip(runs, have)],
                     [None if h.complete else f"{len(h.stored)}/{h.asked} (incomplete)" for h in have],
                     [h.complete for h in have],
                     "`samples`: n/m (incomplete) = the run has n of the m samples its config asks for; evaluated on "
                     "those and not ranked (--allow-incomplete)" if incomplete else "")


# -- command line ------------------------------------------------------------------------------------
def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m alm.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("items", nargs="*", help="run folders (or folders above them) and key=value overrides")
    ap.add_argument("--out", type=Path, default=None, help="table folder")
    ap.add_argument("--labels", default="", help="comma-separated labels, one per run (default: method names)")
    ap.add_argument("--only", default="", help="comma-separated metric columns to compute (default: all)")
    ap.add_argument("--title", default="", help="the table's title")
    ap.add_argument("--allow-incomplete", action="store_true",
                    help="evaluate runs that lack samples on what they have: flagged 'n/m (incomplete)', not ranked")
    ap.add_argument("--common", action="store_true",
                    help="evaluate (and rank) every run on the samples all of them have")
    args = ap.parse_intermixed_args(argv)
    try:
        paths, overrides = [], []
        for item in args.items:
            if Path(item).exists():
                paths.append(Path(item))
            elif "=" in item or item.startswith("~"):
                overrides.append(item)
            else:
                raise DataError(f"no such run folder: {item}")
        if not paths:
            raise ConfigError("give at least one run folder")
        runs = find_runs(paths)
        labels = [l.strip() for l in args.labels.split(",")] if args.labels else default_labels(runs)
        if len(labels) != len(runs):
            raise ConfigError(f"--labels gives {len(labels)} labels for {len(runs)} runs")
        cfg = compose_evaluate(overrides)
        only = [c.strip() for c in args.only.split(",") if c.strip()] or None
        mset = prepare_metrics(cfg.metrics, only=only)  # every weight checked before any work
        chosen = select_samples(list(zip(labels, runs)), args.allow_incomplete, args.common)
        results = evaluate_runs(chosen.runs, mset, cfg, cfg.get("logger"))
        for res, cell, ranked in zip(results, chosen.cells, chosen.ranked):
            res.ranked = ranked
            if cell is not None:
                res.summary["samples"] = cell
        out = args.out or (runs[0] / EVAL_DIR if len(runs) == 1 else Path(cfg.paths.eval) / mset.name)
        command = "python -m alm.evaluate " + shlex.join(argv)
        md = write_tables(results, mset, out, command, title=args.title, rank=bool(cfg.rank),
                          notes=[chosen.note] if chosen.note else [])
    except ALMError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(md)
    print(f"tables: {out / 'table.md'}  {out / 'table.csv'}  per-sample rows: {out / 'rows.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
