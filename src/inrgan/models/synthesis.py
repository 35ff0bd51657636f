"""Multi-scale INR synthesis: the per-pixel MLP evaluated level by level, coarse to fine.

Blocks follow StyleGAN2's skip architecture (one ToRGB per block, the running image upsampled and
summed), but every layer is a per-pixel FMM layer: each output pixel depends on its own coordinates
only (with nearest upsampling). Blocks up to ``first_grid`` run on the first grid level; every later
block doubles the grid, and at each new level fresh coordinate embeddings are concatenated.

The network is a hypernetwork. :meth:`SynthesisNetwork.inr_layers` is the one walk of its INR layers
(which w each reads, on which level it runs, its parameter name); :meth:`SynthesisNetwork.inr_parameters`
maps ws through it to a sample's INR, named tensors per layer; :meth:`SynthesisNetwork.render` evaluates
those on a grid, as the paper writes the layers. This is the reference; ``inrgan.accel`` computes the
same function faster, and is tested against it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..config import GeneratorConfig
from .coords import CoordEmbedding, RenderGrid, default_bbox
from .fmm import FMMLayer, ToRGB, fmm_layer, to_rgb

# A sample's INR: "blocks.{i}.{layer}.weight" [B, c_out, c_in] and ".bias" [B, c_out] for every FMM layer and
# ToRGB, "embeddings.{l}.basis" [B, n, 3] for a level with a predicted Fourier basis.
INRParams = dict[str, Tensor]


def extra_layer_name(k: int) -> str:
    """The parameter name of a block's ``k``-th extra FMM layer (its own ModuleList, ``extra``)."""
    return f"extra.{k}"


class SynthesisBlock(nn.Module):
    """One StyleGAN-style block: [upsample + concat coords] conv0, conv1, extras, ToRGB."""

    def __init__(self, cfg: GeneratorConfig, block_res: int, in_channels: int, level: int | None,
                 emb_channels: int) -> None:
        super().__init__()
        out_channels = cfg.channels(block_res)
        self.block_res, self.in_channels, self.out_channels = block_res, in_channels, out_channels
        self.grid_res = max(block_res, cfg.first_grid)
        self.is_first = in_channels == 0
        self.level = level  # index of the pyramid level whose coordinate features enter here, if any
        layer = dict(w_dim=cfg.w_dim, rank=cfg.fmm_rank, modulation=cfg.fmm_modulation,
                     demodulate=cfg.fmm_demodulate, predict_bias=cfg.predict_bias)
        emb_ch = emb_channels if level is not None else 0
        if self.is_first:
            self.conv1 = FMMLayer(emb_ch, out_channels, **layer)
        else:
            self.conv0 = FMMLayer(in_channels + emb_ch, out_channels, **layer)
            self.conv1 = FMMLayer(out_channels, out_channels, instance_norm=cfg.instance_norm, **layer)
        n_extra = 1 if block_res in cfg.extra_layers else 0
        self.extra = nn.ModuleList(
            FMMLayer(out_channels, out_channels, instance_norm=cfg.instance_norm, **layer) for _ in range(n_extra)
        )
        self.torgb = ToRGB(out_channels, cfg.img_channels, cfg.w_dim)
        self.num_conv = (1 if self.is_first else 2) + n_extra

    def named_layers(self) -> list[tuple[str, FMMLayer]]:
        """(parameter name, layer) of the FMM layers, in the order they read ws."""
        names = ([] if self.is_first else ["conv0"]) + ["conv1"] + [extra_layer_name(j) for j in range(len(self.extra))]
        return list(zip(names, self.layers(), strict=True))

    def layers(self) -> list[FMMLayer]:
        return ([] if self.is_first else [self.conv0]) + [self.conv1, *self.extra]


@dataclass(frozen=True, eq=False)
class INRLayerSpec:
    """One layer of the generated INR, as the walk of the network meets it."""

    block: int  # index into SynthesisNetwork.blocks
    name: str  # "conv0", "conv1", "extra.0" or "torgb"
    module: FMMLayer | ToRGB
    w_index: int  # the w of ws [B, num_ws, w_dim] its affine head reads
    level: int  # the grid level it runs on
    starts_level: bool  # the level's first layer: its input is [previous level's features, coordinate features]
    prev_channels: int  # where it starts a level: input channels from the previous level (the rest are coordinates)

    @property
    def path(self) -> str:
        return f"blocks.{self.block}.{self.name}"

    @property
    def is_torgb(self) -> bool:
        return isinstance(self.module, ToRGB)


