"""Per-sample metrics written by the runner, in data space [-1, 1].

The cheap rows every run writes; they use the evaluation stage's metric objects (``alm.metrics.pixel``:
torchmetrics, the masked region defined once), so ``mse``, ``mse_hole``, ``psnr`` and ``ssim`` here
equal the same columns of ``python -m alm.evaluate ... metrics=pixel``.
"""

from __future__ import annotations

import torch

from alm.metrics.pixel import MSE, PSNR, SSIM


def image_metrics(output: torch.Tensor, source: torch.Tensor, mask: torch.Tensor) -> list[dict]:
    """MSE (full image and hole), PSNR and SSIM of each output against its source, on [0, 1]."""
    out, ref, m = output.float().cpu(), source.float().cpu(), mask.float().cpu()
    metrics = {"mse": MSE(), "mse_hole": MSE(region="hole"), "psnr": PSNR(), "ssim": SSIM()}
    values = {k: metric.update(out, ref, m) for k, metric in metrics.items()}
    return [{k: float(v[i]) for k, v in values.items()} for i in range(out.shape[0])]
