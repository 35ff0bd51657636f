"""Super-resolution of a trained model by FID: the INR rendered denser against classical upsampling.

    python benchmarks/superres_fid.py --checkpoint fashion-mnist-32 [--scales 2,4] [--metric fid2k] \
        [--json docs/results/fashion-mnist-32/superres.json] [--figure docs/results/fashion-mnist-32/superres_x4.png]

At each scale k the five generators of ``inrgan.rendering.superres.superres_variants`` (the INR on a k times
denser grid, the paper's first rule that keeps the early levels at the training density, and nearest,
bilinear and bicubic upsampling of the native render) are scored against the real images at k times the
training resolution (the data layer's resize of the dataset), with the same latents (seed 0, psi 1); the
native render against the real images at the training resolution is the reference row. The features are
the offline EfficientNet-Lite0's, so the values compare methods with each other, not with published FIDs.
Every value is written to the JSON as soon as it is known (a stopped run keeps what it measured and
skips it when started again). The figure shows the same four latents at the largest scale, one row per
method.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def measure(checkpoint: str, scales: list[int], metric: str, out: Path, data: str) -> dict:
    from inrgan import Generator
    from inrgan.data import open_dataset
    from inrgan.metrics import evaluate
    from inrgan.rendering.superres import superres_variants

    G = Generator.from_pretrained(checkpoint).eval().requires_grad_(False)
    result = json.loads(out.read_text()) if out.is_file() else {}
    result.update(checkpoint=checkpoint, metric=metric, features="effnet-lite0", seed=0, truncation_psi=1.0,
                  threads=torch.get_num_threads())
    rows = result.setdefault("rows", {})
    jobs = [("native", 1, G)] + [(name, k, g) for k in scales for name, g in superres_variants(G).items()]
    for name, k, g in jobs:
        key = f"{name} x{k}"
        if key in rows:
            continue
        real = open_dataset(data, k * G.resolution)
        t0 = time.perf_counter()
        record = evaluate(g, real, [metric], features="effnet-lite0", seed=0, progress=False)[0]
        rows[key] = {"method": name, "scale": k, "resolution": k * G.resolution, "value": record["value"],
                     "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{key}: {metric} {record['value']:.1f}", flush=True)
        _write(out, result)
    return result


def figure(checkpoint: str, scale: int, path: Path, count: int = 4) -> None:
    """``count`` latents at ``scale`` x the training resolution, one row per method, as a grey PNG."""
    from PIL import Image

    from inrgan import Generator
    from inrgan.rendering.superres import superres_variants

    G = Generator.from_pretrained(checkpoint).eval().requires_grad_(False)
    z = torch.randn(count, G.z_dim, generator=torch.Generator().manual_seed(0))
    size = scale * G.resolution
    with torch.no_grad():
        rows = [g(z, height=size, width=size) for g in superres_variants(G).values()]  # [count, C, s, s] each
    grid = torch.cat([torch.cat(list(r.mean(dim=1)), dim=1) for r in rows], dim=0)  # [rows * s, count * s]
    pixels = ((grid.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(pixels), "L").save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="fashion-mnist-32")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--scales", default="2,4")
    ap.add_argument("--metric", default="fid2k")
    ap.add_argument("--json", type=Path, default=Path("superres.json"))
    ap.add_argument("--figure", type=Path, default=None)
    args = ap.parse_args()
    scales = [int(k) for k in args.scales.split(",")]
    if args.figure is not None:
        figure(args.checkpoint, max(scales), args.figure)
    measure(args.checkpoint, scales, args.metric, args.json, args.data)


if __name__ == "__main__":
    main()
