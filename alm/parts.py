"""Build every part of a run from its config and cross-check them: the one place config errors surface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig

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
