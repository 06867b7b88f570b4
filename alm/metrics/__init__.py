"""The ``metrics`` config group -> a checked set of metric objects.

A ``conf/metrics/*.yaml`` node holds options and one entry per metric; an entry is any key whose
value has a ``_target_`` (the column name is the key)::

    name: inpaint
    skip_unavailable: false      # true: a metric whose weights are missing is left out, with a warning
    batch_size: 16
    cache_dir: ...               # reference statistics (FID / KID) live here, outside the package
    lpips: {_target_: alm.metrics.lpips.LPIPS, net: alex}
    mse_hole: {_target_: alm.metrics.pixel.MSE, region: hole}
    fid: {_target_: alm.metrics.fid.FID, feature: {_target_: my.Net}, rank: false}

``rank: false`` keeps a column out of the averaged rank (required for a metric without a direction,
``higher_is_better = None``). Entries are built with ``_recursive_=false``
(a metric builds its own sub-networks, e.g. FID's ``feature``). ``prepare_metrics`` builds every metric
and checks that its weights are on disk BEFORE any work: a missing file is a one-line
``MissingWeightsError`` (or, with ``skip_unavailable``, a warning on stderr and the column left out).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from alm.errors import ALMError, ConfigError
from alm.metrics.base import REGIONS, Metric, MissingWeightsError

OPTION_KEYS = ("name", "skip_unavailable", "batch_size", "cache_dir", "description")

__all__ = ["Metric", "MetricSet", "MissingWeightsError", "REGIONS", "metric_entries", "prepare_metrics"]


@dataclass
class MetricSet:
    """The metrics of one evaluation, in config order, with their resolved configs (for caching)."""

    name: str
    metrics: dict[str, Metric]
    configs: dict[str, dict]
    ranked: dict[str, bool]
    batch_size: int = 16
    skipped: dict[str, str] = field(default_factory=dict)

    def directions(self) -> dict[str, bool]:
        """column -> higher_is_better, for the ranked columns."""
        return {k: m.higher_is_better for k, m in self.metrics.items() if self.ranked.get(k, True)}

    def setup(self, device) -> None:
        for m in self.metrics.values():
            m.setup(device)

    def bind_run(self, run_cfg: Any, indices: Optional[Sequence[int]] = None,
                 only: Optional[Sequence[str]] = None) -> None:
        """``Metric.bind_run`` of every metric (or of the columns ``only``): the run's resolved config and
        its sample indices. With ``indices=None`` it is a check: a metric that does not fit the run (the
        mixture metrics on another backbone) raises its one-line ``ConfigError`` before any work."""
        for k in (only if only is not None else list(self.metrics)):
            try:
                self.metrics[k].bind_run(run_cfg, None if indices is None else list(indices))
            except ALMError as err:
                raise type(err)(f"metrics.{k}: {err}") from None


def _container(node: Any) -> dict:
    from omegaconf import DictConfig, OmegaConf

    from omegaconf.errors import MissingMandatoryValue

    if node is None:
        return {}
    if isinstance(node, DictConfig):
        try:
            return OmegaConf.to_container(node, resolve=True, throw_on_missing=True)
        except MissingMandatoryValue as err:
            key = getattr(err, "full_key", "") or str(err).splitlines()[0]
            raise ConfigError(f"metrics: {key} has no value (???); set it, e.g. {key}=...") from None
    return dict(node)


def metric_entries(node: Any) -> tuple[dict, dict[str, dict]]:
    """(options, column -> entry) of a metrics node (resolved, plain containers); ``<column>: null``
    drops a metric of the set (``metrics.fid=null``)."""
    d = {k: v for k, v in _container(node).items() if v is not None or k in OPTION_KEYS}
    options = {k: d[k] for k in OPTION_KEYS if k in d}
    entries = {k: v for k, v in d.items() if isinstance(v, dict) and "_target_" in v}
    unknown = [k for k in d if k not in OPTION_KEYS and k not in entries]
    if unknown:
        raise ConfigError(f"metrics: unknown key(s) {', '.join(unknown)} (options: {', '.join(OPTION_KEYS)}; "
                          "a metric is a node with _target_)")
    return options, entries


def prepare_metrics(node: Any, only: Optional[list[str]] = None, skip_unavailable: Optional[bool] = None) -> MetricSet:
    """Build the metrics of a ``metrics`` node and check their weights (no loading, no network)."""
    from alm.config import build

    options, entries = metric_entries(node)
    if only:
        missing = [k for k in only if k not in entries]
        if missing:
            raise ConfigError(f"metrics: no metric named {', '.join(missing)} in {options.get('name', 'the metrics node')} "
                              f"(has {', '.join(entries) or 'none'})")
        entries = {k: entries[k] for k in only}
    if skip_unavailable is None:
        skip_unavailable = bool(options.get("skip_unavailable", False))
    metrics, ranked, skipped = {}, {}, {}
    for key, entry in entries.items():
        params = dict(entry)
        ranked[key] = bool(params.pop("rank", True))
        try:  # weights can be missing when the metric is built (a feature network) or when it checks
            metric = build(params, _recursive_=False)
            if not isinstance(metric, Metric):
                raise ConfigError(f"{entry['_target_']} is not an alm.metrics.Metric")
            metric.check_available()
        except MissingWeightsError as err:
            if not skip_unavailable:
                raise MissingWeightsError(f"metrics.{key}: {err} (or set metrics.skip_unavailable=true)") from None
            print(f"warning: metrics.{key} left out: {err}", file=sys.stderr, flush=True)
            skipped[key] = str(err)
            continue
        except ALMError as err:
            raise type(err)(f"metrics.{key}: {err}") from None
        if metric.per_sample and metric.aggregate not in ("mean", "compute", None):
            raise ConfigError(f"metrics.{key}: {type(metric).__name__}.aggregate={metric.aggregate!r} "
                              "(choose 'mean', 'compute' or None)")
        if ranked[key] and metric.higher_is_better is None:
            raise ConfigError(f"metrics.{key}: {metric.describe()} has no better direction; set rank: false")
        metrics[key] = metric
    if not metrics and entries:
        raise ConfigError(f"metrics: every metric of {options.get('name', 'the set')} is unavailable ({', '.join(skipped)})")
    return MetricSet(
        name=str(options.get("name", "metrics")), metrics=metrics,
        configs={k: entries[k] for k in metrics}, ranked={k: ranked[k] for k in metrics},
        batch_size=int(options.get("batch_size", 16)), skipped=skipped,
    )
