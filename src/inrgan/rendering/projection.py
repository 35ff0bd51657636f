"""Projection of a real image into a continuous generator, then rendering it at any density or box.

The target, of any size and aspect ratio, is compared with the model rendered on the target's own
pixel grid (``target_box``): a 16^2 photo of a 32^2 model is matched by a render at half density, which
a pixel GAN cannot do. The latent is optimised in W (one w for every layer), W+ (one per layer) or in
the INR parameters themselves (after a W fit); optionally the generator is then fine-tuned around the
result (pivotal tuning) with a locality term that keeps renders of other latents where they were.

The loss is the pixel MSE plus a perceptual distance (``inrgan.metrics.perceptual``).
"""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..models.coords import default_bbox
from .interpolate import INRParams, inr_parameters, render_inr

SPACES = ("w", "w+", "inr")
MAX_UNTILED_PIXELS = 256 * 256  # larger targets render in tiles (activation memory of one tile)
TILE = 128


class ProjectionError(ValueError):
    """A target or setting that cannot be projected; the message says what is wrong."""


@dataclass(frozen=True)
class ProjectionConfig:
    space: str = "w"
    steps: int = 300
    lr: float = 0.1  # Adam step for w, in units of the spread of w (cosine rampdown)
    inr_lr: float = 0.01  # Adam step for the INR parameters, relative to each tensor's std
    pixel_weight: float = 1.0
    perceptual_weight: float = 0.5
    tune_steps: int = 0  # pivotal tuning steps after the latent fit (W and W+ only)
    tune_lr: float = 3e-4
    locality_weight: float = 1.0
    locality_samples: int = 4
    w_samples: int = 1000  # latents whose w estimate the spread of w
    frames: int = 24  # renders kept for the optimisation video
    seed: int = 0

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise ProjectionError(f"space must be one of {SPACES}, got {self.space!r}")
        if self.steps < 1 or self.tune_steps < 0:
            raise ProjectionError("steps must be >= 1 and tune_steps >= 0")
        if self.tune_steps and self.space == "inr":
            raise ProjectionError("pivotal tuning (--tune) applies to the w and w+ spaces; the inr space "
                                  "already frees every INR parameter")


def target_box(G, height: int, width: int) -> tuple[float, float, float, float]:
    """The box of an H x W target at equal density in x and y: the training box along the shorter
    side, widened about the centre along the longer one."""
    x0, y0, x1, y1 = default_bbox(G.cfg.grid)
    aspect = width / height
    cx, cy, hx, hy = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    hx, hy = (hx * aspect, hy) if aspect >= 1 else (hx, hy / aspect)
    return (cx - hx, cy - hy, cx + hx, cy + hy)


def render_on_grid(G, ws: Tensor | None, height: int, width: int, bbox=None, params: INRParams | None = None,
                   tile: int | None = None) -> Tensor:
    """G's render of ``ws`` (or of INR ``params``) on an H x W grid over ``bbox`` (default
    ``target_box``), tiled above MAX_UNTILED_PIXELS for pixel-independent models: [B, C, H, W]."""
    bbox = target_box(G, height, width) if bbox is None else tuple(bbox)
    if tile is None and height * width > MAX_UNTILED_PIXELS and G.cfg.pixel_independent:
        tile = TILE
    if params is not None:
        return render_inr(G.synthesis, params, height=height, width=width, bbox=bbox, tile=tile)
    return G.synthesis(ws, height=height, width=width, bbox=bbox, tile=tile)


