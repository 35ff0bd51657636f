"""What autograd keeps for a backward pass, for the tests of the memory options (tiles, checkpoints)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def saved_bytes(fn: Callable[[], Any]) -> tuple[Any, int]:
    """fn() and the bytes of the tensors autograd saves for its backward pass, outside checkpoints (a
    checkpoint's own saved tensors are dropped and recomputed, so they are not counted)."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, total
