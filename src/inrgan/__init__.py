"""inrgan: INR-GAN, continuous image GANs whose images are functions, in PyTorch.

The names below load on first use, so that importing the package (as the ``inrgan`` command does before
it sets up OpenMP, see ``inrgan.runtime``) imports neither torch nor the models.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Discriminator": "inrgan.models",
    "Generator": "inrgan.accel",
    "RenderOptions": "inrgan.accel",
    "DiscriminatorConfig": "inrgan.config",
    "GeneratorConfig": "inrgan.config",
    "LevelConfig": "inrgan.config",
    "TrainingConfig": "inrgan.config",
    "get_preset": "inrgan.config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'inrgan' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
