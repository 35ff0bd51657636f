"""A Fashion-MNIST classifier as a metric that no ImageNet network can game: ``cls2k`` and the like.

A discriminator built on ImageNet features can lower an FID in ImageNet features without better images
(Kynkaanniemi et al., ICLR 2023). This small CNN never saw ImageNet: it is trained here, on Fashion-MNIST's
training split at 32x32, and checked on its test split. On a generator's samples it reports:

- ``confidence``: the mean of max_y p(y|x), how sure it is of each sample (real test images: about 0.9);
- ``class_entropy``: H(mean_x p(y|x)) in nats, the balance of the classes (log 10 = 2.303 when balanced);
- ``score``: exp(E_x KL(p(y|x) || p(y))), the Inception-score formula on these classes (1 to 10);
- ``class_shares``: the fraction of samples whose most likely class is each class, and the smallest of them.

The trained weights are cached (safetensors + JSON, written atomically) under the metrics cache, keyed by
the recipe and the training files' sha256; the JSON holds the test accuracy and the test images' scores,
the reference every record carries.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import Tensor, nn

from ..data.idx import find_train_images, parse_fashion_mnist, read_idx_images
from ..data.labels import fashion_mnist_labels
from ..data.transforms import resize_images
from ..io import atomic_write_bytes, atomic_write_text

CLASSIFIER_VERSION = 1
NUM_CLASSES = 10
INPUT_SIZE = 32


@dataclass(frozen=True)
class ClassifierRecipe:
    """How the classifier is trained: every field is part of its cache key."""

    epochs: int = 2
    batch: int = 128
    lr: float = 2e-3
    seed: int = 0
    max_images: int | None = None  # the first training images only (tests use fewer)


DEFAULT_RECIPE = ClassifierRecipe()


class FashionClassifier(nn.Module):
    """uint8 grayscale images [B, 1, H, W] -> class probabilities [B, 10]; three conv stages on 32x32."""

    def __init__(self) -> None:
        super().__init__()
        widths = (1, 16, 32, 64)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                          nn.MaxPool2d(2))
            for c_in, c_out in zip(widths[:-1], widths[1:], strict=True))
        self.head = nn.Linear(widths[-1] * (INPUT_SIZE // 8) ** 2, NUM_CLASSES)

    @staticmethod
    def preprocess(images: Tensor) -> Tensor:
        """uint8 [B, 1, H, W] -> float [B, 1, 32, 32] in [-1, 1] (bilinear, antialiased, where H, W != 32)."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 1:
            raise ValueError(f"the Fashion-MNIST classifier takes uint8 grayscale images [B, 1, H, W], got "
                             f"{images.dtype} {list(images.shape)}")
        x = images.float() / 127.5 - 1
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
        return x

    def logits(self, x: Tensor) -> Tensor:
        for stage in self.stages:
            x = stage(x)  # [B, C, R/2, R/2]
        return self.head(x.flatten(1))  # [B, 10]

    def forward(self, images: Tensor) -> Tensor:
        return self.logits(self.preprocess(images)).softmax(dim=1)


def class_scores(probs: np.ndarray | Tensor) -> dict[str, Any]:
    """The scores of class probabilities [N, K] (see the module docstring)."""
    p = torch.as_tensor(probs, dtype=torch.float64).clamp_min(1e-12)  # [N, K]
    marginal = p.mean(dim=0)  # [K]
    kl = (p * (p.log() - marginal.log())).sum(dim=1)  # [N]
    shares = torch.bincount(p.argmax(dim=1), minlength=p.shape[1]).double() / len(p)  # [K]
    return {
        "confidence": float(p.max(dim=1).values.mean()),
        "class_entropy": float(-(marginal * marginal.log()).sum()),
        "score": float(kl.mean().exp()),
        "min_class_share": float(shares.min()),
        "class_shares": [round(float(s), 4) for s in shares],
    }


def load_split(folder: Path, split: str, max_images: int | None = None) -> tuple[Tensor, Tensor]:
    """Fashion-MNIST's ``split`` at 32x32 as the datasets make it: uint8 [N, 1, 32, 32] and labels [N]."""
    images, _ = read_idx_images(find_train_images(folder, split))
    labels = fashion_mnist_labels(folder, len(images), split).values
    images = torch.from_numpy(images[:max_images].copy()).unsqueeze(1)  # [N, 1, 28, 28]
    return resize_images(images, INPUT_SIZE), torch.from_numpy(labels[:max_images].copy())


