"""MSE, PSNR and SSIM (torchmetrics), on the full image or a masked region.

All three compare the output (clamped to the image range) with the source on the [0, 1] scale
(``data_range = 1``). ``metrics=basic`` (the runner's default set: mse, mse_hole, psnr, ssim) is these
classes; so are the same columns of ``metrics=pixel`` and ``metrics=gmm``.
The full-image value is torchmetrics' own; a region is the weighted mean of the same per-pixel
quantity over the region's pixels and channels (``alm.metrics.base.masked_mean``), so with an
all-ones mask every masked variant equals torchmetrics' value (tested):

- MSE: mean of ``(o - r)^2`` over the region (times ``scale``: the paper does not state its MSE scale);
- PSNR: ``10 log10(1 / MSE_region)``;
- SSIM: the mean of torchmetrics' SSIM map (Gaussian window, sigma 1.5) over the region. The
  window still sees the pixels around the region; that is the standard masked SSIM.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from alm.errors import ConfigError
from alm.metrics.base import Metric, masked_mean, region_weights, to_unit


class MSE(Metric):
    higher_is_better = False
    title = "MSE"

    def __init__(self, region: str = "full", scale: float = 1.0) -> None:
        super().__init__(region)
        self.scale = float(scale)

    def values(self, output, source, mask, labels: Sequence[Any], metas: Sequence[dict]) -> torch.Tensor:
        o, r = to_unit(output), to_unit(source, clamp=False)
        if self.region == "full":
            from torchmetrics.functional import mean_squared_error  # imported when used: ~2 s at start-up

            v = torch.stack([mean_squared_error(o[i], r[i]) for i in range(o.shape[0])])
        else:
            v = masked_mean((o - r).pow(2), region_weights(mask, self.region))
        return self.scale * v


class PSNR(Metric):
    higher_is_better = True
    title = "PSNR"

    def values(self, output, source, mask, labels, metas) -> torch.Tensor:
        o, r = to_unit(output), to_unit(source, clamp=False)
        if self.region == "full":
            from torchmetrics.functional.image import peak_signal_noise_ratio

            return peak_signal_noise_ratio(o, r, data_range=1.0, reduction="none", dim=tuple(range(1, o.dim())))
        mse = masked_mean((o - r).pow(2), region_weights(mask, self.region))
        return 10 * torch.log10(1.0 / mse)


class SSIM(Metric):
    higher_is_better = True
    title = "SSIM"

    def __init__(self, region: str = "full", sigma: float = 1.5) -> None:
        super().__init__(region)
        if sigma <= 0:
            raise ConfigError(f"SSIM: sigma must be positive, got {sigma}")
        self.sigma = float(sigma)

    def _check_size(self, x: torch.Tensor) -> None:
        pad = int(3.5 * self.sigma + 0.5)  # torchmetrics' Gaussian window is 2*pad+1 wide, reflect-padded
        if min(x.shape[-2:]) <= pad:
            raise ConfigError(f"SSIM: images of size {tuple(x.shape[-2:])} are too small for sigma={self.sigma} "
                              f"(need more than {pad} px per side; lower metrics.<name>.sigma)")

    def values(self, output, source, mask, labels, metas) -> torch.Tensor:
        from torchmetrics.functional.image import structural_similarity_index_measure

        if output.dim() == 5:  # clips (B, C, F, H, W): the mean over the frames of the per-frame SSIM
            b, f = output.shape[0], output.shape[2]
            frames = [x.transpose(1, 2).flatten(0, 1) for x in (output, source, mask)]
            return self.values(*frames, [None] * (b * f), [{}] * (b * f)).view(b, f).mean(1)
        o, r = to_unit(output), to_unit(source, clamp=False)
        self._check_size(o)
        if self.region == "full":
            return structural_similarity_index_measure(o, r, data_range=1.0, sigma=self.sigma, reduction="none")
        _, ssim_map = structural_similarity_index_measure(
            o, r, data_range=1.0, sigma=self.sigma, reduction="none", return_full_image=True
        )
        return masked_mean(ssim_map, region_weights(mask, self.region))
