"""The generator's cost from its layer shapes, as the paper counts it: the one cost counter.

Per output cell of a level, ``c_in * c_out`` multiply-accumulates for every FMM layer and
``C * img_channels`` for every ToRGB, times the cells of that level in the render. The hypernetwork (the
affine heads and every modulated weight's low-rank product A B) costs per sample, not per cell; so does
the mapping network.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .coords import RenderGrid


@dataclass(frozen=True)
class LayerCost:
    block: int  # block resolution
    layer: str  # "conv0", "conv1", "extra.0", "torgb"
    c_in: int
    c_out: int
    pixels: int  # cells of the layer's level in the render
    macs: int  # c_in * c_out * pixels
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
