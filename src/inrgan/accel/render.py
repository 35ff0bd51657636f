"""The fast render: a sample's INR (in the form of :mod:`.inr`) evaluated level by level, channels-last.

It computes what ``SynthesisNetwork.render`` computes, with three exact rewrites: a level's first layer is
split (its part on the previous level's features runs on the coarse grid, 4x fewer cells, and nothing is
concatenated or upsampled; the coordinate features are computed once per grid and broadcast to the
batch); the leaky ReLU's gain is folded into the next layer's weights; and in inference each level runs
in chunks of rows with in-place bias and activation, so a chunk's activations stay in cache and the
full-resolution activations are never stored. CPU inference of a large enough batch is split over
single-threaded workers (:func:`render_sample_parallel`).
"""

from __future__ import annotations

import functools
import weakref

import torch
from torch import Tensor

from ..models.coords import RenderGrid
from ..models.cost import macs_per_sample
from ..models.synthesis import INRParams, SynthesisNetwork
from . import native, threads
from .features import FeatureCache, channels_last
from .inr import BlockINR, from_params, layer_specs, prepare
from .level import Coarse, level_chunk, upsample_maps
from .options import CPU_CHUNK_PIXELS, DEFAULT, RenderOptions


def _tracks_grad(synthesis: SynthesisNetwork, tensors: list[Tensor]) -> bool:
    return torch.is_grad_enabled() and (any(t.requires_grad for t in tensors)
                                        or any(p.requires_grad for p in synthesis.parameters()))


def chunk_cells(options: RenderOptions, device: torch.device, track: bool, pixel_independent: bool) -> int | None:
    """Cells per inference chunk, or None for whole levels."""
    chunk = options.chunk_pixels
    if chunk == "auto":
        chunk = CPU_CHUNK_PIXELS if device.type == "cpu" else None
    # Autograd keeps every activation anyway, and -bil's normalisation needs the whole level.
    if chunk is None or track or not pixel_independent:
        return None
    return int(chunk)


def render_window(synthesis: SynthesisNetwork, params: list[BlockINR], grid: RenderGrid,
                  options: RenderOptions = DEFAULT, cache: FeatureCache | None = None) -> Tensor:
    """The INR ``params`` on the window of ``grid``, [B, img_channels, rows, cols]: equal to
    ``synthesis.render`` up to rounding."""
    synthesis.check_window(grid)
    track = _tracks_grad(synthesis, [t for b in params for t in b.tensors()])
    device = params[0].torgb.weight.device
    chunk = chunk_cells(options, device, track, synthesis.cfg.pixel_independent)
    factors = synthesis.level_factors(grid)
    coarse = img = None  # the previous level's product for the next layer [B, h', w', c], image [B, h', w', img_c]
    prev_factor = 1
    for level, block_ids in enumerate(synthesis.level_blocks):
        f = factors[level]
        prev, img = _coarse_cells(synthesis, grid, f, prev_factor, coarse, img)
        nxt = synthesis.level_blocks[level + 1][0] if level + 1 < len(synthesis.level_blocks) else None
        features = _features(synthesis, grid, level, f, params[block_ids[0]].basis, cache)
        img, coarse = _render_level([params[i] for i in block_ids], features, prev, img,
                                    None if nxt is None else params[nxt].layers[0], chunk, not track, options)
        prev_factor = f
    img = img.permute(0, 3, 1, 2)
    img = img.float() if img.dtype in (torch.float16, torch.bfloat16) else img  # autocast: fp32
    return synthesis.finish(img, grid, prev_factor).contiguous()


def _coarse_cells(synthesis: SynthesisNetwork, grid: RenderGrid, f: int, prev_factor: int, coarse: Tensor | None,
                  img: Tensor | None) -> tuple[Coarse, Tensor | None]:
    """The previous level's product and image with the upsampling and crop onto this level's cells (upsampled
    here already where the mode reads neighbouring cells)."""
    if coarse is None:
        return (None, 1, 0, 0), img
    (ya, yb), (xa, xb) = grid.cell_span(f, "y"), grid.cell_span(f, "x")
    (pya, _), (pxa, _) = grid.cell_span(prev_factor, "y"), grid.cell_span(prev_factor, "x")
    up = prev_factor // f
    crop_y, crop_x = ya - pya * up, xa - pxa * up
    mode = synthesis.cfg.upsampling
    if mode == "nearest":
        return (coarse, up, crop_y, crop_x), img
    shape = (up, crop_y, crop_x, yb - ya, xb - xa, mode)
    return (upsample_maps(coarse, *shape), 1, 0, 0), upsample_maps(img, *shape)


