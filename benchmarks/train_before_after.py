"""Training-step speed before and after the performance work, measured side by side in one process.

    python benchmarks/train_before_after.py [--rounds 4] [--threads N]

"before": the reference synthesis path (the paper's model, ``inrgan.models.Generator``) and the discriminator as first
committed (read from git history, commit f103eaa); "after": the fast path and the current discriminator.
Both train the cpu-32 preset at 32^2 on synthetic reals through the loop's own ``training_step`` and
G_ema update; rounds alternate between the two, each round is ``r1_interval`` steps (one R1 step), and
the best round of each is reported.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ORIGINAL_D = ("f103eaa", "src/inrgan/models/discriminator.py")


def original_discriminator_class():
    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(["git", "show", f"{ORIGINAL_D[0]}:{ORIGINAL_D[1]}"], cwd=root, check=True,
                            capture_output=True, text=True).stdout
    source = source.replace("from ..config import", "from inrgan.config import")
    source = source.replace("from .layers import", "from inrgan.models.layers import")
    path = Path(tempfile.mkdtemp()) / "discriminator_f103eaa.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("discriminator_f103eaa", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Discriminator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from inrgan import Discriminator, Generator, get_preset
    from inrgan.models import Generator as ReferenceGenerator
    from inrgan.training.ema import update_ema
    from inrgan.training.loop import make_optimizers, training_step

    preset = get_preset("cpu-32")
    t = preset.training
    setups = {}
    for name, D_cls, G_cls in (("before", original_discriminator_class(), ReferenceGenerator),
                               ("after", Discriminator, Generator)):
        torch.manual_seed(0)
        G, D = G_cls(preset.G).train(), D_cls(preset.D).train()
        setups[name] = (G, D, copy.deepcopy(G).eval().requires_grad_(False), *make_optimizers(G, D, t))
    gen = torch.Generator().manual_seed(0)
    best: dict[str, float] = {}
    for rnd in range(args.rounds + 1):  # round 0 warms up
        for name, (G, D, G_ema, G_opt, D_opt) in setups.items():
            t0 = time.perf_counter()
            for i in range(t.r1_interval):
                real = torch.rand(t.batch, 3, 32, 32, generator=gen) * 2 - 1
                z = torch.randn(2, t.batch, G.z_dim, generator=gen)
                training_step(G, D, G_opt, D_opt, real, (z[0], z[1]), i == 0, t)
                update_ema(G_ema, G, 0.999)
            if rnd:
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
    n = t.batch * t.r1_interval
    print(f"cpu-32 at 32^2, batch {t.batch}, {torch.get_num_threads()} threads, best of {args.rounds} rounds "
          f"of {t.r1_interval} steps")
    for name, sec in best.items():
        print(f"  {name:6s} {n / sec:6.1f} img/s  ({sec * 1000 / t.r1_interval:.0f} ms per step)")
    print(f"  speed-up {best['before'] / best['after']:.2f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
