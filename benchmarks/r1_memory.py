"""Peak memory of the R1 step (D forward, double backward) with and without micro-batches and checkpoints.

    python benchmarks/r1_memory.py [--preset inr-gan] [--batch 8] [--r1-batch 4]

Each row runs in a fresh process: build D, then one lazy R1 step as ``training_step`` runs it (forward on
the reals, the penalty's double backward into D's weights), and report the growth of the peak resident
memory (Linux ``VmHWM``, reset just before the step) and the wall time. The step is the training loop's
``r1_backward``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

PROBE = r"""
import json, sys, time, torch
from dataclasses import replace
from inrgan import Discriminator, get_preset
from inrgan.training.loop import r1_backward

def mib(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field + ":")) / 1024

preset, batch, r1_batch, ck = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
torch.manual_seed(0)
p = get_preset(preset)
D = Discriminator(p.D)
real = torch.rand(batch, p.D.img_channels, p.D.resolution, p.D.resolution) * 2 - 1
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak RSS starts again from the current RSS
before = mib("VmRSS")
t0 = time.perf_counter()
r1_backward(D, real, replace(p.training, r1_batch=r1_batch), checkpoint_blocks=ck)
print(json.dumps({"growth_mib": round(mib("VmHWM") - before), "seconds": round(time.perf_counter() - t0, 1)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="inr-gan")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--r1-batch", type=int, default=4)
    args = parser.parse_args()
    print(f"{args.preset}, R1 on {args.batch} reals:")
    print("| R1 micro-batch | D checkpoints | peak RSS growth (MiB) | seconds |\n|---|---|---|---|")
    for r1_batch in (args.batch, args.r1_batch):
        for ck in ("0", "1"):
            proc = subprocess.run([sys.executable, "-c", PROBE, args.preset, str(args.batch), str(r1_batch), ck],
                                  capture_output=True, text=True, check=True)
            r = json.loads(proc.stdout)
            print(f"| {r1_batch} | {'yes' if ck == '1' else 'no'} | {r['growth_mib']} | {r['seconds']} |")


if __name__ == "__main__":
    main()
