"""Super-resolution of real images by projection, against a ground truth.

    python benchmarks/projection_superres.py --checkpoint fashion-mnist-32 --num 16 \
        [--figure docs/results/projection.png] [--json docs/results/projection.json]

Real Fashion-MNIST test images (never seen in training) at 32^2, through the data layer's resize, are
averaged down to 16^2. Each 16^2 image is projected onto the 32^2 model by rendering the model at half
density (the target's own grid), then the projection is rendered at 32^2 and compared with the real
32^2 image: PSNR (peak-to-peak 2 on [-1, 1]) and the perceptual distance of inrgan.metrics.perceptual.
The same for nearest, bilinear and bicubic upsampling of the 16^2 input. Also: the reconstruction PSNR
at 16^2 (how well the fit matches what it saw), and the seconds per image. Spaces: W+, the INR
parameters, and W+ with pivotal tuning.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

METHODS = {"w+": dict(space="w+"), "inr": dict(space="inr"), "w+ tuned": dict(space="w+", tune_steps=100)}


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(4.0 / max(((a - b) ** 2).mean().item(), 1e-12))


def test_images(num: int, resolution: int) -> torch.Tensor:
    """[num, 1, R, R] in [-1, 1]: the first test images, resized by the data layer's filter."""
    from inrgan.data.idx import FASHION_MNIST_DIR, read_idx_images
    from inrgan.data.transforms import resize_images

    path = next(p for p in (FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz", FASHION_MNIST_DIR / "t10k-images-idx3-ubyte")
                if p.is_file())
    images, _ = read_idx_images(path)
    x = resize_images(torch.from_numpy(images[:num].copy()).unsqueeze(1), resolution)
    return x.float() / 127.5 - 1


def classical(low: torch.Tensor, size: int) -> dict[str, torch.Tensor]:
    out = {"nearest": F.interpolate(low, size=size, mode="nearest")}
    for mode in ("bilinear", "bicubic"):
        out[mode] = F.interpolate(low, size=size, mode=mode, align_corners=False).clamp(-1, 1)
    return out


def figure(rows: list[list[torch.Tensor]], path: Path, cell: int = 96) -> None:
    from inrgan.rendering.images import make_grid, save_png, to_uint8

    cells = [F.interpolate(img[None] if img.ndim == 3 else img, size=(cell, cell * img.shape[-1] // img.shape[-2]),
                           mode="nearest") for row in rows for img in row]
    width = max(c.shape[-1] for c in cells)
    cells = [F.pad(c, (0, width - c.shape[-1]), value=-1) for c in cells]
    save_png(make_grid(to_uint8(torch.cat(cells)), cols=len(rows[0])), path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="fashion-mnist-32")
    ap.add_argument("--num", type=int, default=16)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--figure", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from inrgan import Generator
    from inrgan.metrics.perceptual import build_perceptual
    from inrgan.rendering.projection import ProjectionConfig, project

    G = Generator.from_pretrained(args.checkpoint)
    R = G.resolution
    perceptual = build_perceptual()
    real = test_images(args.num, R)  # [N, 1, R, R]
    low = F.avg_pool2d(real, 2)  # [N, 1, R/2, R/2]
    scores: dict[str, dict[str, list[float]]] = {}

    def score(name: str, out: torch.Tensor, real_i: torch.Tensor, **extra: float) -> None:
        s = scores.setdefault(name, {})
        with torch.no_grad():
            s.setdefault("psnr", []).append(psnr(out, real_i))
            s.setdefault("perceptual", []).append(perceptual(out, real_i).item())
        for k, v in extra.items():
            s.setdefault(k, []).append(v)

    rows = []
    for i in range(args.num):
        for name, up in classical(low[i:i + 1], R).items():
            score(name, up, real[i:i + 1])
        for name, kw in METHODS.items():
            t0 = time.perf_counter()
            p = project(G, low[i], ProjectionConfig(steps=args.steps, **kw), perceptual=perceptual)
            seconds = time.perf_counter() - t0
            score(name, p.render(height=R, width=R), real[i:i + 1], seconds=seconds,
                  psnr_at_input=psnr(p.render(), low[i:i + 1]))
            if name == "w+" and i < 6:
                box = p.bbox
                wide = (2 * box[0], 2 * box[1], 2 * box[2], 2 * box[3])
                rows.append([F.interpolate(low[i:i + 1], size=R, mode="nearest")[0], classical(low[i:i + 1], R)["bicubic"][0],
                             p.render(height=R, width=R)[0], p.render(height=8 * low.shape[-1], width=8 * low.shape[-1])[0],
                             p.render(height=R, width=R, bbox=wide)[0], real[i]])
        print(f"image {i + 1}/{args.num} done", flush=True)
    table = {name: {k: statistics.mean(v) for k, v in s.items()} for name, s in scores.items()}
    for name, s in table.items():
        print(f"{name:10s} " + "  ".join(f"{k} {v:.4f}" for k, v in s.items()))
    if args.json:
        args.json.write_text(json.dumps({"num": args.num, "steps": args.steps, "checkpoint": str(args.checkpoint),
                                         "table": table}, indent=1) + "\n")
    if args.figure:
        figure(rows, args.figure)


if __name__ == "__main__":
    main()
