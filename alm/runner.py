"""The runner: config -> backbone, data, masks, method -> one run folder of per-sample outputs.

Run folder layout (``EDM``-style: readable names, options written beside the outputs)::

    <run>/config.yaml          the resolved config
    <run>/fingerprint.json     the output-relevant part of the config; a restart must match it
    <run>/samples/00012.pt     per sample: source, mask, masked input, output, label, metrics
    <run>/images/00012_{source,masked,output}.png
    <run>/metrics.csv          one row per sample (rebuilt from samples/ at the end of every run)
    <run>/summary.json, table.md

A sample is done when its ``.pt`` exists (written atomically, last); an interrupted run started again
with the same config computes only the missing samples.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from alm import io
from alm.backbones.base import Backbone
from alm.errors import ALMError, ConfigError, DataError, NumericalError
from alm.inversion_cache import cache_from_config
from alm.masks import validate_mask
from alm.methods import get_method
from alm.methods.base import Method
from alm.rng import SampleGenerators
from alm.sample_metrics import image_metrics
from alm.sampling import CallCounter, reverse
from alm.schedule import make_schedule
from alm.tasks.inpaint import blend_output, build_problem, check_task, masked_source

#: config keys that do not change any sample's output (so they may change between restarts); dotted = nested
NON_OUTPUT_KEYS = ("batch_size", "shard_index", "shard_count", "num_samples", "device", "threads", "progress", "paths", "hydra", "logger", "metrics",
                   "task.inversion_cache", "backbone.device")  # backbone.device: ${device} (shards on other GPUs)
SAMPLERS = ("ddim", "ddpm")
DIVERGED = "diverged.txt"  # <run>/diverged.txt: the NaN error of a run that diverged (a sweep result, not a crash)


def build(node: Any, **kwargs: Any) -> Any:
    """Instantiate a config node with ``_target_`` (its ``name`` key is a label, not an argument)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    if node is None or "_target_" not in node:
        raise ConfigError(f"config node {OmegaConf.to_yaml(node).strip()!r} has no _target_")
    params = {k: v for k, v in node.items() if k != "name"}
    try:
        return instantiate(OmegaConf.create(params), **kwargs)
    except InstantiationException as err:  # Hydra wraps our one-line errors; unwrap them
        cause = err.__cause__
        while cause is not None and not isinstance(cause, ALMError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise ConfigError(f"cannot build {node.get('_target_')}: {err}".splitlines()[0]) from err


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but CUDA is not available on this machine (use device=cpu or auto)")
    return torch.device(name)


def _drop(d: Any, parts: list[str]) -> Any:
    """``d`` without the nested entry ``parts`` (a copy; ``d`` itself is kept)."""
    if not isinstance(d, dict) or parts[0] not in d:
        return d
    if len(parts) == 1:
        return {k: v for k, v in d.items() if k != parts[0]}
    return {**d, parts[0]: _drop(d[parts[0]], parts[1:])}


def _without_non_output(container: dict) -> dict:
    """``container`` without the ``NON_OUTPUT_KEYS`` (a dotted key names a nested entry)."""
    for key in NON_OUTPUT_KEYS:
        container = _drop(container, key.split("."))
    return container


def fingerprint(cfg: DictConfig) -> dict:
    return _without_non_output(OmegaConf.to_container(cfg, resolve=True))


def _flatten(d: Any, prefix: str = "") -> dict:
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def check_fingerprint(run_dir: Path, fp: dict) -> None:
    """A run folder holds one config: refuse to mix samples of different configs in it."""
    path = run_dir / "fingerprint.json"
    if not path.exists():
        io.write_json(path, fp)
        return
    old = _without_non_output(json.loads(path.read_text()))  # folders written before a key became non-output
    fp = _without_non_output(fp)
    if old != fp:
        a, b = _flatten(old), _flatten(fp)
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise ConfigError(
            f"run folder {run_dir} holds samples of a different config (differs in: {', '.join(diff[:6])}); "
            "delete the folder or choose another with hydra.run.dir=..."
        )


def method_from_config(node: Any) -> Method:
    """A ``conf/method/*.yaml`` node (``name``, ``kind`` and the parameters) -> the method object."""
    params = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    params.pop("name", None)
    return get_method(params.pop("kind"), **params)


@dataclass
class Components:
    """Everything a run is built from, checked for compatibility before any work starts."""

    backbone: Backbone
    dataset: Any
    masks: Any
    method: Method


def build_components(cfg: DictConfig, device: torch.device) -> Components:
    if cfg.sampler.name not in SAMPLERS:
        raise ConfigError(f"sampler.name={cfg.sampler.name!r}: expected one of {', '.join(SAMPLERS)}")
    check_task(cfg.task)
    method = method_from_config(cfg.method)
    if method.requires_backbone and cfg.backbone.get("_target_") != method.requires_backbone:
        raise ConfigError(f"method={cfg.method.name} needs the backbone {method.requires_backbone}, not {cfg.backbone.name}")
    masks = build(cfg.mask)
    backbone = build(cfg.backbone).to(device).eval()
    dataset = build(cfg.dataset)
    method.check(backbone, cfg.task)
    if hasattr(dataset, "check"):
        dataset.check(backbone)
    if tuple(dataset.shape) != tuple(backbone.data_shape):
        raise ConfigError(
            f"dataset {cfg.dataset.name} gives images of shape {tuple(dataset.shape)} but backbone "
            f"{cfg.backbone.name} works on {tuple(backbone.data_shape)}"
        )
    if cfg.num_samples > len(dataset):
        raise ConfigError(f"num_samples={cfg.num_samples} but dataset {cfg.dataset.name} has only {len(dataset)} items")
    if cfg.num_samples < 1 or cfg.batch_size < 1:
        raise ConfigError("num_samples and batch_size must be positive")
    if not 0 <= cfg.shard_index < cfg.shard_count:
        raise ConfigError(f"shard_index={cfg.shard_index} must be in [0, shard_count={cfg.shard_count})")
    return Components(backbone, dataset, masks, method)


def _load_batch(comp: Components, indices: list[int], device: torch.device):
    items = [comp.dataset[i] for i in indices]
    images = torch.stack([it.image for it in items]).to(device)
    size = tuple(images.shape[-2:])
    masks = []
    for i in indices:
        m = comp.masks.get(i, size)
        if tuple(m.shape[-2:]) != size:
            raise DataError(f"mask for sample {i} has size {tuple(m.shape[-2:])}, images have {size}")
        validate_mask(m, f"sample {i}")
        masks.append(m)
    return items, images, torch.stack(masks).to(device)


def _extra_metrics(backbone: Backbone, outputs, sources, masks, labels) -> Optional[list[dict]]:
    hook = getattr(backbone, "sample_metrics", None)
    return hook(outputs, sources, masks, labels) if hook is not None else None


def _save_samples(run_dir: Path, comp: Components, cfg: DictConfig, indices, items, images, masks, outputs, cost) -> None:
    """Per sample: PNGs, then the .pt with everything (written last and atomically: it marks done)."""
    masked = masked_source(images, masks, float(cfg.task.hole_value))
    rows = image_metrics(outputs, images, masks)
    extra = _extra_metrics(comp.backbone, outputs, images, masks, [it.label for it in items])
    for j, i in enumerate(indices):
        row = {"sample": i, **rows[j], **(extra[j] if extra else {}), **cost}
        shown = io.shown_masked(images[j], masks[j])
        for kind, im in (("source", images[j]), ("masked", shown), ("output", outputs[j])):
            io.save_png(im, run_dir / "images" / f"{i:05d}_{kind}.png")
        io.atomic_torch_save(
            # .clone(): a row of a batch tensor would save the whole batch's storage
            {"source": images[j].cpu().clone(), "mask": masks[j].cpu().clone(), "masked": masked[j].cpu().clone(),
             "output": outputs[j].cpu().clone(), "label": items[j].label, "meta": items[j].meta, "metrics": row},
            run_dir / "samples" / f"{i:05d}.pt",
        )


def run(cfg: DictConfig, run_dir: Path) -> dict:
    """Run (or finish) the config's samples in ``run_dir``; returns the summary."""
    from alm.loggers import make_logger
    from alm.metrics import prepare_metrics

    run_dir = Path(run_dir)
    device = resolve_device(cfg.device)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    comp = build_components(cfg, device)  # every config error surfaces here, before any work
    metric_set = prepare_metrics(cfg.get("metrics"))  # so does a metric whose weights are missing
    run_dir.mkdir(parents=True, exist_ok=True)
    check_fingerprint(run_dir, fingerprint(cfg))
    io.atomic_write_bytes(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True).encode())
    diverged = run_dir / DIVERGED
    if diverged.is_file():  # a config that diverged stays diverged (same fingerprint): say so without sampling again
        raise NumericalError(f"{diverged.read_text().strip()} (recorded in {diverged}; delete it to try again)")
    with make_logger(cfg.get("logger"), run_dir, cfg) as logger:  # one logger run per job, finished on a crash
        try:
            summary = _sample(cfg, run_dir, comp, device)
        except NumericalError as err:
            io.atomic_write_bytes(diverged, (str(err) + "\n").encode())
            raise
        complete = all((run_dir / "samples" / f"{i:05d}.pt").exists() for i in range(cfg.num_samples))
        if metric_set.metrics and complete:  # the evaluation stage, once every shard is done (cached in <run>/eval/)
            from alm.evaluate import evaluate_run

            ev = evaluate_run(run_dir, metric_set, device, progress=bool(cfg.progress), label=str(cfg.method.name),
                              num_samples=int(cfg.num_samples))
            summary.update({k: v for k, v in ev.summary.items() if k not in ("label", "samples")})
        io.write_json(run_dir / "summary.json", summary)
        (run_dir / "table.md").write_text(markdown_table([summary], title=str(run_dir)))
        write_grid(run_dir, cfg.num_samples)
        logger.log_samples(load_rows(run_dir, cfg.num_samples))
        logger.log_summary(summary, run_dir / "grid.png")
    return summary


