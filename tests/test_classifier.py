"""The cls metric: a Fashion-MNIST classifier trained here, and its scores of a generator's samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from inrgan.data import open_dataset
from inrgan.data.idx import FASHION_MNIST_DIR
from inrgan.metrics import MetricsError, evaluate
from inrgan.metrics import classifier as cls

needs_fashion = pytest.mark.skipif(not (FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists(),
                                   reason="Debian's dataset-fashion-mnist is not installed")
SMALL = cls.ClassifierRecipe(epochs=1, max_images=10000)  # about 15 s on one core


def test_scores_of_known_distributions():
    balanced = np.eye(10)[np.arange(1000) % 10]  # every class equally often, each sample certain
    s = cls.class_scores(balanced)
    assert s["score"] == pytest.approx(10, rel=1e-9)
    assert s["class_entropy"] == pytest.approx(math.log(10), rel=1e-9)
    assert s["confidence"] == 1 and s["min_class_share"] == 0.1
    one_class = np.eye(10)[np.zeros(50, dtype=int)]
    s = cls.class_scores(one_class)
    assert s["score"] == pytest.approx(1, abs=1e-9) and s["class_entropy"] == pytest.approx(0, abs=1e-9)
    assert s["min_class_share"] == 0 and s["class_shares"][0] == 1
    s = cls.class_scores(np.full((7, 10), 0.1))  # unsure of every sample: no score at all
    assert s["score"] == pytest.approx(1, abs=1e-9) and s["confidence"] == pytest.approx(0.1)


def test_score_is_the_entropy_difference():
    # E KL(p(y|x) || p(y)) = H(p(y)) - E H(p(y|x)): the score another way
    p = np.random.default_rng(0).dirichlet(np.full(10, 0.3), size=500)
    entropy = lambda q: -(q * np.log(q)).sum(-1)  # noqa: E731
    expected = math.exp(entropy(p.mean(0)) - entropy(p).mean())
    assert cls.class_scores(p)["score"] == pytest.approx(expected, rel=1e-9)


@pytest.fixture(scope="module")
def fixture_classifier(tmp_path_factory):
    """The classifier of the metric, trained by a shorter recipe, in a cache of its own."""
    cache = tmp_path_factory.mktemp("classifier")
    torch.manual_seed(0)
    return cls.fashion_classifier("fashion-mnist", cache, SMALL, log=lambda m: None), cache


@needs_fashion
def test_classifier_learns_fashion_mnist(fixture_classifier):
    extractor, cache = fixture_classifier
    assert extractor.info["test_accuracy"] > 0.78  # 83% after this one epoch; the default recipe makes 89-90%
    real = extractor.info["test_scores"]  # the test split has 1,000 images of each class
    assert real["class_entropy"] > 0.98 * math.log(10) and real["min_class_share"] > 0.05
    weights = next(cache.glob("fashion-classifier-*.safetensors"))
    assert cls.hashlib.sha256(weights.read_bytes()).hexdigest() == extractor.info["weights_sha256"]


@needs_fashion
def test_cache_gives_the_same_network_and_survives_damage(fixture_classifier, tmp_path):
    extractor, cache = fixture_classifier
    images, _ = cls.load_split(FASHION_MNIST_DIR, "test", 64)
    again = cls.fashion_classifier("fashion-mnist", cache, SMALL, log=pytest.fail)  # loaded, not trained
    torch.testing.assert_close(again(images), extractor(images), rtol=0, atol=0)
    for f in cache.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    next(tmp_path.glob("*.safetensors")).write_bytes(b"not a safetensors file")
    messages = []
    cls.fashion_classifier("fashion-mnist", tmp_path, SMALL, log=messages.append)
    assert messages and "training" in messages[0]  # trained again, and the file replaced
    cls.fashion_classifier("fashion-mnist", tmp_path, SMALL, log=pytest.fail)


class Replay(nn.Module):
    """A 'generator' that renders given uint8 images, in order, whatever the latents."""

    z_dim, img_channels, c_dim = 4, 1, 0

    def __init__(self, images: torch.Tensor) -> None:
        super().__init__()
        self.images, self.next = images, 0

    def forward(self, z, truncation_psi=1.0, height=32, width=32, update_w_avg=False):
        out = self.images[self.next : self.next + len(z)].float() / 127.5 - 1
        self.next += len(z)
        return out


@needs_fashion
def test_metric_scores_the_samples(fixture_classifier, monkeypatch):
    extractor, cache = fixture_classifier
    monkeypatch.setattr(cls, "DEFAULT_RECIPE", SMALL)
    images, _ = cls.load_split(FASHION_MNIST_DIR, "test", 300)
    data = open_dataset("fashion-mnist", 32, max_images=100)
    (record,) = evaluate(Replay(images), data, ["cls300"], batch_size=64, cache_dir=cache, progress=False)
    expected = cls.class_scores(cls.predict(extractor.net, images))
    assert record["value"] == pytest.approx(expected["score"], rel=1e-5)
    assert record["results"]["cls300_min_class_share"] == expected["min_class_share"]
    assert record["protocol"]["classifier_test_accuracy"] == extractor.info["test_accuracy"]
    # one garment over and over: the classifier sees no variety, whatever an FID extractor would make of it
    (record,) = evaluate(Replay(images[:1].expand(300, -1, -1, -1)), data, ["cls300"], cache_dir=cache,
                         progress=False)
    assert record["value"] == pytest.approx(1, abs=1e-6) and record["results"]["cls300_min_class_share"] == 0


def test_metric_refuses_other_data(tmp_path):
    class Folder(list):
        name = "photos"

    data = Folder([torch.zeros(1, 32, 32, dtype=torch.uint8)] * 4)
    with pytest.raises(MetricsError, match="Fashion-MNIST"):
        evaluate(Replay(torch.zeros(4, 1, 32, 32, dtype=torch.uint8)), data, ["cls4"], cache_dir=tmp_path,
                 progress=False)
