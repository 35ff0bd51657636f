"""The generator's cost from its layer shapes, as the paper counts it: the one cost counter.

Per output cell of a level, ``c_in * c_out`` multiply-accumulates for every FMM layer and
``C * img_channels`` for every ToRGB, times the cells of that level in the render. The hypernetwork (the
affine heads and every modulated weight's low-rank product A B) costs per sample, not per cell; so does
the mapping network.

The other families (:func:`layer_costs`, :func:`family_hyper_macs`): a single-scale per-pixel INR costs
``c_in * c_out`` per pixel and layer; StyleGAN2 ``c_in * c_out * k^2`` per pixel of a k x k convolution,
and 4 per output value of its FIR upsampling (a 4-tap filter, 2 taps per axis at a zero-inserted pixel).
Their per-sample costs: every affine head, each modulated weight's modulation (one multiply per weight), a
hypernetwork head's generated weights, and the w part of the latent-conditioned MLP's first layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .coords import RenderGrid
from .pixel_inr import LatentLayer, ModulatedLayer, PixelINRSynthesis
from .stylegan2 import ModulatedConv, StyleGAN2Synthesis


@dataclass(frozen=True)
class LayerCost:
    block: int  # block resolution
    layer: str  # "conv0", "conv1", "extra.0", "torgb"
    c_in: int
    c_out: int
    pixels: int  # cells of the layer's level in the render (output pixels of a convolution)
    macs: int  # c_in * c_out * pixels for a per-pixel linear map (times k^2 for a k x k convolution)
    # What a level's first layer costs when its part acting on the previous level's features runs on the
    # coarse grid (the split first layer of inrgan.accel): channel mixing commutes with nearest upsampling.
    executed_macs: int


def inr_costs(synthesis, grid: RenderGrid) -> list[LayerCost]:
    """The per-cell MLP's cost of rendering the window of ``grid``, layer by layer (:meth:`inr_layers` order)."""
    cells = synthesis.level_cells(grid)
    costs = []
    for spec in synthesis.inr_layers():
        c_out, c_in = spec.module.weight.shape
        pixels = cells[spec.level]
        macs = executed = c_in * c_out * pixels
        if spec.prev_channels:
            coarse = cells[spec.level - 1]
            executed = c_out * ((c_in - spec.prev_channels) * pixels + spec.prev_channels * coarse)
        costs.append(LayerCost(synthesis.blocks[spec.block].block_res, spec.name, c_in, c_out, pixels, macs, executed))
    return costs


def hyper_macs(synthesis) -> int:
    """Per-sample cost of the synthesis network's hypernetwork: every affine head and every A B product."""
    macs = 0
    for spec in synthesis.inr_layers():
        macs += spec.module.affine.weight.numel()
        if not spec.is_torgb:
            macs += spec.module.in_channels * spec.module.out_channels * spec.module.rank
    return macs


def mapping_macs(mapping: nn.Module) -> int:
    """Per-sample cost of the mapping network (and a conditional model's class embedding)."""
    return sum(m.weight.numel() for m in mapping.modules() if hasattr(m, "weight_gain"))


def macs_per_sample(synthesis, grid: RenderGrid) -> int:
    """Multiply-accumulates per sample of a synthesis render: the hypernetwork and every INR layer."""
    return hyper_macs(synthesis) + sum(c.macs for c in inr_costs(synthesis, grid))


# ----------------------------------------------------------------------------------------------
# Every family.


def pixel_inr_costs(synthesis: PixelINRSynthesis, grid: RenderGrid) -> list[LayerCost]:
    """A single-scale per-pixel INR's cost on the window of ``grid``, layer by layer (``inr_layers`` order)."""
    (r0, r1), (c0, c1) = grid.row_span, grid.col_span
    pixels = (r1 - r0) * (c1 - c0)
    costs = []
    for spec in synthesis.inr_layers():
        c_in, c_out = spec.module.in_channels, spec.module.out_channels
        costs.append(LayerCost(synthesis.cfg.resolution, spec.path, c_in, c_out, pixels, c_in * c_out * pixels,
                               c_in * c_out * pixels))
    return costs


def stylegan2_costs(synthesis: StyleGAN2Synthesis) -> list[LayerCost]:
    """StyleGAN2's cost on its training grid: the FIR upsamplings, the 3x3 convolutions and the ToRGBs."""
    costs = []
    for block in synthesis.blocks:
        pixels = block.res**2
        if block.conv0 is not None:  # the features and the skip image, upsampled
            for name, c in (("up", block.in_channels), ("torgb.up", synthesis.cfg.img_channels)):
                costs.append(LayerCost(block.res, name, c, c, pixels, 4 * c * pixels, 4 * c * pixels))
        for name, conv in (("conv0", block.conv0), ("conv1", block.conv1)):
            if conv is not None:
                macs = conv.weight[0].numel() * conv.out_channels * pixels
                costs.append(LayerCost(block.res, name, conv.in_channels, conv.out_channels, pixels, macs, macs))
        c_out, c_in = block.torgb.weight.shape
        costs.append(LayerCost(block.res, "torgb", c_in, c_out, pixels, c_in * c_out * pixels, c_in * c_out * pixels))
    return costs


def layer_costs(synthesis, grid: RenderGrid | None = None) -> list[LayerCost]:
    """Any family's per-sample cost of a render, layer by layer (default: the training grid)."""
    if isinstance(synthesis, StyleGAN2Synthesis):
        return stylegan2_costs(synthesis)
    grid = synthesis.make_grid() if grid is None else grid
    if isinstance(synthesis, PixelINRSynthesis):
        return pixel_inr_costs(synthesis, grid)
    return inr_costs(synthesis, grid)


def _module_hyper_macs(module: nn.Module) -> int:
    if isinstance(module, LatentLayer):
        return module.w_dim * module.out_channels  # W_w w, the first layer's per-sample bias
    macs = module.affine.weight.numel()  # the head (for a hypernetwork layer: every generated weight)
    if isinstance(module, ModulatedLayer | ModulatedConv):
        macs += module.weight.numel()  # W * s
    return macs


def family_hyper_macs(synthesis) -> int:
    """Any family's per-sample cost of making its layers' parameters from w (heads, modulation)."""
    if isinstance(synthesis, StyleGAN2Synthesis):
        blocks = synthesis.blocks
        return sum(_module_hyper_macs(c) for b in blocks for c in b.convs()) + sum(
            b.torgb.affine.weight.numel() for b in blocks)
    if isinstance(synthesis, PixelINRSynthesis):
        return sum(_module_hyper_macs(spec.module) for spec in synthesis.inr_layers())
    return hyper_macs(synthesis)


def family_macs(G, grid: RenderGrid | None = None) -> dict[str, int]:
    """A generator's MACs per image: mapping, the per-sample parameters, the render (default: training grid)."""
    render = sum(c.macs for c in layer_costs(G.synthesis, grid))
    mapping, hyper = mapping_macs(G.mapping), family_hyper_macs(G.synthesis)
    return {"mapping": mapping, "hyper": hyper, "render": render, "total": mapping + hyper + render}
