"""The paper's inpainting test sets (§4.2.1): a fixed, seeded choice of image–mask pairs from an image folder.

``dataset=afhq|celebahq|seasons|painters`` (``conf/dataset/``; where to get each: ``docs/datasets.md``).

Which images, in which order (a pure function of ``seed`` and the folder's file NAMES)
---------------------------------------------------------------------------------------
1. The images are every png/jpg/jpeg/webp/bmp file below ``path`` (recursively; hidden files skipped),
   or below the sub-folders of ``path`` matching the glob ``split`` (e.g. ``val``, ``test*``).
2. Each file gets the key ``sha256(f"{seed}/{cycle}/{rel}")`` with ``rel`` its POSIX path relative
   to ``path`` and ``cycle = 0``; the files sorted by key are the pairs' images: pair ``k`` uses
   the ``k``-th. This is a seeded shuffle that depends on the names only, so it is the same on every
   file system and machine, and the first ``m`` pairs of a longer test set are the ``m`` pairs of a
   shorter one (a smoke run is a prefix of the real one). Adding or removing a file moves the pairs
   only if its key falls among the chosen ones.
3. Fewer images than ``pairs``: refused with a one-line error by default -- a test set of N pairs is
   expected to hold N different images. ``reuse_images=true`` allows it: after the images run out,
   cycle 1 orders them again with ``cycle = 1`` in the key (cycle 2 with 2, ...), so every image is
   used once before any is used twice, each time with another mask. An image may then meet the same
   deterministic mask kind (ex64, genhalf, nn2, ev2li) twice, i.e. an identical pair: prefer
   ``pairs <= images``.

Which mask per pair: pair ``k`` is sample ``k`` of the run, and the runner gives sample ``k`` the mask
``k`` of the run's mask source (``alm.masks.MaskSource.get(k)``); with ``mask=mixed`` (RePaint's six
kinds) that is kind ``kinds[k % 6]``, its strokes drawn from ``(mask.seed, k)``. Images and masks are
therefore paired by the seeded image order, and a pair depends on (dataset.seed, file names,
mask config, k) only -- never on the run seed, the batch or the sampler.

Images: taken to ``resolution`` x ``resolution`` (the backbone's: ``${backbone.resolution}`` in the
yaml), RGB in [-1, 1] (``alm.data.image_folder.load_image``), as ``preprocess`` says:

- ``"authors"`` (the paper configs' default): the authors' ``load_rgb`` (``Hleephilip/ALM_public``,
  ``alm/image_utils.py``): OpenCV reads the file (``cv2.imread``, colour), BGR -> RGB, and
  ``cv2.resize`` takes it straight to the resolution with bilinear ``INTER_LINEAR``, no crop (a
  non-square image is stretched);
- ``"crop"`` (this class's default, the project's original reading): Pillow, the central square,
  bicubic (antialiased) resize.

For a square file already at the resolution (AFHQ's 512x512 at 512 px) both keep the decoded pixels;
otherwise they differ (``docs/datasets.md``, "How images are read").

Prompts (``Item.label``): ``prompt`` is a template; ``{label}`` is replaced by the image's class word:
the name of its parent folder looked up in ``classes`` (e.g. ``cat -> cat``, ``wild -> wild animal``),
else ``default_label``; an image with neither is refused when the data set is built (naming the
folder). A template without ``{label}`` is the same prompt for every image; ``prompt: null`` gives no
label (unconditional backbones).
"""

from __future__ import annotations

import hashlib
import string
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from alm.data.base import CompletionDataset, Item
from alm.data.image_folder import check_folder, check_preprocess, list_images, load_image
from alm.errors import ConfigError, DataError


def pair_order(names: list[str], seed: int, cycle: int = 0) -> list[str]:
    """``names`` in the seeded order of cycle ``cycle``: sorted by sha256 of ``"{seed}/{cycle}/{name}"``."""
    key = lambda name: hashlib.sha256(f"{int(seed)}/{int(cycle)}/{name}".encode()).digest()  # noqa: E731
    return sorted(names, key=key)


def choose_pairs(names: list[str], pairs: int, seed: int, reuse_images: bool = False, what: str = "dataset") -> list[str]:
    """The image of each of ``pairs`` pairs (see the module docstring); a DataError if too few images."""
    names = sorted(set(names))
    if not names:
        raise DataError(f"{what}: no images to choose from")
    if pairs > len(names) and not reuse_images:
        raise DataError(
            f"{what}: {pairs} image-mask pairs need {pairs} images but the folder has {len(names)}; "
            f"set dataset.pairs={len(names)} (fewer pairs) or dataset.reuse_images=true (reuse images with other masks)"
        )
    chosen: list[str] = []
    cycle = 0
    while len(chosen) < pairs:
        chosen += pair_order(names, seed, cycle)[: pairs - len(chosen)]
        cycle += 1
    return chosen


