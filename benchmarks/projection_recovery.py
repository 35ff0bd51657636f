"""Does projection give back the latent? Generated images of a model projected in W, against their true w.

    python benchmarks/projection_recovery.py --checkpoint fashion-mnist-32 [--num 6] [--steps 200]

For each of N generated images (seeds 0..N-1, psi 1): the W fit (pixel loss only, from w_avg), its
PSNR against the generated image, its distance to the true w, and the median distance of 500 random w
to the true w (a fit no better than chance lands that far). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import math

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="fashion-mnist-32")
    ap.add_argument("--num", type=int, default=6)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()

    from inrgan import Generator
    from inrgan.rendering.projection import ProjectionConfig, project

    G = Generator.from_pretrained(args.checkpoint).eval().requires_grad_(False)
    with torch.no_grad():
        others = G.mapping(torch.randn(500, G.z_dim, generator=torch.Generator().manual_seed(99)))[:, 0]
    rows = []
    for seed in range(args.num):
        with torch.no_grad():
            ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(seed)))
            img = G.synthesis(ws)
        fit = project(G, img[0], ProjectionConfig(space="w", steps=args.steps, perceptual_weight=0.0))
        mse = ((fit.render() - img) ** 2).mean().item()
        miss = (fit.ws[0, 0] - ws[0, 0]).norm().item()
        chance = (others - ws[0, 0]).norm(dim=1).median().item()
        rows.append({"seed": seed, "psnr": 10 * math.log10(4.0 / mse), "w_distance": miss,
                     "random_w_distance": chance, "ratio": miss / chance})
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"checkpoint": args.checkpoint, "steps": args.steps, "rows": rows}))


if __name__ == "__main__":
    main()
