"""A sample's INR in the form the fast render evaluates: gains folded in, a level's first layer split.

:func:`prepare` makes it from ws and :func:`from_params` from the model's :data:`~inrgan.models.synthesis.INRParams`;
both follow the model's one walk, ``SynthesisNetwork.inr_layers``, and the model's formulas (the affine
heads, :func:`~inrgan.models.fmm.fmm_weight`), or the C kernels of :mod:`.native` that compute the same.
Two exact rewrites make the form:

- the leaky ReLU's gain sqrt(2) is folded into the next linear map's per-sample weights (a -bil layer,
  which divides its input by its spatial std, takes the pre-gain activation with eps / sqrt(2));
- a level's first layer is cut into the part acting on the previous level's features and the part
  acting on the coordinate features (see :mod:`.render`).
"""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..models.fmm import DEMOD_EPS, fmm_factors, fmm_weight
from ..models.layers import LRELU_GAIN
from ..models.synthesis import INRLayerSpec, INRParams
from . import native


class NativeFMMWeight:
    """FMM weights [B, c_out, c_in] (times a gain), made one sample at a time where a render uses them.

    Made ahead for a whole batch, a render's weights are 10.6 MB per sample at 256^2: written to memory once
    and read back once, at memory speed. Made by :mod:`.native`'s kernel just before a layer runs on a
    sample, the weight (1 MB at most) is read back from cache; a render in chunks makes it once per chunk,
    at r = 10 multiply-adds per weight against a chunk's 2048 per weight. Indexing gives sample ``i``'s
    weight [c_out, c_in], equal to ``fmm_weight(...)[i] * gain`` up to rounding (and made by it where the
    kernel call fails).
    """

    def __init__(self, lib, shared: Tensor, styles: Tensor, rank: int, demodulate: bool, gain: float) -> None:
        c_out, c_in = shared.shape
        a, b = fmm_factors(styles, c_out, c_in, rank)  # [B, c_out, r], [B, r, c_in]
        self.lib, self.shared, self.a, self.b = lib, shared.contiguous(), a.contiguous(), b.contiguous()
        self.rank, self.demodulate, self.gain = rank, demodulate, gain
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
        if native.library() is not None:
            try:
                return native.fmm_weight(self.lib, self.shared, a, b, 1 / math.sqrt(self.rank), self.demodulate,
                                         DEMOD_EPS, self.shape[2], (self.gain, 1.0))[0]
            except native.CALL_ERRORS as err:
                native.disable(err)
        styles = torch.cat([a.flatten(1), b.flatten(1)], dim=1)
        return fmm_weight(self.shared, styles, self.rank, demodulate=self.demodulate).mul_(self.gain)

    def tensors(self) -> list[Tensor]:
        return [self.shared, self.a, self.b]


@dataclass
class INRLayer:
    """One per-pixel linear map of the generated INR, for a batch, as the fast path applies it.

    ``weight`` acts on the previous activation *before* its sqrt(2) gain (the gain is folded in), or on
    the spatially normalised activation when ``normalize``; ``emb_weight`` acts on the coordinate
    features. Both are contiguous (oneDNN is very slow on strided weights).
    """

    weight: Tensor | NativeFMMWeight | None  # [B, c_out, c_in]; made per sample when used (inference, native)
    bias: Tensor  # [B or 1, c_out]
    emb_weight: Tensor | None = None  # [B, c_out, c_emb]
    normalize: bool = False  # -bil: divide the input by its spatial std first

    def select(self, b0: int, b1: int) -> INRLayer:
        """Samples ``b0:b1`` (a bias shared by the batch stays shared)."""
        return INRLayer(None if self.weight is None else self.weight[b0:b1],
                        self.bias if self.bias.shape[0] == 1 else self.bias[b0:b1],
                        None if self.emb_weight is None else self.emb_weight[b0:b1], self.normalize)


@dataclass
class BlockINR:
    layers: list[INRLayer] = field(default_factory=list)
    torgb: INRLayer | None = None
    basis: Tensor | None = None  # a level's first block: its predicted coordinate basis [B, n, 3], if any

    def select(self, b0: int, b1: int) -> BlockINR:
        """Samples ``b0:b1``."""
        return BlockINR([layer.select(b0, b1) for layer in self.layers], self.torgb.select(b0, b1),
                        None if self.basis is None else self.basis[b0:b1])

    def tensors(self) -> list[Tensor]:
        layers = [*self.layers, self.torgb]
        out = [self.basis] if self.basis is not None else []
        for t in (t for layer in layers for t in (layer.weight, layer.bias, layer.emb_weight)):
            out += t.tensors() if isinstance(t, NativeFMMWeight) else [] if t is None else [t]
        return out


# The model's walk (``SynthesisNetwork.inr_layers``) per model, made once: the structure of a network does not
# change after it is built, and a render would otherwise walk it three times per call.
_walks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def layer_specs(synthesis) -> list[INRLayerSpec]:
    """``synthesis.inr_layers()``, kept for the model's lifetime."""
    specs = _walks.get(synthesis)
    if specs is None:
        specs = _walks[synthesis] = synthesis.inr_layers()
    return specs


