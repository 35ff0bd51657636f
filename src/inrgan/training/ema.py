"""Exponential moving average of the generator's weights (G_ema), parameterised by a half-life in kimg."""

from __future__ import annotations

import torch
from torch import nn


def ema_beta(batch: int, cur_nimg: int, ema_kimg: float, rampup: float | None = 0.05) -> float:
    """Per-step decay so that the average's half-life is ``ema_kimg`` thousand images.

    With ramp-up the half-life is at most ``rampup * cur_nimg`` images, so early on G_ema follows G
    closely.
    """
    ema_nimg = ema_kimg * 1000
    if rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(G_ema: nn.Module, G: nn.Module, beta: float) -> None:
    """G_ema <- beta G_ema + (1 - beta) G for parameters; buffers (w_avg, bases) are copied."""
    for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
        b_ema.copy_(b)