def _sample(cfg: DictConfig, run_dir: Path, comp: Components, device: torch.device) -> dict:
    """Sample the missing samples of ``run_dir`` (this shard's); the summary of all its samples."""
    schedule = make_schedule(comp.backbone.scheduler_config, int(cfg.sampler.steps), cfg.sampler.name)
    cache = cache_from_config(cfg)
    samples_dir = run_dir / "samples"
    todo = [
        i for i in range(cfg.shard_index, cfg.num_samples, cfg.shard_count)
        if not (samples_dir / f"{i:05d}.pt").exists()
    ]
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), unit="sample", desc=f"{cfg.method.name}", disable=not cfg.progress)
    parent = blend_parent(run_dir, cfg)
    if parent is not None:  # a "*" run: blend the unblended run's outputs instead of sampling them again
        done = [i for i in todo if (parent / "samples" / f"{i:05d}.pt").exists()]
        for start in range(0, len(done), int(cfg.batch_size)):
            indices = done[start : start + int(cfg.batch_size)]
            _derive_blended(cfg, run_dir, parent, comp, indices, device)
            bar.update(len(indices))
        todo = [i for i in todo if i not in set(done)]
    for start in range(0, len(todo), int(cfg.batch_size)):
        indices = todo[start : start + int(cfg.batch_size)]
        counter, t0 = CallCounter(), time.perf_counter()
        items, images, masks = _load_batch(comp, indices, device)
        with torch.no_grad():
            problem = build_problem(
                comp.backbone, comp.method, images, masks, [it.label for it in items], schedule, cfg.task, counter,
                cache=cache,
            )
        gens = SampleGenerators(int(cfg.seed), indices)
        z = reverse(
            comp.backbone, comp.method, problem, schedule, gens,
            guidance=float(cfg.sampler.guidance), sampler=cfg.sampler.name, counter=counter,
        )
        with torch.no_grad():
            outputs = comp.backbone.decode(z).float()
        if cfg.task.get("blend", False):
            outputs = blend_output(outputs, images, masks, int(cfg.task.blend_kernel))
        # evaluations = the method's cost (made + read from the inversion cache): the same whatever the cache held
        cost = {"seconds": (time.perf_counter() - t0) / len(indices),
                "evaluations": (counter.evaluations + counter.cached_evaluations) / len(indices),
                "cached_evaluations": counter.cached_evaluations / len(indices)}
        _save_samples(run_dir, comp, cfg, indices, items, images, masks, outputs, cost)
        bar.update(len(indices))
    bar.close()
    return summarize(run_dir, cfg, comp.backbone, device)


