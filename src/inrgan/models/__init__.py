"""The paper's model in plain PyTorch: FMM layers, coordinate embeddings, mapping, INR synthesis (the walk
of the INR and the reference render), the cost counter, generator and discriminator.

Nothing here imports ``inrgan.accel``, which renders the same model faster (``inrgan.Generator``).
"""

from .discriminator import Discriminator
from .generator import Generator

__all__ = ["Discriminator", "Generator"]
