"""LPIPS (Zhang et al. 2018) through torchmetrics' LPIPS network, on the full image or a masked region.

The network is the one behind ``torchmetrics.image.LearnedPerceptualImagePatchSimilarity``: a torchvision
backbone (AlexNet by default, as in the paper's table and BrushNet's evaluation), unit-normalised
features per layer, squared differences weighted by the learned 1x1 "lin" layers (their weights ship
inside torchmetrics), averaged over space and summed over layers.

A region is averaged per layer: the mask is area-downsampled to the layer's resolution (each feature
position weighted by the share of its footprint in the region), the lin-weighted map is averaged with
those weights, and the layers are summed. With an all-ones mask this is exactly torchmetrics' spatial
average (tested).

Weights: the backbone's ImageNet weights come from torchvision's download cache
(``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``); ``check_available``
looks for the file and names it when it is missing. ``pretrained=false`` builds a random backbone and
random lin layers: for testing the plumbing only.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from alm.errors import ConfigError
from alm.metrics.base import Metric, MissingWeightsError, masked_mean, region_weights, to_rgb, torch_hub_checkpoint

#: LPIPS net name -> (torchvision builder, weights enum name)
NETS = {"alex": ("alexnet", "AlexNet_Weights"), "vgg": ("vgg16", "VGG16_Weights"), "squeeze": ("squeezenet1_1", "SqueezeNet1_1_Weights")}


def _lpips_module():
    from torchmetrics.functional.image import lpips as tm_lpips

    return tm_lpips


class LPIPS(Metric):
    higher_is_better = False

    def __init__(self, region: str = "full", net: str = "alex", resize: Optional[int] = None, pretrained: bool = True) -> None:
        super().__init__(region)
        if net not in NETS:
            raise ConfigError(f"LPIPS: net={net!r}; choose one of {', '.join(NETS)}")
        self.net_name, self.resize, self.pretrained = net, resize, bool(pretrained)
        self.title = f"LPIPS ({net})"
        self.net = None

    def weight_files(self) -> list[tuple[str, Path, str]]:
        """(what, path, how to get it) for every file the real network loads."""
        import torchvision

        builder, enum = NETS[self.net_name]
        url = getattr(torchvision.models, enum).DEFAULT.url
        lin = Path(inspect.getfile(_lpips_module())).parent / "lpips_models" / f"{self.net_name}.pth"
        return [
            (f"torchvision's ImageNet {builder} weights", torch_hub_checkpoint(url),
             f"download {url} into {torch_hub_checkpoint(url).parent} (or set TORCH_HOME)"),
            (f"LPIPS lin-layer weights {lin.name}", lin, "reinstall torchmetrics (the file ships with it)"),
        ]

    def check_available(self) -> None:
        if not self.pretrained:
            return
        for what, path, how in self.weight_files():
            if not path.is_file():
                raise MissingWeightsError(f"{self.title} needs {what}: {path} is missing; {how}")

    def setup(self, device) -> None:
        super().setup(device)
        if self.net is None:
            if not self.pretrained:
                warnings.warn(f"{self.title} with RANDOM weights (plumbing tests only)")
            net_cls = _lpips_module()._NoTrainLpips
            self.net = net_cls(pretrained=self.pretrained, net=self.net_name, pnet_rand=not self.pretrained,
                               resize=self.resize).to(self.device).eval()

    def layer_maps(self, o: torch.Tensor, r: torch.Tensor) -> list[torch.Tensor]:
        """The lin-weighted squared feature differences of each layer, (B, 1, h_l, w_l) (torchmetrics' forward)."""
        tm = _lpips_module()
        net = self.net
        a, b = net.scaling_layer(o), net.scaling_layer(r)
        if net.resize is not None:
            a, b = tm._resize_tensor(a, size=net.resize), tm._resize_tensor(b, size=net.resize)
        fa, fb = net.net.forward(a), net.net.forward(b)
        return [net.lins[k]((tm._normalize_tensor(fa[k]) - tm._normalize_tensor(fb[k])) ** 2) for k in range(net.L)]

    def values(self, output, source, mask, labels, metas) -> torch.Tensor:
        if self.net is None:
            self.setup(self.device)
        o = to_rgb(output.clamp(-1, 1)).to(self.device)
        r = to_rgb(source.clamp(-1, 1)).to(self.device)
        if self.region == "full":
            return self.net(o, r).reshape(-1)  # torchmetrics' value
        w = region_weights(mask.to(self.device), self.region)
        total = 0
        for lmap in self.layer_maps(o, r):
            total = total + masked_mean(lmap, F.interpolate(w, size=lmap.shape[-2:], mode="area"))
        return total
