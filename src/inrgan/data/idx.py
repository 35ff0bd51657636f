"""Fashion-MNIST's IDX files: where they are and how to read them.

An IDX image file is a big-endian header (magic 2051 = unsigned bytes in 3 dimensions, then the image
count, rows and columns as int32) followed by the pixels, row-major. Files may be gzipped.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from .errors import DatasetError

FASHION_MNIST = "fashion-mnist"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
FASHION_MNIST_ENV = "INRGAN_FASHION_MNIST_DIR"
TRAIN_IMAGES = "train-images-idx3-ubyte"
IDX_IMAGES_MAGIC = 2051  # 0x00000803
IDX_LABELS_MAGIC = 2049  # 0x00000801
_GZIP_MAGIC = b"\x1f\x8b"


def _split_file(train_name: str, split: str) -> str:
    """The IDX file name of ``split`` ("train" or "test": Fashion-MNIST names its test files t10k-...)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return train_name if split == "train" else "t10k" + train_name.removeprefix("train")


def parse_fashion_mnist(source: str | os.PathLike) -> Path | None:
    """The IDX folder that ``source`` names, or None when it is not a Fashion-MNIST source.

    "fashion-mnist" is ``$INRGAN_FASHION_MNIST_DIR`` or /usr/share/datasets/fashion-mnist;
    "fashion-mnist:/some/folder" is that folder.
    """
    if not isinstance(source, str):
        return None
    if source == FASHION_MNIST:
        return Path(os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DIR)
    prefix = FASHION_MNIST + ":"
    if source.startswith(prefix):
        folder = source[len(prefix) :]
        if not folder:
            raise DatasetError(f"{source!r}: give a folder after 'fashion-mnist:'")
        return Path(folder).expanduser()
    return None


def find_train_images(folder: Path, split: str = "train") -> Path:
    """A split's image file in ``folder``: train-images-idx3-ubyte (or, for ``split="test"``,
    t10k-images-idx3-ubyte), gzipped or not."""
    name = _split_file(TRAIN_IMAGES, split)
    for candidate in (name + ".gz", name):
        if (folder / candidate).is_file():
            return folder / candidate
    if split != "train":
        raise DatasetError(f"Fashion-MNIST's test split not found: no {name}.gz or {name} in {folder}")
    raise DatasetError(
        f"Fashion-MNIST not found: no {TRAIN_IMAGES}.gz or {TRAIN_IMAGES} in {folder}. "
        "Install it with `sudo apt-get install dataset-fashion-mnist` on Debian/Ubuntu, or download the "
        "four IDX files from https://github.com/zalandoresearch/fashion-mnist and pass "
        "`--data fashion-mnist:/path/to/folder`."
    )


def read_idx_images(path: Path) -> tuple[np.ndarray, str]:
    """Read an IDX image file (gzipped or not).

    Returns:
        images: uint8 [N, rows, cols], a read-only view of the file's bytes.
        digest: sha256 hex of the uncompressed file bytes.
    """
    try:
        data = path.read_bytes()
        if data[:2] == _GZIP_MAGIC:
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{path}: cannot read IDX file ({e})") from e
    if len(data) < 16:
        raise DatasetError(f"{path}: not an IDX image file (only {len(data)} bytes, the header alone is 16)")
    magic, count, rows, cols = struct.unpack(">4i", data[:16])
    if magic != IDX_IMAGES_MAGIC:
        hint = " (that is a label file)" if magic == IDX_LABELS_MAGIC else ""
        raise DatasetError(f"{path}: not an IDX image file: magic number {magic}{hint}, expected "
                           f"{IDX_IMAGES_MAGIC}")
    expected = count * rows * cols
    if min(count, rows, cols) < 1 or len(data) - 16 != expected:
        raise DatasetError(f"{path}: corrupt IDX file: the header says {count} images of {rows}x{cols} "
                           f"= {expected} bytes, but {len(data) - 16} bytes follow it")
    images = np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols)
    return images, hashlib.sha256(data).hexdigest()
