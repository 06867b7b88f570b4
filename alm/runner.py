"""The runner: a config -> one run folder of per-sample outputs (layout: ``alm.run_folder``).

Read it as EDM's ``generate.py``: ``build`` every part (every config error surfaces there, before any
work) -> ``fill`` the folder: claim the next batch still to do, ``sample`` it through the one sampling
core, ``save`` it -> ``summarize``. The runner knows no task, method or metric by name: the task
(``conf/task/``) turns data into problems and outputs into records; the method (``conf/method/``) is a
plug-in of ``alm.sampling.reverse``; metrics are the evaluation stage's (``alm.evaluate``).

A sample is done when its ``.pt`` exists (written atomically, last); an interrupted run started again
with the same config computes only the missing samples (an unreadable sample file counts as missing).
Processes started on one folder share the work: each computes the samples it claims (``alm.claims``),
none twice; what a killed process held goes to the others. The summary is made by one process at a time,
and not again while no sample and no metric changed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from alm import claims, io, run_folder, video_io
from alm.errors import DataError, NumericalError
from alm.fingerprint import check_fingerprint, fingerprint, input_hashes, same_but_postprocessing
from alm.parts import Parts, build_parts
from alm.rng import SampleGenerators
from alm.sampling import CallCounter, reverse
from alm.tasks.base import Batch, Task

COST_KEYS = ("seconds", "evaluations", "cached_evaluations")


# --- claim, sample, save ----------------------------------------------------------------------------
def claimed_batches(run_dir: Path, todo: list[int], size: int, mine: claims.Claims,
                    wait: float = 1.0) -> Iterator[list[int]]:
    """Batches of up to ``size`` samples of ``todo`` that this process claimed and that are not stored. A
    sample another process holds is tried again later (it may finish it, or die); this ends when every
    sample of ``todo`` is stored."""
    queue = deque(todo)
    while queue:
        batch, busy = [], []
        while queue and len(batch) < size:
            i = queue.popleft()
            if not mine.take(i):
                busy.append(i)
            elif run_folder.is_stored(run_dir, i):  # another process finished it
                mine.release(i)
            else:
                batch.append(i)
        queue.extend(busy)
        if batch:
            yield batch
        elif queue:  # the rest is computed by other processes: wait for them (or for their claims to go stale)
            time.sleep(wait)


def sample(parts: Parts, batch: Batch, cfg: DictConfig, callback: Optional[Callable[[int], None]] = None
           ) -> tuple[torch.Tensor, dict]:
    """One batch through the sampling core: its outputs (data space) and its cost per sample; ``callback``
    after every step (the claims' refresh)."""
    counter, t0 = CallCounter(), time.perf_counter()
    problem = parts.task.problem(parts.backbone, parts.method, batch, parts.schedule, counter)
    z = reverse(parts.backbone, parts.method, problem, parts.schedule, SampleGenerators(int(cfg.seed), batch.indices),
                guidance=float(cfg.sampler.guidance), sampler=cfg.sampler.name, counter=counter, callback=callback)
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
    """Per sample: the task's PNGs and videos, then the sample file (written last and atomically: it marks done)."""
    for j, i in enumerate(batch.indices):
        record = task.record(batch, j, outputs[j])
        for kind, image in task.pictures(record).items():
            io.save_png(image, run_folder.image_path(run_dir, i, kind))
        for kind, clip in task.movies(record).items():
            video_io.save_mp4(clip, run_folder.video_path(run_dir, i, kind, ".mp4"))
            video_io.save_gif(clip, run_folder.video_path(run_dir, i, kind, ".gif"))
        run_folder.save_sample(run_dir, i, {**record, "label": batch.labels[j], "meta": batch.metas[j], "cost": dict(cost)})


# --- the run -----------------------------------------------------------------------------------------
def run(cfg: DictConfig, run_dir: Path, reuse_from: Optional[Path] = None) -> dict:
    """Run (or finish) the config's samples in ``run_dir``; returns the summary.

    ``reuse_from``: a run folder of the same config except the task's post-processing keys (e.g. the
    "*" rows' blend): its samples are post-processed instead of sampled again (the experiment layer
    decides this; ``scripts/run_experiment.py``).
    """
    from alm.loggers import make_logger
    from alm.metrics import prepare_metrics

    run_dir = Path(run_dir)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    parts = build_parts(cfg)
    metric_set = prepare_metrics(cfg.get("metrics"))  # a metric whose weights are missing stops here too
    metric_set.bind_run(cfg)  # and one that does not fit the run (the mixture's metrics on another backbone)
    run_dir.mkdir(parents=True, exist_ok=True)
    inputs = input_hashes(parts.dataset, parts.masks, parts.backbone)  # files under an unchanged path may change
    check_fingerprint(run_dir, fingerprint(cfg, inputs), has_samples=bool(run_folder.done_indices(run_dir)))
    io.atomic_write_bytes(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True).encode())
    diverged = run_dir / run_folder.DIVERGED
    if diverged.is_file():  # a config that diverged stays diverged (same fingerprint): say so without sampling again
        raise NumericalError(f"{diverged.read_text().strip()} (recorded in {diverged}; delete it to try again)")
    if reuse_from is not None and not same_but_postprocessing(reuse_from, cfg, inputs):
        reuse_from = None
    run_folder.remove_leftovers(run_dir)  # temporary files and claims of killed processes
    stored = run_folder.stored_samples(run_dir)  # a damaged sample file is set aside: computed again
    todo = [i for i in range(cfg.shard_index, cfg.num_samples, cfg.shard_count) if i not in stored]
    with make_logger(cfg.get("logger"), run_dir, cfg) as logger:  # one logger run per job, finished on a crash
        try:
            fill(parts, cfg, run_dir, todo, reuse_from)
        except NumericalError as err:
            io.atomic_write_bytes(diverged, (str(err) + "\n").encode())
            raise
        summary, rows = summarize(run_dir, cfg, metric_set, parts.device, parts.task.panels)
        logger.log_samples(rows)
        logger.log_summary(summary, run_dir / "grid.png")
    return summary