@dataclass
class Projection:
    """The result: the latent (and INR parameters), the generator it renders with, and the history."""

    G: torch.nn.Module  # the tuned copy after pivotal tuning, else the given generator
    space: str
    ws: Tensor  # [1, num_ws, w_dim]
    params: INRParams | None  # the inr space's parameters, [1, ...] each
    height: int
    width: int
    bbox: tuple[float, float, float, float]
    tuned: bool = False
    losses: list[dict[str, float]] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)  # uint8 [H, W, C] renders during the fit

    @torch.no_grad()
    def render(self, height: int | None = None, width: int | None = None, bbox=None, tile: int | None = None
               ) -> Tensor:
        """[1, C, H, W] at any size and box (default: the target's grid)."""
        h, w = height or self.height, width or self.width
        return render_on_grid(self.G, self.ws, h, w, self.bbox if bbox is None else bbox, self.params, tile)

    def save(self, path: str | Path) -> Path:
        """``projection.npz``: ws, the INR parameters (inr space) and the settings, as plain arrays."""
        from ..io import atomic_write_bytes

        arrays = {"ws": self.ws.detach().cpu().numpy(), "bbox": np.array(self.bbox),
                  "size": np.array([self.height, self.width]), "space": np.array(self.space),
                  "tuned": np.array(self.tuned)}
        for k, v in (self.params or {}).items():
            arrays[f"inr/{k}"] = v.detach().cpu().numpy()
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())
        return Path(path)


def _spread_of_w(G, cfg: ProjectionConfig) -> tuple[Tensor, float]:
    """w_avg and the RMS distance of w from it, from ``cfg.w_samples`` latents."""
    gen = torch.Generator().manual_seed(cfg.seed)
    with torch.no_grad():
        w = G.mapping(torch.randn(cfg.w_samples, G.z_dim, generator=gen))[:, 0]  # [N, w_dim]
    w_avg = w.mean(0)
    return w_avg, float(((w - w_avg) ** 2).sum(1).mean().sqrt() / math.sqrt(w.shape[1]))


def _loss(render: Tensor, target: Tensor, cfg: ProjectionConfig, perceptual) -> tuple[Tensor, dict[str, float]]:
    pixel = ((render - target) ** 2).mean()
    total = cfg.pixel_weight * pixel
    parts = {"pixel_mse": pixel.item()}
    if perceptual is not None and cfg.perceptual_weight > 0:
        dist = perceptual(render, target).mean()
        total = total + cfg.perceptual_weight * dist
        parts["perceptual"] = dist.item()
    parts["loss"] = total.item()
    return total, parts


