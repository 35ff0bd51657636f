"""The performance figures before and after the models/accel redesign (issue 15), side by side in one run.

    python benchmarks/redesign_before_after.py [--before 1783867] [--after REV] [--rounds 6] [--train-rounds 3]

"before" is the package of a git revision (default 1783867, the last one before the redesign), extracted
and imported under another name (``inrgan_before``: its imports are relative), so that both versions run
in one process, call after call: on a shared machine whose load moves by the minute, only calls this
close together see the same machine. "after" is this working tree's ``inrgan``, or with ``--after REV``
another revision (``inrgan_after``): ``--after 1783867`` compares the old code with itself, which measures
the noise of every ratio on this machine.

- forward: the ``inr-gan`` 256^2 generator of both versions with the same weights, ``G(z)`` under
  ``inference_mode`` at 64^2 and 256^2, batch 4, fresh latents, each timed call after an untimed one of
  the same size (as ``inrgan bench --compare-full`` does); rounds alternate which version goes first;
- memory: the peak RSS of each version's 256^2 forward in a process of its own (``python -m inrgan.bench``),
  started before this process holds any model (a child's peak RSS counts the parent's memory at the fork),
  three times each, alternating; the median is kept;
- training: ``cpu-32`` at 32^2 (G, D, both optimizers and G_ema of each version, the same initial weights),
  rounds of ``r1_interval`` steps of the loop's own ``training_step`` and EMA, alternating.

Prints the best and median of each figure and a Markdown table of the after/before ratios. The process
runs with OMP_WAIT_POLICY=PASSIVE, as ``inrgan bench`` does, unless the environment sets it.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def extract(revision: str, into: Path, name: str) -> Path:
    """The revision's ``src/inrgan`` as the package ``name`` under ``into``; its ``src`` folder."""
    archive = into / f"{name}.tar"
    subprocess.run(["git", "archive", "-o", str(archive), revision, "src"], cwd=ROOT, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / f"{name}-tree", filter="data")
    shutil.copytree(into / f"{name}-tree" / "src" / "inrgan", into / name)
    return into / f"{name}-tree" / "src"


def load(pkg: str) -> dict:
    """The parts of one version the measurements use (the fast Generator in ``accel`` since the redesign)."""
    generator = (importlib.import_module(f"{pkg}.accel") if importlib.util.find_spec(f"{pkg}.accel")
                 else importlib.import_module(f"{pkg}.models")).Generator
    return {"Generator": generator, "Discriminator": importlib.import_module(f"{pkg}.models").Discriminator,
            "get_preset": importlib.import_module(f"{pkg}.config").get_preset,
            "loop": importlib.import_module(f"{pkg}.training.loop"),
            "update_ema": importlib.import_module(f"{pkg}.training.ema").update_ema}


