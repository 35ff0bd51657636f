"""Augmentation of every image the discriminator sees: ADA and DiffAugment, differentiable, pure PyTorch.

ADA (Karras et al., "Training Generative Adversarial Networks with Limited Data", 2020): each transform
is applied to each image with probability p, and p follows the sign of D's output on reals,
r_t = E[sign(D(real))], toward a target (0.6): above it D is overfitting and p rises, below it p falls,
at a rate that can take p from 0 to 1 in ``ada_kimg`` thousand images. The transforms, in order:
- geometric, composed into one affine map and sampled once (bilinear, reflection padding): x-flip,
  rotation by a multiple of 90 degrees, integer translation (up to 1/8 of the image), isotropic scaling
  (lognormal, std 0.2 log 2), rotation (uniform; applied before and after the anisotropic scaling, each
  with probability 1 - sqrt(1 - p) so that some rotation happens with probability p), anisotropic scaling
  (std 0.2 log 2) and fractional translation (normal, std 1/8 of the image);
- colour, composed into one affine colour map about mid-grey (0 in [-1, 1]): brightness (normal, std 0.2),
  contrast (lognormal, std 0.5 log 2), luma flip, hue rotation (uniform) and saturation (lognormal, std log 2)
  about the luma axis. A 1-channel image has no hue or saturation: it takes brightness, contrast and the
  luma flip (x -> -x).

DiffAugment (Zhao et al., "Differentiable Augmentation for Data-Efficient GAN Training", 2020), applied to
every image: colour (brightness U(-0.5, 0.5), saturation x U(0, 2) and contrast x U(0.5, 1.5) about the
image's mean), translation by up to 1/8 of the image with zero padding, and a cutout of half the image's
side at a random place.

Both take their random numbers from a ``torch.Generator`` that the training state keeps, so a resumed run
augments as the uninterrupted one would.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

AUGMENTS = ("none", "ada", "diffaugment")
LUMA = torch.tensor([1.0, 1.0, 1.0]) / math.sqrt(3)  # the luma axis of ADA's colour transforms


# ----------------------------------------------------------------------------------------------
# Matrices: [B, 3, 3] homogeneous maps of normalised image coordinates (x right, y down, in [-1, 1]).


def translate2d(tx: Tensor, ty: Tensor) -> Tensor:
    m = torch.eye(3, dtype=tx.dtype, device=tx.device).repeat(len(tx), 1, 1)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def scale2d(sx: Tensor, sy: Tensor) -> Tensor:
    m = torch.eye(3, dtype=sx.dtype, device=sx.device).repeat(len(sx), 1, 1)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def rotate2d(theta: Tensor) -> Tensor:
    m = torch.eye(3, dtype=theta.dtype, device=theta.device).repeat(len(theta), 1, 1)
    c, s = theta.cos(), theta.sin()
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    return m


def apply_geometry(images: Tensor, forward: Tensor) -> Tensor:
    """Images [B, C, H, W] moved by the maps ``forward`` [B, 3, 3] (output = image at forward^-1 of each
    output position), bilinear, reflection padding, pixel-centred (align_corners=False)."""
    inverse = torch.linalg.inv(forward)[:, :2, :]  # [B, 2, 3]: output position -> input position
    grid = F.affine_grid(inverse.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def apply_colour(images: Tensor, matrix: Tensor) -> Tensor:
    """Images [B, C, H, W] mapped by the colour maps [B, C + 1, C + 1] (homogeneous, about 0)."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h * w)
    return (matrix[:, :c, :c] @ x + matrix[:, :c, c:]).reshape(b, c, h, w)


# ----------------------------------------------------------------------------------------------
# ADA.


def _where(mask: Tensor, value: Tensor, identity: float) -> Tensor:
    return torch.where(mask, value, torch.full_like(value, identity))


