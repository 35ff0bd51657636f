"""Training learns: 150 steps move G_ema's samples toward the data.

The data are bright disks on a dark background whose radius varies; the measures are computed here from
the pixels alone, not by the training code: the distribution of the bright area (a 1-D Wasserstein
distance) and the mean image.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import wasserstein_distance

from inrgan import Generator
from inrgan.training.loop import RunOptions, train

RES = 16


def _disk(radius: float, cx: float, cy: float) -> np.ndarray:
    yy, xx = np.mgrid[:RES, :RES] + 0.5
    return np.where((xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2, 255, 0).astype(np.uint8)


@pytest.fixture(scope="module")
def disks(tmp_path_factory):
    d = tmp_path_factory.mktemp("disks")
    rng = np.random.RandomState(0)
    for i in range(256):
        img = _disk(rng.uniform(2.0, 6.5), RES / 2 + rng.uniform(-1, 1), RES / 2 + rng.uniform(-1, 1))
        Image.fromarray(img, "L").save(d / f"{i:03d}.png")
    reals = np.stack([np.asarray(Image.open(d / f"{i:03d}.png")) for i in range(256)]) / 127.5 - 1
    return d, reals  # [256, 16, 16] in [-1, 1]


def _bright_area(images: np.ndarray) -> np.ndarray:
    return (images > 0).reshape(len(images), -1).mean(axis=1)  # the disk's share of the image


def _distances(G: Generator, reals: np.ndarray) -> tuple[float, float]:
    with torch.no_grad():
        fakes = G(torch.randn(256, G.z_dim, generator=torch.Generator().manual_seed(9)))[:, 0].numpy()
    area = wasserstein_distance(_bright_area(fakes), _bright_area(reals))
    mean_image = float(((fakes.mean(0) - reals.mean(0)) ** 2).mean())
    return area, mean_image


def test_150_steps_move_the_samples_toward_the_data(disks, tmp_path):
    folder, reals = disks
    run = tmp_path / "run"
    options = RunOptions(data=str(folder), preset="cpu-32", resolution=RES, device="cpu", progress=False)
    # 150 steps of batch 16, with a short EMA and a small R1 weight for a tiny dataset.
    train(run, options, overrides=dict(kimg=2.4, batch=16, tick_kimg=2.4, snapshot_ticks=1, seed=0,
                                       ema_kimg=0.5, lr=0.0025, r1_gamma=0.05), log=lambda *_: None)
    end = Generator.from_pretrained(run)
    torch.manual_seed(0)  # the run's seed, then its first draw: the weights it started from
    start = Generator(end.cfg).eval()
    area0, mean0 = _distances(start, reals)
    area1, mean1 = _distances(end, reals)
    print(f"bright-area W1 {area0:.3f} -> {area1:.3f}; mean-image MSE {mean0:.3f} -> {mean1:.3f}")
    assert area1 < 0.5 * area0
    assert mean1 < 0.5 * mean0
