"""oneDNN's fused linear + bias + activation, a private torch op, and its fallback.

``torch.ops.mkldnn._linear_pointwise`` is the CPU inference kernel that torch.compile itself emits for
linear layers; eagerly it runs a layer in one pass instead of a matrix product, a bias pass and an
activation pass. It has no autograd, exists only in builds with oneDNN, and is private: it is looked up on
first use (never at import), and a call that fails turns it off for the process, with one warning, so
that the caller's plain path takes over.
"""

from __future__ import annotations

import functools
import threading
import warnings

import torch

_lock = threading.Lock()
_failed: str | None = None


@functools.cache  # resolved on first use, never at import
def _lookup():
    try:
        return torch.ops.mkldnn._linear_pointwise.default if torch.backends.mkldnn.is_available() else None
    except (AttributeError, RuntimeError):
        return None


def linear_pointwise():
    """The op, or None where this build has none or a call of it failed."""
    return None if _failed is not None else _lookup()


def disable(err: BaseException) -> None:
    """Turn the op off for this process after a failed call; the first failure warns, naming the error."""
    global _failed
    with _lock:
        if _failed is None:
            _failed = f"{type(err).__name__}: {str(err).strip()[:300]}"
            warnings.warn(f"inrgan: oneDNN's fused linear failed ({_failed}); using torch's matrix products",
                          RuntimeWarning, stacklevel=3)
