"""Weight-free feature networks for FID / KID (``feature: {_target_: ...}``).

Any ``torch.nn.Module`` works as a feature network: it receives data-space images (N, C, H, W) in
[-1, 1] (float) and returns (N, F) features; an optional ``num_features`` attribute saves a probe.
The project's trained classifiers (e.g. an MNIST classifier's penultimate layer) plug in the same way.
"""

from __future__ import annotations

import torch


class PixelFeatures(torch.nn.Module):
    """The pixels themselves: FID / KID in data space (meaningful for tiny images such as the 8x8 testbed)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).float()


class RandomConvFeatures(torch.nn.Module):
    """A fixed, seeded random conv net (two conv layers, global average pool): for plumbing tests."""

    def __init__(self, in_channels: int = 1, num_features: int = 16, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.num_features = num_features
        self.conv1 = torch.nn.Conv2d(in_channels, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, num_features, 3, padding=1)
        for conv in (self.conv1, self.conv2):
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) / conv.weight[0].numel() ** 0.5)
                conv.bias.zero_()
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.conv1(x.float()))
        return torch.tanh(self.conv2(h)).mean(dim=(2, 3))
