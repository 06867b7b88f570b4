"""Source images from a folder: read, resized to a square (``preprocess``), scaled to [-1, 1].

``preprocess`` (``load_image``; docs/datasets.md, "How images are read"):

- ``"crop"`` (this class's default): Pillow reads the file (EXIF orientation applied, palette and
  alpha images converted to RGB), takes the central square, resizes it bicubic (antialiased) to
  ``resolution``;
- ``"authors"`` (the default of the paper's data sets, ``conf/dataset/{afhq,celebahq,seasons,
  painters}.yaml``): the authors' ``load_rgb`` (``Hleephilip/ALM_public``, ``alm/image_utils.py``):
  ``cv2.imread(path, cv2.IMREAD_COLOR)``, BGR -> RGB, ``cv2.resize`` to ``resolution`` x ``resolution``
  with ``cv2.INTER_LINEAR``, no crop (a non-square image is stretched). ``channels=1`` (no
  counterpart in their code) converts that RGB result with ``cv2.COLOR_RGB2GRAY``.

Files with the extensions png/jpg/jpeg/webp/bmp (case-insensitive) are taken in sorted order of
their path relative to the folder (``list_images``; hidden files and folders, names starting with
".", such as macOS ``._x.jpg`` companions in zip archives, are skipped); ``limit`` keeps the first
``limit`` of them. Labels:

- ``None``: no label (unconditional backbones; an empty prompt for text models);
- an ``int``: the same class id for every image;
- a string ending in ``.csv``: a CSV file (relative to the folder unless absolute) with rows
  ``file,label`` (an optional header ``file,label`` is skipped); integer labels become class ids,
  anything else a prompt; every image must have a row;
- any other string: the same prompt for every image.

Errors are one-line ``DataError``s: a missing or empty folder when the data set is built (with
``missing_hint``, e.g. where to download the data, appended), a corrupt or unreadable image when that
item is loaded (naming the file).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from PIL import Image, ImageOps

from alm.data.base import CompletionDataset, Item
from alm.errors import ConfigError, DataError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
PREPROCESS = ("crop", "authors")


class ImageFolderDataset(CompletionDataset):
    """The images of a folder as completion sources (``Item.image`` is (C, R, R) in [-1, 1])."""

    def __init__(
        self,
        path: Union[str, Path],
        resolution: int = 32,
        channels: int = 3,
        labels: Union[None, int, str] = None,
        limit: Optional[int] = None,
        recursive: bool = False,
        name: str = "image_folder",
        missing_hint: Optional[str] = None,
        preprocess: str = "crop",
    ):
        if path is None or str(path) in ("", "???"):
            raise ConfigError("dataset.path is not set; set it with dataset.path=/path/to/images")
        self.root = Path(str(path)).expanduser()
        self.name = name
        self.resolution = int(resolution)
        self.channels = int(channels)
        if self.channels not in (1, 3):
            raise ConfigError(f"dataset.channels={channels}: expected 1 (grayscale) or 3 (RGB)")
        if self.resolution < 1:
            raise ConfigError(f"dataset.resolution={resolution}: expected a positive integer")
        if limit is not None and int(limit) < 1:
            raise ConfigError(f"dataset.limit={limit}: expected a positive integer or null")
        self.preprocess = check_preprocess(preprocess)
        check_folder(self.root, missing_hint)
        files = list_images(self.root, recursive)
        if not files:
            raise DataError(f"image folder {self.root.resolve()} has no images ({'/'.join(e[1:] for e in EXTENSIONS)})")
        self.files: list[Path] = files[: int(limit)] if limit is not None else files
        self.shape = (self.channels, self.resolution, self.resolution)
        self._labels_csv: Optional[Path] = None
        self._labels = self._read_labels(labels)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Item:
        if not 0 <= index < len(self.files):
            raise IndexError(f"index {index} outside the {len(self.files)} images of {self.root}")
        path = self.files[index]
        rel = path.relative_to(self.root).as_posix()
        image = load_image(path, self.resolution, self.channels, self.preprocess)
        return Item(image=image, label=self._labels[index], meta={"file": rel, "index": index})

    def input_files(self) -> dict[str, list]:
        labels = self._labels_csv
        return {"stat": list(self.files), "content": [labels] if labels is not None else []}

    def _read_labels(self, labels: Union[None, int, str]) -> list[Any]:
        n = len(self.files)
        if labels is None:
            return [None] * n
        if isinstance(labels, bool):
            raise ConfigError(f"dataset.labels={labels!r}: expected a class id, a prompt or a .csv file")
        if isinstance(labels, int):
            return [labels] * n
        if not isinstance(labels, str):
            raise ConfigError(f"dataset.labels={labels!r}: expected a class id, a prompt or a .csv file"[:300])
        text = labels
        if not text.lower().endswith(".csv"):
            return [text] * n
        csv_path = Path(text).expanduser()
        if not csv_path.is_absolute():
            csv_path = self.root / csv_path
        self._labels_csv = csv_path
        if not csv_path.is_file():
            raise DataError(f"labels file {csv_path} not found (rows file,label; set dataset.labels=...)")
        table: dict[str, Any] = {}
        try:
            with open(csv_path, newline="") as f:
                for row in csv.reader(f):
                    if not row or row[0].strip().startswith("#"):
                        continue
                    if len(row) < 2:
                        raise DataError(f"labels file {csv_path}: row {row!r} needs two columns file,label")
                    key, value = row[0].strip(), row[1].strip()
                    if key == "file" and value == "label":
                        continue
                    table[key] = int(value) if _is_int(value) else value
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise DataError(f"cannot read labels file {csv_path}: {err}") from None
        out = []
        for path in self.files:
            rel = path.relative_to(self.root).as_posix()
            if rel in table:
                out.append(table[rel])
            elif path.name in table:
                out.append(table[path.name])
            else:
                raise DataError(f"labels file {csv_path} has no row for image {rel}")
        return out


def check_folder(root: Path, missing_hint: Optional[str] = None) -> None:
    """A one-line DataError unless ``root`` is a folder (``missing_hint`` says where to get the data)."""
    if root.is_dir():
        return
    what = "is not a folder" if root.exists() else "does not exist"
    hint = f"; {missing_hint}" if missing_hint else ""
    raise DataError(f"image folder {root.resolve()} {what}{hint}; set it with dataset.path=...")


def list_images(root: Path, recursive: bool = False) -> list[Path]:
    """The image files under ``root`` sorted by their relative POSIX path (so never by the file
    system's listing order); hidden files and folders (a path part starting with ".") are skipped."""

    def keep(p: Path) -> bool:
        rel = p.relative_to(root)
        return p.suffix.lower() in EXTENSIONS and not any(part.startswith(".") for part in rel.parts) and p.is_file()

    files = (p for p in root.glob("**/*" if recursive else "*") if keep(p))
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def check_preprocess(preprocess: str, what: str = "dataset") -> str:
    """``preprocess`` if it is one of ``PREPROCESS``, else a one-line ConfigError."""
    if preprocess not in PREPROCESS:
        raise ConfigError(f"{what}: preprocess={preprocess!r}: expected one of {', '.join(PREPROCESS)}")
    return str(preprocess)


def load_image(path: Path, resolution: int, channels: int, preprocess: str = "crop") -> torch.Tensor:
    """Read one image and take it to ``resolution`` x ``resolution``; (C, R, R) float32 in [-1, 1].

    ``preprocess="crop"``: Pillow, centre crop to a square, bicubic resize. ``"authors"``: OpenCV as the
    authors' ``load_rgb`` (imread colour, BGR -> RGB, ``cv2.resize`` INTER_LINEAR, no crop). Either way
    the 8-bit result ``u`` becomes ``u / 127.5 - 1`` (module docstring).
    """
    check_preprocess(preprocess)
    arr = _read_authors(path, resolution, channels) if preprocess == "authors" else _read_crop(path, resolution, channels)
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous() / 127.5 - 1.0


def _read_crop(path: Path, resolution: int, channels: int) -> Image.Image:
    """Pillow: EXIF-transposed, RGB (or L), the central square resized bicubic to ``resolution``."""
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode == "P":  # palette (possibly with transparency): expand first
                img = img.convert("RGBA")
            img = img.convert("L" if channels == 1 else "RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read image {path}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    if side != resolution:
        img = img.resize((resolution, resolution), Image.Resampling.BICUBIC, reducing_gap=None)
    return img


def _read_authors(path: Path, resolution: int, channels: int) -> np.ndarray:
    """The authors' ``load_rgb``: uint8 (R, R, 3) RGB (or (R, R) grayscale for ``channels=1``)."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # 8-bit BGR; EXIF orientation applied; alpha dropped
    if image is None:
        raise DataError(f"cannot read image {path}: OpenCV cannot decode it (corrupt or unsupported file)")
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    image = cv2.resize(image, (resolution, resolution), interpolation=cv2.INTER_LINEAR)
    if channels == 1:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return image


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True
