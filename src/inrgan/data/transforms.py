"""Pure image transforms: PIL image -> uint8 tensor, centre crop, resize.

Every dataset goes through the same three steps, so a folder, a zip and Fashion-MNIST give the same
pixels for the same image: ``image_to_tensor`` (channel conversion), ``center_crop`` (largest centred
square), ``resize_images`` (antialiased bicubic).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N"})
_INT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
RESIZE_CHUNK = 4096  # images per interpolate call: bounds the float32 copy to a few hundred MB


def is_grayscale_mode(mode: str) -> bool:
    """Whether a PIL mode holds one intensity channel (alpha aside)."""
    return mode in GRAYSCALE_MODES


def image_to_tensor(image: Image.Image, channels: int) -> Tensor:
    """A PIL image as uint8 [channels, H, W].

    Colour to grayscale uses PIL's ``convert("L")`` (ITU-R 601-2 luma); grayscale to colour replicates.
    Alpha is dropped. Integer modes ("I", "I;16", as 16-bit PNGs open) are taken as 16-bit and scaled
    to 8 bits rather than clipped, which is what ``convert`` would do.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if image.mode in _INT_MODES:
        wide = np.asarray(image).astype(np.float32)  # [H, W], 0..65535
        gray = np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8)
        x = torch.from_numpy(gray).unsqueeze(0)  # [1, H, W]
        return x.expand(channels, -1, -1).contiguous()
    array = np.array(image.convert("L" if channels == 1 else "RGB"))  # [H, W] or [H, W, 3]
    if channels == 1:
        return torch.from_numpy(array).unsqueeze(0)  # [1, H, W]
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()  # [3, H, W]


def center_crop(images: Tensor) -> Tensor:
    """The largest centred square of [..., H, W]: [..., S, S] with S = min(H, W).

    An odd surplus loses its extra row or column at the bottom or right.
    """
    h, w = images.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return images[..., top : top + s, left : left + s]


def resize_images(images: Tensor, resolution: int) -> Tensor:
    """Resize uint8 [N, C, S, S] square images to uint8 [N, C, R, R].

    Bicubic with antialiasing: torch's antialiased kernel is modelled on PIL's BICUBIC resampling
    (within 2 levels of it when downscaling photos) and runs batched, which makes 60,000
    Fashion-MNIST images a fraction of a second. Same-size input is returned unchanged.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 [N, C, S, S], got {images.dtype} {list(images.shape)}")
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"expected square images, got {list(images.shape[-2:])}; centre-crop them first")
    if resolution < 1:
        raise ValueError(f"resolution must be positive, got {resolution}")
    if images.shape[-1] == resolution:
        return images
    out = torch.empty(*images.shape[:2], resolution, resolution, dtype=torch.uint8)  # [N, C, R, R]
    for start in range(0, images.shape[0], RESIZE_CHUNK):
        chunk = images[start : start + RESIZE_CHUNK].float()
        resized = F.interpolate(chunk, size=(resolution, resolution), mode="bicubic", antialias=True,
                                align_corners=False)
        out[start : start + RESIZE_CHUNK] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out
