"""Mapping network z -> w with a running average of w for the truncation trick."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import EqualLinear, normalize_2nd_moment


class MappingNetwork(nn.Module):
    def __init__(
        self,
        z_dim: int,
        w_dim: int,
        num_ws: int,
        num_layers: int = 2,
        lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.995,
        c_dim: int = 0,
    ) -> None:
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, w_dim, num_ws, num_layers
        self.w_avg_beta, self.c_dim = w_avg_beta, c_dim
        # a conditional model embeds the one-hot class into w_dim and feeds it beside z (StyleGAN2-ADA)
        self.embed = EqualLinear(c_dim, w_dim) if c_dim else None
        dims = [z_dim + (w_dim if c_dim else 0)] + [w_dim] * num_layers
        for i in range(num_layers):
            setattr(self, f"fc{i}", EqualLinear(dims[i], dims[i + 1], activation="lrelu",
                                                lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self,
        z: Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_w_avg: bool | None = None,
        *,
        c: Tensor | None = None,
    ) -> Tensor:
        """z [B, z_dim] (and for a conditional model the one-hot class c [B, c_dim]) -> ws [B, num_ws, w_dim].
        ``update_w_avg`` defaults to ``self.training``."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [B, {self.z_dim}], got {list(z.shape)}")
        x = normalize_2nd_moment(z.to(self.w_avg.dtype))  # fp32, or fp64 for a float64 model
        if self.embed is not None:
            if c is None or c.shape != (z.shape[0], self.c_dim):
                raise ValueError(f"this model is conditional on {self.c_dim} classes: give c [B, {self.c_dim}] "
                                 f"(one-hot), got {None if c is None else list(c.shape)}")
            x = torch.cat([x, normalize_2nd_moment(self.embed(c.to(x.dtype)))], dim=1)  # [B, z_dim + w_dim]
        elif c is not None:
            raise ValueError("this model is unconditional: it takes no class c")
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        x = x.to(self.w_avg.dtype)  # under autocast the layers give bf16/fp16: w, w_avg and the truncation stay fp32
        if update_w_avg if update_w_avg is not None else self.training:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)  # [B, num_ws, w_dim]
        return truncate(ws, self.w_avg, truncation_psi, truncation_cutoff)


def truncate(ws: Tensor, w_avg: Tensor, psi: float = 1.0, cutoff: int | None = None) -> Tensor:
    """w' = w_avg + psi (w - w_avg), on the first ``cutoff`` ws (all when None)."""
    if psi == 1:
        return ws
    if cutoff is None:
        return w_avg.lerp(ws, psi)
    ws = ws.clone()
    ws[:, :cutoff] = w_avg.lerp(ws[:, :cutoff], psi)
    return ws
