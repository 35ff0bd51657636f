"""Models that ship with the package, by name: ``Generator.from_pretrained("fashion-mnist-32")`` and
``--checkpoint fashion-mnist-32`` wherever a command takes a checkpoint.

Each is an export (config.json + model.safetensors) trained by this project's code, in
``inrgan/pretrained_models/NAME``; docs/results.md records the command, kimg, wall time and machine.
A path that exists always wins over a name.
"""

from __future__ import annotations

import os
from pathlib import Path

SHIPPED = {
    "fashion-mnist-32": "Fashion-MNIST at 32x32, 1 channel, the cpu-32 preset (docs/results.md)",
}


def shipped_dir(name: str) -> Path:
    return Path(__file__).with_name("pretrained_models") / name


def resolve_checkpoint(spec: str | os.PathLike) -> Path:
    """A checkpoint path, or the folder of the shipped model of that name."""
    path = Path(spec)
    if path.exists() or str(spec) not in SHIPPED:
        return path
    folder = shipped_dir(str(spec))
    if not folder.is_dir():
        raise FileNotFoundError(f"the shipped model {spec!r} is missing from this installation ({folder})")
    return folder
