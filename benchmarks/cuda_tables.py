"""The CUDA measurements of docs/performance.md: correctness of the fast path on the GPU, then the forward
and the training step in fp32, bf16 and fp16, eager and compiled.

    python benchmarks/cuda_tables.py [--json FILE] [--batch 50] [--timeout 240]

Every row is one ``inrgan bench`` measurement (a fresh subprocess), printed with its command line. The
reference implementation's figure to compare with: 266 img/s for its 256^2 generator, fp32, batch 50, on
a V100; the issue's aim is 2,000 img/s on one H100.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from inrgan.bench import BenchSpec, run


def check_correctness(device: str) -> None:
    """The fast path against the plain reference on the GPU, for the release architecture."""
    from inrgan import Generator, RenderOptions
    from inrgan.config import get_preset

    torch.manual_seed(0)
    G = Generator(get_preset("inr-gan", 256).G).to(device).eval()
    with torch.no_grad():
        for p in G.parameters():  # non-zero biases and constants everywhere, as the CPU tests do
            p.add_(0.05 * torch.randn_like(p))
        ws = G.mapping(torch.randn(4, G.z_dim, device=device))
        ref = G.synthesis(ws, options=RenderOptions(fast=False))
        fast = G.synthesis(ws)
        tiled = G.synthesis(ws, tile=96)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            bf16 = G.synthesis(ws)
    scale = ref.abs().max().item()
    for name, out in [("fast fp32", fast), ("fast fp32, 96^2 tiles", tiled), ("fast bf16 autocast", bf16)]:
        err = (out.float() - ref).abs().max().item()
        print(f"| {name} against the reference path | {err / scale:.2e} of the output's largest magnitude |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds per measurement")
    ap.add_argument("--json", type=Path, default=None, help="write every row's result here (after each row)")
    args = ap.parse_args()
    results = {}
    print(f"{torch.cuda.get_device_name(args.device)}, torch {torch.__version__}\n")
    print("| check | result |\n|---|---|")
    check_correctness(args.device)

    fwd = BenchSpec(preset="inr-gan", resolution=256, batch=args.batch, mode="forward", device=args.device,
                    repeats=args.repeats)
    train = BenchSpec(preset="inr-gan", resolution=256, batch=16, mode="train", device=args.device, repeats=2)
    rows = [
        ("forward, fp32", fwd),
        ("forward, bf16", replace(fwd, amp="bf16")),
        ("forward, fp16", replace(fwd, amp="fp16")),
        ("forward, bf16, 64^2 render", replace(fwd, amp="bf16", render_height=64, render_width=64, compare_full=True)),
        ("train, fp32, batch 16", train),
        ("train, bf16, batch 16", replace(train, amp="bf16")),
        ("forward, bf16, compiled", replace(fwd, amp="bf16", compile=True)),
        ("forward, fp32, compiled", replace(fwd, compile=True)),
    ]
    print("\n| run | img/s | ms/batch | peak GPU memory MB | matmul peak TFLOP/s (its dtype) | fraction of peak | s |")
    print("|---|---|---|---|---|---|---|")
    for name, spec in rows:
        t0 = time.time()
        try:
            r = run(spec, timeout=args.timeout)
        except (RuntimeError, ValueError) as e:
            print(f"| {name} | failed: {str(e).splitlines()[-1][:200]} | | | | | {time.time() - t0:.0f} |")
            continue
        frac = r.get("fraction_of_peak")
        print(f"| {name} | {r['img_per_s']:.1f} | {r['ms_per_batch']:.1f} | {r['peak_mem_mb']:.0f} | "
              f"{r['matmul_peak_gflops'] / 1000:.1f} | {'' if frac is None else f'{frac:.2f}'} | {time.time() - t0:.0f} |")
        if "speedup_vs_full" in r:
            print(f"|   side by side with 256^2 | {r['full_ms_per_batch']:.1f} / {r['compare_ms_per_batch']:.1f} ms: "
                  f"{r['speedup_vs_full']:.2f}x | | | | | |")
        results[name] = r
        if args.json is not None:
            args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
