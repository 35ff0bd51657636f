"""Coordinates and coordinate embeddings: every feature is a function of continuous (x, y).

A render is described by a :class:`RenderGrid`: the output size, the box it covers in the model's
coordinate frame, and the window of output pixels actually computed (a tile). Each pyramid level
evaluates one *cell* per ``factor x factor`` block of output pixels, at the cell's coordinate; nearest
upsampling then hands the cell's features to its pixels. Cells are indexed globally, so a tile computes
exactly the cells (and values) that the whole render computes for its pixels.

Frames:
- "center" (new models): box (-1, -1) top-left to (1, 1) bottom-right, y pointing down, and a cell's
  coordinate is its centre.
- "release" (the reference code): x in [-1, 1) left to right, y flipped (the top row is 1 - 2/n), and a
  cell's coordinate is its left edge in x and its lower edge in y.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import LevelConfig
from .layers import EqualLinear

BBox = tuple[float, float, float, float]  # (x0, y0, x1, y1): coordinates of the top-left and bottom-right


class GridError(ValueError):
    """A grid, box, window or tile that this generator cannot render (StyleGAN2 renders its training grid only)."""


def default_bbox(frame: str) -> BBox:
    return (-1.0, -1.0, 1.0, 1.0) if frame == "center" else (-1.0, 1.0, 1.0, -1.0)


def scale_box(box: BBox, fx: float, fy: float | None = None) -> BBox:
    """``box`` enlarged ``fx`` times in x and ``fy`` (default ``fx``) times in y about its centre."""
    x0, y0, x1, y1 = box
    fy = fx if fy is None else fy
    cx, cy, hx, hy = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2 * fx, (y1 - y0) / 2 * fy
    return (cx - hx, cy - hy, cx + hx, cy + hy)


def cell_offsets(frame: str) -> tuple[float, float]:
    """Where a cell's coordinate sits inside it, in cell units along (x, y) from its top-left."""
    return (0.5, 0.5) if frame == "center" else (0.0, 1.0)


@dataclass(frozen=True)
class RenderGrid:
    """Output pixels ``height x width`` covering ``bbox``; only rows [r0, r1) and columns [c0, c1) are computed."""

    height: int
    width: int
    bbox: BBox
    frame: str = "center"
    rows: tuple[int, int] | None = None
    cols: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"render size must be positive, got {self.height} x {self.width}")
        x0, y0, x1, y1 = self.bbox
        if x0 == x1 or y0 == y1:
            raise ValueError(f"bbox must have a non-zero extent, got {self.bbox}")
        for name, span, n in (("rows", self.rows, self.height), ("cols", self.cols, self.width)):
            if span is not None and not 0 <= span[0] < span[1] <= n:
                raise ValueError(f"{name} window {span} is outside [0, {n})")

    @property
    def row_span(self) -> tuple[int, int]:
        return self.rows if self.rows is not None else (0, self.height)

    @property
    def col_span(self) -> tuple[int, int]:
        return self.cols if self.cols is not None else (0, self.width)

    def cell_span(self, factor: int, axis: str) -> tuple[int, int]:
        """Global indices [a, b) of the cells of size ``factor`` that cover the window along one axis."""
        lo, hi = self.row_span if axis == "y" else self.col_span
        return lo // factor, -(-hi // factor)

    def cell_coords(self, factor: int, axis: str) -> Tensor:
        """Float64 coordinates of the window's cells along one axis: [n_cells]."""
        x0, y0, x1, y1 = self.bbox
        ox, oy = cell_offsets(self.frame)
        start, stop, n, off = (y0, y1, self.height, oy) if axis == "y" else (x0, x1, self.width, ox)
        a, b = self.cell_span(factor, axis)
        j = torch.arange(a, b, dtype=torch.float64)
        return start + (j + off) * factor * ((stop - start) / n)


def log_basis(res: int, diagonals: bool) -> Tensor:
    """Fixed logarithmic Fourier basis [n, 2] (rows project (x, y)): frequencies (pi/2) 2^k, k < log2(res).

    Order as released: the y wavefront, the x wavefront, then the two diagonals (period 4 sqrt 2).
    """
    n = int(math.ceil(math.log2(res)))
    powers = 2.0 ** torch.arange(n, dtype=torch.float64)[:, None]  # [n, 1]
    s = 1.0 / math.sqrt(2.0)
    blocks = [((0.0, 1.0), 4.0), ((1.0, 0.0), 4.0)]
    if diagonals:
        blocks += [((-s, s), 4.0 * math.sqrt(2.0)), ((s, s), 4.0 * math.sqrt(2.0))]
    rows = [torch.tensor([d], dtype=torch.float64) * powers * (2 * math.pi / period) for d, period in blocks]
    return torch.cat(rows).float()


def _reflect(idx: Tensor, n: int) -> Tensor:
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = torch.remainder(idx, period)
    return torch.where(idx > n - 1, period - idx, idx)


def interp_taps(idx: Tensor, n: int, padding: str) -> tuple[Tensor, Tensor, Tensor]:
    """Two-tap linear interpolation along one axis: (lower index, upper index, upper weight)."""
    idx = idx.clamp(0, n - 1) if padding == "border" else _reflect(idx, n)
    # Indices within 1e-6 of an integer are snapped, so renders on the training grid read the stored values.
    rounded = idx.round()
    idx = torch.where((idx - rounded).abs() < 1e-6, rounded, idx)
    lo = idx.floor().long().clamp(0, n - 1)
    hi = (lo + 1).clamp(max=n - 1)
    return lo, hi, (idx - lo.to(idx.dtype)).float()


