"""Single-scale per-pixel INRs: the ablation ladder's first rungs and CIPS, in one form.

Every output pixel is computed from its own coordinate features by an MLP whose per-sample parameters,
a weight [B, c_out, c_in] and a bias [B, c_out] per layer, come from w in one of three ways (the family):

- "latent-inr" (the paper's latent-conditioned INR): shared weights, and w concatenated to the first
  layer's input, [features, w]. W [f; w] = W_f f + W_w w, so w's part is that layer's per-sample bias: the
  same function, written as the sample's INR.
- "hyper-inr" (+ hypernetwork): a linear head per layer generates the layer's whole weight and bias from w.
- "cips" (CIPS, Anokhin et al. 2021): 1x1 layers modulated by a style from w and demodulated, as StyleGAN2's;
  a modulated ToRGB (not demodulated).

Hidden layers are lrelu(W x + b) sqrt(2) (:func:`~inrgan.models.fmm.fmm_layer`); a ToRGB follows the layers
of ``cfg.torgb_layers`` and their outputs are summed (:func:`~inrgan.models.fmm.to_rgb`). The features are
the raw (x, y) coordinates or a :class:`~inrgan.models.coords.CoordEmbedding` of the training grid: functions
of the continuous coordinates, so the network renders any grid, box or tile, each pixel on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import PixelINRConfig
from .coords import CoordEmbedding, RenderGrid
from .fmm import ToRGB, demodulated, fmm_layer, to_rgb
from .layers import EqualLinear
from .synthesis import INRParams, check_ws, make_grid, render_tiled


class LatentLayer(nn.Module):
    """A layer of the latent-conditioned MLP: a shared weight; with ``takes_w`` its input is [x, w]."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, takes_w: bool = False) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.w_dim = in_channels, out_channels, w_dim if takes_w else 0
        fan_in = in_channels + self.w_dim
        self.weight = nn.Parameter(torch.randn(out_channels, fan_in))  # [c_out, c_in + w_dim]: acts on [x, w]
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(fan_in)

    def inr(self, w: Tensor) -> tuple[Tensor, Tensor]:
        weight = self.weight * self.weight_gain
        on_x, on_w = weight[:, : self.in_channels], weight[:, self.in_channels :]
        bias = self.bias.unsqueeze(0) + (w.to(weight.dtype) @ on_w.t() if self.w_dim else 0)  # [B or 1, c_out]
        return on_x.unsqueeze(0).expand(w.shape[0], -1, -1), bias


