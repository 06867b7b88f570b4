"""The judges of the small data sets: small CNN classifiers of (1, 32, 32) images in [-1, 1].

- the MNIST judge (``weights/classifier/``, 10 digits) scores the embedded backbone's outputs;
- the texture judge (``weights/texture_classifier/``, 3 classes: brick, grass, gravel of
  ``alm.data.textures``) scores wide texture strips through their square 32x32 tiles.

They score outputs the way CLIP / Inception score natural images: the class probabilities give
``class_score``, ``class_consistency`` and ``class_agreement`` (``alm.metrics.classifier``), and the
penultimate layer is the feature space of FID / KID (``load_classifier_features``).

Architecture (``DigitClassifier``): three stages of two 3x3 conv + BatchNorm + ReLU, a 2x2 max-pool
between stages (32 -> 16 -> 8 px), global average pooling to ``channels[-1]`` features (the
penultimate layer), dropout and one linear layer to the ``num_classes`` logits. With the default
``channels=(32, 64, 96)`` it has ~205 K parameters and 96 features. The number of classes is read from
``config.json``, so one loader serves both judges.

Weights live in a folder (default ``weights/classifier/``; the texture judge: ``TEXTURE_WEIGHTS``):
``classifier.safetensors`` and ``config.json`` (the constructor's arguments), written by
``scripts/train_classifier.py [--data textures]`` together with ``TRAINING.md`` (command, epochs, wall
time, val / test accuracy). Error messages name the judge and its training command from the folder's
name (a folder named ``texture*`` is the texture judge's, any other the MNIST judge's).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from alm.errors import CheckpointError

#: the project's committed weights (``path=None`` everywhere means this folder, not one below the cwd)
DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "classifier"
#: the texture judge's committed weights (``alm.data.textures``: brick, grass, gravel)
TEXTURE_WEIGHTS = DEFAULT_WEIGHTS.parent / "texture_classifier"
WEIGHTS_FILE = "classifier.safetensors"
CONFIG_FILE = "config.json"
TRAIN_COMMAND = "python scripts/train_classifier.py"
TEXTURE_TRAIN_COMMAND = "python scripts/train_classifier.py --data textures"
CLIP_TRAIN_COMMAND = "python scripts/train_classifier.py --data moving_digits"


class DigitClassifier(nn.Module):
    """A small VGG-style CNN: ``forward(x) -> logits (B, num_classes)``, ``features(x) -> (B, channels[-1])``.

    Inputs are data-space images (B, in_channels, H, W) in [-1, 1] (any H, W divisible by 4; 32 here).
    Used for the 10 MNIST digits and for the 3 textures (``num_classes=3``).
    """

    def __init__(self, channels: Sequence[int] = (32, 64, 96), num_classes: int = 10, in_channels: int = 1,
                 dropout: float = 0.3) -> None:
        super().__init__()
        self.config = {"channels": list(map(int, channels)), "num_classes": int(num_classes),
                       "in_channels": int(in_channels), "dropout": float(dropout)}
        layers: list[nn.Module] = []
        c_in = in_channels
        for k, c in enumerate(channels):
            if k > 0:
                layers.append(nn.MaxPool2d(2))
            for _ in range(2):
                layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
                c_in = c
        self.body = nn.Sequential(*layers)
        self.num_features = int(channels[-1])
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.num_features, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate layer: globally average-pooled last conv stage, (B, channels[-1])."""
        return self.body(x.float()).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


class ClassifierFeatures(nn.Module):
    """A classifier seen as a feature network (FID / KID's ``feature: {_target_: ...}``): x -> features(x)."""

    def __init__(self, classifier: DigitClassifier) -> None:
        super().__init__()
        self.classifier = classifier
        self.num_features = classifier.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5:  # clips (N, C, F, H, W) for a clip encoder: frames as channels
            x = x.flatten(1, 2)
        return self.classifier.features(x)


def weights_files(path: Optional[Union[str, Path]] = None) -> tuple[Path, Path]:
    """(weights file, config file) of a classifier folder (``path`` may also name the .safetensors file)."""
    p = Path(path).expanduser() if path is not None else DEFAULT_WEIGHTS
    folder = p.parent if p.suffix == ".safetensors" else p
    return (p if p.suffix == ".safetensors" else folder / WEIGHTS_FILE), folder / CONFIG_FILE


def judge_name(path: Optional[Union[str, Path]] = None) -> tuple[str, str]:
    """(name, training command) of the judge whose weights folder is ``path``, for messages: a folder named
    ``texture*`` holds the texture classifier, any other the MNIST classifier."""
    folder = weights_files(path)[0].parent
    if folder.name.lower().startswith("texture"):
        return "texture classifier", TEXTURE_TRAIN_COMMAND
    if folder.name.lower().startswith("clip_encoder"):
        return "moving-digit clip encoder", CLIP_TRAIN_COMMAND
    return "MNIST classifier", TRAIN_COMMAND


def check_classifier(path: Optional[Union[str, Path]] = None) -> None:
    """Raise a one-line ``MissingWeightsError`` (a ``CheckpointError``) if the classifier's files are missing."""
    from alm.metrics.base import MissingWeightsError  # a CheckpointError the metric machinery can skip

    name, command = judge_name(path)
    for f in weights_files(path):
        if not f.is_file():
            raise MissingWeightsError(f"the {name}'s {f} is missing; make the weights with `{command}`")


def save_classifier(model: DigitClassifier, path: Union[str, Path]) -> Path:
    """Write ``classifier.safetensors`` and ``config.json`` into the folder ``path``; returns the weights file."""
    from safetensors.torch import save_file

    from alm import io

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    weights, config = weights_files(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = weights.with_name(weights.name + ".tmp")
    save_file(state, str(tmp))
    tmp.replace(weights)
    io.write_json(config, model.config)
    return weights


def load_classifier(path: Optional[Union[str, Path]] = None, device: Union[str, torch.device] = "cpu") -> DigitClassifier:
    """The trained classifier from a weights folder (default: the project's ``weights/classifier``; the texture
    judge: ``TEXTURE_WEIGHTS``), in eval mode with gradients off.

    Raises a one-line ``CheckpointError`` naming the missing file and the command that makes it.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_classifier(path)
    weights, config = weights_files(path)
    name, command = judge_name(path)
    try:
        model = DigitClassifier(**json.loads(config.read_text()))
        model.load_state_dict(load_file(str(weights), device="cpu"))
    except (OSError, ValueError, TypeError, RuntimeError, SafetensorError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"cannot load the {name} from {weights.parent}: {first}; "
                              f"remake it with `{command}`") from None
    return model.to(device).eval().requires_grad_(False)


def load_classifier_features(path: Optional[Union[str, Path]] = None) -> ClassifierFeatures:
    """The classifier's penultimate layer as a feature network, for ``alm.metrics.fid`` (``feature: {_target_: ...}``;
    with ``views: tiles`` wide strips reach it as square tiles)."""
    return ClassifierFeatures(load_classifier(path)).eval()


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Class probabilities (N, num_classes) of data-space images, in batches, on the model's device."""
    device = next(model.parameters()).device
    out = [F.softmax(model(images[i:i + batch_size].to(device).float()), dim=1).cpu()
           for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out) if out else torch.zeros(0, model.head.out_features if hasattr(model, "head") else 10)
