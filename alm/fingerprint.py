"""A run folder holds one config: its fingerprint is the part of the resolved config that can change a
sample's output, and a restart or another process must match it."""

from __future__ import annotations

import hashlib
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


def fingerprint(cfg: DictConfig, inputs: Optional[dict] = None) -> dict:
    """The part of the resolved config that can change a sample's output, plus the hashes of the input
    files it reads (``input_hashes``) when given."""
    container = OmegaConf.to_container(cfg, resolve=True)
    fp = _without(container, _non_output_keys(container))
    return {**fp, "inputs": inputs} if inputs else fp


def _flatten(d: Any, prefix: str = "") -> dict:
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def config_hash(fp: dict, length: int = 10) -> str:
    """A short hash of a fingerprint (canonical JSON): the injective part of a run folder's name."""
    text = json.dumps(fp, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _digest(path: Path, content: bool) -> str:
    """sha256 of a file's bytes (``content``), or of its size and modification time (large files)."""
    if not path.exists():
        return "missing"
    if not content:
        st = path.stat()
        return f"{st.st_size}:{st.st_mtime_ns}"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def input_hashes(*components: Any) -> dict[str, str]:
    """One hash per component of the files it reads (``input_files()``: mask PNGs and a means file by
    content, images by name, size and mtime), so that changed inputs under an unchanged path are refused."""
    out = {}
    for c in components:
        files = c.input_files()
        if not files:
            continue
        h = hashlib.sha256()
        for kind in ("content", "stat"):
            for f in sorted(Path(str(x)) for x in files.get(kind, [])):
                h.update(f"{kind}:{f}:{_digest(f, kind == 'content')};".encode())
        out[type(c).__name__] = h.hexdigest()[:16]
    return out


def _stored_fingerprint(run_dir: Path) -> Optional[dict]:
    """The folder's fingerprint, None if it has none; a damaged file is a ConfigError (one line)."""
    path = run_dir / "fingerprint.json"
    if not path.exists():
        return None
    try:
        old = json.loads(path.read_text())
        if not isinstance(old, dict):
            raise ValueError("not a JSON object")
    except (ValueError, OSError) as err:
        raise ConfigError(f"{path} is damaged ({type(err).__name__}); if the folder's samples are this config's, "
                          "delete the file and run again (it is rewritten), else choose another folder") from None
    return _without(old, _non_output_keys(old))  # folders written before a key became non-output


def check_fingerprint(run_dir: Path, fp: dict, has_samples: bool = True) -> None:
    """A run folder holds one config: refuse to mix samples of different configs in it. A folder without
    samples takes the new config (a run that stopped on bad input before its first sample)."""
    path = run_dir / "fingerprint.json"
    old = _stored_fingerprint(run_dir) if has_samples or not path.exists() else None
    if old is None:
        io.write_json(path, fp)
        return
    fp = _without(fp, _non_output_keys(fp))
    if old != fp:
        a, b = _flatten(old), _flatten(fp)
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        what = "input files" if diff and all(k.startswith("inputs.") for k in diff) else "config"
        raise ConfigError(
            f"run folder {run_dir} holds samples of a different {what} (differs in: {', '.join(diff[:6])}); "
            "delete the folder or choose another with hydra.run.dir=..."
        )


def same_but_postprocessing(run_dir: Path, cfg: DictConfig, inputs: Optional[dict] = None) -> bool:
    """Whether ``run_dir`` holds this config's samples except for the task's post-processing keys (and
    the same input files, when their hashes are given)."""
    theirs = _stored_fingerprint(Path(run_dir))
    if theirs is None:
        return False
    mine = fingerprint(cfg, inputs)
    keys = tuple(f"task.{k}" for k in task_class(mine.get("task")).postprocess_keys) + (() if inputs else ("inputs",))
    return _without(theirs, keys) == _without(mine, keys)
