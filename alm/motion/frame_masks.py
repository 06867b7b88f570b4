"""Which frames of a motion are observed: the masks of motion completion (paper §4.2.3 and B.5).

A motion mask depends on the motion's own length, not only on the array's: a HumanML3D motion of
``length`` valid frames is zero-padded to the model's ``total`` frames, and the observed frames are
placed relative to ``length`` as CondMDI's evaluation places them (CondMDI ``utils/editing_util.py``,
``get_keyframes_mask``; ``length // 2`` etc. are integer divisions there too):

| kind          | observed frames (0-based, of ``length`` valid ones)   | paper                        |
|---------------|-------------------------------------------------------|------------------------------|
| ``first_half``  | ``[length // 2, length)``: generate the first half   | Table 4, "first half"        |
| ``middle_half`` | ``[0, length // 4)`` and ``[3 length // 4, length)`` | Table 4, "middle half"       |
| ``last_half``   | ``[0, length // 2)``: generate the second half       | (CondMDI's ``last_half``)    |
| ``inbetween``   | ``0, k, 2k, ...`` below ``length`` (k = ``every``)   | Table 7, one frame in ten    |
| ``uncond``      | none                                                 | unconditional generation     |

The mask is 1 where a frame is GENERATED (the project's convention, ``alm.masks``): every unobserved
frame and every padding frame beyond ``length`` (CondMDI multiplies its observation mask by the
length mask, so padding is never observed). Shape ``(1, 1, total)``: it broadcasts over the 263
features of a motion ``(263, 1, total)``.
"""

from __future__ import annotations

import torch

from alm.errors import ConfigError, DataError

KINDS = ("first_half", "middle_half", "last_half", "inbetween", "uncond")


def observed_frames(kind: str, length: int, every: int = 10) -> list[int]:
    """The observed frame indices of a motion of ``length`` valid frames (see the module's table)."""
    if kind == "first_half":
        return list(range(length // 2, length))
    if kind == "middle_half":
        return list(range(length // 4)) + list(range(length * 3 // 4, length))
    if kind == "last_half":
        return list(range(length // 2))
    if kind == "inbetween":
        return list(range(0, length, every))
    if kind == "uncond":
        return []
    raise ConfigError(f"unknown motion mask kind {kind!r}; known kinds: {', '.join(KINDS)}")


def frame_mask(kind: str, length: int, total: int, every: int = 10) -> torch.Tensor:
    """The (1, 1, total) float32 mask of one motion: 1 = generated (unobserved or padding), 0 = observed."""
    if not 0 < length <= total:
        raise DataError(f"a motion of {length} frames does not fit the model's {total} frames")
    mask = torch.ones(1, 1, total)
    mask[..., observed_frames(kind, length, every)] = 0.0
    return mask


class FrameMasks:
    """``mask=first_half`` etc. (``conf/mask/``): the motion masks of ``task=motion``.

    ``frames(length, total)`` gives a motion's mask; ``get(index, size)`` (the image masks' interface)
    refuses in one line, so an image task given a motion mask says what is wrong.
    """

    def __init__(self, kind: str, every: int = 10, name: str | None = None):
        if kind not in KINDS:
            raise ConfigError(f"unknown motion mask kind {kind!r}; known kinds: {', '.join(KINDS)}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError(f"mask.every={every!r}: expected a positive frame step")
        self.kind, self.every = kind, int(every)
        self.name = str(name or (f"inbetween{every}" if kind == "inbetween" else kind))

    def frames(self, length: int, total: int) -> torch.Tensor:
        return frame_mask(self.kind, int(length), int(total), self.every)

    def get(self, index: int, size):
        raise ConfigError(f"mask={self.name} is a motion mask (frames of a motion): use it with task=motion")

    def input_files(self) -> dict:
        return {}

    def __repr__(self) -> str:
        return f"FrameMasks(kind={self.kind!r}, every={self.every}, name={self.name!r})"
