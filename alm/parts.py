"""Build every part of a run from its config and cross-check them: the one place config errors surface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from alm.backbones.base import Backbone
from alm.config import build, resolve_device
from alm.errors import ConfigError
from alm.methods.base import Method
from alm.schedule import Schedule, make_schedule
from alm.tasks.base import Task

SAMPLERS = ("ddim", "ddpm")


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


#: run keys that must be integers, with their least value (checked before any folder is written)
INTEGER_KEYS = {"num_samples": 1, "batch_size": 1, "seed": 0, "shard_index": 0, "shard_count": 1, "sampler.steps": 1}


def check_run_keys(cfg: DictConfig) -> None:
    """One-line ConfigErrors for the run's own keys: unset values (``???``), integers, the shard, the sampler."""
    missing = OmegaConf.missing_keys(cfg)
    if missing:
        key = sorted(missing)[0]
        raise ConfigError(f"{key} must be set: add {key}=... to the command")
    for key, least in INTEGER_KEYS.items():
        value = OmegaConf.select(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"{key}={value!r}: expected an integer >= {least}")
    if cfg.shard_index >= cfg.shard_count:
        raise ConfigError(f"shard_index={cfg.shard_index} must be in [0, shard_count={cfg.shard_count})")
    if cfg.sampler.name not in SAMPLERS:
        raise ConfigError(f"sampler.name={cfg.sampler.name!r}: expected one of {', '.join(SAMPLERS)}")


def _device(name: str) -> torch.device:
    try:
        return resolve_device(str(name))
    except RuntimeError:  # torch's own message for an unknown device type is a paragraph
        raise ConfigError(f"device={name!r}: expected auto, cpu, cuda or cuda:<index>") from None


def build_parts(cfg: DictConfig) -> Parts:
    """Build and cross-check every part of a run (the one place config errors surface)."""
    check_run_keys(cfg)
    device = _device(cfg.device)
    task = build(cfg.task)
    method = build(cfg.method)
    if not isinstance(task, Task):
        raise ConfigError(f"task {cfg.task.get('_target_')} is not an alm.tasks.base.Task")
    if not isinstance(method, Method):
        raise ConfigError(f"method {cfg.method.get('_target_')} is not an alm.methods.base.Method")
    need = method.requires_backbone  # one backbone class (_target_) or a tuple of them
    if need and cfg.backbone.get("_target_") not in ((need,) if isinstance(need, str) else tuple(need)):
        raise ConfigError(f"method={cfg.method.name} needs the backbone {' or '.join([need] if isinstance(need, str) else need)}, "
                          f"not {cfg.backbone.name}")
    masks = build(cfg.mask)
    backbone = build(cfg.backbone).to(device).eval()
    backbone.name = str(cfg.backbone.get("name") or getattr(backbone, "name", "backbone"))  # build drops the label
    dataset = build(cfg.dataset)
    method.check(backbone, task)
    if hasattr(dataset, "check"):
        dataset.check(backbone)
    task.check(backbone, dataset, method)
    if cfg.num_samples > len(dataset):
        raise ConfigError(f"num_samples={cfg.num_samples} but dataset {cfg.dataset.name} has only {len(dataset)} items")
    schedule = make_schedule(backbone.scheduler_config, int(cfg.sampler.steps), cfg.sampler.name)
    return Parts(backbone, dataset, masks, task, method, schedule, device)
