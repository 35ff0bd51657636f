"""Super-resolution: the INR evaluated on a denser grid, against resampling its native render.

The paper's comparison (its super-resolution table): sample a generator trained at R^2, make images at
(kR)^2 either by rendering the INR at the higher density or by upsampling the R^2 render with a classical
filter, and measure FID against real images at (kR)^2. Every variant here is a generator-like module
(``G(z, truncation_psi=, height=, width=)``), so :func:`inrgan.metrics.evaluate` measures them alike.

    variants = superres_variants(G)  # inr-dense, inr-upsample, nearest, bilinear, bicubic
    records = evaluate(variants["bicubic"], open_dataset("fashion-mnist", 2 * R), ["fid5k"])
"""

from __future__ import annotations

import copy
import dataclasses

import torch.nn.functional as F
from torch import Tensor, nn

RESAMPLING = ("nearest", "bilinear", "bicubic")


class ResampledGenerator(nn.Module):
    """A generator rendered at its training resolution, then resampled to the asked size.

    Args:
        G: the generator.
        mode: "nearest", "bilinear" or "bicubic" (``torch.nn.functional.interpolate``, align_corners=False,
            the pixel-centre convention of image libraries).
    """

    def __init__(self, G: nn.Module, mode: str) -> None:
        super().__init__()
        if mode not in RESAMPLING:
            raise ValueError(f"unknown resampling {mode!r}; choose one of {RESAMPLING}")
        self.G, self.mode = G, mode
        self.z_dim, self.img_channels, self.resolution = G.z_dim, G.img_channels, G.resolution

    def forward(self, z: Tensor, truncation_psi: float = 1.0, height: int | None = None, width: int | None = None,
                **kwargs) -> Tensor:
        img = self.G(z, truncation_psi=truncation_psi, **kwargs)  # [B, C, R, R]
        size = (height or self.resolution, width or height or self.resolution)
        if size == tuple(img.shape[-2:]):
            return img
        extra = {} if self.mode == "nearest" else {"align_corners": False}
        return F.interpolate(img, size=size, mode=self.mode, **extra)


def with_superres(G: nn.Module, superres: str) -> nn.Module:
    """The same weights under another above-R rendering rule ("dense" or "upsample")."""
    if G.cfg.superres == superres:
        return G
    other = type(G)(dataclasses.replace(G.cfg, superres=superres))
    other.load_state_dict(copy.deepcopy(G.state_dict()))
    return other.to(next(G.parameters()).device).eval().requires_grad_(False)


def superres_variants(G: nn.Module) -> dict[str, nn.Module]:
    """Name -> generator-like module for each way of making images above the training resolution."""
    return {
        "inr-dense": with_superres(G, "dense"),
        "inr-upsample": with_superres(G, "upsample"),
        **{mode: ResampledGenerator(G, mode) for mode in RESAMPLING},
    }