def _features(synthesis: SynthesisNetwork, grid: RenderGrid, level: int, f: int, basis: Tensor | None,
              cache: FeatureCache | None):
    """(h, w, rows (r0, r1) -> the level's coordinate features of those cell rows, [1 or B, r1 - r0, w, C_emb])."""
    (ya, yb), (xa, xb) = grid.cell_span(f, "y"), grid.cell_span(f, "x")
    ys, xs = grid.cell_coords(f, "y"), grid.cell_coords(f, "x")
    embedding = synthesis.embeddings[level]
    whole = None  # the level's features [1, h, w, C] when kept between calls
    if cache is not None and not (embedding.depends_on_w or torch.is_grad_enabled() or torch.compiler.is_compiling()):
        whole = cache.get(level, embedding, (grid.height, grid.width, grid.bbox, grid.frame, f, ya, yb, xa, xb), ys, xs)
    if whole is not None:
        return yb - ya, xb - xa, lambda r0, r1: whole[:, r0:r1]
    return yb - ya, xb - xa, lambda r0, r1: channels_last(embedding, ys[r0:r1], xs, basis)


def _render_level(blocks: list[BlockINR], features, prev: Coarse, prev_img: Tensor | None, nxt, chunk: int | None,
                  inplace: bool, options: RenderOptions) -> tuple[Tensor, Tensor | None]:
    """One level, whole or (inference) in chunks of whole coarse rows written into the level's maps."""
    p, up, crop_y, crop_x = prev
    h, w, features = features
    if chunk is None:
        return level_chunk(blocks, features(0, h), prev, prev_img, nxt, inplace, options.onednn)
    rows = max(up, max(1, chunk // w) // up * up)
    img_out = coarse_out = None
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        p_rows, cy = _rows_of(p, r0, r1, up, crop_y)
        img_rows, _ = _rows_of(prev_img, r0, r1, up, crop_y)
        img_c, coarse_c = level_chunk(blocks, features(r0, r1), (p_rows, up, cy, crop_x), img_rows, nxt, True,
                                      options.onednn)
        if img_out is None:  # the first chunk fixes channels and dtype
            batch = img_c.shape[0]
            img_out = img_c.new_empty(batch, h, w, img_c.shape[3])
            coarse_out = None if coarse_c is None else coarse_c.new_empty(batch, h, w, coarse_c.shape[3])
        img_out[:, r0:r1] = img_c
        if coarse_c is not None:
            coarse_out[:, r0:r1] = coarse_c
    return img_out, coarse_out


def _rows_of(p: Tensor | None, r0: int, r1: int, up: int, crop_y: int) -> tuple[Tensor | None, int]:
    """Rows of the coarse map ``p`` [B, h', w', C] under fine rows [r0, r1), and the crop of the first one."""
    if p is None:
        return None, 0
    c0, c1 = (r0 + crop_y) // up, (r1 - 1 + crop_y) // up + 1
    return p[:, c0:c1], r0 + crop_y - c0 * up


# ----------------------------------------------------------------------------------------------
# From ws, or from given INR parameters.


def sample_parallel_threads(synthesis: SynthesisNetwork, batch: int, device: torch.device, grid: RenderGrid,
                            options: RenderOptions = DEFAULT) -> int:
    """The threads a fast render of ``batch`` samples on ``grid`` without autograd is split over
    (:mod:`.threads`), or 0 where it keeps intra-op parallelism: off, not on the CPU, compiling, under CPU
    autocast, a batch that does not split well, or too little work per thread."""
    if (not options.sample_parallel or device.type != "cpu" or torch.compiler.is_compiling()
            or torch.is_autocast_enabled("cpu") or threads.in_worker()):
        return 0
    n = torch.get_num_threads()
    if not threads.use_sample_parallel(batch, n):
        return 0
    return n if batch // n * _grid_macs(synthesis, grid) >= threads.MIN_MACS_PER_THREAD else 0


_macs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {grid: MACs per sample}


def _grid_macs(synthesis: SynthesisNetwork, grid: RenderGrid) -> int:
    """:func:`~inrgan.models.cost.macs_per_sample`, kept per model for its last few grids."""
    known = _macs.setdefault(synthesis, {})
    if grid not in known:
        if len(known) >= 16:
            known.clear()
        known[grid] = macs_per_sample(synthesis, grid)
    return known[grid]


def render(synthesis: SynthesisNetwork, ws: Tensor, grid: RenderGrid, tile: int | None = None,
           options: RenderOptions = DEFAULT, cache: FeatureCache | None = None) -> Tensor:
    """``synthesis(ws)`` on ``grid`` by the paths ``options`` choose: [B, img_channels, H, W]."""
    # Compiled training takes the plain path: inductor's CPU code for the fast path's backward corrupted
    # memory (torch 2.13), while it compiles the plain layers' backward correctly and fuses them itself.
    if not options.fast or (torch.compiler.is_compiling() and torch.is_grad_enabled()):
        return SynthesisNetwork.forward(synthesis, ws, grid=grid, tile=tile)
    synthesis.check_ws(ws)
    if cache is not None:
        cache.new_call()
    n_threads = 0 if torch.is_grad_enabled() else sample_parallel_threads(synthesis, ws.shape[0], ws.device, grid,
                                                                          options)
    if n_threads:
        return render_sample_parallel(synthesis, ws, grid, tile, n_threads, options, cache)
    one_thread = torch.get_num_threads() == 1 and options.native
    lib = native.library() if one_thread and not _tracks_grad(synthesis, [ws]) and native.applies(ws) else None
    params = prepare(synthesis, ws, lib=lib, lazy=True)  # once for all tiles
    return synthesis.render_tiled(grid, tile, lambda window: render_window(synthesis, params, window, options, cache))


def render_sample_parallel(synthesis: SynthesisNetwork, ws: Tensor, grid: RenderGrid, tile: int | None,
                           n_threads: int, options: RenderOptions = DEFAULT, cache: FeatureCache | None = None
                           ) -> Tensor:
    """The fast render without autograd, the batch split over ``n_threads`` single-threaded workers.

    The affine heads run first on the workers, their rows shared out so that each weight is read once for
    the whole batch. Meanwhile this thread makes every layer's INR parameters, for the whole batch, as soon
    as the layer's head is done: that work overlaps the heads' stream from memory. Then every worker renders
    its own samples.
    """
    per_w = ws.transpose(0, 1).contiguous()  # [num_ws, B, w_dim]: one copy for every head's w
    heads = [(spec.module.affine, per_w[spec.w_index]) for spec in layer_specs(synthesis)]
    shared = threads.start_shared_styles(heads, n_threads, options.native)  # [B, n] each, being filled
    if cache is not None:  # once for the workers, while this thread would wait for the first heads anyway
        cache.check(synthesis.embeddings)
    use_native = options.native and all(native.applies(head.weight, w) for head, w in heads)
    lib = native.library() if use_native else None
    params = prepare(synthesis, ws, shared.out, lib, lazy=True, wait=shared.wait)
    shared.wait(len(heads))
    groups = threads.sample_groups(ws.shape[0], n_threads)

    def work(t: int) -> Tensor:
        b0, b1 = groups[t]  # one group per thread: the batch has at least one sample per thread
        mine = [p.select(b0, b1) for p in params]
        return synthesis.render_tiled(grid, tile, lambda window: render_window(synthesis, mine, window, options, cache))

    return torch.cat(threads.run_on_pool(n_threads, work))


def render_params(synthesis: SynthesisNetwork, params: INRParams, grid: RenderGrid, tile: int | None = None,
                  options: RenderOptions = DEFAULT) -> Tensor:
    """Given INR parameters on ``grid``, like ``synthesis.render`` (in tiles where ``tile``); no feature cache."""
    if not options.fast:
        return synthesis.render_tiled(grid, tile, lambda window: synthesis.render(params, window))
    blocks = from_params(synthesis, params)
    return synthesis.render_tiled(grid, tile, functools.partial(render_window, synthesis, blocks, options=options))
