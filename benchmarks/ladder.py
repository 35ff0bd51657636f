"""Issue 17's measurements: INR-GAN against StyleGAN2 and CIPS, and the ablation ladder, at one budget.

    python benchmarks/ladder.py speed  [--out docs/results/ladder/speed.json]  # sizes, MACs, G forward img/s
    python benchmarks/ladder.py train  --root R [--presets P,...] [--seeds 0,1]  # the equal-budget runs
    python benchmarks/ladder.py probe  --root R                                # geometric prior, path lengths
    python benchmarks/ladder.py report --root R                                # the tables of docs/fidelity.md

**speed** builds every preset (1 channel, 32^2) and times G's forward pass (``inrgan.Generator``: the fast
path for the INR-GAN family, the reference render for the others) at the training grid and at 4x the
density (128^2; StyleGAN2 renders its training grid only), batch 16, one thread, in interleaved rounds so
that every preset meets the same background load; the median round is kept.

**train** runs, per preset and seed, the plain commands (printed, and kept in R/commands.txt)::

    OMP_NUM_THREADS=1 inrgan train --preset P --data fashion-mnist --out R/P-seedS --seed S --gamma 1.0 \\
        --kimg K --device cpu --no-progress                       # and --resume R/P-seedS for the next leg
    OMP_NUM_THREADS=1 inrgan metrics --checkpoint R/P-seedS --data fashion-mnist \\
        --metrics fid10k,kid10k,pr10k --json                      # after each leg, into R/P-seedS/metrics-K.json

The budget is the same for every preset: cpu-32's recipe (batch 16, EMA half-life 5 kimg) with R1 gamma
1.0 (the recipe sweep of docs/results.md), legs at 10, 20 and 40 kimg, taken breadth-first (every preset to 10 kimg before any goes on). A queue skips what is done and continues a stopped run (``--resume`` is exact), so it
can be re-run at will; each child's peak RSS is kept (R/P-seedS/peak-rss-K.json). Two queues (e.g.
``--seeds 0`` and ``--seeds 1``) can run side by side on two cores.

**probe** runs ``inrgan probe --checkpoint R/P-seed0 --num 2000 --paths 200 --json`` for cpu-32 and
stylegan2 (into R/P-seedS/probe.json): the held-out R^2 of the silhouette attributes from z and w, and the
perceptual path lengths in z, w and (INR-GAN only) the INR parameters.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
from pathlib import Path

from own_data import _done_kimg, _inrgan, _log  # the run bookkeeping of issue 18's queue

PRESETS = ("ladder-1-latent-mlp", "ladder-2-hypernet", "ladder-3-fourier", "ladder-4-fmm", "cpu-32", "cips",
           "stylegan2")
SEEDS = (0, 1)
LEGS = (10.0, 20.0, 40.0)  # kimg: every run is evaluated after each leg
METRICS = "fid10k,kid10k,pr10k"
PROBED = ("cpu-32", "stylegan2")


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _write(path: Path, text: str) -> None:
    path.with_suffix(".tmp").write_text(text)
    path.with_suffix(".tmp").rename(path)


def _train_child(root: Path, cmd: list[str], rss_file: Path) -> None:
    """Run a training command on one thread and keep its peak RSS (MiB)."""
    _log(root, cmd)
    child = subprocess.Popen(cmd, env=_env())
    _, status, usage = os.wait4(child.pid, 0)  # this child's own resource usage
    if status:
        raise SystemExit(f"failed ({status}): {shlex.join(cmd)}")
    _write(rss_file, json.dumps({"peak_rss_mib": usage.ru_maxrss / 1024}))


def _capture(root: Path, cmd: list[str], out: Path) -> None:
    """Run a command on one thread and keep its standard output."""
    _log(root, cmd)
    _write(out, subprocess.run(cmd, env=_env(), check=True, capture_output=True, text=True).stdout)


def train(root: Path, presets: list[str], seeds: list[int], legs: tuple[float, ...] = LEGS) -> None:
    """Every preset to the first leg, then every preset to the next: a stopped queue leaves a whole table."""
    for kimg in legs:
        for preset in presets:
            for seed in seeds:
                _leg(root, root / f"{preset}-seed{seed}", preset, seed, kimg)


def _leg(root: Path, run: Path, preset: str, seed: int, kimg: float) -> None:
    """Train one run to ``kimg`` (new, or continued with --resume) and evaluate it there."""
    done = _done_kimg(run)
    if done < kimg - 1e-6:
        new = ["--preset", preset, "--data", "fashion-mnist", "--out", str(run), "--seed", str(seed), "--gamma", "1.0"]
        cmd = [*_inrgan(), "train", *(["--resume", str(run)] if done >= 0 else new), "--kimg", f"{kimg:g}",
               "--device", "cpu", "--no-progress"]
        _train_child(root, cmd, run / f"peak-rss-{kimg:g}.json")
    metrics = run / f"metrics-{kimg:g}.json"
    if not metrics.is_file():
        _capture(root, [*_inrgan(), "metrics", "--checkpoint", str(run), "--data", "fashion-mnist",
                        "--metrics", METRICS, "--json"], metrics)


def probe(root: Path) -> None:
    for preset in PROBED:
        run = root / f"{preset}-seed0"
        if not (run / "probe.json").is_file():
            _capture(root, [*_inrgan(), "probe", "--checkpoint", str(run), "--num", "2000", "--paths", "200",
                            "--json"], run / "probe.json")


def speed(out: Path | None, batch: int = 16, rounds: int = 5) -> dict:
    """Parameters, MACs and G forward img/s of every preset at 32^2 and 128^2, timed side by side; the
    INR-GAN family also through its reference render (``RenderOptions(fast=False)``, as the others render)."""
    import torch

    from inrgan import Generator, RenderOptions, get_preset
    from inrgan.bench import _cpu_name, time_calls

    torch.set_num_threads(1)
    nets, rows = {}, {}
    for name in PRESETS:
        torch.manual_seed(0)
        G = Generator.build(get_preset(name, 32, 1).G).eval().requires_grad_(False)
        nets[name], rows[name] = (G, {}), _sizes(name, G)
        if G.cfg.family == "inr-gan":
            nets[f"{name} (reference render)"] = (G, {"options": RenderOptions(fast=False)})
    times = {key: {32: [], 128: []} for key in nets}
    z = torch.randn(batch, 128, generator=torch.Generator().manual_seed(0))
    for _ in range(rounds):
        for key, (G, kwargs) in nets.items():
            for size in (32, 128) if G.renders_any_grid else (32,):
                with torch.inference_mode():
                    t = time_calls(lambda G=G, s=size, k=kwargs: G(z, height=s, width=s, **k), torch.device("cpu"),
                                   1, 1)
                times[key][size].append(t[0])
    speeds = {key: {f"img_per_s_{size}": batch / statistics.median(ts) for size, ts in by_size.items() if ts}
              for key, by_size in times.items()}
    result = {"machine": _cpu_name(), "threads": 1, "batch": batch, "rounds": rounds, "presets": rows,
              "speed": speeds}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
    return result


def _sizes(name: str, G) -> dict:
    from inrgan import get_preset
    from inrgan.models import Discriminator
    from inrgan.models.cost import family_macs

    row = {"G_params": sum(x.numel() for x in G.parameters()),
           "mapping_params": sum(x.numel() for x in G.mapping.parameters()),
           "D_params": sum(x.numel() for x in Discriminator(get_preset(name, 32, 1).D).parameters()),
           "macs_32": family_macs(G)["total"]}
    if G.renders_any_grid:
        row["macs_128"] = family_macs(G, G.synthesis.make_grid(128, 128))["total"]
    return row


def _metric(records: list[dict], name: str) -> float | None:
    for r in records:
        if r["metric"].startswith(name):
            return r["value"]
    return None


def report(root: Path) -> str:
    """Markdown: per preset and leg, mean and spread over seeds of FID, KID, precision and recall, the
    training img/s (the last leg's ticks) and the peak RSS."""
    lines = ["| preset | kimg | seeds | FID10k | KID10k | precision | recall | train img/s | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for preset in PRESETS:
        for kimg in LEGS:
            runs = [root / f"{preset}-seed{s}" for s in SEEDS if (root / f"{preset}-seed{s}" / f"metrics-{kimg:g}.json").is_file()]
            if not runs:
                continue
            records = [json.loads((r / f"metrics-{kimg:g}.json").read_text()) for r in runs]
            cells = [_spread([_metric(rec, m) for rec in records]) for m in ("fid", "kid", "precision", "recall")]
            speed = _spread([statistics.mean(json.loads(x)["img_per_s"] for x in (r / "stats.jsonl").read_text()
                                             .splitlines()[-3:]) for r in runs])
            rss = _spread([json.loads((r / f"peak-rss-{kimg:g}.json").read_text())["peak_rss_mib"] for r in runs
                           if (r / f"peak-rss-{kimg:g}.json").is_file()])
            lines.append(f"| {preset} | {kimg:g} | {len(runs)} | " + " | ".join([*cells, speed, rss]) + " |")
    return "\n".join(lines)


def _spread(values: list[float | None]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    mean = statistics.mean(values)
    return f"{mean:.4g}" if len(values) == 1 else f"{mean:.4g} ± {statistics.stdev(values):.2g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("speed", "train", "probe", "report"))
    ap.add_argument("--root", type=Path, default=None)
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    ap.add_argument("--legs", default=",".join(f"{k:g}" for k in LEGS), help="kimg at which to stop and evaluate")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.step == "speed":
        print(json.dumps(speed(args.out), indent=1))
        return
    if args.root is None:
        raise SystemExit(f"{args.step} needs --root")
    args.root.mkdir(parents=True, exist_ok=True)
    if args.step == "train":
        train(args.root, args.presets.split(","), [int(s) for s in args.seeds.split(",")],
              tuple(float(k) for k in args.legs.split(",")))
    elif args.step == "probe":
        probe(args.root)
    else:
        print(report(args.root))


if __name__ == "__main__":
    main()
