"""Networks: FMM layers, coordinate embeddings, mapping, INR synthesis, generator and discriminator."""

from .discriminator import Discriminator
from .generator import Generator

__all__ = ["Discriminator", "Generator"]
