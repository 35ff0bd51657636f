"""Evaluate a generator against real data: FID, KID and precision/recall, each with its full protocol.

Metric names follow StyleGAN's: ``fid50k`` = FID on 50,000 generated images against min(50,000, dataset
size) real ones; ``fid50k_full`` = against every real image. ``kid`` and ``pr`` (k = 3) read the same way, and
a count without ``k`` is taken literally (``fid500``: 500 images), which is handy for quick checks. When
fewer real images than the dataset holds are used, they are a fixed random subset (seed 0, independent of
the generation seed), so cached statistics stay valid.

Real-image statistics (mean, covariance and, for KID and PR, the features) are cached on disk under a hash
of the dataset fingerprint, resolution, extractor, its weights' sha256, the number of real images and the
preprocessing, in ``$INRGAN_CACHE_DIR`` or ``~/.cache/inrgan/metrics``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..io import atomic_write
from .extractors import FeatureExtractor, build_extractor
from .frechet import feature_statistics, frechet_distance
from .kid import kernel_distance
from .precision_recall import precision_recall

if TYPE_CHECKING:  # only a type: metrics do not depend on training
    from ..training.distributed import Distributed

CACHE_ENV = "INRGAN_CACHE_DIR"
CACHE_VERSION = 1
REAL_SUBSET_SEED = 0
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
PR_K = 3

_METRIC_RE = re.compile(r"^([a-z]+)(\d+)(k?)(_full)?$")


class MetricsError(ValueError):
    """A metric request that cannot be served: unknown name, mismatched data, no images."""


@dataclass(frozen=True)
class Metric:
    """A family of the metric registry (``fid``, ``kid``, ``pr``): how one is computed from the real images'
    statistics and the generated images' features.

    ``compute(spec, real, fake, seed, num_real)`` returns (the headline value, every number by name, the
    protocol entries of its own); ``real`` holds "mu" and "sigma", and "features" where ``needs_real_features``.
    """

    kind: str
    compute: Callable[[MetricSpec, dict[str, np.ndarray], np.ndarray, int, int],
                      tuple[float, dict[str, float], dict[str, Any]]]
    needs_real_features: bool
    comparable: bool = True  # to published numbers, where the extractor is the standard one
    # A metric on a network of its own: (dataset, cache_dir) -> its extractor; it then gets no real statistics
    own_extractor: Callable[[Sequence, Path], Any] | None = None


METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    """Add a metric family: its names (``{kind}{count}[k][_full]``) are then understood everywhere."""
    METRICS[metric.kind] = metric
    return metric


@dataclass(frozen=True)
class MetricSpec:
    """A parsed metric name: ``kind`` in the registry, ``num_gen`` generated images, ``full`` = all real ones."""

    name: str
    kind: str
    num_gen: int
    full: bool

    def num_real(self, dataset_size: int, override: int | None = None) -> int:
        if override is not None:
            return min(override, dataset_size)
        return dataset_size if self.full else min(self.num_gen, dataset_size)


def parse_metric(name: str) -> MetricSpec:
    """``"fid10k"`` -> MetricSpec("fid10k", "fid", 10000, False); ``"kid1k_full"``, ``"pr500"``, ..."""
    match = _METRIC_RE.match(name.strip().lower())
    if not match or match.group(1) not in METRICS:
        raise MetricsError(f"unknown metric {name!r}: expected {', '.join(METRICS)} followed by a number of "
                           f"generated images, e.g. fid50k, fid10k_full, kid10k, pr10k, fid500")
    kind, count, thousands, full = match.groups()
    num_gen = int(count) * (1000 if thousands else 1)
    if num_gen < 2:
        raise MetricsError(f"{name!r}: needs at least 2 generated images")
    return MetricSpec(match.group(0), kind, num_gen, bool(full))


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "inrgan" / "metrics")


def real_subset(num_real: int, dataset_size: int) -> Tensor:
    """Indices of the real images used: all of them, or a fixed random subset (sorted, for locality)."""
    if num_real >= dataset_size:
        return torch.arange(dataset_size)
    perm = torch.randperm(dataset_size, generator=torch.Generator().manual_seed(REAL_SUBSET_SEED))
    return perm[:num_real].sort().values


def _as_image(item: Any) -> Tensor:
    if isinstance(item, (tuple, list)):  # (image, label) datasets
        item = item[0]
    return torch.as_tensor(item)


def real_batches(dataset: Sequence, indices: Tensor, batch_size: int) -> Iterator[Tensor]:
    """uint8 [B, C, R, R] batches of ``dataset[i]`` for i in ``indices``."""
    for chunk in indices.split(batch_size):
        yield torch.stack([_as_image(dataset[int(i)]) for i in chunk])


def generated_latents(z_dim: int, num: int, seed: int) -> Tensor:
    """The latents of the generated images, [num, z_dim]: one seeded draw, so that the images depend on
    neither the batch size nor the number of ranks."""
    return torch.randn(num, z_dim, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def generated_batches(G: nn.Module, z: Tensor, resolution: int, truncation_psi: float,
                      batch_size: int, index: Tensor | None = None) -> Iterator[Tensor]:
    """uint8 [B, C, R, R] batches of G's images for the latents ``z`` [N, z_dim]. A conditional G renders
    latent i (``index``, default 0..N-1) in class i mod c_dim: every class equally often."""
    param = next(G.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    c_dim = getattr(G, "c_dim", 0)
    index = torch.arange(len(z)) if index is None else index
    for chunk, idx in zip(z.split(batch_size), index.split(batch_size), strict=True):
        c = {"c": torch.nn.functional.one_hot(idx % c_dim, c_dim).float().to(device)} if c_dim else {}
        img = G(chunk.to(device), truncation_psi=truncation_psi, height=resolution, width=resolution,
                update_w_avg=False, **c)  # [B, C, R, R] roughly in [-1, 1]
        yield (img.clamp(-1, 1) * 127.5 + 127.5).round().to(torch.uint8).cpu()


def embed(extractor: FeatureExtractor, batches: Iterator[Tensor], num_batches: int, desc: str,
          progress: bool) -> np.ndarray:
    """Run ``extractor`` over uint8 batches with a progress bar -> float32 features [N, D]."""
    feats = [extractor(batch).cpu() for batch in tqdm(batches, total=num_batches, desc=desc, unit="batch",
                                                     disable=not progress, leave=False)]
    return torch.cat(feats).numpy()


def generated_features(G: nn.Module, extractor: FeatureExtractor, num: int, resolution: int,
                       truncation_psi: float, seed: int, batch_size: int, progress: bool,
                       dist: Distributed | None = None) -> np.ndarray:
    """Features [num, D] of ``num`` generated images, in latent order.

    Under several ranks each renders and embeds every ``world_size``-th latent and the features are
    gathered to every rank: the same features as one process, in the same order, in 1/world_size of the time.
    """
    z = generated_latents(G.z_dim, num, seed)  # [num, z_dim]
    if dist is None or not dist.active:
        return embed(extractor, generated_batches(G, z, resolution, truncation_psi, batch_size),
                     math.ceil(num / batch_size), f"generated images ({extractor.name})", progress)
    mine = torch.arange(dist.rank, num, dist.world_size)  # this rank's latents
    if len(mine):
        local = embed(extractor, generated_batches(G, z[mine], resolution, truncation_psi, batch_size, mine),
                      math.ceil(len(mine) / batch_size), f"generated images ({extractor.name})", progress)
    else:  # fewer images than ranks
        local = np.zeros((0, extractor.feature_dim), np.float32)
    local = torch.from_numpy(local)
    feats = dist.all_gather(local.to(dist.device)).cpu()  # [num, D], rank after rank
    order = dist.all_gather(mine.to(dist.device)).cpu()  # the latent index of every gathered row
    out = torch.empty_like(feats)
    out[order] = feats
    return out.numpy()


def real_stats_key(fingerprint: str, resolution: int, extractor: FeatureExtractor, num_real: int) -> str:
    """sha256 over everything the real statistics depend on."""
    payload = {
        "cache_version": CACHE_VERSION,
        "dataset_fingerprint": fingerprint,
        "resolution": resolution,
        "num_real": num_real,
        "real_subset_seed": REAL_SUBSET_SEED,
        **extractor.protocol(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def real_statistics(
    dataset: Sequence,
    extractor: FeatureExtractor,
    num_real: int,
    resolution: int,
    need_features: bool,
    fingerprint: str | None,
    cache_dir: Path,
    batch_size: int,
    progress: bool,
) -> tuple[dict[str, np.ndarray], str]:
    """{"mu", "sigma"[, "features"]} of ``num_real`` real images, and "hit", "miss" or "off" for the cache."""
    path = None
    if fingerprint is not None:
        key = real_stats_key(fingerprint, resolution, extractor, num_real)
        path = cache_dir / f"real-{extractor.name}-{resolution}px-{num_real}-{key[:16]}.npz"
        if path.is_file():
            try:
                with np.load(path) as f:
                    stats = {k: f[k] for k in f.files}
            except (OSError, ValueError, zipfile.BadZipFile):  # unreadable: compute again and replace it
                stats = {}
            if "mu" in stats and (not need_features or "features" in stats):
                return stats, "hit"
    indices = real_subset(num_real, len(dataset))
    feats = embed(extractor, real_batches(dataset, indices, batch_size), math.ceil(num_real / batch_size),
                  f"real images ({extractor.name})", progress)
    mu, sigma = feature_statistics(feats)
    stats = {"mu": mu, "sigma": sigma}
    if need_features:
        stats["features"] = feats
    if path is None:
        return stats, "off"
    _save_npz(path, stats)
    return stats, "miss"


def _dataset_resolution(dataset: Sequence) -> tuple[int, int]:
    image = _as_image(dataset[0])
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[1] != image.shape[2]:
        raise MetricsError(f"real images must be uint8 [C, R, R], got {image.dtype} {list(image.shape)}")
    return image.shape[0], image.shape[1]


def _fid(spec: MetricSpec, real: dict[str, np.ndarray], fake: np.ndarray, seed: int, num_real: int):
    mu, sigma = feature_statistics(fake)
    value = frechet_distance(mu, sigma, real["mu"], real["sigma"])
    return value, {spec.name: value}, {}


def _kid(spec: MetricSpec, real: dict[str, np.ndarray], fake: np.ndarray, seed: int, num_real: int):
    value, std = kernel_distance(real["features"], fake, KID_SUBSETS, KID_SUBSET_SIZE, seed=seed)
    protocol = dict(kid_subsets=KID_SUBSETS, kid_subset_size=min(KID_SUBSET_SIZE, num_real, spec.num_gen),
                    kid_kernel="(x.y / d + 1)^3")
    return value, {spec.name: value, f"{spec.name}_std": std}, protocol


def _pr(spec: MetricSpec, real: dict[str, np.ndarray], fake: np.ndarray, seed: int, num_real: int):
    precision, recall = precision_recall(real["features"], fake, k=PR_K)
    return precision, {f"{spec.name}_precision": precision, f"{spec.name}_recall": recall}, {"pr_k": PR_K}


register_metric(Metric("fid", _fid, needs_real_features=False))
register_metric(Metric("kid", _kid, needs_real_features=True))
register_metric(Metric("pr", _pr, needs_real_features=True, comparable=False))


def _classifier(dataset: Sequence, cache_dir: Path):
    from .classifier import fashion_classifier

    if getattr(dataset, "name", None) != "fashion-mnist":
        raise MetricsError(f"the cls metric is a Fashion-MNIST classifier's; the data is "
                           f"{getattr(dataset, 'name', type(dataset).__name__)!r}")
    return fashion_classifier(dataset.source, cache_dir, log=lambda m: None)


def _cls(spec: MetricSpec, real: dict[str, np.ndarray], fake: np.ndarray, seed: int, num_real: int):
    from .classifier import class_scores

    scores = class_scores(fake)
    return scores["score"], {f"{spec.name}_{k}": v for k, v in scores.items()}, {}


register_metric(Metric("cls", _cls, needs_real_features=False, comparable=False, own_extractor=_classifier))


def evaluate(
    G: nn.Module,
    dataset: Sequence,
    metrics: Sequence[str],
    features: str | FeatureExtractor = "effnet-lite0",
    truncation_psi: float = 1.0,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    inception_weights: str | os.PathLike | None = None,
    dataset_fingerprint: str | None = None,
    num_real: int | None = None,
    dist: Distributed | None = None,
) -> list[dict[str, Any]]:
    """Compute ``metrics`` for generator ``G`` against ``dataset``; one JSON-able record per metric.

    Args:
        G: a generator with ``z_dim`` and ``G(z, truncation_psi=, height=, width=)``, already on its device.
            Images are rendered at the resolution of the real images.
        dataset: indexable uint8 images [C, R, R] (or (image, label) pairs), e.g. ``inrgan.data.open_dataset``.
        metrics: names such as ``["fid10k", "kid10k", "pr10k"]`` (see ``parse_metric``).
        features: ``"effnet-lite0"`` (offline default), ``"inception"`` (standard FID; needs
            ``inception_weights``), or a ready ``FeatureExtractor``.
        truncation_psi, seed: the truncation and the seed of the generated latents.
        device, batch_size: where the extractor runs; images per batch (generation and features).
        cache_dir: real-statistics cache (default ``$INRGAN_CACHE_DIR`` or ``~/.cache/inrgan/metrics``).
        progress: show progress bars over batches.
        inception_weights: path of pytorch-fid's InceptionV3 weights (or ``$INRGAN_INCEPTION_WEIGHTS``).
        dataset_fingerprint: identifies the real data in the cache key; default ``dataset.fingerprint()``
            when it exists, else the cache is not used.
        num_real: override the number of real images of every metric.
        dist: under several ranks (``inrgan.training.distributed``), every rank calls this and embeds its
            share of the generated images; rank 0 computes the rest and returns the records, the others [].

    Returns:
        One record per metric: ``{"metric", "value", "results", "comparable_to_published", "protocol",
        "real_stats_cache", "timestamp", "time_s"}``; ``value`` is the headline number (FID, KID's mean, or
        precision), ``results`` has every number (KID's std, recall).
    """
    start = time.perf_counter()
    specs = [parse_metric(m) for m in metrics]
    resolution = _check_request(G, dataset, specs)
    cache_dir = Path(cache_dir or default_cache_dir())
    order = [s.name for s in specs]
    own = [s for s in specs if METRICS[s.kind].own_extractor]
    specs = [s for s in specs if not METRICS[s.kind].own_extractor]
    records = [_own_record(G, dataset, spec, resolution, truncation_psi, seed, batch_size, progress, cache_dir, dist)
               for spec in own]
    if not specs:
        return [] if dist is not None and not dist.is_main else _timed(records, start, order)
    extractor = features if isinstance(features, FeatureExtractor) else build_extractor(features, device,
                                                                                        inception_weights)
    dataset_fingerprint = dataset_fingerprint or _fingerprint(dataset)
    fake = generated_features(G, extractor, max(s.num_gen for s in specs), resolution, truncation_psi, seed,
                              batch_size, progress, dist)
    if dist is not None and not dist.is_main:
        return []
    n_reals = [s.num_real(len(dataset), num_real) for s in specs]
    real = {n: real_statistics(dataset, extractor, n, resolution, _need_real_features(specs, n_reals, n),
                               dataset_fingerprint, cache_dir, batch_size, progress)
            for n in sorted(set(n_reals))}  # num_real -> (statistics, cache status)
    protocol = _protocol(dataset, dataset_fingerprint, resolution, truncation_psi, seed, extractor)
    records += [_record(spec, real[n], fake[: spec.num_gen], seed, n, len(dataset), protocol, extractor.comparable)
                for spec, n in zip(specs, n_reals, strict=True)]
    return _timed(records, start, order)


def _protocol(dataset: Sequence, fingerprint: str | None, resolution: int, truncation_psi: float, seed: int,
              extractor) -> dict[str, Any]:
    """What every record of one call shares: the data, the rendering, the seed and the extractor's protocol."""
    return {"dataset": getattr(dataset, "name", type(dataset).__name__), "dataset_fingerprint": fingerprint,
            "resolution": resolution, "truncation_psi": truncation_psi, "seed": seed, **extractor.protocol()}


def _timed(records: list[dict[str, Any]], start: float, order: list[str]) -> list[dict[str, Any]]:
    """The records in the order asked for, each with the whole call's time (its metrics share the images)."""
    elapsed = round(time.perf_counter() - start, 3)
    return sorted(({**record, "time_s": elapsed} for record in records), key=lambda r: order.index(r["metric"]))


def _own_record(G: nn.Module, dataset: Sequence, spec: MetricSpec, resolution: int, truncation_psi: float,
                seed: int, batch_size: int, progress: bool, cache_dir: Path, dist: Distributed | None):
    """The record of a metric on a network of its own (``cls``): the generated images only, no real statistics."""
    extractor = METRICS[spec.kind].own_extractor(dataset, cache_dir)
    fake = generated_features(G, extractor, spec.num_gen, resolution, truncation_psi, seed, batch_size, progress, dist)
    protocol = _protocol(dataset, _fingerprint(dataset), resolution, truncation_psi, seed, extractor)
    record = _record(spec, ({}, "off"), fake, seed, 0, len(dataset), protocol, False)
    record["protocol"]["real_subset"] = "none"  # the reference is the test images' scores, real_test_scores
    return record


def _fingerprint(dataset: Sequence) -> str | None:
    """The dataset's own fingerprint, where it has one (the real-statistics cache is keyed on it)."""
    return dataset.fingerprint() if callable(getattr(dataset, "fingerprint", None)) else None


def _need_real_features(specs: list[MetricSpec], n_reals: list[int], n: int) -> bool:
    """Whether a metric on ``n`` real images needs their features (not only their mean and covariance)."""
    return any(METRICS[s.kind].needs_real_features and m == n for s, m in zip(specs, n_reals, strict=True))


def _check_request(G: nn.Module, dataset: Sequence, specs: list[MetricSpec]) -> int:
    """The real images' resolution, once the request is checked (a MetricsError says what does not fit)."""
    if not specs:
        raise MetricsError("no metrics requested")
    if len(dataset) < 2:
        raise MetricsError(f"the real dataset has {len(dataset)} images; metrics need at least 2")
    channels, resolution = _dataset_resolution(dataset)
    if channels != G.img_channels:
        raise MetricsError(f"the generator makes {G.img_channels}-channel images but the data has {channels}")
    return resolution


def _record(spec: MetricSpec, real: tuple[dict[str, np.ndarray], str], fake: np.ndarray, seed: int, n_real: int,
            dataset_size: int, base_protocol: dict[str, Any], comparable: bool) -> dict[str, Any]:
    """One metric's record from the real statistics (and their cache status) and the generated features."""
    stats, cache = real
    metric = METRICS[spec.kind]
    value, results, extra = metric.compute(spec, stats, fake, seed, n_real)
    protocol = {"num_gen": spec.num_gen, "num_real": n_real,
                "real_subset": "all" if n_real == dataset_size else f"random subset, seed {REAL_SUBSET_SEED}",
                **base_protocol, **extra}
    return {
        "metric": spec.name,
        "value": value,  # the headline number: FID, KID's mean, or precision (recall is in results)
        "results": results,
        "comparable_to_published": comparable and metric.comparable,
        "protocol": protocol,
        "real_stats_cache": cache,
        "timestamp": time.time(),
    }


def append_records(path: str | os.PathLike, records: Sequence[dict[str, Any]]) -> None:
    """Append records as JSON lines (e.g. to a run's ``metrics.jsonl``), flushed to disk."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())
