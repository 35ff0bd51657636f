"""Turning generator outputs into pictures: uint8 conversion, PNG files and image grids."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..io import atomic_write_bytes


def to_uint8(img: Tensor, drange: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """[B, C, H, W] floats in ``drange`` -> uint8 [B, H, W, C] (values outside are clipped)."""
    lo, hi = drange
    x = (img.detach().float().cpu() - lo) * (255.0 / (hi - lo))
    x = x.round().clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def make_grid(images: np.ndarray, cols: int | None = None) -> np.ndarray:
    """uint8 [B, H, W, C] -> one uint8 [rows*H, cols*W, C] grid (row-major, empty cells black)."""
    b, h, w, c = images.shape
    cols = cols or int(math.ceil(math.sqrt(b)))
    rows = int(math.ceil(b / cols))
    grid = np.zeros((rows * h, cols * w, c), dtype=np.uint8)
    for i in range(b):
        r, q = divmod(i, cols)
        grid[r * h : (r + 1) * h, q * w : (q + 1) * w] = images[i]
    return grid


def pil_image(array: np.ndarray) -> Image.Image:
    """uint8 [H, W, 1|3] -> PIL image (L or RGB)."""
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array, "L" if array.shape[2] == 1 else "RGB")


def save_png(array: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a uint8 [H, W, C] array as PNG, atomically."""
    buf = io.BytesIO()
    pil_image(array).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def save_grid(img: Tensor, path: str | os.PathLike, cols: int | None = None,
              drange: tuple[float, float] = (-1.0, 1.0)) -> Path:
    return save_png(make_grid(to_uint8(img, drange), cols), path)
