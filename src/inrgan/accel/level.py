"""The fast evaluation of one grid level on a block of cells, channels-last: the one place it is written.

Activations are [B, n, C] over n = rows * w cells and maps [B, h, w, C]: every per-pixel map is then one
matrix product, the bias broadcasts along rows, and nearest upsampling is a broadcast over contiguous
runs of C channels. A level's first layer is split (see :mod:`.inr`): its part acting on the previous
level's features was applied there, on the coarse cells (the "coarse product", bias included), and is
upsampled here, so nothing is concatenated or upsampled at the fine level.

:func:`evaluate_level` takes its matrix products from a kernel set: :class:`PlainKernels` (torch's batched
products, autograd or in place) or :class:`OneDNNKernels` (oneDNN's fused linear + bias + activation, one
sample at a time, CPU inference); :func:`level_chunk` picks one, falling back to the plain one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.layers import LRELU_GAIN, LRELU_SLOPE, STD_EPS, spatial_std_normalize
from ..models.synthesis import upsample_cells
from . import onednn
from .inr import BlockINR, INRLayer, NativeFMMWeight

# Fewer cells than this per sample: one batched product per layer beats per-sample oneDNN calls, which
# are too small to keep two threads busy. With one thread (a sample-parallel worker) there are no threads
# to keep busy, and from 256 cells on the fused layer is 5% to 10% faster than a product, a bias and an
# activation.
ONEDNN_MIN_CELLS = 2048
ONEDNN_MIN_CELLS_ONE_THREAD = 256

Coarse = tuple[Tensor | None, int, int, int]  # the previous level's product [B, h', w', c], up, crop_y, crop_x


def upsample_maps(p: Tensor, up: int, crop_y: int, crop_x: int, h: int, w: int, mode: str) -> Tensor:
    """:func:`~inrgan.models.synthesis.upsample_cells` for channels-last maps: [B, h', w', C] -> [B, h, w, C]."""
    return upsample_cells(p.permute(0, 3, 1, 2), up, crop_y, crop_x, h, w, mode).permute(0, 2, 3, 1)


def add_upsampled(z: Tensor, p: Tensor, up: int, crop_y: int, crop_x: int, inplace: bool) -> Tensor:
    """z [B, h, w, C] + nearest-upsample(p [B, h', w', C]) by ``up``, cropped at (crop_y, crop_x)."""
    b, h, w, c = z.shape
    p = p.to(z.dtype)
    if up == 1 and crop_y == 0 and crop_x == 0 and p.shape[1:3] == (h, w):
        return z.add_(p) if inplace else z + p
    if crop_y == 0 and crop_x == 0 and p.shape[1] * up == h and p.shape[2] * up == w:
        zv = z.view(b, h // up, up, w // up, up, c)  # broadcast instead of materialising the upsampled p
        pv = p[:, :, None, :, None, :]
        return (zv.add_(pv) if inplace else zv + pv).view(b, h, w, c)
    p = upsample_maps(p, up, crop_y, crop_x, h, w, "nearest")
    return z.add_(p) if inplace else z + p


class PlainKernels:
    """torch's batched products on [B, n, C]: bias and activation in place where ``inplace`` (no autograd)."""

    def __init__(self, inplace: bool) -> None:
        self.inplace = inplace

    def lrelu(self, z: Tensor) -> Tensor:
        return F.leaky_relu_(z, LRELU_SLOPE) if self.inplace else F.leaky_relu(z, LRELU_SLOPE)

    def linear(self, layer: INRLayer, a: Tensor, act: bool) -> Tensor:
        """a [B, n, c_in] x layer.weight^T + bias [-> leaky ReLU] -> [B, n, c_out]."""
        bias = layer.bias.to(a.dtype)
        if isinstance(layer.weight, NativeFMMWeight):  # one sample at a time, its weight made here
            z = a.new_empty(a.shape[0], a.shape[1], layer.weight.shape[1])
            for b in range(a.shape[0]):
                torch.addmm(bias[b if bias.shape[0] > 1 else 0], a[b], layer.weight[b].to(a.dtype).t(), out=z[b])
        else:
            z = torch.baddbmm(bias[:, None, :], a, layer.weight.to(a.dtype).transpose(1, 2))
        return self.lrelu(z) if act else z

    def coords(self, layer: INRLayer, e: Tensor, with_bias: bool, act: bool) -> Tensor:
        """The coordinate part: e [1 or B, n, C_emb] x layer.emb_weight^T [+ bias -> leaky ReLU] -> [B, n, c_out].
        Shared features are broadcast along the batch (a stride-0 view), never copied per sample."""
        weight = layer.emb_weight
        z = torch.bmm(e.to(weight.dtype).expand(weight.shape[0], -1, -1), weight.transpose(1, 2))
        if with_bias:
            bias = layer.bias[:, None, :].to(z.dtype)
            z = z.add_(bias) if self.inplace else z + bias
        return self.lrelu(z) if act else z


