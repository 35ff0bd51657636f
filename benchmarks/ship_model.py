"""Ship a trained export as a named model of the package, with its golden pixels.

    python benchmarks/ship_model.py RUN_DIR fashion-mnist-32

Copies RUN_DIR/export (config.json + model.safetensors, at most 25 MB) into
src/inrgan/pretrained_models/NAME and writes tests/data/NAME.golden.json: the float64 renders of seeds
0-3 at the training grid (z from numpy's RandomState(seed)), at 16 fixed pixels each, which
tests/test_pretrained.py compares with the float32 render of the shipped model.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
MAX_BYTES = 25 * 2**20
SEEDS = [0, 1, 2, 3]


def golden(G) -> dict:
    G64 = G.double()
    z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in SEEDS]))
    with torch.no_grad():
        img = G64(z)  # [4, C, R, R], float64
    rng = np.random.RandomState(0)
    R = G.resolution
    pixels = [[int(c), int(y), int(x)] for c, y, x in zip(rng.randint(0, G.img_channels, 16),
                                                          rng.randint(0, R, 16), rng.randint(0, R, 16), strict=True)]
    values = [[img[i, c, y, x].item() for c, y, x in pixels] for i in range(len(SEEDS))]
    return {"seeds": SEEDS, "pixels": pixels, "values": values, "mean": img.mean(dim=(1, 2, 3)).tolist()}


def main(run_dir: str, name: str) -> None:
    from inrgan import Generator

    export = Path(run_dir) / "export"
    size = sum(f.stat().st_size for f in export.iterdir())
    if size > MAX_BYTES:
        raise SystemExit(f"{export}: {size / 2**20:.1f} MB is more than the 25 MB a shipped model may take")
    dest = ROOT / "src" / "inrgan" / "pretrained_models" / name
    dest.mkdir(parents=True, exist_ok=True)
    for f in ("config.json", "model.safetensors"):
        shutil.copy(export / f, dest / f)
    G = Generator.from_pretrained(dest)
    meta = json.loads((dest / "config.json").read_text())
    record = {"name": name, "kimg": meta.get("kimg"), **golden(G)}
    (ROOT / "tests" / "data" / f"{name}.golden.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"shipped {name}: {size / 2**20:.1f} MB, {meta.get('kimg')} kimg")


if __name__ == "__main__":
    main(*sys.argv[1:])
