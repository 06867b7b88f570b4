"""Metrics judged by the MNIST classifier (``alm.classifier``): the embedded data set's stand-ins for CLIP.

- ``ClassScore`` (``class_score``): the probability the classifier gives to the sample's class,
  ``p(label | output)``, averaged over samples. The class-conditional analogue of CLIP score: how
  much the output looks like the digit it was asked to be (higher is better).
- ``ClassConsistency`` (``class_consistency``): 1 if the output is classified as the source's class,
  else 0; its mean is the share of outputs that kept the source's class (higher is better). The
  source's class is the sample's ``label`` (``target: label``, default; in inpainting the source IS an
  image of its label, and the model is conditioned on it), or the classifier's own prediction on the
  source (``target: source``: consistency with what the judge sees in the source, so the judge's
  ~1.4% test errors do not count against a method).

Both read the sample's integer ``label`` (the digit) and need the classifier's weights
(``path``, a folder with ``classifier.safetensors`` + ``config.json``; default the project's
``weights/classifier``); a missing file is a one-line
``MissingWeightsError`` from ``check_available`` (before any work), naming the training command.
Only the full image makes sense (a classifier sees the whole digit): ``region: full``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F

from alm.errors import ConfigError, DataError
from alm.metrics.base import Metric

class _ClassifierMetric(Metric):
    higher_is_better = True
    regions = ("full",)

    def __init__(self, path: Optional[str] = None, region: str = "full") -> None:
        super().__init__(region)
        self.path = path  # None: the project's weights/classifier
        self.net: Optional[torch.nn.Module] = None

    def check_available(self) -> None:
        from alm.classifier import check_classifier

        check_classifier(self.path)

    def setup(self, device) -> None:
        super().setup(device)
        self.net = None  # loaded on the first batch, onto this device

    def _probs(self, images: torch.Tensor) -> torch.Tensor:
        if self.net is None:
            from alm.classifier import load_classifier

            self.net = load_classifier(self.path, device=self.device)
        x = images.to(self.device).float().clamp(-1, 1)
        return F.softmax(self.net(x), dim=1)

    def _labels(self, labels: Sequence[Any], num_classes: int) -> torch.Tensor:
        out = []
        for lab in labels:
            try:
                value = int(lab.item() if isinstance(lab, torch.Tensor) else lab)
            except (TypeError, ValueError):
                raise DataError(f"{self.title}: needs each sample's class as an integer label (a digit), "
                                f"got {lab!r}") from None
            if not 0 <= value < num_classes:
                raise DataError(f"{self.title}: label {value} is outside the classifier's classes 0..{num_classes - 1}")
            out.append(value)
        return torch.tensor(out, dtype=torch.long, device=self.device)


class ClassScore(_ClassifierMetric):
    """Mean classifier probability of the conditioning class, p(label | output)."""

    title = "class score (MNIST classifier)"

    def values(self, output, source, mask, labels, metas) -> torch.Tensor:
        p = self._probs(output)
        y = self._labels(labels, p.shape[1])
        return p.gather(1, y[:, None])[:, 0]


class ClassConsistency(_ClassifierMetric):
    """Share of outputs classified as the source's class (the label, or the classifier's call on the source)."""

    title = "class consistency (MNIST classifier)"
    TARGETS = ("label", "source")

    def __init__(self, path: Optional[str] = None, target: str = "label", region: str = "full") -> None:
        super().__init__(path, region)
        if target not in self.TARGETS:
            raise ConfigError(f"ClassConsistency: target={target!r}: choose one of {', '.join(self.TARGETS)}")
        self.target = target

    def values(self, output, source, mask, labels, metas) -> torch.Tensor:
        p = self._probs(output)
        want = self._probs(source).argmax(1) if self.target == "source" else self._labels(labels, p.shape[1])
        return (p.argmax(1) == want).float()
