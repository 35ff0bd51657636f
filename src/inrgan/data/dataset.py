"""Datasets of square uint8 images: Fashion-MNIST, a folder of images, a StyleGAN2-ADA zip.

``open_dataset`` validates everything it can at open time, so a bad file fails before training starts:
every folder/zip file is read, hashed and checked with PIL's ``verify()``. Small datasets (at most
``PRELOAD_MAX_BYTES`` once resized) are then decoded into memory, which also decodes every pixel;
larger ones are decoded lazily in ``__getitem__``, whose errors name the file too.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from .errors import DatasetError
from .files import ImageFiles, open_image_files
from .idx import FASHION_MNIST, find_train_images, parse_fashion_mnist, read_idx_images
from .labels import TRAIN_LABELS, Labels, fashion_mnist_labels, file_labels
from .transforms import center_crop, image_to_tensor, is_grayscale_mode, resize_images

PRELOAD_MAX_BYTES = 256 * 2**20  # hold the resized images in memory up to this size
PREPROCESSING = "center-crop/bicubic-antialias/v1"  # part of the fingerprint: change it with the pixels


class ImageDataset(Dataset):
    """Square uint8 images [num_channels, resolution, resolution].

    Attributes:
        name: a short name ("fashion-mnist", the folder's or the zip's name).
        resolution: side R of every image.
        num_channels: 1 (grayscale) or 3 (RGB).
        source: a string ``open_dataset`` accepts to open the same images again.
    """

    name: str
    resolution: int
    num_channels: int
    source: str
    labels: Labels | None = None  # class labels, where the data has them (inrgan.data.labels)
    return_labels: bool = False  # items are (image, class index) instead of images

    def __init__(self, name: str, source: str, resolution: int, num_channels: int, fingerprint: str) -> None:
        self.name = name
        self.source = source
        self.resolution = resolution
        self.num_channels = num_channels
        self._fingerprint = fingerprint

    def __len__(self) -> int:
        raise NotImplementedError

    def _load(self, index: int) -> Tensor:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Tensor | tuple[Tensor, int]:
        """Image ``index`` as uint8 [C, R, R], with its class index when ``return_labels``."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"image index {index} out of range for {n} images")
        image = self._load(index % n)
        if self.return_labels:
            return image, int(self.labels.values[index % n])
        return image

    def fingerprint(self) -> str:
        """sha256 hex of the image contents, their order, the resolution, channels and preprocessing.

        It does not depend on where the data lies, so a copied dataset keeps its cached statistics.
        """
        return self._fingerprint

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, images={len(self)}, resolution={self.resolution}, "
                f"channels={self.num_channels}, source={self.source!r})")


class InMemoryImageDataset(ImageDataset):
    """Images held in memory as one uint8 [N, C', S, S] tensor, with C' = 1 or num_channels.

    Stored at ``resolution`` when that fits ``PRELOAD_MAX_BYTES``, else at their own size and resized
    per item; a single stored channel is replicated per item when three are asked for.
    """

    def __init__(self, images: Tensor, name: str, source: str, resolution: int, num_channels: int,
                 fingerprint: str) -> None:
        super().__init__(name, source, resolution, num_channels, fingerprint)
        if images.shape[1] not in (1, num_channels):
            raise ValueError(f"cannot make {num_channels} channels from {images.shape[1]}")
        if images.shape[0] * images.shape[1] * resolution**2 <= PRELOAD_MAX_BYTES:
            images = resize_images(images, resolution)
        self.images = images  # [N, C', S, S]

    def __len__(self) -> int:
        return self.images.shape[0]

    def _load(self, index: int) -> Tensor:
        x = resize_images(self.images[index : index + 1], self.resolution)[0]  # [C', R, R]
        return x.expand(self.num_channels, -1, -1).clone()  # [C, R, R], never a view of the dataset


class ImageFileDataset(ImageDataset):
    """Images decoded from a folder or zip in every ``__getitem__``."""

    def __init__(self, files: ImageFiles, names: list[str], name: str, source: str, resolution: int,
                 num_channels: int, fingerprint: str) -> None:
        super().__init__(name, source, resolution, num_channels, fingerprint)
        self.files = files
        self.names = names

    def __len__(self) -> int:
        return len(self.names)

    def _load(self, index: int) -> Tensor:
        return decode_image(self.files, self.names[index], self.num_channels, self.resolution)


def _pil_failure(e: Exception) -> str:
    if isinstance(e, UnidentifiedImageError):  # its own message names only an anonymous BytesIO
        return "not an image format PIL recognises, or a corrupt header"
    return f"{type(e).__name__}: {e}"


