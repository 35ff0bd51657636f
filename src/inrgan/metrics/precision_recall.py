"""Improved precision and recall (Kynkäänniemi et al. 2019): k-NN manifolds in feature space."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def knn_radii(features: Tensor, k: int = 3, batch_size: int = 256) -> Tensor:
    """[N, D] -> [N], each sample's distance to its k-th nearest other sample."""
    if features.shape[0] <= k:
        raise ValueError(f"need more than k = {k} samples, got {features.shape[0]}")
    radii = []
    for rows in features.split(batch_size):
        dist = torch.cdist(rows, features)  # [b, N], includes the distance 0 to itself
        radii.append(dist.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def manifold_coverage(manifold: Tensor, radii: Tensor, queries: Tensor, batch_size: int = 256) -> float:
    """Fraction of ``queries`` that fall inside some ball (``manifold`` [N, D], ``radii`` [N])."""
    inside = []
    for rows in queries.split(batch_size):
        dist = torch.cdist(rows, manifold)  # [b, N]
        inside.append((dist <= radii).any(dim=1))
    return torch.cat(inside).float().mean().item()


def precision_recall(
    real: np.ndarray | Tensor, fake: np.ndarray | Tensor, k: int = 3, batch_size: int = 256
) -> tuple[float, float]:
    """Precision: share of fake samples inside the real manifold; recall: share of real inside the fake one.

    Each manifold is the union of balls around its samples with radius the distance to the k-th nearest
    neighbour. Distances are computed in float64 in row batches of ``batch_size``.
    """
    real = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    fake = torch.as_tensor(np.asarray(fake), dtype=torch.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"need features [N, D] with equal D, got {tuple(real.shape)} and {tuple(fake.shape)}")
    precision = manifold_coverage(real, knn_radii(real, k, batch_size), fake, batch_size)
    recall = manifold_coverage(fake, knn_radii(fake, k, batch_size), real, batch_size)
    return precision, recall
