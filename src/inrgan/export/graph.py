"""The generator as one traceable function of (latents, truncation, class, render grid) -> image.

What a pixel needs from its coordinates: with nearest upsampling every output pixel is computed from its
own cells only, one per pyramid level. A level whose cells are ``f`` output pixels on a side evaluates
cell ``j = c // f`` of pixel column ``c``, at the cell's coordinate ``x0 + (j + ox) f (x1 - x0) / W``
(``RenderGrid.cell_coords``; ``ox`` is the frame's offset in a cell), and the learned constants are sampled
bilinearly at that coordinate's fractional index into the training grid. In the "dense" super-resolution
mode ``f`` is fixed per level, whatever the size. So a pixel's coarse features are those of its cell on the
render's grid, cells counted from the box's corner: not a function of the pixel's own coordinate alone.
The graph therefore takes the grid itself, the box and the size, and builds every level's cells inside,
in float64 as ``RenderGrid`` does, which gives the PyTorch render's coordinates bit for bit.

:class:`TracedGrid` is a ``RenderGrid`` whose size and box are traced tensors; the model's own reference
render (``SynthesisNetwork.render``, ``PixelINRSynthesis.render``) runs on it unchanged, so the graph holds
no second copy of any formula.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..models.coords import RenderGrid

MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 13, 20, 17  # the TorchScript exporter's range that renders (tested)


class ExportError(ValueError):
    """A model, option or file that cannot be exported or loaded as an inrgan ONNX graph; the message says why."""


class TracedGrid(RenderGrid):
    """The whole grid of ``height x width`` pixels (0-d int64 tensors) over ``bbox`` (four 0-d float64
    tensors). Its cells are ``RenderGrid``'s: ``cell_coords`` is inherited, and ``cell_span`` is the
    same ceiling division written for tensors."""

    def __post_init__(self) -> None:  # the values are checked where they are given, not traced
        pass

    def cell_span(self, factor: int, axis: str) -> tuple[int, Tensor]:
        n = self.height if axis == "y" else self.width
        return 0, torch.div(n + (factor - 1), factor, rounding_mode="floor")


def exportable(G) -> None:
    """Raise :class:`ExportError` naming why ``G`` cannot be one graph of the render grid."""
    cfg = G.cfg
    if not getattr(G, "renders_any_grid", True) or not getattr(G, "has_inr", True):
        raise ExportError(f"the {cfg.family} generator renders its training grid only (its convolutions "
                          "upsample whole images): it has no coordinate input to export")
    if getattr(cfg, "superres", "dense") != "dense":
        raise ExportError(f"superres={cfg.superres!r}: the level densities of this model depend on the render's "
                          "size (above the training density only the last level is upsampled), which one graph "
                          "cannot branch on; only superres='dense' models export")


class RenderGraph(nn.Module):
    """``G``'s render as a module with tensor arguments only, for ``torch.onnx.export``.

    forward(z [B, z_dim], truncation_psi [1 or B], bbox [4] float64, height [] int64, width [] int64,
    c [B, c_dim] for a conditional model) -> image [B, img_channels, height, width].

    The truncation is the mapping network's (w_avg.lerp(w, psi)) with one psi per sample.
    """

    def __init__(self, G) -> None:
        super().__init__()
        exportable(G)
        self.G = G
        self.eval()

    def forward(self, z: Tensor, truncation_psi: Tensor, bbox: Tensor, height: Tensor, width: Tensor,
                c: Tensor | None = None) -> Tensor:
        mapping, synthesis = self.G.mapping, self.G.synthesis
        ws = mapping(z, 1.0, update_w_avg=False, c=c)  # untruncated
        ws = mapping.w_avg.lerp(ws, truncation_psi.reshape(-1, 1, 1))
        grid = TracedGrid(height, width, (bbox[0], bbox[1], bbox[2], bbox[3]), self.G.cfg.grid)
        return synthesis.render(synthesis.inr_parameters(ws), grid)


def coarsest_cell(cfg) -> int:
    """Output pixels per side of the coarsest level's cells (1 for a single-scale INR): tiles that start at
    multiples of it see the cells of the whole render."""
    return cfg.resolution // getattr(cfg, "first_grid", cfg.resolution)
