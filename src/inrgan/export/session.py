"""An exported ONNX generator as a checkpoint: rendered by onnxruntime, called like the PyTorch one.

:class:`OnnxGenerator` takes the calls that ``inrgan generate``, ``video`` and ``interpolate`` (in z) make of
a ``Generator``: ``G(z, c, truncation_psi=, height=, width=, bbox=, tile=)``, and ``G.synthesis(G.mapping(z,
psi))``, where the "ws" it passes between them are the latents and the truncation (the graph starts at z).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .graph import ExportError, coarsest_cell
from .onnxfile import read


def is_onnx_path(checkpoint) -> bool:
    """Whether a ``--checkpoint`` names an ONNX file (by its suffix)."""
    return Path(str(checkpoint)).suffix.lower() == ".onnx"


@dataclass(frozen=True)
class Latents:
    """What the graph starts from, standing for ws between ``mapping`` and ``synthesis``."""

    z: torch.Tensor  # [B, z_dim]
    c: torch.Tensor | None
    truncation_psi: float

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.z.shape[0],)


class _Mapping:
    def __init__(self, G: OnnxGenerator) -> None:
        self.G = G

    def __call__(self, z, truncation_psi: float = 1.0, truncation_cutoff: int | None = None, *, c=None) -> Latents:
        if truncation_cutoff is not None:
            raise ExportError("an ONNX generator truncates every w: it takes no truncation cutoff")
        return Latents(torch.as_tensor(z).reshape(-1, self.G.z_dim), c, float(truncation_psi))


class _Synthesis:
    def __init__(self, G: OnnxGenerator) -> None:
        self.G = G

    def __call__(self, ws, height=None, width=None, bbox=None, tile=None) -> torch.Tensor:
        if not isinstance(ws, Latents):
            raise ExportError("an ONNX generator renders from z: interpolate or edit in z, not in w or the INR")
        return self.G(ws.z, ws.c, truncation_psi=ws.truncation_psi, height=height, width=width, bbox=bbox, tile=tile)


class OnnxGenerator:
    """An inrgan ONNX file rendered by onnxruntime on the CPU."""

    has_inr = False  # no INR parameters to interpolate: the graph goes from z to pixels
    renders_from_z = True  # no w either: mapping() hands the latents on to synthesis()
    renders_any_grid = True

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        self.path = Path(path)
        self.session, self.cfg, self.metadata = read(path, threads or torch.get_num_threads())
        cfg = self.cfg
        self.z_dim, self.w_dim, self.img_channels, self.resolution = cfg.z_dim, cfg.w_dim, cfg.img_channels, cfg.resolution
        self.c_dim, self.class_names = cfg.c_dim, cfg.class_names
        self.mapping, self.synthesis = _Mapping(self), _Synthesis(self)

    def render(self, z: np.ndarray, truncation_psi, height: int, width: int, bbox, c: np.ndarray | None = None
               ) -> np.ndarray:
        """One run of the graph: numpy in, [B, img_channels, height, width] float32 out."""
        psi = np.asarray(truncation_psi, np.float32).reshape(-1)
        if psi.shape[0] not in (1, len(z)):
            raise ValueError(f"truncation_psi: give one value or one per image ({len(z)}), got {psi.shape[0]}")
        feed = {"z": np.ascontiguousarray(z, np.float32), "truncation_psi": psi,
                "bbox": np.asarray(bbox, np.float64), "height": np.asarray(height, np.int64),
                "width": np.asarray(width, np.int64)}
        if self.c_dim:
            feed["c"] = np.ascontiguousarray(c, np.float32)
        return self.session.run(None, feed)[0]

    def __call__(self, z, c=None, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                 height: int | None = None, width: int | None = None, bbox=None, tile: int | None = None,
                 **render) -> torch.Tensor:
        """z [B, z_dim] -> images [B, img_channels, H, W] (torch), as ``Generator.__call__``."""
        from ..models.synthesis import make_grid

        if truncation_cutoff is not None or render:
            what = "truncation cutoff" if truncation_cutoff is not None else ", ".join(sorted(render))
            raise ExportError(f"an ONNX generator takes no {what}")
        z = torch.as_tensor(z).detach().float().cpu()
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [B, {self.z_dim}], got {list(z.shape)}")
        if self.c_dim and (c is None or tuple(c.shape) != (z.shape[0], self.c_dim)):
            raise ValueError(f"this model is conditional on {self.c_dim} classes: give c [B, {self.c_dim}] (one-hot)")
        if not self.c_dim and c is not None:
            raise ValueError("this model is unconditional: it takes no class c")
        grid = make_grid(self.cfg, height, width, bbox)  # checks the size and the box as the PyTorch model does
        cn = None if c is None else torch.as_tensor(c).detach().float().cpu().numpy()
        zn = z.numpy()
        if tile is None:
            return torch.from_numpy(self.render(zn, truncation_psi, grid.height, grid.width, grid.bbox, cn))
        return torch.from_numpy(self._tiled(zn, truncation_psi, grid, tile, cn))

    def _tiled(self, z, psi, grid, tile: int, c) -> np.ndarray:
        """The grid rendered in windows of about ``tile`` pixels, each over its own part of the box. Windows
        start at multiples of the coarsest cells, so each holds the cells (and pixels) of the whole render."""
        from ..models.coords import GridError

        if tile < 1:
            raise ValueError(f"tile must be positive, got {tile}")
        if not self.cfg.pixel_independent:
            raise GridError("tiled rendering needs pixel-independent models (nearest upsampling, no spatial std "
                            "normalisation); render the -bil variant whole")
        cell = coarsest_cell(self.cfg)
        tile = -(-tile // cell) * cell
        x0, y0, x1, y1 = grid.bbox
        sx, sy = (x1 - x0) / grid.width, (y1 - y0) / grid.height
        out = np.empty((z.shape[0], self.img_channels, grid.height, grid.width), np.float32)
        for r0 in range(0, grid.height, tile):
            for c0 in range(0, grid.width, tile):
                r1, c1 = min(r0 + tile, grid.height), min(c0 + tile, grid.width)
                box = (x0 + c0 * sx, y0 + r0 * sy, x0 + c1 * sx, y0 + r1 * sy)
                out[:, :, r0:r1, c0:c1] = self.render(z, psi, r1 - r0, c1 - c0, box, c)
        return out

    def eval(self) -> OnnxGenerator:
        return self

    def __repr__(self) -> str:
        return f"OnnxGenerator({str(self.path)!r}, {self.cfg.family}, {self.resolution}^2, opset {self.metadata['opset']})"
