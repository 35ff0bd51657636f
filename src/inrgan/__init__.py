"""inrgan: INR-GAN, continuous image GANs whose images are functions, in PyTorch."""

from .config import (
    DiscriminatorConfig,
    GeneratorConfig,
    LevelConfig,
    TrainingConfig,
    get_preset,
)
from .models import Discriminator, Generator

__version__ = "0.1.0"

__all__ = [
    "Discriminator",
    "DiscriminatorConfig",
    "Generator",
    "GeneratorConfig",
    "LevelConfig",
    "TrainingConfig",
    "get_preset",
]