BLEND_KEYS = ("task.blend", "task.blend_kernel")


def blend_parent(run_dir: Path, cfg: DictConfig) -> Optional[Path]:
    """For a blended ("*") run, the folder of the same run without the blend, if it exists and its
    fingerprint equals this run's except for ``task.blend`` / ``task.blend_kernel``; else None.

    The blend is a pixel-space post-processing of the output (SPEC §1), so a "*" row needs no sampling of
    its own when its plain row is done: its samples are the plain ones, blended (identical outputs).
    """
    if not cfg.task.get("blend", False):
        return None
    name = ",".join(p for p in run_dir.name.split(",") if not p.startswith(tuple(k + "=" for k in BLEND_KEYS)))
    parent = run_dir.with_name(name)
    if parent == run_dir or not (parent / "fingerprint.json").is_file():
        return None
    theirs = _without_non_output(json.loads((parent / "fingerprint.json").read_text()))
    mine = fingerprint(cfg)
    for d in (theirs, mine):
        d["task"] = {k: v for k, v in d.get("task", {}).items() if f"task.{k}" not in BLEND_KEYS}
    return parent if theirs == mine else None


def _derive_blended(cfg: DictConfig, run_dir: Path, parent: Path, comp: Components, indices: list[int], device) -> None:
    """Samples ``indices`` of a "*" run from its plain run's outputs (cost columns: the plain run's)."""
    items, images, masks = _load_batch(comp, indices, device)
    loaded = [torch.load(parent / "samples" / f"{i:05d}.pt", map_location=device, weights_only=False) for i in indices]
    for d, i, src in zip(loaded, indices, images):
        if not torch.equal(d["source"].to(src.dtype), src):  # same config, so the same source: else refuse
            raise DataError(f"{parent} sample {i} has another source than this run's; delete one of the folders")
    outputs = blend_output(torch.stack([d["output"] for d in loaded]).float(), images, masks, int(cfg.task.blend_kernel))
    costs = [{k: d["metrics"][k] for k in ("seconds", "evaluations", "cached_evaluations") if k in d["metrics"]}
             for d in loaded]
    cost = {k: sum(c.get(k, 0.0) for c in costs) / len(costs) for k in costs[0]}
    _save_samples(run_dir, comp, cfg, indices, items, images, masks, outputs, cost)


