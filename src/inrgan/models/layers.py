"""Small building blocks shared by the generator and the discriminator."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
STD_EPS = 1e-8


def lrelu_gain(x: Tensor, gain: float = 1.0) -> Tensor:
    """Leaky ReLU(0.2) scaled by sqrt(2) (times an extra gain): keeps unit variance for unit inputs."""
    return F.leaky_relu(x, LRELU_SLOPE) * (LRELU_GAIN * gain)


def normalize_2nd_moment(x: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def spatial_std_normalize(x: Tensor, dim, eps: float = STD_EPS) -> Tensor:
    """x / (std(x) + eps) over the spatial ``dim`` (no mean subtraction): the -bil variant's normalisation."""
    return x / (x.std(dim=dim, keepdim=True) + eps)


def equal_linear(x: Tensor, weight: Tensor, bias: Tensor | None, weight_gain: float, bias_gain: float) -> Tensor:
    """weight_gain * x weight^T + bias_gain * bias: x [B, in], weight [n, in], bias [n] -> [B, n].

    The gain scales the product, not the weight: the affine heads hold most of G's parameters (59.4M at
    256^2), and scaling the weight would copy all of them on every call. [n, in] x [in, B] reads the weight
    row by row, about twice as fast on a CPU as x weight^T.
    """
    if bias is None:
        b = x.new_zeros(())
    else:
        b = bias[:, None] if bias_gain == 1 else bias[:, None] * bias_gain
    return torch.addmm(b.to(x.dtype), weight.to(x.dtype), x.t(), alpha=weight_gain).t().contiguous()


class EqualLinear(nn.Module):
    """Fully connected layer with equalized learning rate: weights stored N(0, 1/lr_mult^2), scaled at run time.

    It is also the affine head of every FMM layer and ToRGB, mapping w to their styles.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_multiplier: float = 1.0,
        activation: str = "linear",
    ) -> None:
        super().__init__()
        if activation not in ("linear", "lrelu"):
            raise ValueError(f"unknown activation {activation!r}")
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        # x: [B, in] -> [B, out]
        x = equal_linear(x, self.weight, self.bias, self.weight_gain, self.bias_gain)
        return lrelu_gain(x) if self.activation == "lrelu" else x

    def extra_repr(self) -> str:
        return f"in={self.weight.shape[1]}, out={self.weight.shape[0]}, activation={self.activation}"
