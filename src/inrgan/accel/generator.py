"""The paper's model rendered through the fast paths: the same parameters and function, chosen by options."""

from __future__ import annotations

from torch import Tensor

from ..models.coords import RenderGrid
from ..models.generator import Generator as ModelGenerator
from ..models.synthesis import INRParams, SynthesisNetwork
from .features import FeatureCache
from .options import DEFAULT, RenderOptions
from .render import render, render_params


class FastSynthesisNetwork(SynthesisNetwork):
    """:class:`~inrgan.models.synthesis.SynthesisNetwork` whose forward takes the fast paths of ``options``.

    It owns nothing more than the model but a cache of coordinate features for inference (never saved).
    """

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.features = FeatureCache()

    def forward(self, ws: Tensor, height: int | None = None, width: int | None = None, bbox=None,
                tile: int | None = None, grid: RenderGrid | None = None, options: RenderOptions = DEFAULT) -> Tensor:
        """Render ws [B, num_ws, w_dim] as :meth:`SynthesisNetwork.forward` does, by the paths ``options`` choose."""
        self.check_ws(ws)
        grid = self.make_grid(height, width, bbox) if grid is None else grid
        return render(self, ws, grid, tile, options, self.features)

    def render_params(self, params: INRParams, grid: RenderGrid, tile: int | None = None,
                      options: RenderOptions = DEFAULT) -> Tensor:
        """Given INR parameters on ``grid`` (:func:`.render.render_params`)."""
        return render_params(self, params, grid, tile, options)


class Generator(ModelGenerator):
    """The INR-GAN generator (``inrgan.Generator``): :class:`inrgan.models.Generator` rendered fast.

    ``G(z, ..., options=RenderOptions(...))`` picks the implementation; the default is the fastest.

    Example::

        G = Generator(get_preset("cpu-32").G)
        img = G(torch.randn(4, G.z_dim), truncation_psi=0.7, height=96, width=128)
    """

    synthesis_class = FastSynthesisNetwork