class HyperLayer(nn.Module):
    """A layer whose weight and bias a linear hypernetwork head generates from w: [B, c_out * c_in + c_out]."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.affine = EqualLinear(w_dim, out_channels * in_channels + out_channels, bias_init=0.0)
        self.weight_gain = 1 / math.sqrt(in_channels)  # unit-variance weights would grow the activations

    def inr(self, w: Tensor) -> tuple[Tensor, Tensor]:
        params = self.affine(w)
        n = self.out_channels * self.in_channels
        return params[:, :n].reshape(-1, self.out_channels, self.in_channels) * self.weight_gain, params[:, n:]


class ModulatedLayer(ToRGB):
    """CIPS's layer: a shared 1x1 weight modulated per input channel by a style from w (ToRGB's), then
    demodulated (which undoes ToRGB's 1/sqrt(c_in) gain)."""

    def inr(self, w: Tensor) -> tuple[Tensor, Tensor]:
        weight, bias = super().inr(w)
        return demodulated(weight), bias


def make_layer(family: str, in_channels: int, out_channels: int, w_dim: int, first: bool) -> nn.Module:
    if family == "latent-inr":
        return LatentLayer(in_channels, out_channels, w_dim, takes_w=first)
    return (HyperLayer if family == "hyper-inr" else ModulatedLayer)(in_channels, out_channels, w_dim)


def make_torgb(family: str, in_channels: int, img_channels: int, w_dim: int) -> nn.Module:
    if family == "latent-inr":
        return LatentLayer(in_channels, img_channels, w_dim)
    return (HyperLayer if family == "hyper-inr" else ToRGB)(in_channels, img_channels, w_dim)


@dataclass(frozen=True, eq=False)
class PixelLayerSpec:
    """One layer of the generated INR, in evaluation order."""

    path: str  # "layers.{i}" or "torgbs.{i}"
    module: nn.Module
    w_index: int  # the w of ws [B, num_ws, w_dim] it reads
    is_torgb: bool


class PixelINRSynthesis(nn.Module):
    """ws [B, num_ws, w_dim] -> image [B, img_channels, H, W] on any grid: a per-pixel MLP at one scale."""

    def __init__(self, cfg: PixelINRConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embedding = (CoordEmbedding(cfg.level, cfg.resolution, cfg.w_dim, cfg.grid, cfg.const_padding)
                          if cfg.level is not None else None)
        widths = [cfg.coord_channels, *cfg.channels]
        self.layers = nn.ModuleList(make_layer(cfg.family, widths[i], widths[i + 1], cfg.w_dim, i == 0)
                                    for i in range(len(cfg.channels)))
        self.torgbs = nn.ModuleDict({str(i): make_torgb(cfg.family, cfg.channels[i], cfg.img_channels, cfg.w_dim)
                                     for i in cfg.torgb_layers})
        self.num_ws = len(cfg.channels) + 1  # a ToRGB reads the next layer's w, as StyleGAN2's

    def inr_layers(self) -> list[PixelLayerSpec]:
        """Every layer of the INR in evaluation order: each hidden layer, then its ToRGB where it has one."""
        specs = []
        for i, layer in enumerate(self.layers):
            specs.append(PixelLayerSpec(f"layers.{i}", layer, i, False))
            if str(i) in self.torgbs:
                specs.append(PixelLayerSpec(f"torgbs.{i}", self.torgbs[str(i)], i + 1, True))
        return specs

    def check_ws(self, ws: Tensor) -> None:
        check_ws(ws, self.num_ws, self.cfg.w_dim)

    def inr_parameters(self, ws: Tensor) -> INRParams:
        """The sample's INR: "{path}.weight" [B, c_out, c_in] and "{path}.bias" [B, c_out] per layer."""
        self.check_ws(ws)
        params: INRParams = {}
        for spec in self.inr_layers():
            weight, bias = spec.module.inr(ws[:, spec.w_index])
            params[f"{spec.path}.weight"] = weight
            params[f"{spec.path}.bias"] = bias.expand(ws.shape[0], -1)
        return params

    def make_grid(self, height: int | None = None, width: int | None = None, bbox=None) -> RenderGrid:
        return make_grid(self.cfg, height, width, bbox)

    def render_tiled(self, grid: RenderGrid, tile: int | None, render_window) -> Tensor:
        return render_tiled(grid, tile, render_window, self.cfg.pixel_independent)

    def features(self, grid: RenderGrid) -> Tensor:
        """The coordinate features of the window's pixels: [1, C, rows, cols]."""
        ys, xs = grid.cell_coords(1, "y"), grid.cell_coords(1, "x")  # float64
        if self.embedding is not None:
            return self.embedding(ys, xs)
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([xx, yy]).unsqueeze(0)  # [1, 2, rows, cols] float64 (cast to the model's dtype): x, y

    def render(self, params: INRParams, grid: RenderGrid) -> Tensor:
        """The INR ``params`` evaluated at the window's pixels: [B, img_channels, rows, cols]."""
        first = params["layers.0.weight"]
        x = self.features(grid).to(device=first.device, dtype=first.dtype).expand(first.shape[0], -1, -1, -1)
        img = None
        for spec in self.inr_layers():
            weight, bias = params[f"{spec.path}.weight"], params[f"{spec.path}.bias"]
            if spec.is_torgb:
                rgb = to_rgb(x, weight, bias)
                img = rgb if img is None else img + rgb
            else:
                x = fmm_layer(x, weight, bias)
        return img

    def forward(self, ws: Tensor, height: int | None = None, width: int | None = None, bbox=None,
                tile: int | None = None, grid: RenderGrid | None = None) -> Tensor:
        """Render ws on an ``height x width`` grid over ``bbox`` (default: the training grid), in tiles of
        ``tile`` pixels if given."""
        self.check_ws(ws)
        grid = self.make_grid(height, width, bbox) if grid is None else grid
        params = self.inr_parameters(ws)
        return self.render_tiled(grid, tile, lambda window: self.render(params, window))

    def extra_repr(self) -> str:
        return f"family={self.cfg.family}, resolution={self.cfg.resolution}, num_ws={self.num_ws}"
