"""Multi-scale INR synthesis: the per-pixel MLP evaluated level by level, coarse to fine.

Blocks follow StyleGAN2's skip architecture (one ToRGB per block, the running image upsampled and
summed), but every layer is a per-pixel FMM layer: each output pixel depends on its own coordinates
only (with nearest upsampling). Blocks up to ``first_grid`` run on the first grid level; every later
block doubles the grid, and at each new level fresh coordinate embeddings are concatenated.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import GeneratorConfig
from .coords import CoordEmbedding, RenderGrid, default_bbox
from .fmm import FMMLayer, ToRGB


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

    def layers(self) -> list[FMMLayer]:
        return ([] if self.is_first else [self.conv0]) + [self.conv1, *self.extra]


def upsample_cells(x: Tensor, up: int, crop_y: int, crop_x: int, h: int, w: int, mode: str) -> Tensor:
    """Upsample cells by an integer factor and crop to the target cells: [B, C, h', w'] -> [B, C, h, w]."""
    if up > 1:
        if mode == "nearest":
            x = x.repeat_interleave(up, dim=2).repeat_interleave(up, dim=3)
        else:
            x = F.interpolate(x, scale_factor=up, mode="bilinear", align_corners=True)
    return x[:, :, crop_y : crop_y + h, crop_x : crop_x + w]


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

    # ------------------------------------------------------------------------------------------
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

    def make_grid(self, height: int | None = None, width: int | None = None, bbox=None) -> RenderGrid:
        cfg = self.cfg
        height = cfg.resolution if height is None else int(height)
        width = cfg.resolution if width is None else int(width)
        bbox = default_bbox(cfg.grid) if bbox is None else tuple(float(v) for v in bbox)
        if len(bbox) != 4:
            raise ValueError(f"bbox must be (x0, y0, x1, y1), got {bbox}")
        return RenderGrid(height, width, bbox, cfg.grid)

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
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.cfg.w_dim):
            raise ValueError(f"ws must have shape [B, {self.num_ws}, {self.cfg.w_dim}], got {list(ws.shape)}")
        if grid is None:
            grid = self.make_grid(height, width, bbox)
        if tile is None:
            return self.render_window(ws, grid)
        if tile < 1:
            raise ValueError(f"tile must be positive, got {tile}")
        if self.cfg.upsampling != "nearest" or self.cfg.instance_norm:
            raise ValueError("tiled rendering needs pixel-independent models (nearest upsampling, no spatial "
                             "std normalisation); render the -bil variant whole")
        out = ws.new_empty(ws.shape[0], self.cfg.img_channels, grid.height, grid.width)
        for r0 in range(0, grid.height, tile):
            for c0 in range(0, grid.width, tile):
                r1, c1 = min(r0 + tile, grid.height), min(c0 + tile, grid.width)
                window = RenderGrid(grid.height, grid.width, grid.bbox, grid.frame, (r0, r1), (c0, c1))
                out[:, :, r0:r1, c0:c1] = self.render_window(ws, window)
        return out

    def render_window(self, ws: Tensor, grid: RenderGrid) -> Tensor:
        cfg = self.cfg
        full = grid.rows is None and grid.cols is None
        if cfg.upsampling == "bilinear" and not full:
            raise ValueError("bilinear upsampling mixes neighbouring cells: windows need nearest upsampling")
        factors = self.level_factors(grid)
        level, prev_factor = -1, None
        x = img = None
        w_idx = 0
        for block in self.blocks:
            block_ws = ws[:, w_idx : w_idx + block.num_conv + 1]  # [B, n, w_dim]
            w_idx += block.num_conv
            if block.level is not None:
                level = block.level
                f = factors[level]
                (ya, yb), (xa, xb) = grid.cell_span(f, "y"), grid.cell_span(f, "x")
                if x is not None:
                    up = prev_factor // f
                    (pya, _), (pxa, _) = grid.cell_span(prev_factor, "y"), grid.cell_span(prev_factor, "x")
                    crop_y, crop_x = ya - pya * up, xa - pxa * up
                    x = upsample_cells(x, up, crop_y, crop_x, yb - ya, xb - xa, cfg.upsampling)
                    img = upsample_cells(img, up, crop_y, crop_x, yb - ya, xb - xa, cfg.upsampling)
                emb = self.embeddings[level](grid.cell_coords(f, "y"), grid.cell_coords(f, "x"), block_ws[:, 0])
                emb = emb.to(ws.dtype).expand(ws.shape[0], -1, -1, -1)  # [B, C_emb, h, w]
                x = emb if x is None else torch.cat([x, emb], dim=1)
                prev_factor = f
            for layer, w in zip(block.layers(), block_ws.unbind(1), strict=False):
                x = layer(x, w)
            rgb = block.torgb(x, block_ws[:, block.num_conv])
            img = rgb if img is None else img + rgb
        # Crop the last level's cells to the window's pixels.
        f = prev_factor
        (ya, _), (xa, _) = grid.cell_span(f, "y"), grid.cell_span(f, "x")
        (r0, r1), (c0, c1) = grid.row_span, grid.col_span
        img = upsample_cells(img, f, r0 - ya * f, c0 - xa * f, r1 - r0, c1 - c0, cfg.upsampling)
        if cfg.final_tanh:
            img = torch.tanh(img)
        return img

    def extra_repr(self) -> str:
        return f"resolution={self.cfg.resolution}, num_ws={self.num_ws}, levels={self.cfg.grid_resolutions}"