def train_classifier(images: Tensor, labels: Tensor, recipe: ClassifierRecipe) -> FashionClassifier:
    """Adam with a linearly decaying learning rate, shuffled by ``recipe.seed``; returns the net in eval mode."""
    torch.manual_seed(recipe.seed)
    net = FashionClassifier()
    opt = torch.optim.Adam(net.parameters(), lr=recipe.lr)
    steps = recipe.epochs * math.ceil(len(images) / recipe.batch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / steps)
    shuffle = torch.Generator().manual_seed(recipe.seed)
    net.train()
    for _ in range(recipe.epochs):
        for idx in torch.randperm(len(images), generator=shuffle).split(recipe.batch):
            loss = F.cross_entropy(net.logits(net.preprocess(images[idx])), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return net.eval().requires_grad_(False)


@torch.no_grad()
def predict(net: FashionClassifier, images: Tensor, batch: int = 500) -> Tensor:
    """Class probabilities [N, 10] of uint8 images [N, 1, H, W]."""
    return torch.cat([net(chunk) for chunk in images.split(batch)])


class ClassifierExtractor(nn.Module):
    """The classifier where the metrics expect a feature extractor: its features are the class probabilities."""

    def __init__(self, net: FashionClassifier, info: dict[str, Any]) -> None:
        super().__init__()
        self.net, self.info = net, info
        self.name, self.feature_dim, self.input_size = "fashion-classifier", NUM_CLASSES, INPUT_SIZE

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images.cpu()).float()

    def protocol(self) -> dict[str, Any]:
        return {
            "extractor": self.name, "feature_dim": NUM_CLASSES, "weights_file": self.info["weights_file"],
            "weights_sha256": self.info["weights_sha256"], "input_size": INPUT_SIZE,
            "resize_filter": "bilinear antialiased, align_corners=False (torch)",
            "normalisation": "x / 127.5 - 1", "grayscale": "as is (one channel)",
            "classifier_recipe": self.info["recipe"], "classifier_test_accuracy": self.info["test_accuracy"],
            "real_test_scores": self.info["test_scores"],
        }


def _key(recipe: ClassifierRecipe, train_digest: str) -> str:
    payload = {"version": CLASSIFIER_VERSION, "recipe": asdict(recipe), "train_images_sha256": train_digest}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def fashion_classifier(source: str, cache_dir: Path, recipe: ClassifierRecipe | None = None,
                       log=print) -> ClassifierExtractor:
    """The classifier of the Fashion-MNIST files that ``source`` names ("fashion-mnist" or
    "fashion-mnist:/folder"), by ``recipe`` (default ``DEFAULT_RECIPE``): loaded from ``cache_dir``, or trained
    (about a minute on one core) and cached."""
    recipe = recipe or DEFAULT_RECIPE
    folder = parse_fashion_mnist(source)
    if folder is None:
        raise ValueError(f"the classifier metric is for Fashion-MNIST only; the data is {source!r}")
    _, digest = read_idx_images(find_train_images(folder))
    stem = cache_dir / f"fashion-classifier-{_key(recipe, digest)}"
    weights, meta = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    net = FashionClassifier()
    if weights.is_file() and meta.is_file():
        try:
            net.load_state_dict(load_file(weights))
            return ClassifierExtractor(net.eval().requires_grad_(False), json.loads(meta.read_text()))
        except (OSError, ValueError, RuntimeError, KeyError, SafetensorError):  # unreadable: train it again
            pass
    log(f"training the Fashion-MNIST classifier of the cls metric ({recipe}); cached in {cache_dir}")
    with torch.inference_mode(False), torch.enable_grad():  # the metrics run in inference mode
        net = train_classifier(*load_split(folder, "train", recipe.max_images), recipe)
        test_images, test_labels = load_split(folder, "test")
        probs = predict(net, test_images)
    blob = save({k: v.contiguous() for k, v in net.state_dict().items()})
    info = {"recipe": asdict(recipe), "train_images_sha256": digest, "weights_file": weights.name,
            "weights_sha256": hashlib.sha256(blob).hexdigest(),
            "test_accuracy": float((probs.argmax(1) == test_labels).double().mean()),
            "test_scores": class_scores(probs)}
    cache_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(weights, blob)
    atomic_write_text(meta, json.dumps(info, indent=1))
    return ClassifierExtractor(net, info)
