"""Hydra/OmegaConf plumbing: resolvers for the project root and readable run-folder names."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "conf"


def run_name(task, dataset, backbone, method, mask, sampler, steps, seed, overrides="") -> str:
    """<task>/<dataset>-<backbone>/<method>/<mask>-<sampler><steps>-seed<seed>[,<other overrides>]."""
    name = f"{task}/{dataset}-{backbone}/{method}/{mask}-{sampler}{steps}-seed{seed}"
    if overrides:
        name += "," + str(overrides).replace("/", "_")
    return name


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("alm_root"):
        OmegaConf.register_new_resolver("alm_root", lambda: str(ROOT))
    if not OmegaConf.has_resolver("alm_run_name"):
        OmegaConf.register_new_resolver("alm_run_name", run_name)


def compose(overrides: list[str] | None = None):
    """Compose the project config outside ``run.py`` (tests, experiments); Hydra keys are kept."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return hydra_compose(config_name="config", overrides=list(overrides or []), return_hydra_config=False)


#: override keys that name the folder's path components or do not change outputs (hydra.job.config)
FOLDER_EXCLUDED = {
    "task", "dataset", "backbone", "method", "mask", "sampler", "sampler.steps", "experiment", "seed", "batch_size",
    "metrics", "logger",
    "shard_index", "shard_count", "threads", "num_samples", "device", "progress", "paths.root", "paths.runs", "hydra.run.dir", "hydra.sweep.dir",
    "task.inversion_cache", "paths.cache", "paths.inversion_cache",
}


def override_dirname(overrides: list[str]) -> str:
    """Hydra's ``job.override_dirname`` for these overrides (sorted ``k=v`` joined by ``,``)."""
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in FOLDER_EXCLUDED]
    return ",".join(sorted(kept))


def run_dir_for(cfg, overrides: list[str]) -> Path:
    """The folder ``python run.py <overrides>`` writes to, for a composed ``cfg``."""
    name = run_name(
        cfg.task.name, cfg.dataset.name, cfg.backbone.name, cfg.method.name, cfg.mask.name,
        cfg.sampler.name, cfg.sampler.steps, cfg.seed, override_dirname(overrides),
    )
    return Path(cfg.paths.runs) / name
