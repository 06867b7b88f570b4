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

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from alm import io, run_folder
from alm.backbones.base import Backbone
from alm.config import build, resolve_device
from alm.errors import ConfigError, DataError, NumericalError
from alm.methods.base import Method
from alm.rng import SampleGenerators
from alm.sampling import CallCounter, reverse
from alm.schedule import Schedule, make_schedule
from alm.tasks.base import Batch, Task

#: config keys that do not change any sample's output (so they may change between restarts); dotted = nested.
#: A task adds its own (``Task.non_output_keys``, as ``task.<key>``).
NON_OUTPUT_KEYS = ("batch_size", "shard_index", "shard_count", "num_samples", "device", "threads", "progress", "paths", "hydra", "logger", "metrics",
                   "backbone.device")  # backbone.device: ${device} (shards on other GPUs)
SAMPLERS = ("ddim", "ddpm")
COST_KEYS = ("seconds", "evaluations", "cached_evaluations")


# --- fingerprints: one config per run folder ---------------------------------------------------------
def _drop(d: Any, parts: list[str]) -> Any:
    """``d`` without the nested entry ``parts`` (a copy; ``d`` itself is kept)."""
    if not isinstance(d, dict) or parts[0] not in d:
        return d
    if len(parts) == 1:
        return {k: v for k, v in d.items() if k != parts[0]}
    return {**d, parts[0]: _drop(d[parts[0]], parts[1:])}


def task_class(task_node: Any) -> type:
    """The task's class from its config node (for its key lists, without building it)."""
    from hydra.utils import get_class

    target = (task_node or {}).get("_target_") if isinstance(task_node, (dict, DictConfig)) else None
    if not target:
        return Task
    try:
        return get_class(str(target))
    except Exception as err:
        raise ConfigError(f"task._target_={target}: cannot import it ({str(err).splitlines()[0]})") from None


def _without(container: dict, keys: tuple[str, ...]) -> dict:
    for key in keys:
        container = _drop(container, key.split("."))
    return container


def _non_output_keys(container: dict) -> tuple[str, ...]:
    task_keys = tuple(f"task.{k}" for k in task_class(container.get("task")).non_output_keys)
    return NON_OUTPUT_KEYS + task_keys


def fingerprint(cfg: DictConfig) -> dict:
    """The part of the resolved config that can change a sample's output."""
    container = OmegaConf.to_container(cfg, resolve=True)
    return _without(container, _non_output_keys(container))


def _flatten(d: Any, prefix: str = "") -> dict:
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _stored_fingerprint(run_dir: Path) -> Optional[dict]:
    path = run_dir / "fingerprint.json"
    if not path.exists():
        return None
    old = json.loads(path.read_text())
    return _without(old, _non_output_keys(old))  # folders written before a key became non-output


def check_fingerprint(run_dir: Path, fp: dict) -> None:
    """A run folder holds one config: refuse to mix samples of different configs in it."""
    old = _stored_fingerprint(run_dir)
    if old is None:
        io.write_json(run_dir / "fingerprint.json", fp)
        return
    fp = _without(fp, _non_output_keys(fp))
    if old != fp:
        a, b = _flatten(old), _flatten(fp)
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise ConfigError(
            f"run folder {run_dir} holds samples of a different config (differs in: {', '.join(diff[:6])}); "
            "delete the folder or choose another with hydra.run.dir=..."
        )


def same_but_postprocessing(run_dir: Path, cfg: DictConfig) -> bool:
    """Whether ``run_dir`` holds this config's samples except for the task's post-processing keys."""
    theirs = _stored_fingerprint(Path(run_dir))
    if theirs is None:
        return False
    mine = fingerprint(cfg)
    keys = tuple(f"task.{k}" for k in task_class(mine.get("task")).postprocess_keys)
    return _without(theirs, keys) == _without(mine, keys)


# --- build -------------------------------------------------------------------------------------------
@dataclass
class Parts:
    """Everything a run is built from, checked for compatibility before any work starts."""

    backbone: Backbone
    dataset: Any
    masks: Any
    task: Task
    method: Method
    schedule: Schedule
    device: torch.device


def build_parts(cfg: DictConfig) -> Parts:
    """Build and cross-check every part of a run (the one place config errors surface)."""
    if cfg.sampler.name not in SAMPLERS:
        raise ConfigError(f"sampler.name={cfg.sampler.name!r}: expected one of {', '.join(SAMPLERS)}")
    if cfg.num_samples < 1 or cfg.batch_size < 1:
        raise ConfigError("num_samples and batch_size must be positive")
    if not 0 <= cfg.shard_index < cfg.shard_count:
        raise ConfigError(f"shard_index={cfg.shard_index} must be in [0, shard_count={cfg.shard_count})")
    device = resolve_device(cfg.device)
    task = build(cfg.task)
    method = build(cfg.method)
    if not isinstance(task, Task):
        raise ConfigError(f"task {cfg.task.get('_target_')} is not an alm.tasks.base.Task")
    if not isinstance(method, Method):
        raise ConfigError(f"method {cfg.method.get('_target_')} is not an alm.methods.base.Method")
    if method.requires_backbone and cfg.backbone.get("_target_") != method.requires_backbone:
        raise ConfigError(f"method={cfg.method.name} needs the backbone {method.requires_backbone}, not {cfg.backbone.name}")
    masks = build(cfg.mask)
    backbone = build(cfg.backbone).to(device).eval()
    dataset = build(cfg.dataset)
    method.check(backbone, task)
    if hasattr(dataset, "check"):
        dataset.check(backbone)
    task.check(backbone, dataset, method)
    if cfg.num_samples > len(dataset):
        raise ConfigError(f"num_samples={cfg.num_samples} but dataset {cfg.dataset.name} has only {len(dataset)} items")
    schedule = make_schedule(backbone.scheduler_config, int(cfg.sampler.steps), cfg.sampler.name)
    return Parts(backbone, dataset, masks, task, method, schedule, device)


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
