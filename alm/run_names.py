"""Run-folder names: readable, injective, bounded, and equal for configs that resolve to the same values.

    <task>/<dataset>-<backbone>/<method>/<mask>-<sampler><steps>-seed<seed>[,<what differs>]-<hash>

- ``<hash>``: 10 hex digits of the run's fingerprint (``alm.fingerprint``: the resolved config minus the
  keys that change no output), so two configs share a folder exactly when they would compute the same
  samples, however they were written (``method.w2=0.005`` spelled out = the default; ``batch_size`` or
  ``threads`` never matter), and two different configs never do.
- ``<what differs>``: for people, the config groups chosen away from their default (``tuned@method=none``)
  and the resolved values that differ from the config composed with the same group choices alone
  (``method.w2=0.5``), sorted, ``/`` replaced, cut at ``READABLE_MAX`` characters (the hash keeps the
  name injective). The folder's ``config.yaml`` holds everything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from alm.fingerprint import _flatten, config_hash, fingerprint

#: groups whose choice is spelled out in the name's path
NAMED_GROUPS = ("task", "dataset", "backbone", "method", "mask", "sampler")
#: groups whose choice never shows by name
SILENT_GROUPS = ("metrics", "logger", "experiment")  # (an experiment preset shows through the values it sets)
READABLE_MAX = 120


def _fmt(v: Any) -> str:
    text = "null" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))
    return text.replace("/", "_").replace(" ", "")


def readable_part(cfg: Any, baseline: Any, choices: Mapping[str, str], default_choices: Mapping[str, str]) -> str:
    """What differs from the defaults, as ``k=v`` items (see the module docstring)."""
    items = [f"{g}={_fmt(c)}" for g, c in sorted(choices.items())
             if g not in NAMED_GROUPS and g not in SILENT_GROUPS and not g.startswith("hydra")
             and c is not None and default_choices.get(g) != c]
    if baseline is not None:
        mine, base = _flatten(fingerprint(cfg)), _flatten(fingerprint(baseline))
        shown = {"seed", "sampler.steps"}
        items += [f"{k}={_fmt(mine.get(k))}" for k in sorted(set(mine) | set(base))
                  if mine.get(k) != base.get(k) and k not in shown and not k.endswith(".name")]
    text = ",".join(items)
    return text if len(text) <= READABLE_MAX else text[: READABLE_MAX - 1].rsplit(",", 1)[0] + ",…"


def run_name(cfg: Any, readable: str = "") -> str:
    prefix = (f"{cfg.task.name}/{cfg.dataset.name}-{cfg.backbone.name}/{cfg.method.name}/"
              f"{cfg.mask.name}-{cfg.sampler.name}{cfg.sampler.steps}-seed{cfg.seed}")
    return prefix + (f",{readable}" if readable else "") + f"-{config_hash(fingerprint(cfg))}"


def _baseline(choices: Mapping[str, str], extra: Sequence[str], compose_fn) -> tuple[Any, dict]:
    """The config (and its group choices) composed with the named groups' choices alone."""
    named = [f"{g}={c}" for g, c in choices.items() if g in NAMED_GROUPS and c is not None]
    return compose_fn([*extra, *named])


def run_dir_for(cfg: Any, overrides: Sequence[str], base: Optional[Path] = None) -> Path:
    """The folder ``python run.py <overrides>`` writes to, for the config ``cfg`` composed from them."""
    from alm.config import compose_with_choices

    searchpath = [o for o in overrides if o.startswith("hydra.searchpath")]
    _, choices = compose_with_choices(list(overrides))
    baseline, default_choices = _baseline(choices, searchpath, compose_with_choices)
    readable = readable_part(cfg, baseline, choices, default_choices)
    return Path(base or cfg.paths.runs) / run_name(cfg, readable)


def run_dir_in_app(cfg: Any) -> Path:
    """The run folder of the current Hydra job (``run.py``): ``hydra.run.dir=...`` given on the command
    line wins; else ``<paths.runs or hydra.sweep.dir>/<run_name>``."""
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf, open_dict

    hc = HydraConfig.get()
    given = {o.split("=", 1)[0] for o in hc.overrides.hydra}
    if hc.mode == RunMode.RUN and "hydra.run.dir" in given:
        return Path(hc.runtime.output_dir)
    base = Path(hc.sweep.dir) if hc.mode == RunMode.MULTIRUN and "hydra.sweep.dir" in given else Path(cfg.paths.runs)
    choices = {k: v for k, v in OmegaConf.to_container(hc.runtime.choices).items()}
    searchpath = [o for o in hc.overrides.hydra if o.startswith("hydra.searchpath")]

    def compose_in_app(overrides):  # Hydra is initialised inside the app: compose there
        c = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
        ch = OmegaConf.to_container(c.hydra.runtime.choices)
        with open_dict(c):
            del c["hydra"]
        return c, ch

    baseline, default_choices = _baseline(choices, searchpath, compose_in_app)
    return base / run_name(cfg, readable_part(cfg, baseline, choices, default_choices))
