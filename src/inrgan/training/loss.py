"""GAN losses, named as in the papers: non-saturating logistic loss and the R1 penalty."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def g_nonsaturating_loss(fake_logits: Tensor) -> Tensor:
    """-log sigmoid(D(G(z))), averaged over the batch."""
    return F.softplus(-fake_logits).mean()


def d_logistic_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """-log sigmoid(D(x)) - log(1 - sigmoid(D(G(z)))), averaged over the batch."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(real_logits: Tensor, real_img: Tensor) -> Tensor:
    """Per-sample squared gradient norm of D at the reals, ||grad_x D(x)||^2: [B].

    ``real_img`` must require grad and ``real_logits`` must come from it; the graph is kept so that the
    penalty itself can be differentiated (it is a loss on D's parameters).
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real_img, create_graph=True)
    return grad.square().sum(dim=list(range(1, grad.ndim)))


def d_r1_loss(real_logits: Tensor, real_img: Tensor, gamma: float, interval: int = 1) -> Tensor:
    """Lazy R1 regulariser: gamma / 2 * E ||grad D||^2, scaled by the lazy interval."""
    return r1_penalty(real_logits, real_img).mean() * (gamma / 2 * interval)
