"""Inference-time rewrites shared by the feature extractors."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def fold_batch_norm(owner: nn.Module, conv_name: str, bn_name: str) -> None:
    """Fold ``owner.<bn_name>`` (eval mode) into the preceding ``owner.<conv_name>`` and drop the BN.

    bn(conv(x)) = gamma (W x + b - mean) / sqrt(var + eps) + beta is one convolution with weight
    W gamma / sqrt(var + eps) and bias beta + (b - mean) gamma / sqrt(var + eps). Afterwards the module's
    state dict no longer matches the published file, so fold after loading weights.
    """
    conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
        raise TypeError(f"expected Conv2d and BatchNorm2d, got {type(conv).__name__} and {type(bn).__name__}")
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # [C_out]
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight.mul_(scale.view(-1, 1, 1, 1))
    conv.bias = nn.Parameter(bn.bias + (bias - bn.running_mean) * scale, requires_grad=False)
    setattr(owner, bn_name, nn.Identity())
