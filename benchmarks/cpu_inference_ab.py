"""What each part of the CPU inference path gives, measured side by side in one process.

    python benchmarks/cpu_inference_ab.py [--rounds 8] [--batch 4]

Three copies of the ``inr-gan`` 256^2 generator with the same weights, timed in turn (``G(z)`` under
``inference_mode``, fresh latents, each timed call after an untimed one of the same size), for a 64^2
and a 256^2 render:

- ``default``: sample-parallel workers with the C kernels of ``accel/native.py`` (the affine heads, and
  the modulated weights made per sample when used);
- ``torch kernels``: sample-parallel workers with torch's kernels only (``RenderOptions(native=False)``);
- ``intra-op threads``: torch's own threads, no split of the batch (``RenderOptions(sample_parallel=False)``).

Prints the best and median time of each, and the 256^2 / 64^2 ratio of each. The process runs with
OMP_WAIT_POLICY=PASSIVE, as ``inrgan bench`` does, unless the environment sets it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    if "OMP_WAIT_POLICY" not in os.environ:  # must be set before OpenMP starts: re-run this script with it
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        os.execv(sys.executable, [sys.executable, *sys.argv])

    import torch

    from inrgan import Generator, RenderOptions
    from inrgan.accel import native
    from inrgan.config import get_preset

    torch.manual_seed(0)
    G = Generator(get_preset("inr-gan", 256).G).eval().requires_grad_(False)
    configs = {"default": RenderOptions(), "torch kernels": RenderOptions(native=False),
               "intra-op threads": RenderOptions(sample_parallel=False)}
    gen = torch.Generator().manual_seed(1)
    times: dict[tuple[str, int], list[float]] = {}
    with torch.inference_mode():
        for _ in range(args.rounds):
            for name, options in configs.items():
                for size in (64, 256):
                    G(torch.randn(args.batch, G.z_dim, generator=gen), height=size, width=size, options=options)
                    z = torch.randn(args.batch, G.z_dim, generator=gen)
                    t0 = time.perf_counter()
                    G(z, height=size, width=size, options=options)
                    times.setdefault((name, size), []).append(time.perf_counter() - t0)
    print(f"batch {args.batch}, {torch.get_num_threads()} threads, {args.rounds} rounds, "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, native kernels built: {native.library() is not None}")
    print("| path | 64^2 best / median ms | 256^2 best / median ms | 256^2 / 64^2 (best) | (median) |")
    print("|---|---|---|---|---|")
    for name in configs:
        low, full = sorted(times[(name, 64)]), sorted(times[(name, 256)])
        print(f"| {name} | {low[0] * 1e3:.1f} / {statistics.median(low) * 1e3:.1f} | "
              f"{full[0] * 1e3:.1f} / {statistics.median(full) * 1e3:.1f} | {full[0] / low[0]:.2f}x | "
              f"{statistics.median(full) / statistics.median(low):.2f}x |")


if __name__ == "__main__":
    main()
