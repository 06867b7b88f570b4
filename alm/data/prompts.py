"""Conditions without images: prompts (or class ids) repeated, for tasks that generate from scratch.

Item ``k`` has ``label = labels[k % P]`` (P = the number of labels) and no image: the labels are
interleaved, so any prefix is as balanced as possible, and a sample's noise comes from its index ``k``
(the run's per-sample generators), so ``repeats`` images per label differ. ``dataset=wide_prompts`` is
the paper's wide-image set (9 prompts x 50 images, docs/datasets.md); ``dataset=unconditional`` gives
``size`` items with no condition (the Gaussian-process testbed).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from alm.data.base import CompletionDataset, Item
from alm.errors import ConfigError


class Labels(CompletionDataset):
    """``repeats`` items per label, label-interleaved; no images (``shape`` is None)."""

    def __init__(self, labels: Optional[Sequence[Any]] = None, repeats: int = 1, size: Optional[int] = None,
                 name: str = "labels"):
        labels = [None] if labels is None else list(labels)
        if not labels:
            raise ConfigError("dataset.labels is empty: give at least one prompt or class id")
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise ConfigError(f"dataset.repeats={repeats!r}: expected a positive integer")
        self.name, self.labels_list, self.shape = name, labels, None
        self._len = len(labels) * repeats if size is None else int(size)
        if self._len < 1:
            raise ConfigError(f"dataset.size={size}: expected a positive integer or null")

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> Item:
        if not 0 <= index < self._len:
            raise IndexError(f"index {index} outside the {self._len} items of {self.name}")
        p = len(self.labels_list)
        return Item(image=None, label=self.labels_list[index % p], meta={"index": int(index), "label_index": index % p,
                                                                         "repeat": index // p})
