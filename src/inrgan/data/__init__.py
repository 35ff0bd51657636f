"""The data layer: square uint8 image datasets from Fashion-MNIST, folders and StyleGAN2-ADA zips.

    ds = open_dataset("fashion-mnist", resolution=32)  # 60,000 images, uint8 [1, 32, 32]
    ds = open_dataset("photos/", resolution=64)  # centre-cropped, resized, RGB or grayscale
    make_dataset_zip("photos/", "photos64.zip", resolution=64)
"""

from .dataset import ImageDataset, open_dataset
from .errors import DatasetError
from .export import make_dataset_zip

__all__ = ["DatasetError", "ImageDataset", "make_dataset_zip", "open_dataset"]
