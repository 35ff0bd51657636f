"""Two of the paper's claims as measures: the geometric prior and meaningful interpolation.

**The geometric prior.** The paper finds that a linear model predicts face keypoints from INR-GAN's
latents better than from StyleGAN2's. Garments have no keypoints; their silhouette has a geometry that
can be read from the image alone: the centroid, the extent, the log width/height ratio and the orientation
of the second moments of the thresholded image. ``geometric_prior`` samples latents, computes those
attributes, fits a linear least-squares model from z (and from w) on half the samples and reports the
held-out R^2 of each attribute on the other half.

**Interpolation in image space.** ``path_lengths`` is the perceptual path length of StyleGAN (Karras et
al. 2019) along paths in z (spherical), in w (linear) and in the INR parameters (linear): the mean of
d(G(t), G(t + eps)) / eps^2 over random pairs and t, with d the perceptual distance of
inrgan.metrics.perceptual. ``midpoint_acceptance`` is the share of the paths' midpoints that the
real-image manifold of precision/recall accepts (their features fall in a ball around a real image).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

ATTRIBUTES = ("centroid_x", "centroid_y", "extent_x", "extent_y", "log_aspect", "orientation_cos",
              "orientation_sin")


def silhouette_attributes(images: Tensor, threshold: float = 0.0) -> np.ndarray:
    """Geometric attributes [B, 7] of images [B, C, H, W] in [-1, 1] from the mask ``mean over C > threshold``.

    Coordinates are in [-1, 1] (x right, y down): the mask's centroid, its extent along x and y (from the
    first covered pixel's outer edge to the last's, so one pixel spans 2 / W), the log of the width/height
    ratio of that extent (bounded by log W: a one-row mask is no outlier of 10^6), and the orientation of its
    second moments as (cos 2a, sin 2a) (an axis has no sign: a and a + pi are one orientation). An empty
    mask gives zeros.
    """
    mask = (images.float().mean(1) > threshold).double()  # [B, H, W]
    b, h, w = mask.shape
    ys = (torch.arange(h, dtype=torch.float64) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, dtype=torch.float64) + 0.5) / w * 2 - 1
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    out = np.zeros((b, len(ATTRIBUTES)))
    for i in range(b):
        m = mask[i]
        n = m.sum()
        if n == 0:
            continue
        cx, cy = (m * xx).sum() / n, (m * yy).sum() / n
        on_x, on_y = xx[m > 0], yy[m > 0]
        ex, ey = (on_x.max() - on_x.min()).item() + 2 / w, (on_y.max() - on_y.min()).item() + 2 / h
        mxx, myy = (m * (xx - cx) ** 2).sum() / n, (m * (yy - cy) ** 2).sum() / n
        mxy = (m * (xx - cx) * (yy - cy)).sum() / n
        angle2 = torch.atan2(2 * mxy, mxx - myy)  # twice the principal axis' angle
        out[i] = [cx.item(), cy.item(), ex, ey, np.log(ex / ey), angle2.cos().item(), angle2.sin().item()]
    return out


def held_out_r2(x: np.ndarray, y: np.ndarray, train: int, ridge: float = 1e-3) -> np.ndarray:
    """R^2 [D] on rows ``train:`` of a linear model (with intercept, a little ridge) fitted on rows ``:train``
    from x [N, F] to y [N, D]."""
    xa = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    a, b = xa[:train], y[:train]
    coef = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ b)
    pred, truth = xa[train:] @ coef, y[train:]
    resid = ((truth - pred) ** 2).sum(0)
    total = ((truth - truth.mean(0)) ** 2).sum(0)
    return 1 - resid / np.maximum(total, 1e-12)


@torch.no_grad()
def geometric_prior(G, num: int = 2000, seed: int = 0, batch: int = 100) -> dict[str, dict[str, float]]:
    """Held-out R^2 of each silhouette attribute from z and from w: {"z": {attr: r2}, "w": {...}}."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(num, G.z_dim, generator=gen)
    ws, attrs = [], []
    for chunk in z.split(batch):
        w = G.mapping(chunk)  # [B, num_ws, w_dim]
        ws.append(w[:, 0])
        attrs.append(silhouette_attributes(G.synthesis(w)))
    y = np.concatenate(attrs)
    result = {}
    for name, x in (("z", z.numpy()), ("w", torch.cat(ws).numpy())):
        result[name] = dict(zip(ATTRIBUTES, held_out_r2(x.astype(np.float64), y, num // 2).tolist(), strict=True))
    return result


def render_path(G, a: Tensor, b: Tensor, t: Tensor, space: str) -> Tensor:
    """Images [B, C, R, R] at fractions t [B, 1] of the paths from latents a to b [B, z_dim]: spherical in
    z, linear in w, or linear in the INR parameters."""
    from ..rendering.interpolate import inr_parameters, render_inr, slerp

    if space == "z":
        return G(slerp(a, b, t))
    w0, w1 = G.mapping(a), G.mapping(b)
    if space == "w":
        return G.synthesis(w0.lerp(w1, t[:, :, None]))
    if space != "inr":
        raise ValueError(f"unknown space {space!r}; choose z, w or inr")
    if not G.has_inr:
        raise ValueError(f"the {G.cfg.family} generator makes no INR parameters: paths in z and w only")
    p0, p1 = inr_parameters(G.synthesis, w0), inr_parameters(G.synthesis, w1)
    return render_inr(G.synthesis, {k: p0[k] + (p1[k] - p0[k]) * t.reshape(-1, *([1] * (p0[k].ndim - 1)))
                                    for k in p0})


def _latent_pairs(G, num: int, seed: int) -> tuple[Tensor, Tensor, torch.Generator]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(num, G.z_dim, generator=gen), torch.randn(num, G.z_dim, generator=gen), gen


@torch.no_grad()
def path_lengths(G, perceptual, num: int = 200, eps: float = 1e-2, seed: int = 0, batch: int = 25,
                 spaces=("z", "w", "inr")) -> dict[str, float]:
    """Perceptual path length per space: mean of d(G(t), G(t + eps)) / eps^2 over ``num`` random pairs."""
    z0, z1, gen = _latent_pairs(G, num, seed)
    t = torch.rand(num, 1, generator=gen) * (1 - eps)
    out = {}
    for space in spaces:
        dists = [perceptual(render_path(G, z0[k:k + batch], z1[k:k + batch], t[k:k + batch], space),
                            render_path(G, z0[k:k + batch], z1[k:k + batch], t[k:k + batch] + eps, space)) / eps**2
                 for k in range(0, num, batch)]
        out[space] = torch.cat(dists).mean().item()
    return out


def _midpoints(G, z0: Tensor, z1: Tensor, space: str, batch: int):
    for k in range(0, len(z0), batch):
        a, b = z0[k:k + batch], z1[k:k + batch]
        img = render_path(G, a, b, torch.full((len(a), 1), 0.5), space)
        yield (img.clamp(-1, 1) * 127.5 + 127.5).round().to(torch.uint8)


@torch.no_grad()
def midpoint_acceptance(G, extractor, real_features: np.ndarray, num: int = 500, seed: int = 1, batch: int = 50,
                        spaces=("z", "w", "inr"), k: int = 3) -> dict[str, float]:
    """Share of the midpoints of random paths, per space, whose features lie in the real manifold (the
    union of balls around the real features with radius the distance to their k-th neighbour)."""
    from .evaluate import embed
    from .precision_recall import knn_radii, manifold_coverage

    real = torch.as_tensor(real_features, dtype=torch.float64)
    radii = knn_radii(real, k)
    z0, z1, _ = _latent_pairs(G, num, seed)
    out = {}
    for space in spaces:
        feats = embed(extractor, _midpoints(G, z0, z1, space, batch), -(-num // batch), space, progress=False)
        out[space] = manifold_coverage(real, radii, torch.as_tensor(feats, dtype=torch.float64))
    return out
