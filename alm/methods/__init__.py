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
    return cls(**params)


__all__ = ["Eval", "Method", "Problem", "StepContext", "METHODS", "get_method", "method_class"]