def ada_geometry(batch: int, size: tuple[int, int], p: float, gen: torch.Generator) -> Tensor:
    """The composed geometric maps [B, 3, 3] of ADA's transforms, each on with probability p."""
    h, w = size

    def on(prob: float = p) -> Tensor:
        return torch.rand(batch, generator=gen) < prob

    m = torch.eye(3).repeat(batch, 1, 1)
    flip = torch.randint(0, 2, (batch,), generator=gen).float()
    m = m @ scale2d(1 - 2 * _where(on(), flip, 0.0), torch.ones(batch))
    k = torch.randint(0, 4, (batch,), generator=gen).float()
    m = m @ rotate2d(_where(on(), k * math.pi / 2, 0.0))
    t = (torch.rand(batch, 2, generator=gen) * 2 - 1) * 0.125
    tx, ty = (t[:, 0] * w).round() * 2 / w, (t[:, 1] * h).round() * 2 / h  # whole pixels, in [-1, 1] units
    mask = on()
    m = m @ translate2d(_where(mask, tx, 0.0), _where(mask, ty, 0.0))
    s = torch.exp2(torch.randn(batch, generator=gen) * 0.2)
    s = _where(on(), s, 1.0)
    m = m @ scale2d(s, s)
    p_rot = 1 - math.sqrt(max(0.0, 1 - p))
    m = m @ rotate2d(_where(on(p_rot), (torch.rand(batch, generator=gen) * 2 - 1) * math.pi, 0.0))
    s = _where(on(), torch.exp2(torch.randn(batch, generator=gen) * 0.2), 1.0)
    m = m @ scale2d(s, 1 / s)
    m = m @ rotate2d(_where(on(p_rot), (torch.rand(batch, generator=gen) * 2 - 1) * math.pi, 0.0))
    t = torch.randn(batch, 2, generator=gen) * 0.125 * 2  # std 1/8 of the image, in [-1, 1] units
    mask = on()
    return m @ translate2d(_where(mask, t[:, 0], 0.0), _where(mask, t[:, 1], 0.0))


def ada_colour(batch: int, channels: int, p: float, gen: torch.Generator) -> Tensor:
    """The composed colour maps [B, C + 1, C + 1] of ADA's colour transforms, each on with probability p."""
    def on() -> Tensor:
        return torch.rand(batch, generator=gen) < p

    c = channels
    m = torch.eye(c + 1).repeat(batch, 1, 1)
    b = _where(on(), torch.randn(batch, generator=gen) * 0.2, 0.0)
    add = torch.eye(c + 1).repeat(batch, 1, 1)
    add[:, :c, c] = b[:, None]
    m = add @ m
    k = _where(on(), torch.exp2(torch.randn(batch, generator=gen) * 0.5), 1.0)
    m = _colour_linear(k[:, None, None] * torch.eye(c)) @ m
    v = LUMA if c == 3 else torch.ones(1)
    flip = _where(on(), torch.randint(0, 2, (batch,), generator=gen).float(), 0.0)
    m = _colour_linear(torch.eye(c) - 2 * flip[:, None, None] * torch.outer(v, v)) @ m
    if c == 3:
        theta = _where(on(), (torch.rand(batch, generator=gen) * 2 - 1) * math.pi, 0.0)
        m = _colour_linear(_rotation_about(v, theta)) @ m
        s = _where(on(), torch.exp2(torch.randn(batch, generator=gen)), 1.0)
        vv = torch.outer(v, v)
        m = _colour_linear(vv + (torch.eye(3) - vv) * s[:, None, None]) @ m
    return m


def _colour_linear(a: Tensor) -> Tensor:
    """[B, C, C] -> homogeneous [B, C + 1, C + 1]."""
    b, c, _ = a.shape
    m = torch.eye(c + 1).repeat(b, 1, 1)
    m[:, :c, :c] = a
    return m


