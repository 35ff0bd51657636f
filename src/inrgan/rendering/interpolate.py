"""Interpolation between samples in z, in w, and in the space of the generated INR parameters.

The generator is a hypernetwork: for every sample it produces the parameters of a per-pixel MLP (the
INR). Interpolating those parameters is the paper's "image space" interpolation. What is interpolated
here, per sample, is what the INR actually computes with:

- every FMM layer's modulated weight W = demod(W_s * (1 + A B / sqrt(r))), [c_out, c_in], and its bias
  (shared by all samples, or predicted from w in the older variants);
- every ToRGB's modulated weight [img_channels, C] and bias;
- the per-sample Fourier basis (vectors and phases), where a preset predicts one from w.

They are the model's own (``SynthesisNetwork.inr_parameters``, the one walk of the network), and
rendering from them (:func:`render_inr`) takes the renderer that ``G`` itself takes, so at the endpoints it
equals the ordinary render.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..accel.generator import FastSynthesisNetwork
from ..models.synthesis import INRParams, SynthesisNetwork

SPACES = ("z", "w", "inr")
__all__ = ["INRParams", "inr_parameters", "interpolate", "lerp", "lerp_params", "render_inr", "select", "slerp"]


# ----------------------------------------------------------------------------------------------
# Paths between two points.


def lerp(a: Tensor, b: Tensor, t: float) -> Tensor:
    """Linear interpolation; t = 0 and t = 1 return ``a`` and ``b`` exactly."""
    return a if t == 0 else b if t == 1 else torch.lerp(a, b, float(t))


def slerp(a: Tensor, b: Tensor, t: float | Tensor, eps: float = 1e-7) -> Tensor:
    """Spherical interpolation along the last dim (the great circle through a and b, norms lerped); ``t``
    a number, or a tensor of fractions per row ([B, 1]).

    Gaussian latents concentrate near a sphere, so a straight line through the middle of it leaves the
    region the mapping network was trained on; the great circle does not.
    """
    if not isinstance(t, Tensor) and t in (0, 1):
        return a if t == 0 else b
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    ua, ub = a / (na + eps), b / (nb + eps)
    omega = torch.acos((ua * ub).sum(-1, keepdim=True).clamp(-1 + eps, 1 - eps))  # angle between them
    so = torch.sin(omega)
    direction = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / so
    return direction * torch.lerp(na, nb, t if isinstance(t, Tensor) else float(t))


# ----------------------------------------------------------------------------------------------
# The generated INR parameters.


def inr_parameters(synthesis: SynthesisNetwork, ws: Tensor) -> INRParams:
    """The per-sample INR parameters that ``ws`` [B, num_ws, w_dim] generate (``synthesis.inr_parameters``):
    ``blocks.{i}.{layer}.weight`` [B, c_out, c_in] and ``.bias`` [B, c_out] for every FMM layer and ToRGB, and
    ``embeddings.{l}.basis`` [B, n, 3] for a predicted Fourier basis."""
    if not hasattr(synthesis, "inr_parameters"):
        raise ValueError(f"the {synthesis.cfg.family} generator makes no INR parameters: interpolate in z or w")
    return synthesis.inr_parameters(ws)


def lerp_params(a: INRParams, b: INRParams, t: float) -> INRParams:
    """Interpolate every INR parameter linearly (batch dims must match or broadcast)."""
    if a.keys() != b.keys():
        raise ValueError("the two parameter sets come from different generators")
    return {k: lerp(a[k], b[k], t) for k in a}


def select(params: INRParams, index) -> INRParams:
    """Pick samples along the batch dim: ``select(p, [0])``, ``select(p, slice(2, 4))``."""
    return {k: v[index] for k, v in params.items()}


def render_inr(
    synthesis: SynthesisNetwork,
    params: INRParams,
    height: int | None = None,
    width: int | None = None,
    bbox: Sequence[float] | None = None,
    tile: int | None = None,
) -> Tensor:
    """Evaluate given INR parameters on a grid, like ``synthesis(ws, height, width, bbox, tile)``.

    Args:
        synthesis: the network whose shared pieces (coordinate embeddings, upsampling) are used.
        params: per-sample INR parameters, as :func:`inr_parameters` returns them.
        height, width, bbox, tile: as for the synthesis network.

    Returns:
        [B, img_channels, H, W].
    """
    grid = synthesis.make_grid(height, width, bbox)
    if isinstance(synthesis, FastSynthesisNetwork):  # inrgan.Generator's: the fast render
        return synthesis.render_params(params, grid, tile)
    return synthesis.render_tiled(grid, tile, lambda window: synthesis.render(params, window))


# ----------------------------------------------------------------------------------------------
# Interpolation renders.


def interpolate(
    G,
    z0: Tensor,
    z1: Tensor,
    ts: Sequence[float],
    space: str = "w",
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    height: int | None = None,
    width: int | None = None,
    bbox: Sequence[float] | None = None,
    tile: int | None = None,
    batch_size: int = 8,
) -> Tensor:
    """Render the path from latent ``z0`` to ``z1`` at the fractions ``ts``.

    Args:
        G: a :class:`~inrgan.models.Generator`.
        z0, z1: [z_dim] or [1, z_dim] latents.
        ts: fractions in [0, 1]; 0 renders exactly ``G(z0)`` and 1 ``G(z1)``.
        space: "z" (spherical in z), "w" (linear in w, after truncation) or "inr" (linear in the
            generated INR weights and biases, the paper's image-space interpolation).
        truncation_psi, truncation_cutoff: the truncation trick, applied to the endpoints' w in "w" and
            "inr", and to every interpolated z in "z".
        height, width, bbox, tile: the render grid, as for ``G``.
        batch_size: frames rendered at once.

    Returns:
        [len(ts), img_channels, H, W].
    """
    if space not in SPACES:
        raise ValueError(f"unknown interpolation space {space!r}; choose one of {SPACES}")
    z0, z1 = z0.reshape(1, -1), z1.reshape(1, -1)
    ts = [float(t) for t in ts]
    if any(not 0 <= t <= 1 for t in ts):
        raise ValueError(f"interpolation fractions must lie in [0, 1], got {ts}")
    render = dict(height=height, width=width, bbox=bbox, tile=tile)
    frames = []
    if space == "z":
        for k in range(0, len(ts), batch_size):
            z = torch.cat([slerp(z0, z1, t) for t in ts[k : k + batch_size]])
            ws = G.mapping(z, truncation_psi, truncation_cutoff)
            frames.append(G.synthesis(ws, **render))
        return torch.cat(frames)
    ends = G.mapping(torch.cat([z0, z1]), truncation_psi, truncation_cutoff)  # [2, num_ws, w_dim]
    if space == "w":
        for k in range(0, len(ts), batch_size):
            ws = torch.cat([lerp(ends[:1], ends[1:], t) for t in ts[k : k + batch_size]])
            frames.append(G.synthesis(ws, **render))
        return torch.cat(frames)
    params = inr_parameters(G.synthesis, ends)
    p0, p1 = select(params, slice(0, 1)), select(params, slice(1, 2))
    for k in range(0, len(ts), batch_size):
        chunk = [lerp_params(p0, p1, t) for t in ts[k : k + batch_size]]
        batch = {name: torch.cat([p[name] for p in chunk]) for name in p0}
        frames.append(render_inr(G.synthesis, batch, **render))
    return torch.cat(frames)


def path_fractions(steps: int, endpoint: bool = True) -> list[float]:
    """``steps`` evenly spaced fractions from 0 to 1 (``endpoint=False`` leaves 1 out, for chaining)."""
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    if endpoint:
        return [0.0] if steps == 1 else [i / (steps - 1) for i in range(steps)]
    return [i / steps for i in range(steps)]


def ease(t: float) -> float:
    """Smooth start and stop (cosine), so an animation lingers on the keyframes."""
    return 0.5 - 0.5 * math.cos(math.pi * t)