class OneDNNKernels(PlainKernels):
    """oneDNN's fused layers for sample ``b`` of the batch's parameters (activations [1, n, C]), fp32 CPU inference."""

    def __init__(self, op, b: int) -> None:
        super().__init__(inplace=True)
        self.op, self.b = op, b

    def _fused(self, x: Tensor, weight: Tensor, bias: Tensor | None, act: bool) -> Tensor:
        if act:
            return self.op(x, weight, bias, "leaky_relu", [LRELU_SLOPE], "")[None]
        return self.op(x, weight, bias, "none", [], "")[None]

    def _bias(self, layer: INRLayer) -> Tensor:
        return layer.bias[self.b if layer.bias.shape[0] > 1 else 0]

    def linear(self, layer: INRLayer, a: Tensor, act: bool) -> Tensor:
        return self._fused(a[0], layer.weight[self.b], self._bias(layer), act)

    def coords(self, layer: INRLayer, e: Tensor, with_bias: bool, act: bool) -> Tensor:
        return self._fused(e[0], layer.emb_weight[self.b], self._bias(layer) if with_bias else None, act)


def evaluate_level(blocks: list[BlockINR], e: Tensor, rows: int, w: int, prev: Coarse, prev_img: Tensor | None,
                   nxt: INRLayer | None, kernels: PlainKernels) -> tuple[Tensor, Tensor | None]:
    """Every layer of one level on a block of cells -> (image, next level's coarse product), [B, rows, w, .].

    Args:
        blocks: the level's blocks.
        e: coordinate features [1 or B, rows * w, C_emb].
        prev: the previous level's coarse product [B, rows', w', c] (bias included), the upsampling factor
            and the crop of these cells in it; None on the first level.
        prev_img: the previous level's image, upsampled like ``prev``.
        nxt: the next level's first layer (its part acting on this level's features).
    """
    p, up, crop_y, crop_x = prev
    inplace = kernels.inplace
    a = img = None  # activation before its gain [B, n, c]; image [B, n, img_c]
    for block in blocks:
        for layer in block.layers:
            if layer.emb_weight is None:
                if layer.normalize:  # x / (std(x) + eps) with x = sqrt(2) a: the chunk is a whole level
                    a = spatial_std_normalize(a, dim=1, eps=STD_EPS / LRELU_GAIN)
                a = kernels.linear(layer, a, act=True)
            elif p is None:
                a = kernels.coords(layer, e, with_bias=True, act=True)
            else:  # the coarse product already holds the bias
                z = kernels.coords(layer, e, with_bias=False, act=False)
                z = add_upsampled(z.view(z.shape[0], rows, w, -1), p, up, crop_y, crop_x, inplace)
                a = kernels.lrelu(z.view(z.shape[0], rows * w, -1))
        rgb = kernels.linear(block.torgb, a, act=False)
        img = rgb if img is None else (img.add_(rgb) if inplace else img + rgb)
    img = img.view(img.shape[0], rows, w, -1)
    if prev_img is not None:
        img = add_upsampled(img, prev_img, up, crop_y, crop_x, inplace)
    coarse = kernels.linear(nxt, a, act=False).view(a.shape[0], rows, w, -1) if nxt is not None else None
    return img, coarse


def _per_sample(op, blocks: list[BlockINR], e: Tensor, rows: int, w: int, prev: Coarse, prev_img: Tensor | None,
                nxt: INRLayer | None) -> tuple[Tensor, Tensor | None]:
    """:func:`evaluate_level` one sample at a time, each layer one fused oneDNN call (the kernels pick the
    sample's parameters, so nothing is sliced per sample but the maps)."""
    p, up, crop_y, crop_x = prev
    imgs, coarses = [], []
    for b in range(blocks[0].torgb.weight.shape[0]):
        img, coarse = evaluate_level(blocks, e[b : b + 1] if e.shape[0] > 1 else e, rows, w,
                                     (None if p is None else p[b : b + 1], up, crop_y, crop_x),
                                     None if prev_img is None else prev_img[b : b + 1], nxt, OneDNNKernels(op, b))
        imgs.append(img)
        if coarse is not None:
            coarses.append(coarse)
    return torch.cat(imgs), (torch.cat(coarses) if coarses else None)


def level_chunk(blocks: list[BlockINR], emb: Tensor, prev: Coarse, prev_img: Tensor | None, nxt: INRLayer | None,
                inplace: bool, use_onednn: bool) -> tuple[Tensor, Tensor | None]:
    """:func:`evaluate_level` on the cells of ``emb`` [1 or B, rows, w, C_emb], with the kernels that apply.

    The fused kernels round differently from the plain ones: they serve explicit inference (no_grad or
    inference_mode) only, so a model gives bit-identical outputs whether or not it requires grad.
    """
    _, rows, w, _ = emb.shape
    e = emb.reshape(emb.shape[0], rows * w, -1)  # [1 or B, n, C_emb]
    min_cells = ONEDNN_MIN_CELLS_ONE_THREAD if torch.get_num_threads() == 1 else ONEDNN_MIN_CELLS
    fused = (use_onednn and inplace and not torch.is_grad_enabled() and e.device.type == "cpu"
             and e.dtype == torch.float32 and rows * w >= min_cells and not torch.compiler.is_compiling()
             and not torch.is_autocast_enabled("cpu"))
    op = onednn.linear_pointwise() if fused else None
    if op is not None:
        try:
            return _per_sample(op, blocks, e, rows, w, prev, prev_img, nxt)
        except RuntimeError as err:  # a private op: a build or shape it does not take
            onednn.disable(err)
    return evaluate_level(blocks, e, rows, w, prev, prev_img, nxt, PlainKernels(inplace))
