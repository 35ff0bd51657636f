"""A differentiable perceptual distance from the offline EfficientNet-Lite0's intermediate features.

LPIPS compares unit-normalised activations of an ImageNet network at several depths. Its learned
per-channel weights and the AlexNet/VGG weights it builds on are downloads, which this project does not
make, so this distance takes the same form with equal weights on the EfficientNet-Lite0 that the metrics
already ship: d(x, y) = mean over taps l of mean over positions of || f_l(x) / |f_l(x)| - f_l(y) / |f_l(y)| ||^2,
with the taps at the end of each resolution stage (strides 2, 4, 8, 16, 32).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nets import efficientnet_lite

MEAN, STD = 127.0, 128.0  # the extractor's normalisation on [0, 255]


def stage_ends(net: efficientnet_lite.EfficientNetLite) -> list[int]:
    """Indices of the blocks after which the spatial resolution next halves (and the last block)."""
    strides = [block._depthwise_conv.stride[0] for block in net._blocks]
    return [i - 1 for i, s in enumerate(strides) if s == 2 and i > 0] + [len(strides) - 1]


class PerceptualDistance(nn.Module):
    """images in [-1, 1], [B, C, H, W] (C = 1 or 3) -> distance [B]; differentiable in both arguments.

    Both images are resized to ``size`` x ``size`` (bilinear, antialiased) before the network.
    """

    def __init__(self, net: efficientnet_lite.EfficientNetLite, size: int = 128):
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.size = size
        self.taps = stage_ends(net)

    def features(self, x: Tensor) -> list[Tensor]:
        """Unit-normalised activations [B, C_l, H_l, W_l] at the stem and each tap."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        x = ((x + 1) * 127.5 - MEAN) / STD
        x = F.relu6(self.net._bn0(self.net._conv_stem(x)))
        out = [x]
        for i, block in enumerate(self.net._blocks):
            x = block(x)
            if i in self.taps:
                out.append(x)
        return [f / (f.norm(dim=1, keepdim=True) + 1e-10) for f in out]

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        fx, fy = self.features(x), self.features(y)
        return torch.stack([((a - b) ** 2).sum(dim=1).mean(dim=(1, 2)) for a, b in zip(fx, fy, strict=True)]).mean(0)


def build_perceptual(device: str | torch.device = "cpu", size: int = 128) -> PerceptualDistance:
    """The distance with the shipped EfficientNet-Lite0 weights (checked by their sha256)."""
    from .extractors import build_effnet_lite0

    return PerceptualDistance(build_effnet_lite0(device).net, size)
