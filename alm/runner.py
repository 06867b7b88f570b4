"""The runner: a config -> one run folder of per-sample outputs (layout: ``alm.run_folder``).

Read it as EDM's ``generate.py``: ``build`` every part (every config error surfaces there, before any
work) -> the ``batches`` still to do -> ``sample`` each batch through the one sampling core -> ``save``
it -> ``summarize``. The runner knows no task, method or metric by name: the task (``conf/task/``)
turns data into problems and outputs into records; the method (``conf/method/``) is a plug-in of
``alm.sampling.reverse``; metrics are the evaluation stage's (``alm.evaluate``).

A sample is done when its ``.pt`` exists (written atomically, last); an interrupted run started again
with the same config computes only the missing samples.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from alm import io, run_folder
from alm.errors import DataError, NumericalError
from alm.fingerprint import check_fingerprint, fingerprint, same_but_postprocessing
from alm.parts import Parts, build_parts
from alm.rng import SampleGenerators
from alm.sampling import CallCounter, reverse
from alm.tasks.base import Batch, Task

COST_KEYS = ("seconds", "evaluations", "cached_evaluations")


# --- batches, sample, save ---------------------------------------------------------------------------
def batches(cfg: DictConfig, run_dir: Path, reusable: frozenset = frozenset()) -> list[list[int]]:
    """This shard's samples that are not stored yet, in batches of ``batch_size`` (those in ``reusable``
    in batches of their own, first)."""
    done = run_folder.done_indices(run_dir)
    todo = [i for i in range(cfg.shard_index, cfg.num_samples, cfg.shard_count) if i not in done]
    size = int(cfg.batch_size)
    out = []
    for part in ([i for i in todo if i in reusable], [i for i in todo if i not in reusable]):
        out += [part[k : k + size] for k in range(0, len(part), size)]
    return out


def sample(parts: Parts, batch: Batch, cfg: DictConfig) -> tuple[torch.Tensor, dict]:
    """One batch through the sampling core: its outputs (data space) and its cost per sample."""
    counter, t0 = CallCounter(), time.perf_counter()
    problem = parts.task.problem(parts.backbone, parts.method, batch, parts.schedule, counter)
    z = reverse(parts.backbone, parts.method, problem, parts.schedule, SampleGenerators(int(cfg.seed), batch.indices),
                guidance=float(cfg.sampler.guidance), sampler=cfg.sampler.name, counter=counter)
    outputs = parts.task.finish(parts.backbone, batch, z)
    n = len(batch)
    # evaluations = the method's cost (made + read from the inversion cache): the same whatever the cache held
    return outputs, {"seconds": (time.perf_counter() - t0) / n,
                     "evaluations": (counter.evaluations + counter.cached_evaluations) / n,
                     "cached_evaluations": counter.cached_evaluations / n}


def reuse(parts: Parts, batch: Batch, source_run: Path) -> tuple[torch.Tensor, dict]:
    """A batch's outputs taken from ``source_run`` (the same config but the task's post-processing),
    post-processed by this run's task; the cost columns are the source run's."""
    loaded = [run_folder.load_sample(source_run, i, map_location=parts.device) for i in batch.indices]
    for d, i, src in zip(loaded, batch.indices, batch.sources):
        if not torch.equal(d["source"].to(src.dtype), src):  # same config, so the same source: else refuse
            raise DataError(f"{source_run} sample {i} has another source than this run's; delete one of the folders")
    outputs = parts.task.postprocess(parts.backbone, batch, torch.stack([d["output"] for d in loaded]).float())
    costs = [d.get("cost", d.get("metrics", {})) for d in loaded]
    return outputs, {k: sum(float(c.get(k, 0.0)) for c in costs) / len(costs) for k in COST_KEYS}


def save(run_dir: Path, task: Task, batch: Batch, outputs: torch.Tensor, cost: dict) -> None:
    """Per sample: the task's PNGs, then the sample file (written last and atomically: it marks done)."""
    for j, i in enumerate(batch.indices):
        record = task.record(batch, j, outputs[j])
        for kind, image in task.pictures(record).items():
            io.save_png(image, run_folder.image_path(run_dir, i, kind))
        run_folder.save_sample(run_dir, i, {**record, "label": batch.labels[j], "meta": batch.metas[j], "cost": dict(cost)})


