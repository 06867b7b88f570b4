"""``dataset=gmm``: sources drawn from the Gaussian-mixture backbone's own distribution.

Item i is one prior draw from a CPU generator seeded with ``sample_seed(seed, i, stream=2)``, so it
depends on (seed, i) and the mixture only. ``Item.label`` is the class ``k % num_classes`` of the
drawn component when the mixture is class-conditional (else None); ``Item.meta["component"]`` = k.

The mixture's parameters are not repeated here: the yaml passes the backbone's own node
(``mixture: ${oc.select:backbone.mixture,null}``), so the data set and the backbone always describe
the same distribution. With any other backbone that node does not exist and the data set refuses to
be built; ``check(backbone)`` refuses a backbone whose parameters differ (e.g. after overriding
``dataset.mixture.*`` alone).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from alm.backbones.gmm import GaussianMixture, MixtureSpec
from alm.data.base import CompletionDataset, Item
from alm.errors import ConfigError
from alm.rng import sample_seed

DATA_STREAM = 2  # the rng stream of data draws (see alm.rng)


class GMMDataset(CompletionDataset):
    """``size`` draws from a Gaussian mixture (a ``GaussianMixture``, a ``MixtureSpec`` or its mapping)."""

    name = "gmm"

    def __init__(self, mixture: Any = None, size: int = 256, seed: int = 0, name: str = "gmm"):
        if mixture is None:
            raise ConfigError("dataset=gmm needs backbone=gmm: it draws from the backbone's mixture (backbone.mixture)")
        if isinstance(mixture, GaussianMixture):
            self.mixture = mixture
        elif isinstance(mixture, (MixtureSpec, Mapping)):
            self.mixture = GaussianMixture(mixture)
        else:
            raise ConfigError(f"dataset=gmm: mixture must be backbone=gmm's mixture parameters, got {type(mixture).__name__}")
        if int(size) < 0:
            raise ConfigError(f"dataset.size={size} must be >= 0")
        self.size = int(size)
        self.seed = int(seed)
        self.name = name
        self.shape = tuple(self.mixture.data_shape)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Item:
        if not 0 <= index < self.size:
            raise IndexError(f"dataset=gmm has {self.size} items, got index {index}")
        gen = torch.Generator().manual_seed(sample_seed(self.seed, index, stream=DATA_STREAM))
        image, k = self.mixture.draw(gen)
        label = k % self.mixture.num_classes if self.mixture.conditional else None
        return Item(image=image, label=label, meta={"component": k})

    def check(self, backbone: Any) -> None:
        """Refuse a backbone that is not this data set's mixture (raise ConfigError)."""
        if not isinstance(backbone, GaussianMixture):
            raise ConfigError(f"dataset=gmm needs backbone=gmm, got {type(backbone).__name__}")
        if not self.mixture.same_parameters(backbone):
            raise ConfigError("dataset=gmm and backbone=gmm describe different mixtures: set the parameters in backbone.mixture only")