def peak_rss(src: Path) -> float:
    """Peak RSS (MiB) of a 256^2 inr-gan forward at batch 4 by the bench of the package in ``src``."""
    spec = dict(preset="inr-gan", batch=4, repeats=2, warmup=1)
    env = dict(os.environ, PYTHONPATH=str(src))
    proc = subprocess.run([sys.executable, "-m", "inrgan.bench", "forward", json.dumps(spec)], capture_output=True,
                          text=True, env=env, cwd=src.parent, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_mem_mb"]


def forward_times(versions: dict, rounds: int) -> dict[tuple[str, int], list[float]]:
    import torch

    gs = {}
    for name, pkg in versions.items():
        torch.manual_seed(0)
        gs[name] = pkg["Generator"](pkg["get_preset"]("inr-gan", 256).G).eval().requires_grad_(False)
    state = gs["after"].state_dict()
    for G in gs.values():
        G.load_state_dict(state)
    gen = torch.Generator().manual_seed(1)
    times: dict[tuple[str, int], list[float]] = {}
    with torch.inference_mode():
        for rnd in range(rounds):
            for name in (list(gs) if rnd % 2 == 0 else list(gs)[::-1]):
                G = gs[name]
                for size in (64, 256):
                    G(torch.randn(4, G.z_dim, generator=gen), height=size, width=size)
                    z = torch.randn(4, G.z_dim, generator=gen)
                    t0 = time.perf_counter()
                    G(z, height=size, width=size)
                    times.setdefault((name, size), []).append(time.perf_counter() - t0)
            print(f"forward round {rnd}: " + ", ".join(f"{n} {s}^2 {t[-1] * 1e3:.0f} ms"
                                                       for (n, s), t in times.items()), flush=True)
    return times


def train_times(versions: dict, rounds: int) -> dict[str, list[float]]:
    import copy

    import torch

    setups = {}
    for name, pkg in versions.items():
        preset = pkg["get_preset"]("cpu-32")
        torch.manual_seed(0)
        G, D = pkg["Generator"](preset.G).train(), pkg["Discriminator"](preset.D).train()
        setups[name] = (G, D, copy.deepcopy(G).eval().requires_grad_(False),
                        *pkg["loop"].make_optimizers(G, D, preset.training), preset.training, pkg)
    gen = torch.Generator().manual_seed(0)
    seconds: dict[str, list[float]] = {}
    for rnd in range(rounds + 1):  # round 0 warms up
        for name in (list(setups) if rnd % 2 == 0 else list(setups)[::-1]):
            G, D, G_ema, G_opt, D_opt, t, pkg = setups[name]
            t0 = time.perf_counter()
            for i in range(t.r1_interval):
                real = torch.rand(t.batch, 3, 32, 32, generator=gen) * 2 - 1
                z = torch.randn(2, t.batch, G.z_dim, generator=gen)
                pkg["loop"].training_step(G, D, G_opt, D_opt, real, (z[0], z[1]), i == 0, t)
                pkg["update_ema"](G_ema, G, 0.999)
            if rnd:
                seconds.setdefault(name, []).append(time.perf_counter() - t0)
                print(f"train round {rnd} {name}: {t.batch * t.r1_interval / seconds[name][-1]:.2f} img/s", flush=True)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="1783867")
    ap.add_argument("--after", default=None, help="a revision instead of the working tree")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--train-rounds", type=int, default=3)
    args = ap.parse_args()
    if "OMP_WAIT_POLICY" not in os.environ:  # must be set before OpenMP starts: re-run this script with it
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        os.execv(sys.executable, [sys.executable, *sys.argv])
    with tempfile.TemporaryDirectory() as tmp:
        srcs = {"before": extract(args.before, Path(tmp), "inrgan_before"),
                "after": ROOT / "src" if args.after is None else extract(args.after, Path(tmp), "inrgan_after")}
        sys.path.insert(0, tmp)
        versions = {"before": load("inrgan_before"), "after": load("inrgan" if args.after is None else "inrgan_after")}
        rss = {name: [] for name in srcs}
        for rnd in range(3):
            for name in (list(srcs) if rnd % 2 == 0 else list(srcs)[::-1]):
                rss[name].append(peak_rss(srcs[name]))
        mem = {name: statistics.median(v) for name, v in rss.items()}
        fwd = forward_times(versions, args.rounds)
        train = train_times(versions, args.train_rounds)
    import torch

    def best_median(xs):
        return min(xs), statistics.median(xs)

    rows = []
    for size in (64, 256):
        (bb, bm), (ab, am) = best_median(fwd[("before", size)]), best_median(fwd[("after", size)])
        rows.append((f"inr-gan {size}^2 forward, batch 4 (ms)", bb * 1e3, ab * 1e3, bm * 1e3, am * 1e3))
    ratio = {n: (min(fwd[(n, 256)]) / min(fwd[(n, 64)]),
                 statistics.median(fwd[(n, 256)]) / statistics.median(fwd[(n, 64)])) for n in ("before", "after")}
    rows.append(("256^2 time / 64^2 time", *ratio["before"][:1], *ratio["after"][:1], ratio["before"][1],
                 ratio["after"][1]))
    imgs = 16 * 16  # cpu-32: batch 16, r1_interval 16
    (bb, bm), (ab, am) = best_median(train["before"]), best_median(train["after"])
    rows.append(("cpu-32 training (img/s)", imgs / bb, imgs / ab, imgs / bm, imgs / am))
    rows.append(("peak RSS, 256^2 forward (MiB)", mem["before"], mem["after"], mem["before"], mem["after"]))
    print(f"\nbefore = {args.before}, after = {args.after or 'the working tree'}; {torch.get_num_threads()} threads; "
          f"{args.rounds} forward rounds, {args.train_rounds} training rounds, alternating; load average "
          f"{os.getloadavg()[0]:.1f}")
    print("| figure | before (best) | after (best) | after / before (best) | before (median) | after (median) "
          "| after / before (median) |")
    print("|---|---|---|---|---|---|---|")
    for label, b, a, bmed, amed in rows:
        print(f"| {label} | {b:.1f} | {a:.1f} | {a / b:.3f} | {bmed:.1f} | {amed:.1f} | {amed / bmed:.3f} |")


if __name__ == "__main__":
    main()
