"""Fréchet distance between Gaussians fitted to features (Heusel et al. 2017): the "F" of FID."""

from __future__ import annotations

import numpy as np


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """features [N, D] -> (mean [D], covariance [D, D]), in float64 with the unbiased (N - 1) covariance."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need features of shape [N >= 2, D], got {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative round-off clipped)."""
    eigvals, eigvecs = np.linalg.eigh((sigma + sigma.T) / 2)
    return (eigvecs * np.sqrt(np.clip(eigvals, 0, None))) @ eigvecs.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)).

    The trace of the matrix square root is computed without ``sqrtm`` of the non-symmetric product:
    with S = sigma1^(1/2), the product sigma1 sigma2 = S (S sigma2) has the same non-zero eigenvalues as the
    symmetric S sigma2 S, so tr((sigma1 sigma2)^(1/2)) = sum_i sqrt(lambda_i(S sigma2 S)). Two symmetric
    eigendecompositions give it with no complex round-off, and singular covariances (fewer samples than
    dimensions) need no epsilon on the diagonal. The result agrees with the scipy ``sqrtm`` formula of the
    reference implementations wherever that one is finite.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"shape mismatch: mu1 {mu1.shape}, sigma1 {sigma1.shape}, mu2 {mu2.shape}, "
                         f"sigma2 {sigma2.shape}")
    if not all(np.isfinite(a).all() for a in (mu1, mu2, sigma1, sigma2)):
        raise ValueError("statistics contain NaN or infinity")
    s1 = _psd_sqrt(sigma1)
    product = s1 @ sigma2 @ s1
    eigvals = np.linalg.eigvalsh((product + product.T) / 2)
    tr_covmean = np.sqrt(np.clip(eigvals, 0, None)).sum()
    diff = mu1 - mu2
    fd = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean
    return max(float(fd), 0.0)  # the true value is >= 0; only round-off can make it negative
