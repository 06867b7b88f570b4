"""Sampling methods as plug-ins over the shared core (``alm.sampling.reverse``).

Each module holds one method, a dataclass whose fields are its config keys; ``conf/method/<name>.yaml``
names it with ``_target_`` and is built by ``alm.config.build``, like every other component. Adding a
method is one module (anywhere on the Python path) plus one yaml (in ``conf/method/`` or a folder added
with ``hydra.searchpath``); nothing else changes.
"""

from __future__ import annotations

from alm.methods.base import Eval, Method, Problem, StepContext

__all__ = ["Eval", "Method", "Problem", "StepContext"]
