"""The pixel blend of the "*" rows (docs/method.md §10): paste the generated image into the source
with a blurred mask, so that the observed region is the source and the seam is smoothed.

    b   = 1 - (1 - m) * (1 - GaussianBlur_k(m))        1 in the hole, fading to 0 around it
    out = b * gen + (1 - b) * src

Two ways of evaluating it (``blend_output(..., mode=)``):

- ``"authors"``: what the authors' code does (``Hleephilip/ALM_public``, ``alm/inpainting.py`` lines
  165-167, ``alm/image_utils.py`` ``load_mask`` lines 49-51 and ``tensor_to_image`` lines 71-73), on the
  0..255 scale and with their data types and rounding::

      G   = uint8(round_half_even(clamp(gen / 2 + 0.5, 0, 1) * 255))     in gen's dtype (theirs: the VAE's)
      b   = 1 - (1 - m) * (1 - cv2.GaussianBlur(m, (k, k), 0))           float32, OpenCV's blur
      out = uint8(clip(round_half_even(float32(G) * b + float32(S) * (1 - m) * (1 - b)), 0, 255))

  with S the uint8 source. So the generated image is rounded to 256 levels BEFORE the blend and the
  blend rounded AFTER it (both with numpy's round half to even, not the truncating uint8 cast).
- ``"float"``: the same equation in floating point on the [-1, 1] scale, no rounding (the project's
  original blend; the committed embedded table was made with it).

The two differ by at most one grey level for k >= 11, where both blur with the same Gaussian. For
k <= 9 OpenCV's sigma=0 blur uses a fixed binomial-like table instead of the formula that ``"float"``
uses (e.g. k = 3: [1/4, 1/2, 1/4]), so the weights and the outputs differ by more there (the
embedded table's k = 3). Pure functions: tensors in, tensors out, nothing stored.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from alm.errors import ConfigError

BLEND_MODES = ("authors", "float")


def _check_kernel(masks: torch.Tensor, kernel: int) -> None:
    if kernel % 2 == 0 or kernel < 1:
        raise ConfigError(f"task.blend_kernel={kernel}: expected an odd positive size")
    if kernel // 2 >= min(masks.shape[-2:]):
        raise ConfigError(f"task.blend_kernel={kernel} is too large for {tuple(masks.shape[-2:])} images")


def blend_weights(masks: torch.Tensor, kernel: int = 21) -> torch.Tensor:
    """b = 1 - (1-m)(1 - GaussianBlur_k(m)): 1 in the hole, fading to 0 around it (the '*' rows, docs/method.md §10).

    The ``"float"`` mode's weights, computed with torchvision: a k x k Gaussian with OpenCV's sigma for
    sigma=0, 0.3((k-1)/2 - 1) + 0.8 (3.5 for k = 21), reflect-101 borders. For k >= 11 that is
    OpenCV's kernel to float precision; for k <= 9 OpenCV uses a fixed table instead (see
    ``authors_blend_weights``). ``masks`` (B, 1, H, W), 1 = hole.
    """
    from torchvision.transforms.functional import gaussian_blur

    _check_kernel(masks, kernel)
    sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
    blurred = gaussian_blur(masks.float(), [kernel, kernel], [sigma, sigma])
    return 1 - (1 - masks) * (1 - blurred)


def authors_blend_weights(masks: torch.Tensor, kernel: int = 21) -> torch.Tensor:
    """The authors' blend weights (docs/method.md §10): float32 b = 1 - (1-m)(1 - cv2.GaussianBlur(m, (k, k), 0)).

    As ``load_mask`` in their ``alm/image_utils.py``: OpenCV's Gaussian blur of the float32 0/1 mask with
    sigma 0, i.e. OpenCV's own kernel (the formula 0.3((k-1)/2 - 1) + 0.8 for k >= 11, a fixed table
    for k <= 9 in OpenCV 4.13) and its default reflect-101 border, per image on the CPU. ``masks``
    (B, 1, H, W) with values 0 / 1 (1 = hole); returns float32 (B, 1, H, W) on the masks' device.
    """
    import cv2

    _check_kernel(masks, kernel)
    if masks.ndim != 4 or masks.shape[1] != 1:
        raise ValueError(f"masks must be (B, 1, H, W), got {tuple(masks.shape)}")
    m = masks.detach().to("cpu", torch.float32).numpy()
    if not np.all((m == 0) | (m == 1)):
        raise ValueError("the authors' blend needs binary masks (values 0 and 1)")
    blurred = np.stack([cv2.GaussianBlur(np.ascontiguousarray(mi[0]), (kernel, kernel), 0)[None] for mi in m])
    b = 1.0 - (1.0 - m) * (1.0 - blurred)  # float32, as theirs (Python scalars keep numpy's float32)
    return torch.from_numpy(b).to(masks.device)


def to_levels(images: torch.Tensor, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """[-1, 1] images -> their 0..255 levels as the authors' ``tensor_to_image``: round(clamp(x/2 + 0.5, 0, 1) * 255)
    computed in ``dtype`` (default ``images.dtype``), round half to even; float32 holding integers."""
    x = images if dtype is None else images.to(dtype)
    return ((x / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.float32)


def blend_output(
    output: torch.Tensor,
    source: torch.Tensor,
    masks: torch.Tensor,
    kernel: int = 21,
    mode: str = "authors",
    quantize_dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """Paste the generated content into the source with the blurred-mask weights: the '*' rows (docs/method.md §10).

    ``output`` (generated) and ``source`` (B, C, H, W) in [-1, 1]; ``masks`` (B, 1, H, W), 1 = hole;
    ``kernel`` the odd size of the Gaussian (the authors': 21 at 512 px). Returns (B, C, H, W) in [-1, 1].

    ``mode="authors"``: their code's arithmetic (module docstring): the generated image rounded to
    uint8 levels, the blend in float32 with OpenCV's blurred mask, rounded again (half to even) and
    clipped to 0..255; the result is one of the 256 levels, returned as ``level / 127.5 - 1`` (float32
    arithmetic, then ``output.dtype``). The source must be an 8-bit image (``level / 127.5 - 1``, as
    the data sets read files; float16 rounding allowed): anything else (e.g. the GMM data) is refused
    with a ConfigError, as rounding it would change the data. ``quantize_dtype``: the dtype in which
    the generated image is rounded to levels; theirs does it in their VAE's dtype (float16 under their
    default ``--precision fp16``, float32 under fp32); default ``output.dtype``. Masks must be 0 / 1.

    ``mode="float"``: ``b * output + (1 - b) * source`` in ``output.dtype`` with ``blend_weights``
    (no rounding; the project's original blend, bit for bit).
    """
    if mode == "float":
        b = blend_weights(masks, kernel).to(output.dtype)
        return b * output + (1 - b) * source
    if mode != "authors":
        raise ConfigError(f"blend mode {mode!r}: expected one of {', '.join(BLEND_MODES)}")
    b = authors_blend_weights(masks, kernel).to(output.device)
    m = masks.to(output.device, torch.float32)
    gen = to_levels(output, quantize_dtype)
    src = (source.to(torch.float32) + 1) * 127.5
    off = float((src - src.round()).abs().max()) if src.numel() else 0.0
    if off > 0.1 or (src.numel() and (float(src.min()) < -0.1 or float(src.max()) > 255.1)):  # float16: <= 0.07
        raise ConfigError(
            "task.blend_mode=authors rounds to 8-bit levels, but this source is not an 8-bit image "
            f"(values off the 256 levels of [-1, 1] by up to {off:.3g}, or outside [-1, 1]); use task.blend_mode=float"
        )
    src = src.round().clamp(0, 255)
    src = src * (1 - m)  # their masked source: 0 in the hole, where 1 - b is 0 anyway
    # out = round(b * round(gen) + (1 - b) * src), float32, round half to even, clipped to 0..255
    out = (gen * b + src * (1 - b)).round().clamp(0, 255)
    return (out / 127.5 - 1.0).to(output.dtype)