def _keep_frame(frames: list, render: Tensor, step: int, steps: int, count: int) -> None:
    if count and (step % max(1, steps // count) == 0 or step == steps - 1):
        from .images import to_uint8

        frames.append(to_uint8(render.detach())[0])


def _fit(params: list[Tensor], lrs: list[float], steps: int, render_fn: Callable[[], Tensor], target: Tensor,
         cfg: ProjectionConfig, perceptual, history: list, frames: list, phase: str,
         extra: Callable[[], Tensor] | None = None) -> None:
    """Adam on ``params`` (one lr each, cosine rampdown) minimising the loss of ``render_fn()``."""
    opt = torch.optim.Adam([{"params": [p], "lr": lr} for p, lr in zip(params, lrs, strict=True)], betas=(0.9, 0.999))
    for step in range(steps):
        ramp = 0.5 * (1 + math.cos(math.pi * step / steps))
        for group, lr in zip(opt.param_groups, lrs, strict=True):
            group["lr"] = lr * min(1.0, ramp + 0.05)
        render = render_fn()
        loss, parts = _loss(render, target, cfg, perceptual)
        if extra is not None:
            locality = extra()
            loss = loss + cfg.locality_weight * locality
            parts["locality"] = locality.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append({"phase": phase, "step": step, **parts})
        _keep_frame(frames, render, step, steps, cfg.frames)


def check_target(G, image: Tensor) -> Tensor:
    """A target [C, H, W] or [1, C, H, W] in [-1, 1] with G's channel count, as [1, C, H, W]."""
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[0] != 1:
        raise ProjectionError(f"the target must be one image [C, H, W], got shape {list(image.shape)}")
    if image.shape[1] != G.img_channels:
        raise ProjectionError(f"the target has {image.shape[1]} channel(s) but the model makes {G.img_channels}; "
                              f"convert it to {'grayscale' if G.img_channels == 1 else 'RGB'} first")
    if not torch.isfinite(image).all():
        raise ProjectionError("the target has NaN or Inf pixels")
    return image.float()


def project(G, image: Tensor, cfg: ProjectionConfig | None = None, perceptual=None, log=None) -> Projection:
    """Fit ``G`` to ``image`` ([C, H, W] in [-1, 1], any H x W) on the image's own grid.

    ``perceptual`` is a distance module (``inrgan.metrics.perceptual.build_perceptual()``), or None for
    the pixel loss alone. Returns a :class:`Projection`.
    """
    cfg = cfg or ProjectionConfig()
    target = check_target(G, image)
    _, _, H, W = target.shape
    bbox = target_box(G, H, W)
    G.requires_grad_(False)
    w_avg, w_std = _spread_of_w(G, cfg)
    n = G.synthesis.num_ws
    w = w_avg.clone()[None, None].repeat(1, 1 if cfg.space != "w+" else n, 1).requires_grad_(True)  # [1, 1|n, w_dim]
    history: list[dict[str, float]] = []
    frames: list[np.ndarray] = []

    def ws() -> Tensor:
        return w.expand(1, n, -1) if w.shape[1] == 1 else w

    w_steps = cfg.steps if cfg.space != "inr" else max(1, cfg.steps // 2)
    _fit([w], [cfg.lr * w_std], w_steps, lambda: render_on_grid(G, ws(), H, W, bbox), target, cfg, perceptual,
         history, frames, "w" if cfg.space == "inr" else cfg.space)
    params = None
    if cfg.space == "inr":
        params = {k: v.detach().clone().requires_grad_(True) for k, v in inr_parameters(G.synthesis, ws().detach()).items()}
        keys = sorted(params)
        lrs = [cfg.inr_lr * (params[k].std().item() if params[k].numel() > 1 else 1.0) + 1e-8 for k in keys]
        _fit([params[k] for k in keys], lrs, cfg.steps - w_steps,
             lambda: render_on_grid(G, None, H, W, bbox, params), target, cfg, perceptual, history, frames, "inr")
        params = {k: v.detach() for k, v in params.items()}
    result = Projection(G, cfg.space, ws().detach(), params, H, W, bbox, losses=history, frames=frames)
    if cfg.tune_steps:
        result = pivotal_tuning(result, target, cfg, perceptual)
    if log:
        log(f"projected in {cfg.space}: {history[-1]}")
    return result


def pivotal_tuning(result: Projection, target: Tensor, cfg: ProjectionConfig, perceptual) -> Projection:
    """Fine-tune a copy of the generator's synthesis network so that the pivot ``result.ws`` renders the
    target, while renders halfway from the pivot to random latents stay as the original made them."""
    G0 = result.G
    G = copy.deepcopy(G0)
    G.synthesis.requires_grad_(True)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    with torch.no_grad():
        others = G0.mapping(torch.randn(cfg.locality_samples, G0.z_dim, generator=gen))  # [K, num_ws, w_dim]
        near = result.ws.lerp(others, 0.5)  # halfway to random latents
        kept = G0.synthesis(near)  # what the original renders there, at the training grid

    def locality() -> Tensor:
        return ((G.synthesis(near) - kept) ** 2).mean()

    params = list(G.synthesis.parameters())
    H, W, bbox = result.height, result.width, result.bbox
    _fit(params, [cfg.tune_lr] * len(params), cfg.tune_steps, lambda: render_on_grid(G, result.ws, H, W, bbox),
         target, cfg, perceptual, result.losses, result.frames, "tune", extra=locality)
    G.requires_grad_(False)
    return Projection(G.eval(), result.space, result.ws, None, H, W, bbox, tuned=True, losses=result.losses,
                      frames=result.frames)


def load_projection(path: str | Path, G) -> Projection:
    """A projection saved by :meth:`Projection.save`, rendered with ``G`` (a tuned projection needs the
    tuned generator saved beside it)."""
    try:
        data = np.load(path, allow_pickle=False)
        ws = torch.from_numpy(data["ws"]).float()
        params = {k[4:]: torch.from_numpy(data[k]).float() for k in data.files if k.startswith("inr/")} or None
        H, W = (int(v) for v in data["size"])
        return Projection(G, str(data["space"]), ws, params, H, W, tuple(float(v) for v in data["bbox"]),
                          tuned=bool(data["tuned"]))
    except (OSError, KeyError, ValueError) as e:
        raise ProjectionError(f"{path}: not a readable projection ({e})") from e