def sample_const(const: Tensor, iy: Tensor, ix: Tensor, padding: str = "border") -> Tensor:
    """Bilinear, separable sampling of a learned grid at fractional indices.

    Args:
        const: [C, r, r] learned embeddings.
        iy, ix: fractional row / column indices (float64), [h] and [w].
        padding: "border" (clamp to the edge) or "reflection" (mirror about the edge cells).

    Returns:
        [C, h, w]; integral indices return the stored values exactly.
    """
    _, r_h, r_w = const.shape
    ylo, yhi, wy = interp_taps(iy, r_h, padding)
    xlo, xhi, wx = interp_taps(ix, r_w, padding)
    wy, wx = wy.to(const.dtype), wx.to(const.dtype)
    rows = const[:, ylo] * (1 - wy)[None, :, None] + const[:, yhi] * wy[None, :, None]  # [C, h, r]
    return rows[:, :, xlo] * (1 - wx)[None, None, :] + rows[:, :, xhi] * wx[None, None, :]  # [C, h, w]


class CoordEmbedding(nn.Module):
    """Coordinate features of one pyramid level: [sin(E), cos(E), const] at any set of cells."""

    def __init__(self, cfg: LevelConfig, res: int, w_dim: int, frame: str, const_padding: str) -> None:
        super().__init__()
        self.cfg, self.res, self.frame, self.const_padding = cfg, res, frame, const_padding
        basis = log_basis(res, cfg.log_diagonals) if cfg.log_basis else torch.zeros(0, 2)
        self.register_buffer("log_basis", basis)  # [n_log, 2]
        self.register_buffer("gaussian_basis", torch.randn(cfg.gaussian, 2) * cfg.gaussian_std)
        self.learned_basis = nn.Parameter(torch.randn(cfg.learned, 2) * cfg.gaussian_std) if cfg.learned else None
        # Predicted basis: n vectors of 2 and n phases per sample, scaled like the Gaussian basis.
        self.affine = EqualLinear(w_dim, cfg.predicted * 3, bias_init=0.0) if cfg.predicted else None
        self.const = nn.Parameter(torch.randn(cfg.const, res, res)) if cfg.const else None
        self.num_channels = cfg.num_channels(res)

    @property
    def depends_on_w(self) -> bool:
        return self.affine is not None

    def fixed_basis(self) -> Tensor:
        parts = [self.log_basis, self.gaussian_basis]
        if self.learned_basis is not None:
            parts.append(self.learned_basis)
        return torch.cat(parts)  # [n, 2]

    def const_indices(self, ys: Tensor, xs: Tensor) -> tuple[Tensor, Tensor]:
        """Fractional indices into the learned grid for coordinates ``ys`` [h] and ``xs`` [w] (float64)."""
        x0, y0, x1, y1 = default_bbox(self.frame)
        ox, oy = cell_offsets(self.frame)
        iy = (ys - y0) / (y1 - y0) * self.res - oy
        ix = (xs - x0) / (x1 - x0) * self.res - ox
        return iy, ix

    def predicted_basis(self, w: Tensor) -> Tensor:
        """The per-sample basis predicted from w [B, w_dim]: [B, n, (x, y, phase)], before ``gaussian_std``."""
        return self.affine(w).view(w.shape[0], self.cfg.predicted, 3)

    def forward(self, ys: Tensor, xs: Tensor, basis: Tensor | None = None) -> Tensor:
        """Features at the cells (ys[i], xs[j]).

        Args:
            ys: [h] float64 cell coordinates along y.  xs: [w] along x.
            basis: [B, n, 3], the predicted basis (:meth:`predicted_basis`), where the level has one.

        Returns:
            [1, C, h, w] (shared by the batch) or [B, C, h, w] with a predicted basis.
        """
        device = self.log_basis.device
        y = ys.to(device=device, dtype=torch.float32)
        x = xs.to(device=device, dtype=torch.float32)
        fixed = self.fixed_basis()  # [n, 2]
        e = fixed[:, 0, None, None] * x[None, None, :] + fixed[:, 1, None, None] * y[None, :, None]  # [n, h, w]
        e = e.unsqueeze(0)  # [1, n, h, w]
        if self.affine is not None:
            if basis is None:
                raise ValueError("a predicted coordinate basis needs the basis predicted from w")
            bx = basis[:, :, 0, None, None] * self.cfg.gaussian_std
            by = basis[:, :, 1, None, None] * self.cfg.gaussian_std
            ep = bx * x[None, None, None, :] + by * y[None, None, :, None] + basis[:, :, 2, None, None]  # [B, n, h, w]
            e = torch.cat([e.expand(basis.shape[0], -1, -1, -1), ep], dim=1)
        feats = [e.sin(), e.cos()]
        if self.const is not None:
            iy, ix = self.const_indices(ys, xs)
            c = sample_const(self.const, iy.to(device), ix.to(device), self.const_padding)  # [C, h, w]
            feats.append(c.unsqueeze(0).expand(e.shape[0], -1, -1, -1))
        return torch.cat(feats, dim=1)
