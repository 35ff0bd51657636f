"""Metrics: FID, KID and precision/recall on real feature extractors, offline, with the protocol on record.

    from inrgan.metrics import evaluate
    records = evaluate(G, dataset, ["fid10k", "kid10k", "pr10k"], features="effnet-lite0")

See docs/metrics.md for the protocols and their costs.
"""

from .evaluate import (
    METRICS,
    Metric,
    MetricsError,
    MetricSpec,
    append_records,
    default_cache_dir,
    evaluate,
    parse_metric,
    register_metric,
)
from .extractors import (
    EXTRACTORS,
    ExtractorError,
    FeatureExtractor,
    build_effnet_lite0,
    build_extractor,
    build_inception,
)
from .frechet import feature_statistics, frechet_distance
from .kid import kernel_distance, mmd2_unbiased
from .precision_recall import precision_recall

__all__ = [
    "EXTRACTORS",
    "METRICS",
    "Metric",
    "ExtractorError",
    "FeatureExtractor",
    "MetricSpec",
    "MetricsError",
    "append_records",
    "build_effnet_lite0",
    "build_extractor",
    "build_inception",
    "default_cache_dir",
    "evaluate",
    "feature_statistics",
    "frechet_distance",
    "kernel_distance",
    "mmd2_unbiased",
    "parse_metric",
    "precision_recall",
    "register_metric",
]
