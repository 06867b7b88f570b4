"""Experiment loggers for the ``logger`` config group: ``none`` (default) and ``wandb`` (offline by default).

The runner (and ``alm.evaluate``) use one logger per run folder, i.e. per Hydra job, as a context manager::

    with make_logger(cfg.get("logger"), run_dir, cfg) as logger:
        ...                                   # sampling / evaluation
        logger.log_samples(rows)              # per-sample metric rows -> a table
        logger.log_summary(summary, run_dir / "grid.png")

Leaving the block finishes the wandb run (exit code 1 if an exception escaped), so a crash still closes
it and the next job of a multirun starts a run of its own (``reinit="finish_previous"`` guards against a
run left open by anything else). Offline runs are written under the run folder (``<run>/wandb/``, or
``$WANDB_DIR`` / ``logger.dir``); upload them later with ``wandb sync <run>/wandb/offline-run-*``.
``<run>/wandb_run.json`` records the run's id, mode and folder.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from alm.errors import ConfigError


class Logger:
    """The ``none`` logger: every call is a no-op. Subclasses override the ``log_*`` methods."""

    def __enter__(self) -> "Logger":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.finish(exit_code=0 if exc_type is None else 1)
        return False

    def log_samples(self, rows: Sequence[Mapping[str, Any]], key: str = "samples") -> None:
        """Per-sample rows (one dict per sample)."""

    def log_summary(self, summary: Mapping[str, Any], grid_path: Optional[Path] = None) -> None:
        """Aggregated values of the run, and its sample grid image."""

    def log_images(self, images: Mapping[str, Path]) -> None:
        """Named image files (figures)."""

    def finish(self, exit_code: int = 0) -> None:
        """Close the run (idempotent)."""


class NullLogger(Logger):
    def __init__(self, run_dir: Optional[Path] = None, cfg: Any = None) -> None:
        pass


def _scalar(v: Any) -> bool:
    return isinstance(v, (int, float, str, bool)) and not (isinstance(v, float) and math.isnan(v))


class WandbLogger(Logger):
    """One wandb run per run folder; config, per-sample rows (a wandb.Table), summary values, the grid."""

    def __init__(self, run_dir: Path, cfg: Any = None, project: str = "alm", entity: Optional[str] = None,
                 mode: str = "offline", group: Optional[str] = None, tags: Sequence[str] = (),
                 run_name: Optional[str] = None, dir: Optional[str] = None, job_type: str = "sample",
                 console: str = "off", log_images: bool = True) -> None:
        import os

        import wandb

        if mode not in ("offline", "online", "disabled"):
            raise ConfigError(f"logger.mode={mode!r}: choose offline, online or disabled")
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_grid = bool(log_images)
        target = Path(dir).expanduser() if dir else Path(os.environ.get("WANDB_DIR") or self.run_dir)
        target.mkdir(parents=True, exist_ok=True)
        config = _config_dict(cfg)
        self._wandb = wandb
        self.run = wandb.init(
            project=project, entity=entity, name=run_name or _run_name(self.run_dir, cfg), group=group,
            tags=list(tags) or None, job_type=job_type, dir=str(target), mode=mode, config=config,
            reinit="finish_previous", settings=wandb.Settings(console=console, silent=True),
        )
        self._finished = False
        info = {"id": self.run.id, "mode": mode, "project": project, "dir": str(getattr(self.run, "dir", target)),
                "job_type": job_type}
        from alm.io import write_json

        write_json(self.run_dir / "wandb_run.json", info)

    def log_samples(self, rows, key: str = "samples") -> None:
        if not rows:
            return
        columns = list(dict.fromkeys(k for r in rows for k in r))
        data = [[r.get(c) if _scalar(r.get(c)) else None for c in columns] for r in rows]
        self.run.log({key: self._wandb.Table(columns=columns, data=data)})

    def log_summary(self, summary, grid_path=None) -> None:
        self.run.summary.update({k: v for k, v in summary.items() if _scalar(v)})
        if self.log_grid and grid_path is not None and Path(grid_path).is_file():
            self.run.log({"grid": self._wandb.Image(str(grid_path))})

    def log_images(self, images) -> None:
        if self.log_grid:
            self.run.log({k: self._wandb.Image(str(p)) for k, p in images.items() if Path(p).is_file()})

    def finish(self, exit_code: int = 0) -> None:
        if not self._finished:
            self._finished = True
            self.run.finish(exit_code=exit_code)


def _config_dict(cfg: Any) -> dict:
    from omegaconf import DictConfig, OmegaConf

    if cfg is None:
        return {}
    if isinstance(cfg, DictConfig):
        d = OmegaConf.to_container(cfg, resolve=True)
    else:
        d = dict(cfg)
    d.pop("hydra", None)
    return d


def _run_name(run_dir: Path, cfg: Any) -> str:
    """The run folder relative to ``paths.runs`` (what ``run.py`` names it), else the folder's name."""
    try:
        return str(Path(run_dir).resolve().relative_to(Path(cfg.paths.runs).resolve()))
    except Exception:  # no paths.runs, or the folder is elsewhere
        return Path(run_dir).name


def make_logger(node: Any, run_dir: Path, cfg: Any = None, job_type: str = "sample") -> Logger:
    """The logger of a ``logger`` config node (``None`` or no ``_target_`` -> the no-op logger)."""
    from hydra.utils import get_class
    from omegaconf import DictConfig, OmegaConf

    if node is None:
        return NullLogger()
    params = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    target = params.pop("_target_", None)
    params.pop("name", None)
    if target is None:
        return NullLogger()
    try:
        cls = get_class(target)
    except Exception as err:
        raise ConfigError(f"logger: cannot import {target} ({str(err).splitlines()[0]})") from None
    if "job_type" in _init_args(cls):
        params.setdefault("job_type", job_type)
    try:
        return cls(run_dir=Path(run_dir), cfg=cfg, **params)
    except TypeError as err:
        raise ConfigError(f"logger {target}: {err}") from None


def _init_args(cls) -> set[str]:
    import inspect

    return set(inspect.signature(cls.__init__).parameters)