def upsample_cells(x: Tensor, up: int, crop_y: int, crop_x: int, h: int, w: int, mode: str) -> Tensor:
    """Upsample cells by an integer factor and crop to the target cells: [B, C, h', w'] -> [B, C, h, w]."""
    if up > 1:
        if mode == "nearest":
            x = x.repeat_interleave(up, dim=2).repeat_interleave(up, dim=3)
        else:
            x = F.interpolate(x, scale_factor=up, mode="bilinear", align_corners=True)
    return x[:, :, crop_y : crop_y + h, crop_x : crop_x + w]


def evaluate_level(layers: list[INRLayerSpec], params: INRParams, x: Tensor, img: Tensor | None
                   ) -> tuple[Tensor, Tensor]:
    """Every layer of one grid level on its cells: features x [B, C, h, w] (the previous level's, upsampled, and
    the coordinate features), image [B, img_channels, h, w] or None -> (last features, image)."""
    for spec in layers:
        weight, bias = params[f"{spec.path}.weight"], params[f"{spec.path}.bias"]
        if spec.is_torgb:
            rgb = to_rgb(x, weight, bias)
            img = rgb if img is None else img + rgb
        else:
            x = fmm_layer(x, weight, bias, normalize=spec.module.instance_norm)
    return x, img


def check_ws(ws: Tensor, num_ws: int, w_dim: int) -> None:
    if ws.ndim != 3 or ws.shape[1:] != (num_ws, w_dim):
        raise ValueError(f"ws must have shape [B, {num_ws}, {w_dim}], got {list(ws.shape)}")


def make_grid(cfg, height: int | None = None, width: int | None = None, bbox=None) -> RenderGrid:
    """The ``height x width`` grid over ``bbox`` in the frame of ``cfg`` (default: its training grid and box)."""
    height = cfg.resolution if height is None else int(height)
    width = cfg.resolution if width is None else int(width)
    bbox = default_bbox(cfg.grid) if bbox is None else tuple(float(v) for v in bbox)
    if len(bbox) != 4:
        raise ValueError(f"bbox must be (x0, y0, x1, y1), got {bbox}")
    return RenderGrid(height, width, bbox, cfg.grid)


def render_tiled(grid: RenderGrid, tile: int | None, render_window: Callable[[RenderGrid], Tensor],
                 pixel_independent: bool) -> Tensor:
    """``render_window(grid)`` [B, C, H, W], or assembled from ``tile`` x ``tile`` windows of the grid.

    With autograd on, each tile is checkpointed: its activations are dropped after its forward and
    recomputed, one tile at a time, by the backward pass. Memory then stays bounded by one tile's
    working set whether or not the render is differentiated (at the price of a second forward per
    tile in the backward pass).
    """
    if tile is None:
        return render_window(grid)
    if tile < 1:
        raise ValueError(f"tile must be positive, got {tile}")
    if not pixel_independent:
        raise ValueError("tiled rendering needs pixel-independent models (nearest upsampling, no spatial "
                         "std normalisation); render the -bil variant whole")
    recompute = torch.is_grad_enabled() and not torch.compiler.is_compiling()
    out = None
    for r0 in range(0, grid.height, tile):
        for c0 in range(0, grid.width, tile):
            r1, c1 = min(r0 + tile, grid.height), min(c0 + tile, grid.width)
            window = RenderGrid(grid.height, grid.width, grid.bbox, grid.frame, (r0, r1), (c0, c1))
            if recompute:  # the render draws no random numbers: no RNG state to keep
                part = checkpoint(render_window, window, use_reentrant=False, preserve_rng_state=False)
            else:
                part = render_window(window)
            if out is None:
                out = part.new_empty(part.shape[0], part.shape[1], grid.height, grid.width)
            out[:, :, r0:r1, c0:c1] = part
    return out


