"""Peak memory of a differentiated render: whole, in tiles recomputed in the backward pass, in tiles kept.

    python benchmarks/tiled_backward_memory.py [--preset inr-gan] [--size 512] [--tile 128] [--batch 1]

Each measurement runs in a fresh process: build G, then render ``size x size`` in ``tile x tile`` tiles
with autograd, take the gradient of a loss against the latents and the generator's weights, and report the
growth of the peak resident memory (Linux ``VmHWM``, reset just before the render) and the wall time.
"whole" renders without tiles (what training does by default); "recompute" is a tiled render as the
library does it (each tile checkpointed; what ``inrgan train --g-tile`` does in the G phase); "keep"
replaces the checkpoint by a plain call, as the code was before, so that every tile's activations stay
alive until the backward pass.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

PROBE = r"""
import json, sys, time, torch
import inrgan.models.synthesis as synthesis
from inrgan import Generator, get_preset

def mib(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field + ":")) / 1024

mode, preset, size, tile, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
if mode == "keep":
    synthesis.checkpoint = lambda fn, *args, **kwargs: fn(*args)
if mode == "whole":
    tile = None
torch.manual_seed(0)
G = Generator(get_preset(preset).G)
z = torch.randn(batch, G.z_dim)
target = torch.randn(batch, G.img_channels, size, size)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak RSS starts again from the current RSS
before = mib("VmRSS")
t0 = time.perf_counter()
ws = G.mapping(z).detach().requires_grad_(True)
img = G.synthesis(ws, height=size, width=size, tile=tile)
(img * target).sum().backward()
print(json.dumps({"mode": mode, "growth_mib": round(mib("VmHWM") - before), "seconds": round(time.perf_counter() - t0, 1)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="inr-gan")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    rows = []
    for mode in ("whole", "recompute", "keep"):
        proc = subprocess.run([sys.executable, "-c", PROBE, mode, args.preset, str(args.size), str(args.tile),
                               str(args.batch)], capture_output=True, text=True, check=True)
        rows.append(json.loads(proc.stdout))
    print(f"{args.preset}, {args.size}^2 in {args.tile}^2 tiles, batch {args.batch}, forward + backward:")
    print("| render | peak RSS growth (MiB) | seconds |\n|---|---|---|")
    for row in rows:
        print(f"| {row['mode']} | {row['growth_mib']} | {row['seconds']} |")


if __name__ == "__main__":
    main()
