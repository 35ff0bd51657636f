"""Factorized Multiplicative Modulation (FMM), the paper's hypernetwork layer.

Each INR layer owns a shared weight W_s [c_out, c_in]. From the latent w its affine head predicts two
low-rank factors A [c_out, r] and B [r, c_in]; the per-sample weight is W = W_s * (1 + A B / sqrt(r)),
optionally row-wise L2-normalised ("demodulated"). StyleGAN2's modulation is the rank-1 special case.

The formulas are the pure functions :func:`fmm_weight` and :func:`fmm_layer`; :class:`FMMLayer` and
:class:`ToRGB` own the parameters and give a sample's INR layer, (weight, bias), from its w.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .layers import LRELU_GAIN, EqualLinear, lrelu_gain, spatial_std_normalize

DEMOD_EPS = 1e-8


def fmm_factors(styles: Tensor, c_out: int, c_in: int, rank: int) -> tuple[Tensor, Tensor]:
    """The low-rank factors in the styles [B, (c_out + c_in) * r]: A [B, c_out, r] (first) and B [B, r, c_in]."""
    batch = styles.shape[0]
    return styles[:, : c_out * rank].reshape(batch, c_out, rank), styles[:, c_out * rank :].reshape(batch, rank, c_in)


def modulate(weight: Tensor, styles: Tensor) -> Tensor:
    """StyleGAN2's modulation: every input channel of the weight scaled by the sample's style.

    weight [c_out, c_in, *kernel], styles [B, c_in] -> [B, c_out, c_in, *kernel].
    """
    batch, c_in = styles.shape
    return weight.unsqueeze(0) * styles.reshape(batch, 1, c_in, *([1] * (weight.ndim - 2)))


def demodulated(w: Tensor, inplace: bool = False) -> Tensor:
    """Every output row of per-sample weights [B, c_out, ...] divided by its L2 norm (+ 1e-8)."""
    d = torch.linalg.vector_norm(w, dim=tuple(range(2, w.ndim)), keepdim=True) + DEMOD_EPS  # [B, c_out, 1...]
    return w.div_(d) if inplace else w / d


def fmm_weight(
    weight: Tensor,
    styles: Tensor,
    rank: int,
    modulation: str = "linear",
    demodulate: bool = True,
) -> Tensor:
    """Per-sample FMM weights, W_s (1 + A B / sqrt(r)), demodulated.

    Args:
        weight: shared weight W_s, [c_out, c_in].
        styles: affine output, [B, (c_out + c_in) * rank]: A row-major first, then B.
        rank: factorisation rank r.
        modulation: "linear" (1 + M), "sigmoid" (2 sigmoid(M)) or "tanh" (1 + tanh(M)), M = A B / sqrt(r).
        demodulate: divide every output row by its L2 norm (eps 1e-8).

    Returns:
        W: [B, c_out, c_in]. Without autograd the [B, c_out, c_in] buffer of A B is reused in place.
    """
    c_out, c_in = weight.shape
    if styles.shape[1] != (c_out + c_in) * rank:
        raise ValueError(f"styles have {styles.shape[1]} entries, expected (c_out + c_in) * rank = "
                         f"{(c_out + c_in) * rank}")
    inplace = not (torch.is_grad_enabled() and (styles.requires_grad or weight.requires_grad))
    a, b = fmm_factors(styles, c_out, c_in, rank)  # [B, c_out, r], [B, r, c_in]
    m = torch.bmm(a, b)  # [B, c_out, c_in]; M = m / sqrt(r) has unit variance for unit styles
    if modulation == "linear":
        w = torch.addcmul(weight, m, weight, value=1 / math.sqrt(rank), out=m if inplace else None)
    elif modulation == "sigmoid":
        w = weight * (2.0 * torch.sigmoid(m / math.sqrt(rank)))
    elif modulation == "tanh":
        w = weight * (1.0 + torch.tanh(m / math.sqrt(rank)))
    else:
        raise ValueError(f"unknown FMM modulation {modulation!r}")
    return demodulated(w, inplace) if demodulate else w


def fmm_linear(x: Tensor, w: Tensor) -> Tensor:
    """Apply per-sample weights to every pixel: x [B, c_in, H, W], w [B, c_out, c_in] -> [B, c_out, H, W]."""
    batch, c_in, h, wd = x.shape
    out = torch.bmm(w.to(x.dtype), x.reshape(batch, c_in, h * wd))  # [B, c_out, H*W]
    return out.reshape(batch, w.shape[1], h, wd)


def fmm_layer(x: Tensor, weight: Tensor, bias: Tensor, normalize: bool = False) -> Tensor:
    """One INR layer on a map: lrelu(W x + b) * sqrt(2), x [B, c_in, H, W] -> [B, c_out, H, W].

    ``normalize`` (-bil): x is first divided by its spatial std (no mean subtraction), as the release does.
    """
    if normalize:
        x = spatial_std_normalize(x, dim=(2, 3))
    return lrelu_gain(fmm_linear(x, weight) + bias.to(x.dtype)[:, :, None, None])


def to_rgb(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """A ToRGB on a map: W x + b, linear, x [B, C, H, W] -> [B, img_channels, H, W]."""
    return fmm_linear(x, weight) + bias.to(x.dtype)[:, :, None, None]


class FMMLayer(nn.Module):
    """One INR layer: FMM-modulated 1x1 linear map, bias, leaky ReLU(0.2) * sqrt(2).

    The bias is a shared parameter (release) or, with ``predict_bias``, predicted from w (older variants).
    """

    gain = LRELU_GAIN  # of its activation: the next layer's weight may fold it in (see inrgan.accel)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        rank: int = 10,
        modulation: str = "linear",
        demodulate: bool = True,
        predict_bias: bool = False,
        instance_norm: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.rank = in_channels, out_channels, rank
        self.modulation, self.demodulate = modulation, demodulate
        self.predict_bias, self.instance_norm = predict_bias, instance_norm
        n_styles = (in_channels + out_channels) * rank + (out_channels if predict_bias else 0)
        self.affine = EqualLinear(w_dim, n_styles, bias_init=0.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels))
        if not predict_bias:
            self.bias = nn.Parameter(torch.zeros(out_channels))
        # Without demodulation the weight needs the usual 1/sqrt(fan_in) scale to keep unit variance.
        self.weight_gain = 1.0 if demodulate else 1.0 / math.sqrt(in_channels)

    @property
    def n_mod(self) -> int:
        """Styles that modulate the weight (A and B); a predicted bias follows them."""
        return (self.in_channels + self.out_channels) * self.rank

    def shared_weight(self) -> Tensor:
        """W_s with its gain, [c_out, c_in]."""
        return self.weight if self.weight_gain == 1 else self.weight * self.weight_gain

    def bias_of(self, styles: Tensor) -> Tensor:
        """The bias [B or 1, c_out]: predicted (the styles after A and B) or shared."""
        return styles[:, self.n_mod :] if self.predict_bias else self.bias.unsqueeze(0)

    def inr(self, w: Tensor, styles: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """This layer of a sample's INR from w [B, w_dim] (or its affine head's output ``styles``):
        weight [B, c_out, c_in] and bias [B or 1, c_out]."""
        styles = self.affine(w) if styles is None else styles  # [B, n_styles]
        weight = fmm_weight(self.shared_weight(), styles[:, : self.n_mod], self.rank, self.modulation,
                            self.demodulate)
        return weight, self.bias_of(styles)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        # x: [B, c_in, H, W], w: [B, w_dim] -> [B, c_out, H, W]
        return fmm_layer(x, *self.inr(w), normalize=self.instance_norm)

    def extra_repr(self) -> str:
        return f"in={self.in_channels}, out={self.out_channels}, rank={self.rank}"


class ToRGB(nn.Module):
    """StyleGAN2 ToRGB: a modulated 1x1 map without demodulation, plus a bias; linear output."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, img_channels
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def inr(self, w: Tensor, styles: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The ToRGB of a sample's INR from w [B, w_dim] (or its affine head's output ``styles``): weight
        [B, img_channels, C] and bias [1, img_channels]."""
        styles = (self.affine(w) if styles is None else styles) * self.weight_gain  # [B, C]
        return modulate(self.weight, styles), self.bias.unsqueeze(0)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        # x: [B, C, H, W], w: [B, w_dim] -> [B, img_channels, H, W]
        return to_rgb(x, *self.inr(w))