class SynthesisNetwork(nn.Module):
    """ws [B, num_ws, w_dim] -> image [B, img_channels, H, W] for any grid of output pixels."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embeddings = nn.ModuleList(
            CoordEmbedding(lc, g, cfg.w_dim, cfg.grid, cfg.const_padding)
            for lc, g in zip(cfg.levels, cfg.grid_resolutions, strict=True)
        )
        blocks = []
        prev_grid, in_ch, level = 0, 0, -1
        for res in cfg.block_resolutions:
            grid = max(res, cfg.first_grid)
            new_level = grid != prev_grid
            level += int(new_level)
            blocks.append(SynthesisBlock(cfg, res, in_ch, level if new_level else None,
                                         self.embeddings[level].num_channels))
            prev_grid, in_ch = grid, cfg.channels(res)
        self.blocks = nn.ModuleList(blocks)
        # Each block reads its ws from w_idx; its ToRGB shares the next block's first w (StyleGAN2).
        self.num_ws = sum(b.num_conv for b in self.blocks) + 1
        self.block_w_idx = [sum(b.num_conv for b in self.blocks[:i]) for i in range(len(self.blocks))]
        # Blocks by grid level: a level starts with the block whose `level` is set.
        self.level_blocks: list[list[int]] = []
        for i, b in enumerate(self.blocks):
            if b.level is not None:
                self.level_blocks.append([])
            self.level_blocks[-1].append(i)

    # ------------------------------------------------------------------------------------------
    # The INR: one walk of the network.

    def inr_layers(self) -> list[INRLayerSpec]:
        """Every layer of the generated INR in evaluation order: each block's FMM layers, then its ToRGB."""
        specs, level = [], 0
        for i, block in enumerate(self.blocks):
            level = block.level if block.level is not None else level
            w0 = self.block_w_idx[i]
            for k, (name, layer) in enumerate(block.named_layers()):
                starts = k == 0 and block.level is not None
                specs.append(INRLayerSpec(i, name, layer, w0 + k, level, starts, block.in_channels if starts else 0))
            specs.append(INRLayerSpec(i, "torgb", block.torgb, w0 + block.num_conv, level, False, 0))
        return specs

    def check_ws(self, ws: Tensor) -> None:
        check_ws(ws, self.num_ws, self.cfg.w_dim)

    def inr_parameters(self, ws: Tensor) -> INRParams:
        """The per-sample INR parameters that ``ws`` [B, num_ws, w_dim] generate (see :data:`INRParams`)."""
        self.check_ws(ws)
        params: INRParams = {}
        for spec in self.inr_layers():
            w = ws[:, spec.w_index]  # [B, w_dim]
            embedding = self.embeddings[spec.level]
            if spec.starts_level and embedding.depends_on_w:
                params[f"embeddings.{spec.level}.basis"] = embedding.predicted_basis(w)  # [B, n, 3]
            weight, bias = spec.module.inr(w)
            params[f"{spec.path}.weight"] = weight
            params[f"{spec.path}.bias"] = bias.expand(ws.shape[0], -1)
        return params

    # ------------------------------------------------------------------------------------------
    # The grid.

    def level_factors(self, grid: RenderGrid) -> list[int]:
        """Output pixels per cell side, per grid level (the last level is 1 at the training density).

        "dense" keeps every level's cells at a fixed number of output pixels, so all levels get denser
        with the render. "upsample" (paper v1) applies when the pixel density is an integer k > 1 times
        the training density on both axes: the early levels stay at the training density and the last
        transition upsamples k times more.
        """
        cfg = self.cfg
        base = [cfg.resolution // g for g in cfg.grid_resolutions]
        if cfg.superres == "upsample":
            x0, y0, x1, y1 = grid.bbox
            dx0, dy0, dx1, dy1 = default_bbox(cfg.grid)
            kx = grid.width / cfg.resolution * abs(dx1 - dx0) / abs(x1 - x0)
            ky = grid.height / cfg.resolution * abs(dy1 - dy0) / abs(y1 - y0)
            k = round(kx)
            if k > 1 and abs(kx - k) < 1e-9 and abs(ky - k) < 1e-9:
                return [b * k for b in base[:-1]] + [1]
        return base

    def level_cells(self, grid: RenderGrid) -> list[int]:
        """The cells each grid level evaluates for the window of ``grid``."""
        cells = []
        for f in self.level_factors(grid):
            (ya, yb), (xa, xb) = grid.cell_span(f, "y"), grid.cell_span(f, "x")
            cells.append((yb - ya) * (xb - xa))
        return cells

    def make_grid(self, height: int | None = None, width: int | None = None, bbox=None) -> RenderGrid:
        return make_grid(self.cfg, height, width, bbox)

    def check_window(self, grid: RenderGrid) -> None:
        if self.cfg.upsampling == "bilinear" and (grid.rows is not None or grid.cols is not None):
            raise ValueError("bilinear upsampling mixes neighbouring cells: windows need nearest upsampling")

    # ------------------------------------------------------------------------------------------
    # Rendering.

    def forward(
        self,
        ws: Tensor,
        height: int | None = None,
        width: int | None = None,
        bbox=None,
        tile: int | None = None,
        grid: RenderGrid | None = None,
    ) -> Tensor:
        """Render ws [B, num_ws, w_dim] on an ``height x width`` grid over ``bbox`` (default: the training
        grid and box). ``tile=T`` renders T x T tiles one at a time into the output, bounding memory."""
        self.check_ws(ws)
        grid = self.make_grid(height, width, bbox) if grid is None else grid
        params = self.inr_parameters(ws)  # once for all tiles
        return self.render_tiled(grid, tile, lambda window: self.render(params, window))

    def render(self, params: INRParams, grid: RenderGrid) -> Tensor:
        """The INR ``params`` evaluated on the window of ``grid``: [B, img_channels, rows, cols]."""
        cfg = self.cfg
        self.check_window(grid)
        factors = self.level_factors(grid)
        by_level: list[list[INRLayerSpec]] = [[] for _ in self.level_blocks]
        for spec in self.inr_layers():
            by_level[spec.level].append(spec)
        x = img = None
        prev_factor = 1
        for level, layers in enumerate(by_level):
            f = factors[level]
            (ya, yb), (xa, xb) = grid.cell_span(f, "y"), grid.cell_span(f, "x")
            if x is not None:
                up = prev_factor // f
                (pya, _), (pxa, _) = grid.cell_span(prev_factor, "y"), grid.cell_span(prev_factor, "x")
                crop = (up, ya - pya * up, xa - pxa * up, yb - ya, xb - xa, cfg.upsampling)
                x, img = upsample_cells(x, *crop), upsample_cells(img, *crop)
            basis = params.get(f"embeddings.{level}.basis")
            emb = self.embeddings[level](grid.cell_coords(f, "y"), grid.cell_coords(f, "x"), basis)
            batch = params[f"{layers[0].path}.weight"].shape[0]
            emb = emb.to(params[f"{layers[0].path}.weight"].dtype).expand(batch, -1, -1, -1)  # [B, C_emb, h, w]
            x = emb if x is None else torch.cat([x, emb], dim=1)
            x, img = evaluate_level(layers, params, x, img)
            prev_factor = f
        return self.finish(img, grid, prev_factor)

    def finish(self, img: Tensor, grid: RenderGrid, f: int) -> Tensor:
        """The last level's cells [B, C, h, w] cropped to the window's pixels, through the final tanh if any."""
        (ya, _), (xa, _) = grid.cell_span(f, "y"), grid.cell_span(f, "x")
        (r0, r1), (c0, c1) = grid.row_span, grid.col_span
        img = upsample_cells(img, f, r0 - ya * f, c0 - xa * f, r1 - r0, c1 - c0, self.cfg.upsampling)
        return torch.tanh(img) if self.cfg.final_tanh else img

    def render_tiled(self, grid: RenderGrid, tile: int | None, render_window: Callable[[RenderGrid], Tensor]) -> Tensor:
        """``render_window(grid)``, or assembled from ``tile`` x ``tile`` windows (:func:`render_tiled`)."""
        return render_tiled(grid, tile, render_window, self.cfg.pixel_independent)

    def extra_repr(self) -> str:
        return f"resolution={self.cfg.resolution}, num_ws={self.num_ws}, levels={self.cfg.grid_resolutions}"
