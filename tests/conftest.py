"""Test-session set-up, before anything imports torch: idle OpenMP threads sleep at once.

The suite is thousands of tiny operations, often run beside other work (a background training, a second
CI job), where spinning threads slowed it about 4x (docs/performance.md, "A busy machine"). A user's
``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` still wins.
"""

import os

if "GOMP_SPINCOUNT" not in os.environ:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def write_noise_images(folder, count: int, size: int, seed: int = 0) -> str:
    """``count`` grayscale uniform-noise PNGs of ``size`` x ``size`` in ``folder``: a tiny training set."""
    import numpy as np
    from PIL import Image

    rng = np.random.RandomState(seed)
    for i in range(count):
        Image.fromarray((rng.rand(size, size) * 255).astype(np.uint8), "L").save(folder / f"{i:03d}.png")
    return str(folder)
