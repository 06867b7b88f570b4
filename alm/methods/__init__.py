"""Sampling methods as plug-ins over the shared core (``alm.sampling.reverse``).

Each module holds one method; ``METHODS`` maps the config name to its class. Adding a method is one
module plus one ``conf/method/<name>.yaml``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from alm.errors import ConfigError
from alm.methods.base import Eval, Method, Problem, StepContext

METHODS: dict[str, str] = {
    "alm": "alm.methods.alm:ALM",
    "syncsde": "alm.methods.syncsde:SyncSDE",
    "bld": "alm.methods.bld:BLD",
    "recon_guidance": "alm.methods.recon_guidance:ReconGuidance",
    "ddim": "alm.methods.ddim:Plain",
    "exact": "alm.methods.exact:Exact",
    "sd_inpaint": "alm.methods.sd_inpaint:SDInpaint",
}


def method_class(kind: str) -> type[Method]:
    if kind not in METHODS:
        raise ConfigError(f"unknown method kind {kind!r}; known: {', '.join(sorted(METHODS))}")
    module, cls = METHODS[kind].split(":")
    import importlib

    return getattr(importlib.import_module(module), cls)


def get_method(kind: str, **params: Any) -> Method:
    """Build a method by kind with its parameters; unknown parameters are a ConfigError."""
    cls = method_class(kind)
    known = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"method {kind!r} has no parameter(s) {', '.join(unknown)}; it takes: {', '.join(sorted(known)) or 'none'}")
    types = {f.name: f.type for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
    return cls(**{k: _coerce(kind, k, v, types.get(k)) for k, v in params.items()})


def _coerce(kind: str, key: str, value: Any, annotation: Any) -> Any:
    """Check a parameter against its annotation ("float", "int", "bool", "Optional[float]", "str")."""
    ann = str(annotation)
    if value is None and "Optional" in ann:
        return None
    try:
        if ann.endswith("bool"):
            if not isinstance(value, bool):
                raise ValueError
            return value
        if "float" in ann:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if ann.endswith("int"):
            if isinstance(value, bool) or int(value) != value:
                raise ValueError
            return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"method {kind!r}: {key}={value!r} is not a valid {ann.replace('Optional[', '').rstrip(']')}") from None
    return value


__all__ = ["Eval", "Method", "Problem", "StepContext", "METHODS", "get_method", "method_class"]
