"""The data set interface: indexable, deterministic sources in data space."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Item:
    """One source: ``image`` (C, H, W) in [-1, 1]; ``label`` a class id, a prompt or None."""

    image: torch.Tensor
    label: Any = None
    meta: dict = field(default_factory=dict)


class CompletionDataset:
    """Base class. ``__getitem__(i)`` must depend on ``i`` (and the config) only."""

    name: str = "dataset"
    #: (C, H, W) of every item
    shape: tuple[int, ...]

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Item:
        raise NotImplementedError

    def input_files(self) -> dict[str, list]:
        """Files the items are read from, for a run's fingerprint: ``{"content": [...], "stat": [...]}``
        (small files hashed by content; large ones, e.g. images, by name, size and modification time)."""
        return {}