def load_rows(run_dir: Path, num_samples: int) -> list[dict]:
    rows = []
    for i in range(num_samples):
        path = run_dir / "samples" / f"{i:05d}.pt"
        if path.exists():
            rows.append(torch.load(path, weights_only=False)["metrics"])
    return rows


def summarize(run_dir: Path, cfg: DictConfig, backbone: Backbone, device: torch.device) -> dict:
    """metrics.csv from the per-sample files, and the mean of every numeric column."""
    rows = load_rows(run_dir, cfg.num_samples)
    keys: list[str] = []
    for r in rows:  # every column seen (a folder resumed by a newer version may have more columns)
        keys += [k for k in r if k not in keys]
    if rows:
        with open(run_dir / "metrics.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
    summary: dict[str, Any] = {"method": cfg.method.name, "samples": len(rows)}
    for k in keys:
        vals = [r[k] for r in rows if isinstance(r.get(k), (int, float)) and k not in ("sample", "component")]
        if vals:
            summary[k] = sum(vals) / len(vals)
    hook = getattr(backbone, "summary_metrics", None)
    if hook is not None and rows:
        summary.update(hook(run_dir, cfg, rows, device))
    return summary


def markdown_table(summaries: list[dict], title: str = "", columns: Optional[list[str]] = None) -> str:
    """A Markdown table of run summaries (``alm.tables.markdown``); columns default to every key seen."""
    from alm.tables import markdown

    if columns is None:
        columns = []
        for s in summaries:
            columns += [k for k in s if k not in columns]
    return (f"<!-- {title} -->\n" if title else "") + markdown(columns, summaries)


def write_grid(run_dir: Path, num_samples: int, max_rows: int = 8) -> None:
    """grid.png: rows = samples; columns = source, masked input, output."""
    rows = []
    for i in range(num_samples):
        if len(rows) == max_rows:
            break
        path = run_dir / "samples" / f"{i:05d}.pt"
        if path.exists():
            d = torch.load(path, weights_only=False)
            rows.append([d["source"], io.shown_masked(d["source"], d["mask"]), d["output"].clamp(-1, 1)])
    if rows:
        io.save_png(io.grid(rows), run_dir / "grid.png", min_size=256)
