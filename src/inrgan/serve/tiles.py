"""Tiles of a continuous image: which box a map tile covers, what a view asks for, and a bounded cache.

A tile (z, x, y) at zoom z covers 1/2^z of the training box's side: tile (0, 0, 0) is the training box,
and tiles with x or y outside 0..2^z - 1 lie beyond its borders (the extrapolation). Each is rendered
at ``size`` x ``size`` pixels over its own box, so zooming in renders more detail instead of enlarging
pixels, and neighbouring tiles are the pixels of one render of their union (pixel-centred grids).
"""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

from ..models.coords import default_bbox


class BadRequest(ValueError):
    """A parameter that cannot be served; the message says which and why (answered with a 400)."""


@dataclass(frozen=True)
class Limits:
    tile_sizes: tuple[int, ...] = (64, 128, 256, 512)
    max_zoom: int = 20  # 2^20 times the training density
    max_extent: float = 16.0  # tiles and exports stay within this many training-box sides of its centre
    max_export_pixels: int = 4096 * 4096
    export_tile: int = 256  # exports render in tiles of this size
    cache_bytes: int = 64 * 2**20  # PNG bytes kept
    latent_entries: int = 256
    requests_per_s: float = 200.0  # per client, with a burst of the same size


@dataclass(frozen=True)
class View:
    """What an image of the viewer is: a seed (optionally on the way to ``seed2`` at ``t`` in ``space``),
    a truncation and a class."""

    seed: int
    psi: float = 1.0
    class_index: int | None = None
    seed2: int | None = None
    t: float = 0.0
    space: str = "w"


def tile_box(frame: str, z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """The box (x0, y0, x1, y1) of tile (z, x, y) in the model's coordinate frame."""
    bx0, by0, bx1, by1 = default_bbox(frame)
    sx, sy = (bx1 - bx0) / 2**z, (by1 - by0) / 2**z
    return (bx0 + x * sx, by0 + y * sy, bx0 + (x + 1) * sx, by0 + (y + 1) * sy)


def check_box(frame: str, box: tuple[float, float, float, float], limits: Limits) -> None:
    bx0, by0, bx1, by1 = default_bbox(frame)
    if not all(math.isfinite(v) for v in box):
        raise BadRequest(f"the box {box} has a NaN or infinite coordinate")
    if box[0] == box[2] or box[1] == box[3]:
        raise BadRequest(f"the box {box} is empty")
    reach = limits.max_extent * max(abs(bx1 - bx0), abs(by1 - by0))
    cx, cy = (bx0 + bx1) / 2, (by0 + by1) / 2
    if max(abs(v - cx) for v in box[::2]) > reach or max(abs(v - cy) for v in box[1::2]) > reach:
        raise BadRequest(f"the box {box} lies more than {limits.max_extent:g} training boxes from the centre")


def png_bytes(image: torch.Tensor) -> bytes:
    """[C, H, W] in [-1, 1] -> PNG."""
    from ..rendering.images import pil_image, to_uint8

    buf = io.BytesIO()
    pil_image(to_uint8(image[None])[0]).save(buf, format="PNG")
    return buf.getvalue()


class ByteLRU:
    """A thread-safe LRU of bytes values, bounded by their total size."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.bytes = max_bytes, 0
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                self.bytes -= len(self._items.pop(key))
            self._items[key] = value
            self.bytes += len(value)
            while self.bytes > self.max_bytes:
                self.bytes -= len(self._items.popitem(last=False)[1])

    def __len__(self) -> int:
        return len(self._items)


class Renderer:
    """Renders boxes of the views of one generator, with each view's latents (or INR parameters) made
    once and kept, and the tiles' PNGs cached within ``limits.cache_bytes``."""

    def __init__(self, G, limits: Limits | None = None):
        self.G, self.limits = G.eval().requires_grad_(False), limits or Limits()
        self.tiles = ByteLRU(self.limits.cache_bytes)
        self._latents: OrderedDict[View, tuple] = OrderedDict()
        self._lock = threading.Lock()

    def latents(self, view: View) -> tuple[torch.Tensor | None, dict | None]:
        """(ws [1, num_ws, w_dim], None), or (None, INR parameters) for a path in INR space."""
        with self._lock:
            if view in self._latents:
                self._latents.move_to_end(view)
                return self._latents[view]
        made = self._make_latents(view)
        with self._lock:
            self._latents[view] = made
            while len(self._latents) > self.limits.latent_entries:
                self._latents.popitem(last=False)
        return made

    def _make_latents(self, view: View):
        from ..models.generator import seed_latents
        from ..rendering.interpolate import inr_parameters, lerp_params, select, slerp

        G = self.G
        seeds = [view.seed] if view.seed2 is None else [view.seed, view.seed2]
        z = seed_latents(seeds, G.z_dim)
        c = None
        if G.c_dim:
            c = torch.nn.functional.one_hot(torch.full((len(seeds),), view.class_index or 0), G.c_dim).float()
        with torch.no_grad():
            if view.seed2 is not None and view.space == "z":
                z, c = slerp(z[:1], z[1:], view.t), (None if c is None else c[:1])
            ws = G.mapping(z, view.psi, c=c)
            if view.seed2 is None or view.space == "z":
                return ws[:1], None
            if view.space == "w":
                return ws[:1].lerp(ws[1:], view.t), None
            params = inr_parameters(G.synthesis, ws)
            return None, lerp_params(select(params, slice(0, 1)), select(params, slice(1, 2)), view.t)

    def render(self, view: View, box, height: int, width: int, tile: int | None = None) -> torch.Tensor:
        """[C, H, W] of ``view`` over ``box``: ``G(z, height=, width=, bbox=box)`` for the view's latent."""
        from ..rendering.interpolate import render_inr

        ws, params = self.latents(view)
        with torch.inference_mode():
            if params is not None:
                return render_inr(self.G.synthesis, params, height=height, width=width, bbox=box, tile=tile)[0]
            return self.G.synthesis(ws, height=height, width=width, bbox=box, tile=tile)[0]

    def gallery_png(self, views: list[View], size: int) -> bytes:
        """One PNG strip of the training box of every view (plain seeds), rendered in one batch: a
        gallery of 24 seeds at 64^2 takes one forward instead of 24 (docs/viewer.md has the ratio)."""
        key = ("gallery", tuple(views), size)
        cached = self.tiles.get(key)
        if cached is not None:
            return cached
        ws = torch.cat([self.latents(v)[0] for v in views])  # [N, num_ws, w_dim]
        with torch.inference_mode():
            images = self.G.synthesis(ws, height=size, width=size)  # [N, C, size, size]
        png = png_bytes(torch.cat(list(images), dim=-1))  # [C, size, N * size]
        self.tiles.put(key, png)
        return png

    def tile_png(self, view: View, z: int, x: int, y: int, size: int) -> bytes:
        key = (view, z, x, y, size)
        cached = self.tiles.get(key)
        if cached is not None:
            return cached
        box = tile_box(self.G.cfg.grid, z, x, y)
        png = png_bytes(self.render(view, box, size, size))
        self.tiles.put(key, png)
        return png
