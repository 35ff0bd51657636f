"""Coordinate features for the fast render: channels-last ([1 or B, h, w, C]), and kept between calls.

The values are :class:`~inrgan.models.coords.CoordEmbedding`'s; the layout is the fast path's, so that a
level's first layer is one matrix product over contiguous runs of channels. On the training grid the
learned constants are read as slices (no interpolation: every index is integral).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..models.coords import CoordEmbedding, interp_taps

# Coordinate features kept between inference calls, per level: the last set of cells only, and only up to
# this size (the 64^2 level of the release model at its own grid is 2.6 MiB; its 256^2 level, 42 MiB, is
# recomputed per chunk instead).
FEATURE_CACHE_BYTES = 16 * 2**20
COMPARE_PIECE_BYTES = 2**20  # the values are compared in pieces of this size


def _range_start(idx: Tensor) -> int | None:
    """``idx[0]`` when ``idx`` is a run of consecutive indices (then a gather is a slice), else None."""
    if idx.numel() == 0 or torch.compiler.is_compiling():
        return None
    first = int(idx[0])
    return first if bool((idx == torch.arange(first, first + idx.numel(), device=idx.device)).all()) else None


def _gather_rows(x: Tensor, idx: Tensor, start: int | None) -> Tensor:
    """x[:, idx] for x [A, n, L]: whole rows of L as contiguous runs, or a slice from ``start``."""
    if start is not None:
        return x[:, start : start + idx.numel()]
    a, n, length = x.shape
    flat = (torch.arange(a, device=idx.device)[:, None] * n + idx[None, :]).flatten()
    return x.reshape(a * n, length).index_select(0, flat).view(a, idx.numel(), length)


def sample_const_channels_last(const: Tensor, iy: Tensor, ix: Tensor, padding: str = "border") -> Tensor:
    """:func:`sample_const` laid out channels-last, [h, w, C], with the same values.

    Rows are gathered as contiguous runs (a slice on the training grid), then the needed columns, then
    the result is viewed channels-last; interpolation is skipped along an axis whose indices are all
    integral (it would add 0). The indices are best given on the CPU: the shortcuts are decided there,
    and only the interpolation taps move to ``const``'s device.
    """
    _, r_h, r_w = const.shape
    eager = not torch.compiler.is_compiling()  # the shortcuts branch on index values
    taps = []
    for idx, n in ((iy, r_h), (ix, r_w)):
        lo, hi, wt = interp_taps(idx, n, padding)
        exact = eager and bool((wt == 0).all())
        start = _range_start(lo) if exact else None
        taps.append((lo.to(const.device), hi.to(const.device), wt.to(const.device, const.dtype), exact, start))
    (ylo, yhi, wy, exact_y, y0), (xlo, xhi, wx, exact_x, x0) = taps
    rows = _gather_rows(const, ylo, y0)  # [C, h, r]
    if not exact_y:
        rows = rows * (1 - wy)[None, :, None] + _gather_rows(const, yhi, None) * wy[None, :, None]
    if x0 == 0 and xlo.numel() == r_w:
        return rows.permute(1, 2, 0)  # every column in order: the caller's concatenation makes the copy
    if exact_x:
        return rows.index_select(2, xlo).permute(1, 2, 0)  # [h, w, C]
    return (rows.index_select(2, xlo) * (1 - wx) + rows.index_select(2, xhi) * wx).permute(1, 2, 0)



def channels_last(embedding: CoordEmbedding, ys: Tensor, xs: Tensor, basis: Tensor | None = None) -> Tensor:
    """``embedding(ys, xs, basis)`` laid out [1 or B, h, w, C], with the same values."""
    device = embedding.log_basis.device
    y = ys.to(device=device, dtype=torch.float32)
    x = xs.to(device=device, dtype=torch.float32)
    fixed = embedding.fixed_basis()  # [n, 2]
    e = fixed[:, 0] * x[None, :, None] + fixed[:, 1] * y[:, None, None]  # [h, w, n]
    e = e.unsqueeze(0)  # [1, h, w, n]
    if embedding.affine is not None:
        if basis is None:
            raise ValueError("a predicted coordinate basis needs the basis predicted from w")
        std = embedding.cfg.gaussian_std
        bx, by = basis[:, None, None, :, 0] * std, basis[:, None, None, :, 1] * std
        ep = bx * x[None, None, :, None] + by * y[None, :, None, None] + basis[:, None, None, :, 2]  # [B, h, w, n]
        e = torch.cat([e.expand(basis.shape[0], -1, -1, -1), ep], dim=3)
    feats = [e.sin(), e.cos()]
    if embedding.const is not None:
        iy, ix = embedding.const_indices(ys, xs)
        c = sample_const_channels_last(embedding.const, iy, ix, embedding.const_padding)
        feats.append(c.unsqueeze(0).expand(e.shape[0], -1, -1, -1))
    return torch.cat(feats, dim=3)


class FeatureCache:
    """The coordinate features of the last set of cells of each level with a fixed basis, for inference.

    An entry is used again only for the same cells and the same values read: it keeps a copy of what its
    features were computed from (the embedding's small tensors, and its learned constant at the cells'
    interpolation taps only) and compares it with the current values, so an optimizer step, an EMA update,
    ``load_state_dict``, ``.to()`` or a write through ``.data`` all invalidate it. The comparison happens once
    per render call (:meth:`new_call`; a sample-parallel render compares once for its workers, :meth:`check`,
    while the affine heads run). It holds at most :data:`FEATURE_CACHE_BYTES` per level; larger features
    are computed chunk by chunk instead.
    """

    def __init__(self) -> None:
        self._entries: dict[int, _Entry] = {}
        self._checked: set[int] = set()  # levels whose entry was compared in this call
        self._lock = threading.Lock()  # sample-parallel renders share the entries

    def __deepcopy__(self, memo) -> FeatureCache:
        return FeatureCache()  # a copied model (G_ema) starts with its own, empty cache

    def new_call(self) -> None:
        """A render call begins: the entries are compared with the embeddings again before their next use."""
        with self._lock:
            self._checked.clear()

    def check(self, embeddings) -> None:
        """Compare every entry with its embedding now (dropping those that changed), for this call."""
        with self._lock:
            for level, entry in list(self._entries.items()):
                if level not in self._checked:
                    if _same(entry.kept, read_values(embeddings[level], entry.taps)):
                        self._checked.add(level)
                    else:
                        del self._entries[level]

    def get(self, level: int, embedding: CoordEmbedding, cells: tuple, ys: Tensor, xs: Tensor) -> Tensor | None:
        """:func:`channels_last` of the cells ``ys`` x ``xs`` (identified by ``cells``), kept for the next
        call; None where the features are too large to keep."""
        if embedding.depends_on_w or torch.is_grad_enabled() or torch.compiler.is_compiling():
            raise RuntimeError("cached features are for inference with a fixed basis")
        if ys.numel() * xs.numel() * embedding.num_channels * 4 > FEATURE_CACHE_BYTES:
            return None
        with self._lock:
            entry = self._entries.get(level)
            if entry is not None and entry.cells == cells:
                if level in self._checked or _same(entry.kept, read_values(embedding, entry.taps)):
                    self._checked.add(level)
                    return entry.features
            self._entries.pop(level, None)  # never hold two
            taps = const_taps(embedding, ys, xs)
            kept = [v.clone() for v in read_values(embedding, taps)]
            self._entries[level] = _Entry(cells, taps, kept, channels_last(embedding, ys, xs))
            self._checked.add(level)
            return self._entries[level].features


@dataclass
class _Entry:
    cells: tuple  # which cells of which grid
    taps: tuple | None  # the rows and columns of the learned constant they read (:func:`const_taps`)
    kept: list[Tensor]  # copies of what they were computed from (:func:`read_values`)
    features: Tensor  # [1, h, w, C]


def const_taps(embedding: CoordEmbedding, ys: Tensor, xs: Tensor) -> tuple[list, list] | None:
    """The rows and the columns of the learned constant that the features of cells ``ys`` x ``xs`` read, or
    None without a constant: per axis the lower interpolation taps and the upper ones where they weigh, each
    a slice where evenly spaced (as on any regular grid: then the values are compared in place)."""
    if embedding.const is None:
        return None
    _, r_h, r_w = embedding.const.shape
    taps = []
    for idx, n in zip(embedding.const_indices(ys, xs), (r_h, r_w), strict=True):
        lo, hi, wt = interp_taps(idx, n, embedding.const_padding)
        taps.append([_as_slice(t) for t in (lo, hi[wt != 0]) if t.numel()])
    return taps[0], taps[1]


def _as_slice(idx: Tensor) -> Tensor | slice:
    """Indices as a slice where they rise evenly, else the indices."""
    steps = idx.diff()
    if idx.numel() == 1 or (bool((steps == steps[0]).all()) and int(steps[0]) > 0):
        return slice(int(idx[0]), int(idx[-1]) + 1, int(steps[0]) if idx.numel() > 1 else 1)
    return idx


def read_values(embedding: CoordEmbedding, taps: tuple[list, list] | None) -> list[Tensor]:
    """What the features read: every tensor of the embedding, and the learned constant at ``taps`` only
    ([C, rows, cols] per pair of row and column taps; strided views where the taps are slices)."""
    const = embedding.const
    values = [t.detach() for t in (*embedding.parameters(), *embedding.buffers()) if t is not const]
    if const is not None:
        c = const.detach()
        for rows in taps[0]:
            by_rows = c[:, rows] if isinstance(rows, slice) else c.index_select(1, rows.to(c.device))
            values += [by_rows[:, :, cols] if isinstance(cols, slice) else by_rows.index_select(2, cols.to(c.device))
                       for cols in taps[1]]
    return values


def _same(kept: list[Tensor], now: list[Tensor]) -> bool:
    """Equal devices, dtypes, shapes and values. On the CPU numpy compares them in pieces of about 1 MiB
    along the first axis, whose temporaries stay in cache (several times torch.equal's speed), reading a
    strided view in place."""
    if len(kept) != len(now):
        return False
    for a, b in zip(kept, now, strict=True):
        if a.device != b.device or a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.device.type == "cpu" and a.dtype in (torch.float32, torch.float64):
            x, y = a.numpy().reshape(a.shape or (1,)), b.numpy().reshape(b.shape or (1,))
            if x.size == 0:
                continue
            step = max(1, COMPARE_PIECE_BYTES // x[0].nbytes)  # leading-axis entries per piece
            if not all(np.array_equal(x[i : i + step], y[i : i + step]) for i in range(0, len(x), step)):
                return False
        elif not torch.equal(a, b):
            return False
    return True
