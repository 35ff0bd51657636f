"""Factorized Multiplicative Modulation (FMM), the paper's hypernetwork layer.

Each INR layer owns a shared weight W_s [c_out, c_in]. From the latent w its affine head predicts two
low-rank factors A [c_out, r] and B [r, c_in]; the per-sample weight is W = W_s * (1 + A B / sqrt(r)),
optionally row-wise L2-normalised ("demodulated"). StyleGAN2's modulation is the rank-1 special case.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from . import native
from .layers import EqualLinear, lrelu_gain

DEMOD_EPS = 1e-8


def affine_styles_t(affine: EqualLinear, w: Tensor, r0: int = 0, r1: int | None = None) -> Tensor:
    """Rows ``r0:r1`` of ``affine(w)`` transposed, [r1 - r0, B], for a linear EqualLinear.

    The equalized-lr gain is applied to the result: the affine heads hold most of G's parameters (59.4M at
    256^2), and scaling the [n, w_dim] weight, as ``EqualLinear.forward`` does, would copy all of them on
    every call. Equal to it up to rounding. Row ranges let threads share one pass over the weight.
    """
    if affine.activation != "linear":
        raise ValueError("affine_styles is for linear heads")
    r1 = affine.weight.shape[0] if r1 is None else r1
    if affine.bias is None:
        bias = w.new_zeros(())
    else:
        bias = affine.bias[r0:r1, None]
        bias = bias if affine.bias_gain == 1 else bias * affine.bias_gain
    # [n, w_dim] x [w_dim, B] reads the weight row by row, about twice as fast as w x weight^T on a CPU.
    return torch.addmm(bias, affine.weight[r0:r1], w.t(), alpha=affine.weight_gain)


def affine_styles(affine: EqualLinear, w: Tensor) -> Tensor:
    """``affine(w)`` [B, n] for a linear EqualLinear, the gain applied to the output (:func:`affine_styles_t`)."""
    return affine_styles_t(affine, w).t().contiguous()


def fmm_factors(styles: Tensor, c_out: int, c_in: int, rank: int) -> tuple[Tensor, Tensor]:
    """The low-rank factors in the styles [B, (c_out + c_in) * r]: A [B, c_out, r] (first) and B [B, r, c_in]."""
    batch = styles.shape[0]
    return styles[:, : c_out * rank].reshape(batch, c_out, rank), styles[:, c_out * rank :].reshape(batch, rank, c_in)


def fmm_weight(
    weight: Tensor,
    styles: Tensor,
    rank: int,
    modulation: str = "linear",
    demodulate: bool = True,
) -> Tensor:
    """Per-sample FMM weights.

    Args:
        weight: shared weight W_s, [c_out, c_in].
        styles: affine output, [B, (c_out + c_in) * rank]: A row-major first, then B.
        rank: factorisation rank r.
        modulation: "linear" (1 + M), "sigmoid" (2 sigmoid(M)) or "tanh" (1 + tanh(M)).
        demodulate: divide every output row by its L2 norm (eps 1e-8).

    Returns:
        W: [B, c_out, c_in].
    """
    c_out, c_in = weight.shape
    if styles.shape[1] != (c_out + c_in) * rank:
        raise ValueError(f"styles have {styles.shape[1]} entries, expected (c_out + c_in) * rank = "
                         f"{(c_out + c_in) * rank}")
    a, b = fmm_factors(styles, c_out, c_in, rank)  # [B, c_out, r], [B, r, c_in]
    m = torch.bmm(a, b) / math.sqrt(rank)  # [B, c_out, c_in], unit variance for unit styles
    if modulation == "linear":
        scale = 1.0 + m
    elif modulation == "sigmoid":
        scale = 2.0 * torch.sigmoid(m)
    elif modulation == "tanh":
        scale = 1.0 + torch.tanh(m)
    else:
        raise ValueError(f"unknown FMM modulation {modulation!r}")
    w = weight.unsqueeze(0) * scale  # [B, c_out, c_in]
    if demodulate:
        w = w / (w.norm(dim=2, keepdim=True) + DEMOD_EPS)
    return w


def fmm_weight_fast(
    weight: Tensor,
    styles: Tensor,
    rank: int,
    modulation: str = "linear",
    demodulate: bool = True,
    gain: float = 1.0,
    use_native: bool = False,
) -> Tensor:
    """:func:`fmm_weight` times ``gain``, in fewer passes over the [B, c_out, c_in] result (one pass, by the
    C kernel of :mod:`.native`, with ``use_native`` where it applies)."""
    if modulation != "linear":
        return fmm_weight(weight, styles, rank, modulation, demodulate) * gain
    c_out, c_in = weight.shape
    a, b = fmm_factors(styles, c_out, c_in, rank)  # [B, c_out, r], [B, r, c_in]
    lib = _native_library(use_native, rank, weight, styles)
    if lib is not None:
        return native.fmm_weight(lib, weight, a, b, 1 / math.sqrt(rank), demodulate, DEMOD_EPS, c_in, (gain, 1.0))[0]
    w = torch.bmm(a, b)  # [B, c_out, c_in]
    if torch.is_grad_enabled() and (styles.requires_grad or weight.requires_grad):
        w = torch.addcmul(weight, w, weight, value=1 / math.sqrt(rank))  # W_s (1 + A B / sqrt r)
        if demodulate:
            return w * (gain / (torch.linalg.vector_norm(w, dim=2, keepdim=True) + DEMOD_EPS))
        return w * gain if gain != 1 else w
    # The same, in place: no fresh [B, c_out, c_in] buffers to fault in.
    w = torch.addcmul(weight, w, weight, value=1 / math.sqrt(rank), out=w)
    if demodulate:
        return w.mul_(gain / (torch.linalg.vector_norm(w, dim=2, keepdim=True) + DEMOD_EPS))
    return w.mul_(gain) if gain != 1 else w


def fmm_weight_split(
    weight: Tensor,
    styles: Tensor,
    rank: int,
    split: int,
    gains: tuple[float, float],
    modulation: str = "linear",
    demodulate: bool = True,
    use_native: bool = False,
) -> tuple[Tensor, Tensor]:
    """:func:`fmm_weight` cut at input channel ``split`` into two contiguous parts, times ``gains``.

    Returns ([B, c_out, split] * gains[0], [B, c_out, c_in - split] * gains[1]). The parts are made
    directly (no full weight to cut and copy), in place without autograd, with the same operations either
    way, so a model gives bit-identical outputs whether or not it requires grad (the C kernel of
    :mod:`.native`, taken with ``use_native`` where it applies, agrees to rounding). The demodulation uses
    the norm of both parts.
    """
    c_out, c_in = weight.shape
    if modulation != "linear":
        w = fmm_weight_fast(weight, styles, rank, modulation, demodulate)
        return (w[:, :, :split] * gains[0]).contiguous(), (w[:, :, split:] * gains[1]).contiguous()
    lib = _native_library(use_native, rank, weight, styles) if 0 < split < c_in else None
    if lib is not None:
        a, b = fmm_factors(styles, c_out, c_in, rank)
        return native.fmm_weight(lib, weight, a, b, 1 / math.sqrt(rank), demodulate, DEMOD_EPS, split, gains)
    inplace = not (torch.is_grad_enabled() and (styles.requires_grad or weight.requires_grad))
    a, b = fmm_factors(styles, c_out, c_in, rank)  # [B, c_out, r], [B, r, c_in]
    parts = []
    for cols in (slice(0, split), slice(split, c_in)):
        m = torch.bmm(a, b[:, :, cols])  # [B, c_out, n], contiguous
        shared = weight[:, cols]
        # W_s (1 + A B / sqrt r)
        parts.append(torch.addcmul(shared, m, shared, value=1 / math.sqrt(rank), out=m if inplace else None))
    scales: list[Tensor | float] = list(gains)
    if demodulate:
        sq = torch.linalg.vector_norm(parts[0], dim=2, keepdim=True).square()
        sq = sq + torch.linalg.vector_norm(parts[1], dim=2, keepdim=True).square()
        d = 1 / (sq.sqrt() + DEMOD_EPS)  # [B, c_out, 1]
        scales = [d * g for g in gains]
    return tuple(p.mul_(s) if inplace else p * s for p, s in zip(parts, scales, strict=True))


def _native_library(use_native: bool, rank: int, weight: Tensor, styles: Tensor):
    """The native kernels where asked for and they apply to these operands (:func:`.native.applies`), else None.

    The kernels are single-threaded: callers ask for them where torch would run on one thread too."""
    if not use_native or rank > native.MAX_RANK or not native.applies(weight, styles):
        return None
    return native.library()


class NativeFMMWeight:
    """FMM weights [B, c_out, c_in] (times a gain), made one sample at a time where a render uses them.

    Made ahead for a whole batch, a render's weights are 10.6 MB per sample at 256^2: written to memory once
    and read back once, at memory speed. Made by :mod:`.native`'s kernel just before a layer runs on a
    sample, the weight (1 MB at most) is read back from cache; a render in chunks makes it once per chunk,
    at r = 10 multiply-adds per weight against a chunk's 2048 per weight. Indexing gives sample ``i``'s
    weight [c_out, c_in], equal to ``fmm_weight_fast(...)[i]`` up to rounding.
    """

    def __init__(self, lib, shared: Tensor, styles: Tensor, rank: int, demodulate: bool, gain: float) -> None:
        c_out, c_in = shared.shape
        a, b = fmm_factors(styles, c_out, c_in, rank)  # [B, c_out, r], [B, r, c_in]
        self.lib, self.shared, self.a, self.b = lib, shared.contiguous(), a.contiguous(), b.contiguous()
        self.scale, self.demodulate, self.gain = 1 / math.sqrt(rank), demodulate, gain
        self.shape = torch.Size((styles.shape[0], c_out, c_in))
        self.dtype, self.device = shared.dtype, shared.device

    def __getitem__(self, i: int | slice) -> Tensor | NativeFMMWeight:
        """Sample ``i``'s weight [c_out, c_in], made now; or, for a slice, the weights of those samples."""
        if isinstance(i, slice):
            part = copy.copy(self)
            part.a, part.b = self.a[i], self.b[i]
            part.shape = torch.Size((part.a.shape[0], *self.shape[1:]))
            return part
        return self._make(self.a[i : i + 1], self.b[i : i + 1])[0]  # [c_out, c_in]

    def materialize(self) -> Tensor:
        """All the samples' weights, [B, c_out, c_in]."""
        return self._make(self.a, self.b)

    def _make(self, a: Tensor, b: Tensor) -> Tensor:
        return native.fmm_weight(self.lib, self.shared, a, b, self.scale, self.demodulate, DEMOD_EPS,
                                 self.shape[2], (self.gain, 1.0))[0]

    def tensors(self) -> list[Tensor]:
        return [self.shared, self.a, self.b]


