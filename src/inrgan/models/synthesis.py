"""Multi-scale INR synthesis: the per-pixel MLP evaluated level by level, coarse to fine.

Blocks follow StyleGAN2's skip architecture (one ToRGB per block, the running image upsampled and
summed), but every layer is a per-pixel FMM layer: each output pixel depends on its own coordinates
only (with nearest upsampling). Blocks up to ``first_grid`` run on the first grid level; every later
block doubles the grid, and at each new level fresh coordinate embeddings are concatenated.

Two implementations compute the same function. ``render_window`` is the plain reference: the layers as
written in the paper, features concatenated with the embeddings and upsampled between levels.
``render_window_fast`` (the default, see :attr:`SynthesisNetwork.fast`) computes the INR parameters once
per call, keeps activations channels-last ([B, pixels, C], so that every layer is one batched matrix
product with the bias fused in) and uses three exact rewrites:

- a level's first layer is split into the part acting on the previous level's features and the part
  acting on the coordinate features. Channel mixing commutes with the (per-channel) upsampling, so the
  first part runs on the coarse grid (4x fewer pixels) and nothing is concatenated or upsampled; the
  coordinate features are computed once per grid and broadcast to the batch, never copied per sample;
- the leaky ReLU's gain sqrt(2) is folded into the next linear map's per-sample weights;
- in inference (no autograd), each level runs in chunks of rows with in-place bias and activation, so
  a chunk's activations stay in cache and the full-resolution activations are never stored.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..config import GeneratorConfig
from . import native, threads
from .coords import CoordEmbedding, RenderGrid, default_bbox
from .fmm import FMMLayer, NativeFMMWeight, ToRGB
from .layers import LRELU_GAIN, LRELU_SLOPE, EqualLinear


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


# ----------------------------------------------------------------------------------------------
# The fast path's pieces. Its tensors are channels-last: activations [B, n, C] over n = rows * w cells,
# maps [B, h, w, C]. Then every per-pixel map is a plain matrix product, the bias broadcasts along
# rows, and nearest upsampling is a broadcast over contiguous runs of C channels.

# Inference chunk on the CPU, in cells of a level (of every sample): a chunk's activations (2048 cells x
# 128 channels = 1 MiB per sample at 256^2) stay in the caches. GPUs run whole levels.
CPU_CHUNK_PIXELS = 2048
# Fewer cells than this per sample: one batched product per layer beats per-sample oneDNN calls, which
# are too small to keep two threads busy. With one thread (a sample-parallel worker) there are no threads
# to keep busy, and from 256 cells on the fused layer is 5% to 10% faster than a product, a bias and an
# activation.
ONEDNN_MIN_CELLS = 2048
ONEDNN_MIN_CELLS_ONE_THREAD = 256


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
    layers: list[INRLayer]
    torgb: INRLayer
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


def _upsample_maps(p: Tensor, up: int, crop_y: int, crop_x: int, h: int, w: int, mode: str) -> Tensor:
    """:func:`upsample_cells` for channels-last maps: [B, h', w', C] -> [B, h, w, C]."""
    return upsample_cells(p.permute(0, 3, 1, 2), up, crop_y, crop_x, h, w, mode).permute(0, 2, 3, 1)


def _add_upsampled(z: Tensor, p: Tensor, up: int, crop_y: int, crop_x: int, inplace: bool) -> Tensor:
    """z [B, h, w, C] + nearest-upsample(p [B, h', w', C]) by ``up``, cropped at (crop_y, crop_x)."""
    b, h, w, c = z.shape
    if up == 1 and crop_y == 0 and crop_x == 0 and p.shape[1:3] == (h, w):
        return z.add_(p) if inplace else z + p
    if crop_y == 0 and crop_x == 0 and p.shape[1] * up == h and p.shape[2] * up == w:
        zv = z.view(b, h // up, up, w // up, up, c)  # broadcast instead of materialising the upsampled p
        pv = p[:, :, None, :, None, :]
        return (zv.add_(pv) if inplace else zv + pv).view(b, h, w, c)
    p = _upsample_maps(p, up, crop_y, crop_x, h, w, "nearest")
    return z.add_(p) if inplace else z + p


def _rows_of(p: Tensor | None, r0: int, r1: int, up: int, crop_y: int) -> tuple[Tensor | None, int]:
    """Rows of the coarse map ``p`` [B, h', w', C] under fine rows [r0, r1), and the crop of the first one."""
    if p is None:
        return None, 0
    c0, c1 = (r0 + crop_y) // up, (r1 - 1 + crop_y) // up + 1
    return p[:, c0:c1], r0 + crop_y - c0 * up


def _emb_product(weight: Tensor, emb: Tensor) -> Tensor:
    """emb [1 or B, n, c_emb] x weight [B, c_out, c_emb]^T -> [B, n, c_out].

    Shared features are broadcast along the batch (a stride-0 view), never copied per sample."""
    return torch.bmm(emb.expand(weight.shape[0], -1, -1), weight.transpose(1, 2))


def _linear(layer: INRLayer, a: Tensor) -> Tensor:
    """a [B, n, c_in] x layer.weight^T + bias -> [B, n, c_out]."""
    if layer.normalize:
        # x / (std(x) + eps) with x = sqrt(2) a, the reference's formula, on the pre-gain a.
        a = a / (a.std(dim=1, keepdim=True) + 1e-8 / LRELU_GAIN)
    if isinstance(layer.weight, NativeFMMWeight):  # one sample at a time, its weight made here
        bias = layer.bias.to(a.dtype)
        out = a.new_empty(a.shape[0], a.shape[1], layer.weight.shape[1])
        for b in range(a.shape[0]):
            torch.addmm(bias[b if bias.shape[0] > 1 else 0], a[b], layer.weight[b].to(a.dtype).t(), out=out[b])
        return out
    weight = layer.weight.to(a.dtype).transpose(1, 2)  # [B, c_in, c_out], a view
    return torch.baddbmm(layer.bias[:, None, :].to(a.dtype), a, weight)


def _lrelu(z: Tensor, inplace: bool) -> Tensor:
    return F.leaky_relu_(z, LRELU_SLOPE) if inplace else F.leaky_relu(z, LRELU_SLOPE)


@functools.cache  # resolved on first use, never at import
def onednn_linear():
    """oneDNN's fused linear + bias + activation (``torch.ops.mkldnn._linear_pointwise``), or None.

    It is the CPU inference kernel that torch.compile itself emits for linear layers; eagerly it runs a
    layer in one pass instead of a matrix product, a bias pass and an activation pass. It has no autograd
    and exists only in builds with oneDNN, so the plain path stays the fallback.
    """
    try:
        return torch.ops.mkldnn._linear_pointwise.default if torch.backends.mkldnn.is_available() else None
    except (AttributeError, RuntimeError):
        return None


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
        # Implementation switches (not part of the model): the fast path, and its inference chunk size in
        # pixels ("auto": CPU_CHUNK_PIXELS on the CPU, whole levels elsewhere; None: whole levels).
        self.fast = True
        self.chunk_pixels: int | str | None = "auto"
        # CPU inference splits a batch of at least torch.get_num_threads() samples over single-threaded
        # workers (see .threads); False keeps intra-op parallelism.
        self.sample_parallel = True
        # Inference on one thread (a sample-parallel worker, or torch set to one thread) runs the affine heads
        # and the modulated weights through the C kernels of .native where they can be built; False: torch.
        self.native = True

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
        # Compiled training takes the plain path: inductor's CPU code for the fast path's backward corrupted
        # memory (torch 2.13), while it compiles the plain layers' backward correctly and fuses them itself.
        if self.fast and not (torch.compiler.is_compiling() and torch.is_grad_enabled()):
            n_threads = 0 if torch.is_grad_enabled() else self.sample_parallel_threads(ws.shape[0], ws.device, grid)
            if n_threads:
                return self.render_sample_parallel(ws, grid, tile, n_threads)
            params = self.inr_params(ws, lazy=True)  # once for all tiles
            return self.render_tiled(grid, tile, lambda window: self.render_window_fast(ws, window, params))
        return self.render_tiled(grid, tile, lambda window: self.render_window(ws, window))

    def sample_parallel_threads(self, batch: int, device: torch.device, grid: RenderGrid) -> int:
        """The threads a fast render of ``batch`` samples on ``grid`` without autograd is split over
        (:mod:`.threads`), or 0 where it keeps intra-op parallelism: off, not on the CPU, compiling, under CPU
        autocast, a batch that does not split well, or too little work per thread."""
        if (not self.sample_parallel or device.type != "cpu" or torch.compiler.is_compiling()
                or torch.is_autocast_enabled("cpu") or threads.in_worker()):
            return 0
        n = torch.get_num_threads()
        if not threads.use_sample_parallel(batch, n):
            return 0
        return n if batch // n * self.macs_per_sample(grid) >= threads.MIN_MACS_PER_THREAD else 0

    def level_cells(self, grid: RenderGrid) -> list[int]:
        """The cells each grid level evaluates for the window of ``grid``."""
        cells = []
        for f in self.level_factors(grid):
            (ya, yb), (xa, xb) = grid.cell_span(f, "y"), grid.cell_span(f, "x")
            cells.append((yb - ya) * (xb - xa))
        return cells

    def macs_per_sample(self, grid: RenderGrid) -> int:
        """Multiply-accumulates per sample of a render, by the layer shapes: every affine head, every
        modulated weight's low-rank product, and every INR layer on its level's cells in the window."""
        fixed, per_cell = self._macs_by_level
        return fixed + sum(m * c for m, c in zip(per_cell, self.level_cells(grid), strict=True))

    @functools.cached_property
    def _macs_by_level(self) -> tuple[int, list[int]]:
        """(multiply-accumulates per sample that do not depend on the render, those per cell of each level)."""
        fixed, per_cell, level = 0, [0] * len(self.level_blocks), 0
        for block in self.blocks:
            level = block.level if block.level is not None else level
            for layer in block.layers():
                fixed += layer.affine.weight.numel() + layer.in_channels * layer.out_channels * layer.rank
                per_cell[level] += layer.in_channels * layer.out_channels
            fixed += block.torgb.affine.weight.numel()
            per_cell[level] += block.torgb.weight.numel()
        return fixed, per_cell

    def render_sample_parallel(self, ws: Tensor, grid: RenderGrid, tile: int | None, n_threads: int) -> Tensor:
        """The fast render without autograd, the batch split over ``n_threads`` single-threaded workers.

        The affine heads run first on the workers, their rows shared out so that each weight is read once for
        the whole batch. Meanwhile this thread makes every block's INR parameters, for the whole batch, as
        soon as the block's heads are done: that work overlaps the heads' stream from memory. Then every
        worker renders its own samples.
        """
        heads = self.head_inputs(ws)
        pairs = [pair for block in heads for pair in block]
        shared = threads.start_shared_styles(pairs, n_threads, self.native)  # [B, n] each, being filled
        use_native = self.native and all(native.applies(head.weight, w) for head, w in pairs)
        params, done = [], 0
        for i, block in enumerate(heads):
            done += len(block)
            shared.wait(done)  # the block's heads are complete
            styles = shared.out[done - len(block) : done]
            params.append(self.block_inr(ws, i, styles, lazy=True, use_native=use_native))
        shared.wait(len(pairs))
        groups = threads.sample_groups(ws.shape[0], n_threads)

        def render(t: int) -> Tensor:
            b0, b1 = groups[t]  # one group per thread: the batch has at least one sample per thread
            mine = [p.select(b0, b1) for p in params]
            return self.render_tiled(grid, tile, lambda window: self.render_window_fast(None, window, mine))

        return torch.cat(threads.run_on_pool(n_threads, render))

    def render_tiled(self, grid: RenderGrid, tile: int | None, render_window: Callable[[RenderGrid], Tensor]) -> Tensor:
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
        if not self.cfg.pixel_independent:
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

    # ------------------------------------------------------------------------------------------
    # The fast path.

    def inr_params(self, ws: Tensor, styles: list[list[Tensor]] | None = None, lazy: bool = False,
                   use_native: bool | None = None) -> list[BlockINR]:
        """The per-sample INR parameters for ws [B, num_ws, w_dim], per block, with the gains folded in.

        Args:
            styles: the affine heads' outputs, per block in :meth:`head_inputs` order, where the caller
                computed them already.
            lazy: where the native kernels run, the plain layers' weights are :class:`~.fmm.NativeFMMWeight`,
                made per sample when the render uses them.
            use_native: make the weights with the single-threaded C kernels of :mod:`.native` where they
                apply (inference, fp32). Default: ``self.native`` where torch runs on one thread.
        """
        return [self.block_inr(ws, i, None if styles is None else styles[i], lazy, use_native)
                for i in range(len(self.blocks))]

    @functools.cached_property
    def _heads(self) -> list[list[EqualLinear]]:
        """Every block's affine heads: its FMM layers', then its ToRGB's."""
        return [[*(layer.affine for layer in block.layers()), block.torgb.affine] for block in self.blocks]

    def head_inputs(self, ws: Tensor) -> list[list[tuple[EqualLinear, Tensor]]]:
        """Every affine head with the w [B, w_dim] it reads (contiguous), per block: the FMM layers, then the
        ToRGB."""
        per_w = ws.transpose(0, 1).contiguous()  # [num_ws, B, w_dim]: one copy for every head's w
        return [[(head, per_w[w_idx + k]) for k, head in enumerate(heads)]
                for heads, w_idx in zip(self._heads, self.block_w_idx, strict=True)]

    def block_inr(self, ws: Tensor, i: int, styles: list[Tensor] | None = None, lazy: bool = False,
                  use_native: bool | None = None) -> BlockINR:
        """Block ``i``'s per-sample INR parameters (from its heads' precomputed ``styles`` where given;
        ``lazy`` and ``use_native``: see :meth:`inr_params`)."""
        if use_native is None:
            use_native = self.native and torch.get_num_threads() == 1
        lazy = lazy and use_native
        block, w_idx = self.blocks[i], self.block_w_idx[i]
        block_ws = ws[:, w_idx : w_idx + block.num_conv + 1].unbind(1)
        pre = [None] * (block.num_conv + 1) if styles is None else styles
        layers = []
        for k, (layer, w) in enumerate(zip(block.layers(), block_ws, strict=False)):
            if k == 0 and block.level is not None:
                n_x = block.in_channels  # input channels from the previous level; the rest are coordinates
                if n_x:
                    # [B, c_out, n_x], [B, c_out, c_emb], [B or 1, c_out]
                    x_part, emb_part, bias = layer.inr_params_split(w, n_x, (LRELU_GAIN, 1.0), pre[k], use_native)
                    layers.append(INRLayer(x_part, bias, emb_weight=emb_part))
                else:
                    weight, bias = layer.inr_params(w, styles=pre[k], use_native=use_native)
                    layers.append(INRLayer(None, bias, emb_weight=weight))
            elif layer.instance_norm:
                layers.append(INRLayer(*layer.inr_params(w, 1.0, pre[k], use_native, lazy), normalize=True))
            else:
                layers.append(INRLayer(*layer.inr_params(w, LRELU_GAIN, pre[k], use_native, lazy)))
        rgb_weight, rgb_bias = block.torgb.inr_params(block_ws[block.num_conv], pre[block.num_conv])
        basis = None
        if block.level is not None and self.embeddings[block.level].depends_on_w:
            basis = self.embeddings[block.level].predicted_basis(block_ws[0])
        return BlockINR(layers, INRLayer((rgb_weight * LRELU_GAIN).contiguous(), rgb_bias), basis)

    def block_inr_from_weights(self, i: int, layers: list[tuple[Tensor, Tensor]], torgb: tuple[Tensor, Tensor],
                               basis: Tensor | None = None) -> BlockINR:
        """Block ``i``'s INR parameters from plain per-sample weights, as :meth:`block_inr` makes them.

        Args:
            layers: (weight [B, c_out, c_in], bias [B or 1, c_out]) of every FMM layer, demodulated as the
                layers compute them (no gains folded in).
            torgb: the ToRGB's (weight [B, img_channels, C], bias [B or 1, img_channels]).
            basis: the predicted coordinate basis [B, n, 3] where the block starts a level that has one.
        """
        block = self.blocks[i]
        out = []
        for k, (layer, (weight, bias)) in enumerate(zip(block.layers(), layers, strict=True)):
            if k == 0 and block.level is not None:
                n_x = block.in_channels
                x_part = (weight[:, :, :n_x] * LRELU_GAIN).contiguous() if n_x else None
                out.append(INRLayer(x_part, bias, emb_weight=weight[:, :, n_x:].contiguous()))
            elif layer.instance_norm:
                out.append(INRLayer(weight.contiguous(), bias, normalize=True))
            else:
                out.append(INRLayer((weight * LRELU_GAIN).contiguous(), bias))
        return BlockINR(out, INRLayer((torgb[0] * LRELU_GAIN).contiguous(), torgb[1]), basis)

    def _chunk_pixels(self, device: torch.device, track: bool) -> int | None:
        """Cells per inference chunk, or None for whole levels."""
        chunk = self.chunk_pixels
        if chunk == "auto":
            chunk = CPU_CHUNK_PIXELS if device.type == "cpu" else None
        # Autograd keeps every activation anyway, and -bil's normalisation needs the whole level.
        if chunk is None or track or not self.cfg.pixel_independent:
            return None
        return int(chunk)

    def render_window_fast(self, ws: Tensor | None, grid: RenderGrid, params: list[BlockINR] | None = None) -> Tensor:
        """Equal to :meth:`render_window` up to rounding.

        ``params`` are the INR parameters (from :meth:`inr_params`, or :meth:`block_inr_from_weights` for given
        weights); without them they are computed from ``ws``, which is not needed otherwise.
        """
        cfg = self.cfg
        if cfg.upsampling == "bilinear" and (grid.rows is not None or grid.cols is not None):
            raise ValueError("bilinear upsampling mixes neighbouring cells: windows need nearest upsampling")
        if params is None:
            params = self.inr_params(ws)
        track = torch.is_grad_enabled() and (any(t.requires_grad for b in params for t in b.tensors())
                                             or any(p.requires_grad for p in self.parameters()))
        factors = self.level_factors(grid)
        batch, device = params[0].torgb.weight.shape[0], params[0].torgb.weight.device
        chunk = self._chunk_pixels(device, track)
        coarse = img = None  # the previous level's product for the next layer [B, h', w', c], image [B, h', w', img_c]
        prev_factor = up = 1
        crop_y = crop_x = 0
        for level, block_ids in enumerate(self.level_blocks):
            f = factors[level]
            (ya, yb), (xa, xb) = grid.cell_span(f, "y"), grid.cell_span(f, "x")
            h, w = yb - ya, xb - xa
            ys, xs = grid.cell_coords(f, "y"), grid.cell_coords(f, "x")
            if coarse is not None:
                up = prev_factor // f
                (pya, _), (pxa, _) = grid.cell_span(prev_factor, "y"), grid.cell_span(prev_factor, "x")
                crop_y, crop_x = ya - pya * up, xa - pxa * up
                if cfg.upsampling != "nearest":  # interpolation reads neighbouring cells: upsample whole maps
                    coarse = _upsample_maps(coarse, up, crop_y, crop_x, h, w, cfg.upsampling)
                    img = _upsample_maps(img, up, crop_y, crop_x, h, w, cfg.upsampling)
                    up, crop_y, crop_x = 1, 0, 0
            nxt = self.level_blocks[level + 1][0] if level + 1 < len(self.level_blocks) else None  # its first layer
            embedding = self.embeddings[level]
            embed = functools.partial(embedding.forward_channels_last, basis=params[block_ids[0]].basis)
            whole = None  # the level's features [1, h, w, C_emb] when kept between calls
            if not (embedding.depends_on_w or torch.is_grad_enabled() or torch.compiler.is_compiling()):
                whole = embedding.cached_channels_last((grid.height, grid.width, grid.bbox, grid.frame, f, ya, yb, xa, xb),
                                                       ys, xs)
            if chunk is None:
                img, coarse = self._level_chunk(block_ids, params, embed(ys, xs) if whole is None else whole,
                                                (coarse, up, crop_y, crop_x), img,
                                                None if nxt is None else params[nxt].layers[0], not track)
                prev_factor = f
                continue
            # Inference: chunks of whole coarse rows, written into the level's maps.
            rows = max(up, max(1, chunk // w) // up * up)
            img_out = coarse_out = None
            for r0 in range(0, h, rows):
                r1 = min(h, r0 + rows)
                # [1 or B, rows, w, C_emb], shared by the samples
                emb = embed(ys[r0:r1], xs) if whole is None else whole[:, r0:r1]
                p, cy = _rows_of(coarse, r0, r1, up, crop_y)
                q, _ = _rows_of(img, r0, r1, up, crop_y)
                img_c, coarse_c = self._level_chunk(block_ids, params, emb, (p, up, cy, crop_x), q,
                                                    None if nxt is None else params[nxt].layers[0], True)
                if img_out is None:  # the first chunk fixes channels and dtype
                    img_out = img_c.new_empty(batch, h, w, img_c.shape[3])
                    if coarse_c is not None:
                        coarse_out = coarse_c.new_empty(batch, h, w, coarse_c.shape[3])
                img_out[:, r0:r1] = img_c
                if coarse_c is not None:
                    coarse_out[:, r0:r1] = coarse_c
            img, coarse = img_out, coarse_out
            prev_factor = f
        # Crop the last level's cells to the window's pixels.
        f = prev_factor
        (ya, _), (xa, _) = grid.cell_span(f, "y"), grid.cell_span(f, "x")
        (r0, r1), (c0, c1) = grid.row_span, grid.col_span
        img = upsample_cells(img.permute(0, 3, 1, 2), f, r0 - ya * f, c0 - xa * f, r1 - r0, c1 - c0, cfg.upsampling)
        img = (img.float() if img.dtype in (torch.float16, torch.bfloat16) else img).contiguous()  # autocast: fp32
        if cfg.final_tanh:
            img = torch.tanh(img)
        return img

    def _level_chunk(
        self,
        block_ids: list[int],
        params: list[BlockINR],
        emb: Tensor,
        prev: tuple[Tensor | None, int, int, int],
        prev_img: Tensor | None,
        nxt: INRLayer | None,
        inplace: bool,
    ) -> tuple[Tensor, Tensor | None]:
        """Every layer of one level on a block of cells -> (image, next level's coarse product), [B, rows, w, .].

        Args:
            emb: coordinate features [1 or B, rows, w, C_emb].
            prev: the previous level's coarse product [B, rows', w', c] (bias included), the upsampling
                factor and the crop of these cells in it; None on the first level.
            prev_img: the previous level's image, upsampled like ``prev``.
            nxt: the next level's first layer (its part acting on this level's features).
            inplace: bias, activation and sums in place (no autograd).
        """
        _, rows, w, _ = emb.shape
        p, up, crop_y, crop_x = prev
        n = rows * w
        e = emb.reshape(emb.shape[0], n, -1)  # [1 or B, n, C_emb]
        batch = params[block_ids[0]].torgb.weight.shape[0]
        # The fused kernels round differently from the plain ones: they serve explicit inference (no_grad or
        # inference_mode) only, so a model gives bit-identical outputs whether or not it requires grad.
        min_cells = ONEDNN_MIN_CELLS_ONE_THREAD if torch.get_num_threads() == 1 else ONEDNN_MIN_CELLS
        fused = (inplace and not torch.is_grad_enabled() and e.device.type == "cpu" and e.dtype == torch.float32
                 and n >= min_cells)
        op = onednn_linear() if fused and not torch.compiler.is_compiling() else None
        if op is not None and not torch.is_autocast_enabled("cpu"):
            return self._level_chunk_onednn(op, block_ids, params, e, rows, w, prev, prev_img, nxt)
        a = img = None  # activation before its gain [B, n, c]; image [B, n, img_c]
        for i in block_ids:
            for layer in params[i].layers:
                if layer.emb_weight is not None:
                    z = _emb_product(layer.emb_weight, e.to(layer.emb_weight.dtype))  # [B, n, c_out]
                    if p is None:
                        bias = layer.bias[:, None, :]
                        z = z.add_(bias) if inplace else z + bias
                    else:  # the coarse product already holds the bias
                        c = z.shape[2]
                        z = _add_upsampled(z.view(batch, rows, w, c), p.to(z.dtype), up, crop_y, crop_x, inplace)
                        z = z.reshape(batch, n, c)
                else:
                    z = _linear(layer, a)
                a = _lrelu(z, inplace)
            rgb = _linear(params[i].torgb, a)
            img = rgb if img is None else (img.add_(rgb) if inplace else img + rgb)
        img = img.view(batch, rows, w, -1)
        if prev_img is not None:
            img = _add_upsampled(img, prev_img.to(img.dtype), up, crop_y, crop_x, inplace)
        coarse = _linear(nxt, a).view(batch, rows, w, -1) if nxt is not None else None
        return img, coarse

    def _level_chunk_onednn(self, op, block_ids: list[int], params: list[BlockINR], e: Tensor, rows: int, w: int,
                            prev: tuple[Tensor | None, int, int, int], prev_img: Tensor | None,
                            nxt: INRLayer | None) -> tuple[Tensor, Tensor | None]:
        """:meth:`_level_chunk` for CPU inference: one sample at a time, each layer one fused oneDNN call."""
        p, up, crop_y, crop_x = prev
        batch = params[block_ids[0]].torgb.weight.shape[0]

        def bias(layer: INRLayer, b: int) -> Tensor:
            return layer.bias[b if layer.bias.shape[0] > 1 else 0]

        imgs, coarses = [], []
        for b in range(batch):
            eb = e[b if e.shape[0] > 1 else 0]  # [n, C_emb]
            a = img = None  # [n, c], [n, img_c]
            for i in block_ids:
                for layer in params[i].layers:
                    if layer.emb_weight is None:
                        if layer.normalize:  # as in _linear; a chunk is then a whole level
                            a = a / (a.std(dim=0, keepdim=True) + 1e-8 / LRELU_GAIN)
                        a = op(a, layer.weight[b], bias(layer, b), "leaky_relu", [LRELU_SLOPE], "")
                    elif p is None:
                        a = op(eb, layer.emb_weight[b], bias(layer, b), "leaky_relu", [LRELU_SLOPE], "")
                    else:  # the coarse product already holds the bias
                        z = op(eb, layer.emb_weight[b], None, "none", [], "")
                        z = _add_upsampled(z.view(1, rows, w, -1), p[b : b + 1], up, crop_y, crop_x, True)
                        a = F.leaky_relu_(z.view(rows * w, -1), LRELU_SLOPE)
                rgb = op(a, params[i].torgb.weight[b], bias(params[i].torgb, b), "none", [], "")
                img = rgb if img is None else img.add_(rgb)
            img = img.view(1, rows, w, -1)
            if prev_img is not None:
                img = _add_upsampled(img, prev_img[b : b + 1], up, crop_y, crop_x, True)
            imgs.append(img)
            if nxt is not None:
                coarses.append(op(a, nxt.weight[b], bias(nxt, b), "none", [], "").view(1, rows, w, -1))
        return torch.cat(imgs), (torch.cat(coarses) if coarses else None)

    def extra_repr(self) -> str:
        return f"resolution={self.cfg.resolution}, num_ws={self.num_ws}, levels={self.cfg.grid_resolutions}"

