"""The paper's model in plain PyTorch: FMM layers, coordinate embeddings, mapping, INR synthesis (the walk
of the INR and the reference render), the cost counter, generator and the discriminators (StyleGAN2's
residual D and Projected GAN's D).

Nothing here imports ``inrgan.accel``, which renders the same model faster (``inrgan.Generator``).
"""

from torch import nn

from ..config import AnyDiscriminatorConfig, ProjectedDiscriminatorConfig
from .discriminator import Discriminator
from .generator import Generator


def build_discriminator(cfg: AnyDiscriminatorConfig) -> nn.Module:
    """The discriminator a config describes: the resnet D or the projected D (pretrained backbone)."""
    if isinstance(cfg, ProjectedDiscriminatorConfig):
        from .projected import ProjectedDiscriminator

        return ProjectedDiscriminator(cfg)
    return Discriminator(cfg)


__all__ = ["Discriminator", "Generator", "build_discriminator"]
