"""A run folder holds one config: its fingerprint is the part of the resolved config that can change a
sample's output, and a restart or another process must match it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from alm import io
from alm.errors import ConfigError

#: config keys that do not change any sample's output (so they may change between restarts); dotted = nested.
#: A task adds its own (``Task.non_output_keys``, as ``task.<key>``).
NON_OUTPUT_KEYS = ("batch_size", "shard_index", "shard_count", "num_samples", "device", "threads", "progress", "paths", "hydra", "logger", "metrics",
                   "backbone.device")  # backbone.device: ${device} (shards on other GPUs)


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
        from alm.tasks.base import Task

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