def _rotation_about(v: Tensor, theta: Tensor) -> Tensor:
    """Rodrigues' rotation matrices [B, 3, 3] by ``theta`` about the unit axis ``v``."""
    k = torch.tensor([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    s, c = theta.sin()[:, None, None], theta.cos()[:, None, None]
    return torch.eye(3) + s * k + (1 - c) * (k @ k)


def ada_augment(images: Tensor, p: float, gen: torch.Generator) -> Tensor:
    """ADA's pipeline on images [B, C, H, W] in [-1, 1] at probability p (p = 0: the images unchanged)."""
    if p <= 0:
        return images
    b, c, h, w = images.shape
    geometry = ada_geometry(b, (h, w), p, gen).to(images.device)
    colour = ada_colour(b, c, p, gen).to(images.device, images.dtype)
    return apply_colour(apply_geometry(images, geometry), colour)


# ----------------------------------------------------------------------------------------------
# DiffAugment.


def diff_augment(images: Tensor, gen: torch.Generator) -> Tensor:
    """DiffAugment's colour, translation and cutout on images [B, C, H, W] in [-1, 1]."""
    b, c, h, w = images.shape
    dev, dt = images.device, images.dtype

    def rand(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=gen).to(dev, dt)

    x = images + (rand(b, 1, 1, 1) - 0.5)  # brightness
    if c == 3:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (rand(b, 1, 1, 1) * 2) + mean  # saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * (rand(b, 1, 1, 1) + 0.5) + mean  # contrast
    shift = [torch.randint(-(n // 8), n // 8 + 1, (b,), generator=gen) for n in (h, w)]
    x = translate_pixels(x, shift[0], shift[1])
    ch, cw = h // 2, w // 2
    cy = torch.randint(0, h + (1 - ch % 2), (b,), generator=gen)
    cx = torch.randint(0, w + (1 - cw % 2), (b,), generator=gen)
    return x * cutout_mask(b, h, w, cy, cx, ch, cw).to(dev, dt)


def translate_pixels(x: Tensor, dy: Tensor, dx: Tensor) -> Tensor:
    """Each image [C, H, W] of x shifted by (dy, dx) whole pixels, zeros coming in."""
    b, _, h, w = x.shape
    yy = torch.arange(h)[None, :] - dy[:, None]  # [B, H]: the source row of each output row
    xx = torch.arange(w)[None, :] - dx[:, None]
    valid = ((yy >= 0) & (yy < h))[:, :, None] & ((xx >= 0) & (xx < w))[:, None, :]  # [B, H, W]
    src = yy.clamp(0, h - 1)[:, :, None] * w + xx.clamp(0, w - 1)[:, None, :]  # [B, H, W]
    flat = x.reshape(b, x.shape[1], h * w)
    out = flat.gather(2, src.reshape(b, 1, h * w).expand(-1, x.shape[1], -1).to(x.device))
    return out.reshape_as(x) * valid[:, None].to(x.device, x.dtype)


def cutout_mask(b: int, h: int, w: int, cy: Tensor, cx: Tensor, ch: int, cw: int) -> Tensor:
    """[B, 1, H, W]: 0 inside a ch x cw rectangle centred at (cy, cx) (rows cy - ch // 2 to cy - ch // 2 + ch,
    clipped at the borders), 1 elsewhere."""
    y0, x0 = (cy - ch // 2)[:, None, None], (cx - cw // 2)[:, None, None]
    yy, xx = torch.arange(h)[None, :, None], torch.arange(w)[None, None, :]
    inside = (yy >= y0) & (yy < y0 + ch) & (xx >= x0) & (xx < x0 + cw)
    return (~inside)[:, None].float()


# ----------------------------------------------------------------------------------------------
# The module D sees images through, and the p controller.


class AugmentPipe(nn.Module):
    """Augments every image D sees: ``kind`` "ada" at probability ``p`` (a buffer, kept in the state) or
    "diffaugment"; draws from ``generator``."""

    def __init__(self, kind: str, p: float = 0.0, seed: int = 0):
        super().__init__()
        if kind not in AUGMENTS[1:]:
            raise ValueError(f"augmentation must be one of {AUGMENTS}, got {kind!r}")
        self.kind = kind
        self.register_buffer("p", torch.tensor(float(p), dtype=torch.float64))
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, images: Tensor) -> Tensor:
        if self.kind == "diffaugment":
            return diff_augment(images, self.generator)
        return ada_augment(images, float(self.p), self.generator)


def ada_update(p: float, real_sign: float, target: float, batch: int, ada_kimg: float) -> float:
    """One step of ADA's controller: p moves by batch / (ada_kimg * 1000) toward more augmentation when
    E[sign(D(real))] is above the target, toward less when below; clamped to [0, 1]."""
    if real_sign == target:
        return p
    step = batch / (ada_kimg * 1000)
    return min(1.0, max(0.0, p + (step if real_sign > target else -step)))


class AugmentedD(nn.Module):
    """D seen through an augmentation pipe: ``forward(x) = D(pipe(x))``; ``cfg`` is D's."""

    def __init__(self, D: nn.Module, pipe: AugmentPipe):
        super().__init__()
        self.D, self.pipe = D, pipe
        self.cfg = D.cfg

    def forward(self, images: Tensor, **kwargs) -> Tensor:
        return self.D(self.pipe(images), **kwargs)