def _scaled(weight: Tensor, gain: float, inplace: bool) -> Tensor:
    """weight * gain, contiguous; in place where ``inplace`` and autograd allow it."""
    if inplace and weight.is_contiguous() and not (torch.is_grad_enabled() and weight.requires_grad):
        return weight.mul_(gain)
    return (weight * gain).contiguous()


def fold(spec: INRLayerSpec, weight: Tensor, bias: Tensor, inplace: bool = False) -> INRLayer:
    """A layer of the model's INR, weight [B, c_out, c_in] and bias, in the fast form (``inplace``: the
    weight is the caller's to scale)."""
    if spec.is_torgb:
        return INRLayer(_scaled(weight, LRELU_GAIN, inplace), bias)
    if spec.starts_level:
        n = spec.prev_channels  # input channels from the previous level; the rest are coordinates
        x_part = (weight[:, :, :n] * LRELU_GAIN).contiguous() if n else None
        return INRLayer(x_part, bias, emb_weight=weight[:, :, n:].contiguous())
    if spec.module.instance_norm:
        return INRLayer(weight.contiguous(), bias, normalize=True)
    return INRLayer(_scaled(weight, LRELU_GAIN, inplace), bias)


def _native_layer(spec: INRLayerSpec, w: Tensor, styles: Tensor | None, lib, lazy: bool) -> INRLayer | None:
    """An FMM layer's fast form made by the C kernel in one pass (or lazily, per sample); None where the
    kernel does not apply (not fp32 CPU inference, another modulation, a rank above its bound) or failed."""
    m = spec.module
    if spec.is_torgb or m.modulation != "linear" or m.rank > native.MAX_RANK:
        return None
    styles = m.affine(w) if styles is None else styles  # [B, n_styles]
    shared, mod, bias = m.shared_weight(), styles[:, : m.n_mod], m.bias_of(styles)
    if not native.applies(shared, mod) or native.library() is None:
        return None
    gain = 1.0 if m.instance_norm else LRELU_GAIN
    if lazy and not spec.starts_level:
        return INRLayer(NativeFMMWeight(lib, shared, mod, m.rank, m.demodulate, gain), bias, normalize=m.instance_norm)
    a, b = fmm_factors(mod, m.out_channels, m.in_channels, m.rank)
    if spec.prev_channels:  # cut: the part on the previous level's features takes the gain
        split, gains = spec.prev_channels, (LRELU_GAIN, 1.0)
    else:  # whole: the network's first layer (coordinates only) or a plain layer
        split, gains = m.in_channels, (1.0 if spec.starts_level else gain, 1.0)
    try:
        first, second = native.fmm_weight(lib, shared, a, b, 1 / math.sqrt(m.rank), m.demodulate, DEMOD_EPS, split,
                                          gains)
    except native.CALL_ERRORS as err:
        native.disable(err)
        return None
    if spec.prev_channels:
        return INRLayer(first, bias, emb_weight=second)
    if spec.starts_level:
        return INRLayer(None, bias, emb_weight=first)
    return INRLayer(first, bias, normalize=m.instance_norm)


def _blocks(synthesis, layers: Iterable[tuple[INRLayerSpec, INRLayer, Tensor | None]]) -> list[BlockINR]:
    """Layers in ``inr_layers`` order, with the predicted basis of the levels they start, gathered by block."""
    blocks = [BlockINR() for _ in synthesis.blocks]
    for spec, layer, basis in layers:
        block = blocks[spec.block]
        if spec.is_torgb:
            block.torgb = layer
        else:
            block.layers.append(layer)
        if basis is not None:
            block.basis = basis
    return blocks


def prepare(synthesis, ws: Tensor, styles: list[Tensor] | None = None, lib=None, lazy: bool = False,
            wait: Callable[[int], None] | None = None) -> list[BlockINR]:
    """The fast form of the INR that ws [B, num_ws, w_dim] generate, per block.

    Args:
        styles: every layer's affine head output [B, n], in ``inr_layers`` order, where the caller has them.
        lib: the C kernels (:func:`.native.library`), to make the FMM weights with; None: torch.
        lazy: with ``lib``, the layers after a level's first are :class:`NativeFMMWeight`, made when used.
        wait: called with k before the k-th layer's styles are read (the heads may still be running).
    """

    def layers():
        for k, spec in enumerate(layer_specs(synthesis)):
            if wait is not None:
                wait(k + 1)
            w, s = ws[:, spec.w_index], None if styles is None else styles[k]
            layer = _native_layer(spec, w, s, lib, lazy) if lib is not None else None
            if layer is None:
                layer = fold(spec, *spec.module.inr(w, s), inplace=True)
            embedding = synthesis.embeddings[spec.level]
            yield spec, layer, embedding.predicted_basis(w) if spec.starts_level and embedding.depends_on_w else None

    return _blocks(synthesis, layers())


def from_params(synthesis, params: INRParams) -> list[BlockINR]:
    """The fast form of given INR parameters (:meth:`~inrgan.models.synthesis.SynthesisNetwork.inr_parameters`)."""
    return _blocks(synthesis, ((spec, fold(spec, params[f"{spec.path}.weight"], params[f"{spec.path}.bias"]),
                                params.get(f"embeddings.{spec.level}.basis") if spec.starts_level else None)
                               for spec in synthesis.inr_layers()))
