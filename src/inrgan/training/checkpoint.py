"""The complete, resumable training state: tensors and plain data only, loadable with ``weights_only=True``."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from ..io import CheckpointError, atomic_write_bytes

STATE_NAME = "state.pt"
STATE_VERSION = 1
STATE_KEYS = frozenset({"G_cfg", "D_cfg", "G", "D", "G_ema", "G_opt", "D_opt", "cur_nimg", "cur_tick", "batch_idx",
                        "rng_state"})


def save_training_state(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Serialise ``state`` (nested dicts/lists of tensors, numbers and strings) atomically."""
    buf = io.BytesIO()
    torch.save({"version": STATE_VERSION, **state}, buf)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def load_training_state(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a state written by :func:`save_training_state`; nothing in it can execute code."""
    path = Path(path)
    if path.is_dir():
        path = path / STATE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training state to resume from")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a torn or foreign file: say which one, in one line
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable inrgan training state (truncated or not written by "
                              f"inrgan: {reason[:200]})") from e
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise CheckpointError(f"{path}: not an inrgan training state of version {STATE_VERSION}")
    missing = sorted(STATE_KEYS - set(state))
    if missing:
        raise CheckpointError(f"{path}: an incomplete training state, missing {missing}")
    return state
