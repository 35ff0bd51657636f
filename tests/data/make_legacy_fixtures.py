"""Write the legacy fixtures of tests/test_legacy_fixtures.py: files saved by the code of commit 1783867.

    python tests/data/make_legacy_fixtures.py

Run once, with the code as it was before the models/accel redesign (issue 15), so that the test holds
every later version of the code to the files and renders of that one:

- ``legacy/run/``: a tiny training run (cpu-32 at 16^2 narrowed to 16 channels and w_dim 32, 3 steps of
  batch 4 on noise images): state.pt, run.json and its export;
- ``legacy/inr-gan-narrow/``: an export of the release architecture (``inr-gan`` at 64^2, narrowed to 16
  channels and w_dim 32, biases randomised so that every term counts);
- ``legacy/golden.json``: for both exports, float64 renders (the training grid, another size over an
  extrapolated box, and the INR-space midpoint of two samples) at fixed pixels, and the training state's
  next tick when resumed.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent / "legacy"
SEEDS = [0, 1]
OTHER = dict(height=20, width=28, bbox=(-1.25, -1.1, 1.3, 1.2))
TINY = dict(batch=4, tick_kimg=0.012, snapshot_ticks=1, seed=3, r1_interval=2, ema_kimg=0.01, kimg=0.012)


def noise_images(folder: Path, count: int = 12, size: int = 20) -> str:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    for i in range(count):
        Image.fromarray((rng.rand(size, size) * 255).astype(np.uint8), "L").save(folder / f"{i:03d}.png")
    return str(folder)


def pixels(shape: tuple[int, ...], n: int = 40) -> list[list[int]]:
    """``n`` fixed (c, y, x) positions inside an image of ``shape`` [C, H, W]."""
    rng = np.random.RandomState(1)
    return [[int(rng.randint(s)) for s in shape] for _ in range(n)]


def renders(G) -> dict:
    """Float64 renders of the seeds: the training grid, ``OTHER`` and the INR-space midpoint."""
    from inrgan.models.generator import seed_latents
    from inrgan.rendering.interpolate import interpolate

    G = G.double()
    z = seed_latents(SEEDS, G.z_dim).double()
    out = {}
    with torch.no_grad():
        for name, img in (("train_grid", G(z)), ("other_grid", G(z, **OTHER)),
                          ("inr_midpoint", interpolate(G, z[0], z[1], [0.5], space="inr"))):
            where = pixels(tuple(img.shape[1:]))
            out[name] = {"pixels": where, "values": [[img[i, c, y, x].item() for c, y, x in where]
                                                     for i in range(img.shape[0])],
                         "mean": img.mean(dim=(1, 2, 3)).tolist(), "shape": list(img.shape)}
    return out


def narrow(run):
    """A run's configs narrowed to 16 channels (G and D) and w_dim 32, so that its state is small."""
    G_cfg = dataclasses.replace(run.G_cfg, channel_max=16, z_dim=32, w_dim=32)
    return dataclasses.replace(run, G_cfg=G_cfg, D_cfg=dataclasses.replace(run.D_cfg, channel_max=16))


def main() -> None:
    from inrgan import Generator, get_preset
    from inrgan.training import loop
    from inrgan.training.loop import RunOptions, train

    plan_run = loop.plan_run
    loop.plan_run = lambda options, resume=None, *a, **k: (
        narrow(plan_run(options, resume, *a, **k)) if resume is None else plan_run(options, resume, *a, **k))

    if HERE.exists():
        shutil.rmtree(HERE)
    HERE.mkdir(parents=True)
    golden: dict = {"seeds": SEEDS, "other": {k: list(v) if isinstance(v, tuple) else v for k, v in OTHER.items()},
                    "tiny": TINY}
    with tempfile.TemporaryDirectory() as tmp:
        data = noise_images(Path(tmp) / "imgs")
        opts = RunOptions(data=data, preset="cpu-32", resolution=16, device="cpu", progress=False)
        train(HERE / "run", opts, overrides=TINY, log=lambda *_: None)
        # the state resumed for one more tick, in a copy: its stats are the golden resume
        resumed = Path(tmp) / "resumed"
        shutil.copytree(HERE / "run", resumed)
        last = train(resumed, RunOptions(data=data, preset=None, device="cpu", progress=False), resume=resumed,
                     overrides={"kimg": 0.024}, log=lambda *_: None)
        golden["resume"] = {k: last[k] for k in ("kimg", "loss_G", "loss_D", "D_real", "D_fake", "loss_r1")}
        golden["resume"]["G_ema"] = renders(Generator.from_pretrained(resumed / "export"))["train_grid"]
    for folder in ("samples", "tb", "plots"):
        shutil.rmtree(HERE / "run" / folder, ignore_errors=True)
    for log in ("stats.jsonl",):
        (HERE / "run" / log).unlink(missing_ok=True)
    golden["run"] = renders(Generator.from_pretrained(HERE / "run" / "export"))

    torch.manual_seed(0)
    cfg = dataclasses.replace(get_preset("inr-gan", 64).G, channel_max=16, z_dim=32, w_dim=32)
    G = Generator(cfg).eval()
    with torch.no_grad():
        for p in G.parameters():
            if p.ndim == 1:
                p.normal_(0, 0.3)
    G.save_pretrained(HERE / "inr-gan-narrow")
    golden["inr-gan-narrow"] = renders(Generator.from_pretrained(HERE / "inr-gan-narrow"))
    (HERE / "golden.json").write_text(json.dumps(golden, indent=1))


if __name__ == "__main__":
    main()
