"""How a render is computed: the explicit choice of fast paths, passed in (never ambient state)."""

from __future__ import annotations

from dataclasses import dataclass

# Inference chunk on the CPU, in cells of a level (of every sample): a chunk's activations (2048 cells x
# 128 channels = 1 MiB per sample at 256^2) stay in the caches. GPUs run whole levels.
CPU_CHUNK_PIXELS = 2048


@dataclass(frozen=True)
class RenderOptions:
    """Which implementation renders; every choice computes the same function (up to rounding).

    Attributes:
        fast: the fast paths of ``inrgan.accel``; False: the model's reference render (``inrgan.models``).
        chunk_pixels: inference chunk in cells of a level: "auto" (:data:`CPU_CHUNK_PIXELS` on the CPU, whole
            levels elsewhere), a number, or None (whole levels).
        sample_parallel: CPU inference splits a batch of at least ``torch.get_num_threads()`` samples over
            single-threaded workers (:mod:`.threads`); False keeps torch's intra-op threads.
        native: inference on one thread (a sample-parallel worker, or torch set to one thread) makes the
            affine heads and the modulated weights with the C kernels of :mod:`.native` where they build.
        onednn: CPU inference evaluates layers with oneDNN's fused linear (:mod:`.onednn`) where it exists.
    """

    fast: bool = True
    chunk_pixels: int | str | None = "auto"
    sample_parallel: bool = True
    native: bool = True
    onednn: bool = True

    def __post_init__(self) -> None:
        if not (self.chunk_pixels is None or self.chunk_pixels == "auto"
                or (isinstance(self.chunk_pixels, int) and self.chunk_pixels >= 1)):
            raise ValueError(f"chunk_pixels must be 'auto', None or a positive number, got {self.chunk_pixels!r}")


DEFAULT = RenderOptions()
REFERENCE = RenderOptions(fast=False)