def decode_image(files: ImageFiles, name: str, channels: int, resolution: int | None) -> Tensor:
    """Decode, convert, centre-crop and (unless ``resolution`` is None) resize one file: uint8 [C, R, R]."""
    data = files.read(name)
    try:
        with Image.open(io.BytesIO(data)) as image:
            x = image_to_tensor(image, channels)  # [C, H, W]
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ... for bad data
        raise DatasetError(f"{files.where(name)}: cannot decode image ({_pil_failure(e)})") from e
    x = center_crop(x)  # [C, S, S]
    if resolution is None:
        return x
    return resize_images(x.unsqueeze(0), resolution)[0]  # [C, R, R]


def scan_images(files: ImageFiles, names: list[str]) -> tuple[bool, str]:
    """Read and ``verify()`` every file.

    Returns:
        grayscale: whether every image has a grayscale mode.
        digest: sha256 hex of the names and bytes, in order.
    """
    digest = hashlib.sha256()
    grayscale = True
    for name in names:
        data = files.read(name)
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
        try:
            with Image.open(io.BytesIO(data)) as image:
                grayscale = grayscale and is_grayscale_mode(image.mode)
                image.verify()
        except Exception as e:  # see decode_image
            raise DatasetError(f"{files.where(name)}: not a valid image ({_pil_failure(e)})") from e
    return grayscale, digest.hexdigest()


def _fingerprint(content: str, count: int, resolution: int, channels: int) -> str:
    key = f"{PREPROCESSING}\0{content}\0{count}\0{resolution}\0{channels}"
    return hashlib.sha256(key.encode()).hexdigest()


def check_options(resolution: int | None, channels: int | None, max_images: int | None = None) -> None:
    """Raise ValueError for a resolution, channel count or image limit that makes no sense."""
    if resolution is not None and (not isinstance(resolution, int) or resolution < 1):
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None (automatic), got {channels!r}")
    if max_images is not None and (not isinstance(max_images, int) or max_images < 1):
        raise ValueError(f"max_images must be a positive integer or None, got {max_images!r}")


def open_dataset(
    source: str | os.PathLike,
    resolution: int,
    channels: int | None = None,
    max_images: int | None = None,
) -> ImageDataset:
    """Open a dataset of square images.

    Args:
        source: "fashion-mnist" (training split, from ``$INRGAN_FASHION_MNIST_DIR`` or
            /usr/share/datasets/fashion-mnist), "fashion-mnist:/folder" (IDX files, gzipped or not),
            a folder of images (recursive) or a StyleGAN2-ADA .zip of images.
        resolution: side R of the returned images; every image is centre-cropped to a square and
            resized with antialiased bicubic.
        channels: 1 or 3 to convert, None to choose: 1 for Fashion-MNIST and for folders/zips whose
            images are all grayscale, else 3.
        max_images: use only the first images (in sorted file order).

    Raises:
        DatasetError: a missing path, no images, a corrupt image, zip or IDX file.
    """
    check_options(resolution, channels, max_images)
    idx_folder = parse_fashion_mnist(source)
    if idx_folder is not None:
        images, content = read_idx_images(find_train_images(idx_folder))
        total = len(images)
        images = torch.from_numpy(images[:max_images].copy()).unsqueeze(1)  # [N, 1, 28, 28]
        channels = channels or 1
        name = FASHION_MNIST
        canonical = FASHION_MNIST if source == FASHION_MNIST else f"{FASHION_MNIST}:{idx_folder.resolve()}"
        fingerprint = _fingerprint(content, len(images), resolution, channels)
        dataset = InMemoryImageDataset(images, name, canonical, resolution, channels, fingerprint)
        dataset.labels = _fashion_mnist_labels(idx_folder, total, max_images)
        return dataset

    path = Path(source).expanduser().resolve()
    files = open_image_files(path)
    names = files.names[:max_images]
    grayscale, content = scan_images(files, names)
    channels = channels or (1 if grayscale else 3)
    name = path.stem if path.suffix.lower() == ".zip" else path.name
    fingerprint = _fingerprint(content, len(names), resolution, channels)
    labels = file_labels(path, names)
    if len(names) * channels * resolution**2 > PRELOAD_MAX_BYTES:
        dataset: ImageDataset = ImageFileDataset(files, names, name, str(path), resolution, channels, fingerprint)
    else:
        images = torch.empty(len(names), channels, resolution, resolution, dtype=torch.uint8)  # [N, C, R, R]
        for i, file_name in enumerate(names):
            images[i] = decode_image(files, file_name, channels, resolution)
        dataset = InMemoryImageDataset(images, name, str(path), resolution, channels, fingerprint)
    dataset.labels = labels
    return dataset


def _fashion_mnist_labels(folder: Path, count: int, max_images: int | None) -> Labels | None:
    """The training labels of ``count`` images where the label file is there (else None)."""
    if not any((folder / n).is_file() for n in (TRAIN_LABELS, TRAIN_LABELS + ".gz")):
        return None
    return fashion_mnist_labels(folder, count).subset(max_images)
