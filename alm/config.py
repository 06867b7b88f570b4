"""Config plumbing, in one place: resolvers, composing the project config, building objects from
``_target_`` nodes, the device. (Run-folder names: ``alm.run_names``.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf, open_dict

from alm.errors import ALMError, ConfigError

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "conf"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("alm_root"):
        OmegaConf.register_new_resolver("alm_root", lambda: str(ROOT))


def hydra_error_line(err: BaseException) -> str:
    """One line from a Hydra / OmegaConf error: its first sentence, plus the available options if it lists them."""
    cause: Optional[BaseException] = err
    while cause is not None and not str(cause).strip():
        cause = cause.__cause__
    lines = [l.strip() for l in str(cause or type(err).__name__).strip().splitlines() if l.strip()]
    head = lines[0] if lines else type(err).__name__
    if any(l.startswith("Available options") for l in lines):
        start = next(i for i, l in enumerate(lines) if l.startswith("Available options"))
        options = [l for l in lines[start + 1 :] if not l.startswith(("Config search path", "provider="))]
        head += f" (choices: {', '.join(options)})"
    return head


def compose_with_choices(overrides: list[str] | None = None) -> tuple[Any, dict]:
    """Compose the project config outside ``run.py`` (tests, experiments) and return it with its config
    group choices (``hydra.runtime.choices``). A bad override is a one-line ConfigError naming the key
    and, for a group, its choices."""
    import yaml
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            cfg = hydra_compose(config_name="config", overrides=list(overrides or []), return_hydra_config=True)
            choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    except (HydraException, OmegaConfBaseException, yaml.YAMLError) as err:
        raise ConfigError(hydra_error_line(err)) from None
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def compose(overrides: list[str] | None = None):
    """The project config for ``overrides`` (see ``compose_with_choices``)."""
    return compose_with_choices(overrides)[0]


def build(node: Any, **kwargs: Any) -> Any:
    """Instantiate a config node with ``_target_`` (its ``name`` key is a label, not an argument).

    The one build path for backbones, data sets, masks, tasks, methods and metrics. A key the target
    does not take is a one-line ``ConfigError`` naming the keys it does take; one-line errors raised
    while building come through unwrapped.
    """
    from hydra.errors import InstantiationException
    from hydra.utils import get_object, instantiate

    if node is None or "_target_" not in node:
        raise ConfigError(f"config node {OmegaConf.to_yaml(node).strip()!r} has no _target_")
    params = {k: v for k, v in node.items() if k != "name"}
    target = str(params["_target_"])
    try:
        cls = get_object(target)
    except Exception:  # a target that does not import: instantiate reports it
        cls = None
    if isinstance(cls, type) and dataclasses.is_dataclass(cls):
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(k for k in params if not k.startswith("_") and k not in known)
        if unknown:
            label = node.get("name") or target.rsplit(".", 1)[-1]
            raise ConfigError(f"{label} ({target}) has no parameter(s) {', '.join(unknown)}; "
                              f"it takes: {', '.join(sorted(known)) or 'none'}")
    try:
        return instantiate(OmegaConf.create(params), **kwargs)
    except InstantiationException as err:  # Hydra wraps our one-line errors; unwrap them
        cause = err.__cause__
        while cause is not None and not isinstance(cause, ALMError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise ConfigError(f"cannot build {target}: {err}".splitlines()[0]) from err


def to_plain(cfg: Any) -> Any:
    """A config node (DictConfig / ListConfig) as plain Python containers, resolved; anything else unchanged."""
    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg


def resolve_device(name: str):
    """``auto`` = cuda if available, else cpu; a CUDA device on a machine without CUDA is a ConfigError."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but CUDA is not available on this machine (use device=cpu or auto)")
    return torch.device(name)


def build_method(name: str, **params: Any):
    """The method of ``conf/method/<name>.yaml`` (its own defaults, no tuned weights) with ``params`` over it,
    built through ``build`` like a run builds it (for scripts and tests)."""
    node = compose([f"method={name}", "tuned@method=none"]).method
    OmegaConf.set_struct(node, False)  # an unknown key reaches ``build``, which names the keys the method takes
    node = OmegaConf.merge(node, params) if params else node
    return build(node)
