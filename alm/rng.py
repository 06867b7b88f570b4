"""One random generator per sample, so a sample's output depends on (seed, index) only.

EDM's ``StackedRandomGenerator`` idea: draws are made per sample on the CPU and stacked, so neither
the batch size nor the other members of a batch nor the device change a sample's noise.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def sample_seed(seed: int, index: int, stream: int = 0) -> int:
    """A well-mixed 63-bit seed for (run seed, sample index, stream)."""
    return int(np.random.SeedSequence([int(seed), int(index), int(stream)]).generate_state(1, np.uint64)[0] >> 1)


class SampleGenerators:
    """A batch of per-sample generators; ``randn`` draws one tensor per sample and stacks them."""

    def __init__(self, seed: int, indices: Sequence[int], stream: int = 0):
        self.indices = [int(i) for i in indices]
        self.generators = [torch.Generator().manual_seed(sample_seed(seed, i, stream)) for i in self.indices]

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, shape: Sequence[int], device=None, dtype=torch.float32) -> torch.Tensor:
        """Standard normal draws of per-sample ``shape``, stacked to ``(B, *shape)``."""
        out = torch.stack([torch.randn(tuple(shape), generator=g, dtype=torch.float32) for g in self.generators])
        return out.to(device=device, dtype=dtype)

    def randn_rows(self, rows: int, shape: Sequence[int], device=None, dtype=torch.float32) -> torch.Tensor:
        """``rows`` draws of ``shape``: one per sample, or, when the batch holds k rows per sample (the
        windows of a canvas, window-major: row ``j * B + b``), k per sample from that sample's generator."""
        b = len(self.generators)
        if rows == b:
            return self.randn(shape, device=device, dtype=dtype)
        if rows % b:
            raise ValueError(f"{rows} rows for {b} samples")
        k = rows // b
        per_sample = self.randn((k, *shape), device=device, dtype=dtype)  # (B, k, ...)
        return per_sample.transpose(0, 1).reshape(rows, *shape)

    def rand(self, shape: Sequence[int]) -> torch.Tensor:
        return torch.stack([torch.rand(tuple(shape), generator=g) for g in self.generators])

    def numpy(self) -> list[np.random.Generator]:
        """Independent numpy generators for the same samples (for data and mask generation)."""
        return [np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=g))) for g in self.generators]
