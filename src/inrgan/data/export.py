"""Write any dataset ``open_dataset`` reads as a StyleGAN2-ADA zip of PNGs."""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..io import atomic_write
from .dataset import check_options, decode_image, scan_images
from .errors import DatasetError
from .files import open_image_files
from .idx import find_train_images, parse_fashion_mnist, read_idx_images
from .transforms import RESIZE_CHUNK, resize_images

IMAGES_PER_FOLDER = 1000


def zip_image_name(index: int) -> str:
    """StyleGAN2-ADA's layout: ``00000/img00000000.png``, 1000 images per folder."""
    return f"{index // IMAGES_PER_FOLDER:05d}/img{index:08d}.png"


def encode_png(image: Tensor) -> bytes:
    """PNG bytes of a uint8 [C, H, W] image, C = 1 (mode L) or 3 (RGB)."""
    array = image.permute(1, 2, 0).numpy()  # [H, W, C]
    if array.shape[2] == 1:
        array = array[:, :, 0]  # [H, W]
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    return buffer.getvalue()


def _iter_images(source: str | os.PathLike, resolution: int | None,
                 channels: int | None) -> tuple[int, Iterator[Tensor]]:
    """The number of images and an iterator over them, uint8 [C, S, S], centre-cropped and resized."""
    idx_folder = parse_fashion_mnist(source)
    if idx_folder is not None:
        array, _ = read_idx_images(find_train_images(idx_folder))
        images = torch.from_numpy(array.copy()).unsqueeze(1)  # [N, 1, 28, 28]
        channels = channels or 1

        def fashion_mnist() -> Iterator[Tensor]:
            for start in range(0, len(images), RESIZE_CHUNK):
                chunk = images[start : start + RESIZE_CHUNK]
                chunk = chunk if resolution is None else resize_images(chunk, resolution)  # [n, 1, R, R]
                yield from chunk.expand(-1, channels, -1, -1)

        return len(images), fashion_mnist()

    files = open_image_files(Path(source).expanduser().resolve())
    grayscale, _ = scan_images(files, files.names)
    channels = channels or (1 if grayscale else 3)
    return len(files.names), (decode_image(files, n, channels, resolution) for n in files.names)


def make_dataset_zip(
    source_dir: str | os.PathLike,
    dest_zip: str | os.PathLike,
    resolution: int | None = None,
    channels: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Convert a folder of images (or "fashion-mnist", or a zip) into a StyleGAN2-ADA-layout zip.

    Images are centre-cropped to squares, resized to ``resolution`` unless it is None (then each keeps
    its cropped size), converted to ``channels`` (None: 1 if all are grayscale, else 3) and stored
    uncompressed as PNGs at ``00000/img00000000.png``..., beside a ``dataset.json`` of
    ``{"labels": null}``. The zip is written atomically: a failure leaves no partial file.

    Args:
        source_dir: anything ``open_dataset`` accepts.
        dest_zip: the zip to write (its name must end in .zip).
        resolution: output side, or None to keep sizes.
        channels: 1, 3 or None (automatic).
        progress: called as ``progress(done, total)`` after each image.

    Returns:
        The number of images written.

    Raises:
        DatasetError: a bad source, or a destination that is not a .zip or cannot be written.
    """
    check_options(resolution, channels)
    dest = Path(dest_zip).expanduser()
    if dest.suffix.lower() != ".zip":
        raise DatasetError(f"{dest}: the destination must be a .zip file")
    if dest.is_dir():
        raise DatasetError(f"{dest}: is a folder; the destination must be a .zip file")
    total, images = _iter_images(source_dir, resolution, channels)

    def write(f: IO[bytes]) -> None:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as archive:
            for i, image in enumerate(images):
                archive.writestr(zip_image_name(i), encode_png(image))
                if progress is not None:
                    progress(i + 1, total)
            archive.writestr("dataset.json", json.dumps({"labels": None}))

    try:
        atomic_write(dest, write)
    except OSError as e:
        raise DatasetError(f"{dest}: cannot write ({e})") from e
    return total
