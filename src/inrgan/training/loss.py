"""GAN losses, named as in the papers: the non-saturating logistic loss, the hinge loss and the R1 penalty.

Logits may be [B, 1] or [B, K] (one per scale of the projected D): every loss averages over all of them."""

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


def g_hinge_loss(fake_logits: Tensor) -> Tensor:
    """-D(G(z)), averaged (the generator's side of the hinge loss, Lim and Ye 2017; Projected GAN)."""
    return -fake_logits.mean()


def d_hinge_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """max(0, 1 - D(x)) + max(0, 1 + D(G(z))), averaged."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


# TrainingConfig.loss -> (G's loss of the fake logits, D's loss of the real and fake logits)
LOSSES = {"logistic": (g_nonsaturating_loss, d_logistic_loss), "hinge": (g_hinge_loss, d_hinge_loss)}


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