def check_template(template: Optional[str], what: str) -> None:
    """Refuse a prompt template with fields other than ``{label}`` (or unbalanced braces)."""
    if template is None:
        return
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as err:
        raise ConfigError(f"{what}: prompt template {template!r} is not valid: {err}") from None
    extra = sorted(fields - {"label"})
    if extra:
        raise ConfigError(f"{what}: prompt template {template!r} has field(s) {', '.join(extra)}; only {{label}} is filled")


class InpaintingPairs(CompletionDataset):
    """``pairs`` image–mask pairs from an image folder, in a fixed seeded order (module docstring)."""

    def __init__(
        self,
        path: Union[str, Path],
        resolution: Optional[int] = None,
        pairs: int = 1000,
        seed: int = 0,
        split: Optional[str] = None,
        reuse_images: bool = False,
        prompt: Optional[str] = None,
        classes: Optional[Mapping[str, str]] = None,
        default_label: Optional[str] = None,
        channels: int = 3,
        download: Optional[str] = None,
        name: Optional[str] = None,
        preprocess: str = "crop",
    ):
        """``download``: where to get the data set, shown when the folder is missing. ``name``: shown in
        errors (the runner keeps a config's ``name`` as a label, so errors name the folder instead).
        ``preprocess``: ``"authors"`` or ``"crop"``, how an image is read and resized (module docstring)."""
        self.name = name or "pairs"
        what = f"dataset {name}" if name else "dataset"
        if path is None or str(path) in ("", "???"):
            raise ConfigError(f"{what}: dataset.path is not set; set it with dataset.path=/path/to/images")
        if resolution is None:
            raise ConfigError(f"{what}: no resolution (the backbone config has no 'resolution' key); set dataset.resolution=...")
        for key, value, low in (("resolution", resolution, 1), ("pairs", pairs, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{what}: {key}={value!r} must be an integer >= {low}")
        if int(channels) not in (1, 3):
            raise ConfigError(f"{what}: channels={channels!r}: expected 1 or 3")
        check_template(prompt, what)
        self.preprocess = check_preprocess(preprocess, what)
        self.root = Path(str(path)).expanduser()
        self.resolution, self.channels, self.seed = int(resolution), int(channels), int(seed)
        self.shape = (self.channels, self.resolution, self.resolution)
        self.prompt, self.classes, self.default_label = prompt, dict(classes or {}), default_label

        check_folder(self.root, download)
        roots = [self.root]
        if split:
            roots = sorted(p for p in self.root.glob(str(split)) if p.is_dir() and not p.name.startswith("."))
            if not roots:
                raise DataError(f"{what}: no sub-folder of {self.root} matches split={split!r}; "
                                f"set dataset.split=... (or null for every image)")
        names = [p.relative_to(self.root).as_posix() for r in roots for p in list_images(r, recursive=True)]
        if not names:
            raise DataError(f"{what}: {self.root} has no images (png/jpg/jpeg/webp/bmp){f' in {split!r}' if split else ''}")
        self.num_images = len(set(names))
        self.files = choose_pairs(names, int(pairs), self.seed, bool(reuse_images), f"{what} ({self.root})")
        self._what = what
        self.labels = [self._prompt_for(rel) for rel in self.files]

    def _prompt_for(self, rel: str) -> Any:
        if self.prompt is None:
            return None
        if "{label}" not in self.prompt:
            return self.prompt.replace("{{", "{").replace("}}", "}")
        folder = Path(rel).parent.name
        word = self.classes.get(folder, self.default_label)
        if word is None:
            known = ", ".join(sorted(self.classes)) or "none"
            raise DataError(
                f"{self._what}: image {rel} is in folder {folder or '(top level)'!r}, which has no class word "
                f"for the prompt {self.prompt!r} (classes: {known}); set dataset.classes or dataset.default_label"
            )
        return self.prompt.format(label=word)

    def input_files(self) -> dict[str, list]:
        return {"stat": [self.root / rel for rel in self.files]}

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Item:
        if not 0 <= index < len(self.files):
            raise IndexError(f"{self._what} has {len(self.files)} pairs, got index {index}")
        rel = self.files[index]
        image = load_image(self.root / rel, self.resolution, self.channels, self.preprocess)
        return Item(image=image, label=self.labels[index], meta={"file": rel, "pair": index})
