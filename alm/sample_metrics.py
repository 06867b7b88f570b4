"""Per-sample metrics written by the runner (torchmetrics functional), in data space [-1, 1].

The evaluation stage computes the paper's metrics over whole run folders; these are the cheap
per-sample rows every run writes.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure


def _ssim_kernel(h: int, w: int) -> int:
    """The standard 11-px Gaussian window, shrunk (odd) for images smaller than 11 px."""
    k = min(11, h, w)
    return k if k % 2 == 1 else k - 1


def image_metrics(output: torch.Tensor, source: torch.Tensor, mask: torch.Tensor) -> list[dict]:
    """MSE (full image and hole), PSNR and SSIM of each output against its source, on [0, 1]."""
    out = ((output.float().clamp(-1, 1) + 1) / 2).cpu()
    ref = ((source.float() + 1) / 2).cpu()
    m = mask.float().cpu().expand_as(out)
    k = _ssim_kernel(*out.shape[-2:])
    rows = []
    for i in range(out.shape[0]):
        o, r = out[i : i + 1], ref[i : i + 1]
        se = (o - r).pow(2)
        rows.append(
            {
                "mse": float(se.mean()),
                "mse_hole": float((se * m[i]).sum() / m[i].sum().clamp_min(1)),
                "psnr": float(peak_signal_noise_ratio(o, r, data_range=1.0)),
                "ssim": float(structural_similarity_index_measure(o, r, data_range=1.0, kernel_size=k)),
            }
        )
    return rows