# --- the run -----------------------------------------------------------------------------------------
def run(cfg: DictConfig, run_dir: Path, reuse_from: Optional[Path] = None) -> dict:
    """Run (or finish) the config's samples in ``run_dir``; returns the summary.

    ``reuse_from``: a run folder of the same config except the task's post-processing keys (e.g. the
    "*" rows' blend): its samples are post-processed instead of sampled again (the experiment layer
    decides this; ``scripts/run_experiment.py``).
    """
    from tqdm.auto import tqdm

    from alm.loggers import make_logger
    from alm.metrics import prepare_metrics

    run_dir = Path(run_dir)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    parts = build_parts(cfg)
    metric_set = prepare_metrics(cfg.get("metrics"))  # a metric whose weights are missing stops here too
    metric_set.bind_run(cfg)  # and one that does not fit the run (the mixture's metrics on another backbone)
    run_dir.mkdir(parents=True, exist_ok=True)
    check_fingerprint(run_dir, fingerprint(cfg))
    io.atomic_write_bytes(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True).encode())
    diverged = run_dir / run_folder.DIVERGED
    if diverged.is_file():  # a config that diverged stays diverged (same fingerprint): say so without sampling again
        raise NumericalError(f"{diverged.read_text().strip()} (recorded in {diverged}; delete it to try again)")
    if reuse_from is not None and not same_but_postprocessing(reuse_from, cfg):
        reuse_from = None
    reusable = frozenset(run_folder.done_indices(reuse_from)) if reuse_from is not None else frozenset()
    with make_logger(cfg.get("logger"), run_dir, cfg) as logger:  # one logger run per job, finished on a crash
        todo = batches(cfg, run_dir, reusable)
        bar = tqdm(total=sum(map(len, todo)), unit="sample", desc=str(cfg.method.name), disable=not cfg.progress)
        try:
            for indices in todo:
                batch = parts.task.load(parts.dataset, parts.masks, indices, parts.device)
                if reuse_from is not None and set(indices) <= reusable:  # a whole batch of reusable samples
                    outputs, cost = reuse(parts, batch, reuse_from)
                else:
                    outputs, cost = sample(parts, batch, cfg)
                save(run_dir, parts.task, batch, outputs, cost)
                bar.update(len(indices))
        except NumericalError as err:
            io.atomic_write_bytes(diverged, (str(err) + "\n").encode())
            raise
        finally:
            bar.close()
        summary, rows = summarize(run_dir, cfg, metric_set, parts.device)
        run_folder.write_grid(run_dir, range(int(cfg.num_samples)), parts.task.panels)
        logger.log_samples(rows)
        logger.log_summary(summary, run_dir / "grid.png")
    return summary


def summarize(run_dir: Path, cfg: DictConfig, metric_set: Any, device: torch.device) -> tuple[dict, list[dict]]:
    """The run's summary (mean cost per sample, then the evaluation stage's values once every sample is
    stored) and its per-sample rows; writes summary.json, table.md and metrics.csv."""
    from alm.tables import markdown_table, write_csv

    n = int(cfg.num_samples)
    rows = run_folder.cost_rows(run_dir, range(n))
    summary: dict[str, Any] = {"method": cfg.method.name, "samples": len(rows)}
    if metric_set.metrics and len(rows) == n:  # the evaluation stage, once every shard is done (cached in <run>/eval/)
        from alm.evaluate import evaluate_run

        ev = evaluate_run(run_dir, metric_set, device, progress=bool(cfg.progress), label=str(cfg.method.name),
                          num_samples=n)
        summary.update({k: v for k, v in ev.summary.items() if k not in ("label", "samples")})
        by_sample = {r["sample"]: r for r in ev.rows}
        rows = [{**by_sample.get(r["sample"], {}), **r} for r in rows]
    for k in COST_KEYS:
        vals = [float(r[k]) for r in rows if isinstance(r.get(k), (int, float))]
        if vals:
            summary[k] = sum(vals) / len(vals)
    if rows:
        write_csv(run_dir / "metrics.csv", list(dict.fromkeys(k for r in rows for k in r)), rows)
    io.write_json(run_dir / "summary.json", summary)
    (run_dir / "table.md").write_text(markdown_table([summary], title=str(run_dir)))
    return summary, rows
