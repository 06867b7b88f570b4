"""Metrics judged by the project's classifiers (``alm.classifier``): the small data sets' stand-ins for CLIP.

The judge is the classifier in the folder ``path`` (``classifier.safetensors`` + ``config.json``; default
the project's MNIST judge ``weights/classifier``; the texture judge is ``weights/texture_classifier``).

- ``ClassScore`` (``class_score``): the probability the classifier gives to the sample's class,
  ``p(label | output)``, averaged over samples. The class-conditional analogue of CLIP score: how
  much the output looks like the digit / texture it was asked to be (higher is better).
- ``ClassConsistency`` (``class_consistency``): 1 if the output is classified as the source's class,
  else 0; its mean is the share of outputs that kept the source's class (higher is better). The
  source's class is the sample's ``label`` (``target: label``, default; in inpainting the source IS an
  image of its label, and the model is conditioned on it), or the classifier's own prediction on the
  source (``target: source``: consistency with what the judge sees in the source, so the judge's
  ~1.4% MNIST test errors do not count against a method).
- ``ClassAgreement`` (``class_agreement``): 1 if every square tile of the output is given the same
  class (whichever it is), else 0; its mean is the share of wide outputs that stay ONE texture from end
  to end (higher is better). Needs no label.

``views`` says what the classifier sees (``alm.metrics.base.square_views``): ``full`` (default; the
image as it is: a 32x32 digit) or ``tiles``: the non-overlapping square tiles of a wide image (a
(1, 32, 128) texture strip -> 4 tiles of 32x32), each classified on its own. With tiles, a sample's
``class_score`` is the mean over its tiles of p(label | tile), its ``class_consistency`` the share of
its tiles classified as the target class (each tile against the source's tile at the same place, with
``target: source``), and ``class_agreement`` looks at the tiles' predicted classes. With ``full``,
``class_agreement`` is 1 for every sample (one view always agrees with itself).

ClassScore and ClassConsistency read the sample's integer ``label`` (the class id) and every metric
needs the classifier's weights; a missing file is a one-line ``MissingWeightsError`` from
``check_available`` (before any work), naming the training command. Only the full image makes sense
(a classifier sees the whole digit or tile): ``region: full``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F

from alm.errors import ConfigError, DataError
from alm.metrics.base import Metric, check_views, square_views


class _ClassifierMetric(Metric):
    higher_is_better = True
    regions = ("full",)
    #: what the metric measures, for ``title`` ("class score"); the judge's name is added
    what = "classifier metric"

    def __init__(self, path: Optional[str] = None, region: str = "full", views: str = "full") -> None:
        from alm.classifier import judge_name

        super().__init__(region)
        self.path = path  # None: the project's weights/classifier
        check_views(views)  # validates ``views`` now
        self.views = views
        self.net: Optional[torch.nn.Module] = None
        self.title = f"{self.what} ({judge_name(path)[0]})"

    def check_available(self) -> None:
        from alm.classifier import check_classifier

        check_classifier(self.path)

    def setup(self, device) -> None:
        super().setup(device)
        self.net = None  # loaded on the first batch, onto this device

    def _probs(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities of the images' views: (B, V, num_classes), V = 1 with ``views: full``."""
        if self.net is None:
            from alm.classifier import load_classifier

            self.net = load_classifier(self.path, device=self.device)
        x, v = square_views(images.to(self.device).float().clamp(-1, 1), self.views)
        p = F.softmax(self.net(x), dim=1)
        return p.view(images.shape[0], v, p.shape[1])

    def _labels(self, labels: Sequence[Any], num_classes: int) -> torch.Tensor:
        out = []
        for lab in labels:
            try:
                value = int(lab.item() if isinstance(lab, torch.Tensor) else lab)
            except (TypeError, ValueError):
                raise DataError(f"{self.title}: needs each sample's class as an integer label (a class id), "
                                f"got {lab!r}") from None
            if not 0 <= value < num_classes:
                raise DataError(f"{self.title}: label {value} is outside the classifier's classes 0..{num_classes - 1}")
            out.append(value)
        return torch.tensor(out, dtype=torch.long, device=self.device)


class ClassScore(_ClassifierMetric):
    """Mean classifier probability of the conditioning class, p(label | output) (averaged over the views)."""

    what = "class score"

    def values(self, output, source, mask, labels, metas) -> torch.Tensor:
        p = self._probs(output)
        y = self._labels(labels, p.shape[-1])
        return p[torch.arange(len(y), device=p.device), :, y].mean(1)


class ClassConsistency(_ClassifierMetric):
    """Share of outputs (of their views) classified as the source's class (the label, or the classifier's
    call on the source)."""

    what = "class consistency"
    TARGETS = ("label", "source")

    def __init__(self, path: Optional[str] = None, target: str = "label", region: str = "full", views: str = "full") -> None:
        super().__init__(path, region, views)
        if target not in self.TARGETS:
            raise ConfigError(f"ClassConsistency: target={target!r}: choose one of {', '.join(self.TARGETS)}")
        self.target = target

    def values(self, output, source, mask, labels, metas) -> torch.Tensor:
        p = self._probs(output)
        if self.target == "source":
            want = self._probs(source).argmax(-1)
        else:
            want = self._labels(labels, p.shape[-1])[:, None]
        return (p.argmax(-1) == want).float().mean(1)


class ClassAgreement(_ClassifierMetric):
    """1 if all the square tiles of an output are classified as the same class, else 0 (label-free)."""

    what = "class agreement"

    def __init__(self, path: Optional[str] = None, region: str = "full", views: str = "tiles") -> None:
        super().__init__(path, region, views)

    def values(self, output, source, mask, labels, metas) -> torch.Tensor:
        pred = self._probs(output).argmax(-1)
        return (pred == pred[:, :1]).all(1).float()