def fill(parts: Parts, cfg: DictConfig, run_dir: Path, todo: list[int], reuse_from: Optional[Path] = None) -> None:
    """Compute the samples of ``todo`` that no other process computes: batch by claimed batch, those stored
    in ``reuse_from`` first (post-processed, not sampled)."""
    from tqdm.auto import tqdm

    reusable = set(run_folder.stored_samples(reuse_from)) if reuse_from is not None else set()
    bar = tqdm(total=len(todo), unit="sample", desc=str(cfg.method.name), disable=not cfg.progress)
    try:
        with claims.Claims(run_dir) as mine:
            for part in ([i for i in todo if i in reusable], [i for i in todo if i not in reusable]):
                for indices in claimed_batches(run_dir, part, int(cfg.batch_size), mine):
                    batch = parts.task.load(parts.dataset, parts.masks, indices, parts.device)
                    if indices[0] in reusable:
                        outputs, cost = reuse(parts, batch, reuse_from)
                    else:
                        outputs, cost = sample(parts, batch, cfg, callback=mine.refresh)
                    save(run_dir, parts.task, batch, outputs, cost)
                    mine.release(*indices)
                    bar.update(len(indices))
    finally:
        bar.close()


# --- the summary -------------------------------------------------------------------------------------
def summarize(run_dir: Path, cfg: DictConfig, metric_set: Any, device: torch.device,
              panels: Callable[[dict], list] = run_folder.inpainting_panels) -> tuple[dict, list[dict]]:
    """The run's summary and per-sample rows (see ``make_summary``). One process at a time makes it; it is
    read back instead while no sample file and no metric changed since it was made."""
    run_dir = Path(run_dir)
    with claims.locked(run_dir, "summary"):  # other processes wait, then find it current
        stored = run_folder.stored_samples(run_dir)
        stamp, stamp_file = summary_stamp(cfg, stored), run_dir / run_folder.SUMMARY_STAMP
        if stamp_file.is_file() and stamp_file.read_text() == stamp and (run_dir / "summary.json").is_file():
            return stored_summary(run_dir)
        made = make_summary(run_dir, cfg, metric_set, device, panels, sorted(i for i in stored if i < cfg.num_samples))
        io.atomic_write_bytes(stamp_file, stamp.encode())  # last: the summary is complete
        return made


def summary_stamp(cfg: DictConfig, stored: dict) -> str:
    """What a summary is made from: the metrics, the samples asked for and each such file's size and time
    (a sample added, computed again or set aside changes it)."""
    metrics = OmegaConf.to_container(cfg.metrics, resolve=True) if cfg.get("metrics") is not None else None
    files = sorted((i, st.st_size, st.st_mtime_ns) for i, st in stored.items() if i < cfg.num_samples)
    return hashlib.sha256(json.dumps([metrics, int(cfg.num_samples), files], default=str).encode()).hexdigest()


def make_summary(run_dir: Path, cfg: DictConfig, metric_set: Any, device: torch.device,
                 panels: Callable[[dict], list], indices: list[int]) -> tuple[dict, list[dict]]:
    """Mean cost per sample, then the evaluation stage's values once every sample is stored, and the
    per-sample rows; writes summary.json, table.md, metrics.csv and grid.png. Reads each sample file at
    most once (the evaluation hands over the costs of the files it read)."""
    from alm.tables import markdown_table, write_csv

    n = int(cfg.num_samples)
    ev = None
    if metric_set.metrics and len(indices) == n:  # the evaluation stage, once every shard is done (cached in <run>/eval/)
        from alm.evaluate import evaluate_run

        ev = evaluate_run(run_dir, metric_set, device, progress=bool(cfg.progress), label=str(cfg.method.name),
                          num_samples=n)
    costs, pictures = dict(ev.costs) if ev is not None else {}, []
    for i in indices:
        if i not in costs or len(pictures) < run_folder.GRID_ROWS:
            record = run_folder.read_sample(run_dir, i)  # None if unreadable (set aside: the next run computes it)
            if record is not None:
                costs[i] = record.get("cost", record.get("metrics", {}))
                if len(pictures) < run_folder.GRID_ROWS:
                    pictures.append(panels(record))
    rows = [{"sample": i, **costs[i]} for i in indices if i in costs]
    summary: dict[str, Any] = {"method": cfg.method.name, "samples": len(rows)}
    if ev is not None:
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
    io.atomic_write_bytes(run_dir / "table.md", markdown_table([summary], title=str(run_dir)).encode())
    run_folder.save_grid(run_dir, pictures)
    return summary, rows


def stored_summary(run_dir: Path) -> tuple[dict, list[dict]]:
    """The summary and per-sample rows written by ``make_summary`` (no sample file is read)."""
    from alm.tables import read_csv, to_float

    summary = json.loads((run_dir / "summary.json").read_text())
    path = run_dir / "metrics.csv"
    rows = read_csv(path)[1] if path.is_file() else []
    return summary, [{k: int(v) if k == "sample" else to_float(v) for k, v in r.items() if v != ""} for r in rows]