def fmm_linear(x: Tensor, w: Tensor) -> Tensor:
    """Apply per-sample weights to every pixel: x [B, c_in, H, W], w [B, c_out, c_in] -> [B, c_out, H, W]."""
    batch, c_in, h, wd = x.shape
    out = torch.bmm(w.to(x.dtype), x.reshape(batch, c_in, h * wd))  # [B, c_out, H*W]
    return out.reshape(batch, w.shape[1], h, wd)


class FMMLayer(nn.Module):
    """One INR layer: FMM-modulated 1x1 linear map, bias, leaky ReLU(0.2) * sqrt(2).

    The bias is a shared parameter (release) or, with ``predict_bias``, predicted from w (older variants).
    """

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

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        # x: [B, c_in, H, W], w: [B, w_dim] -> [B, c_out, H, W]
        styles = self.affine(w)  # [B, n_styles]
        n_mod = (self.in_channels + self.out_channels) * self.rank
        weight = fmm_weight(self.weight * self.weight_gain, styles[:, :n_mod], self.rank,
                            self.modulation, self.demodulate)
        if self.instance_norm:
            # -bil variant: divide by the spatial std (no mean subtraction), as the release does.
            x = x / (x.std(dim=(2, 3), keepdim=True) + 1e-8)
        x = fmm_linear(x, weight)
        bias = styles[:, n_mod:] if self.predict_bias else self.bias.unsqueeze(0)  # [B or 1, c_out]
        return lrelu_gain(x + bias.to(x.dtype)[:, :, None, None])

    def _predicted(self, w: Tensor, styles: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """From w [B, w_dim]: the shared weight with its gain, the modulation styles, and the bias [B or 1, c_out].

        ``styles`` [B, n_styles] is ``affine_styles(self.affine, w)`` where the caller computed it already.
        """
        if styles is None:
            styles = affine_styles(self.affine, w)  # [B, n_styles]
        n_mod = (self.in_channels + self.out_channels) * self.rank
        shared = self.weight if self.weight_gain == 1 else self.weight * self.weight_gain
        bias = styles[:, n_mod:] if self.predict_bias else self.bias.unsqueeze(0)
        return shared, styles[:, :n_mod], bias

    def inr_params(self, w: Tensor, gain: float = 1.0, styles: Tensor | None = None, use_native: bool = False,
                   lazy: bool = False) -> tuple[Tensor | NativeFMMWeight, Tensor]:
        """The INR parameters predicted from w [B, w_dim] (or from its precomputed ``styles``): weight
        [B, c_out, c_in] (times ``gain``) and bias [B or 1, c_out]. ``use_native``: see :func:`fmm_weight_fast`;
        with ``lazy`` too, the weight is a :class:`NativeFMMWeight` where the kernel applies."""
        shared, styles, bias = self._predicted(w, styles)
        if lazy and self.modulation == "linear":
            lib = _native_library(use_native, self.rank, shared, styles)
            if lib is not None:
                return NativeFMMWeight(lib, shared, styles, self.rank, self.demodulate, gain), bias
        weight = fmm_weight_fast(shared, styles, self.rank, self.modulation, self.demodulate, gain, use_native)
        return weight, bias

    def inr_params_split(self, w: Tensor, split: int, gains: tuple[float, float], styles: Tensor | None = None,
                         use_native: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`inr_params` with the weight cut at input channel ``split``: (weight[:, :, :split] * gains[0],
        weight[:, :, split:] * gains[1], bias), both parts contiguous."""
        shared, styles, bias = self._predicted(w, styles)
        first, second = fmm_weight_split(shared, styles, self.rank, split, gains, self.modulation, self.demodulate,
                                         use_native)
        return first, second, bias

    def extra_repr(self) -> str:
        return f"in={self.in_channels}, out={self.out_channels}, rank={self.rank}"


class ToRGB(nn.Module):
    """StyleGAN2 ToRGB: a modulated 1x1 map without demodulation, plus a bias; linear output."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        # x: [B, C, H, W], w: [B, w_dim] -> [B, img_channels, H, W]
        styles = self.affine(w) * self.weight_gain  # [B, C]
        weight = self.weight.unsqueeze(0) * styles.unsqueeze(1)  # [B, img_channels, C]
        return fmm_linear(x, weight) + self.bias.to(x.dtype)[None, :, None, None]

    def inr_params(self, w: Tensor, styles: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The ToRGB parameters predicted from w [B, w_dim] (or from its precomputed ``styles``, the affine
        head's output): weight [B, img_channels, C], bias [1, img_channels]."""
        if styles is None:
            styles = affine_styles(self.affine, w)
        styles = styles * self.weight_gain  # [B, C]
        return self.weight.unsqueeze(0) * styles.unsqueeze(1), self.bias.unsqueeze(0)
