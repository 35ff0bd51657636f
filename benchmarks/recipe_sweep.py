"""Issue 26's recipe sweep: candidate recipes trained for the same wall clock, one thread each, then scored.

    python benchmarks/recipe_sweep.py run --root R --candidates A,B [--seed 0] [--legs 5,10,25]
    python benchmarks/recipe_sweep.py score --root R [--metrics fid2k,pr2k,cls2k]
    python benchmarks/recipe_sweep.py table --root R
    python benchmarks/recipe_sweep.py markdown --root R
    python benchmarks/recipe_sweep.py plot --root R --out fid_vs_minutes.png
    python benchmarks/recipe_sweep.py grids --root R --images A.png=LABEL,B.png=LABEL --out grids.png

**run** trains each candidate (Fashion-MNIST, 32^2, one thread) in legs of wall clock: the first leg is
``inrgan train --minutes L1``, each later one ``--resume`` for the difference (resume is exact), and after
each leg the export and the sample grid are kept as R/NAME-sS/leg-Lmin. Two queues run side by side, one a
core, so that both meet the same machine. **score** runs ``inrgan metrics --checkpoint R/NAME-sS/leg-Lmin
--data fashion-mnist --metrics M --threads 1 --json`` on every kept leg that has no score yet (into its
metrics.json); **table** prints one row per candidate, seed and leg: kimg, img/s and the metrics.

A candidate is a preset built here from a named one with replaced fields (CANDIDATES); the run records the
full configs, so a result can be rebuilt from its JSON alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import torch

from inrgan import config
from inrgan.config import Preset, get_preset
from inrgan.training.loop import RunOptions, train


def _variant(base: str, batch: int | None = None, g: dict | None = None, **fields):
    """A preset builder: preset ``base`` with G fields (``g``), training fields (lr, ...) and D fields (head_norm,
    ...) replaced; a new batch brings its EMA half-life (batch * 10 / 32 kimg, the small-batch rule of cpu-32)."""

    def build(resolution: int = 32, img_channels: int = 3) -> Preset:
        p = get_preset(base, resolution, img_channels)
        p = replace(p, G=replace(p.G, **(g or {})))
        t_fields = {k: v for k, v in fields.items() if k in p.training.__dataclass_fields__}
        d_fields = {k: v for k, v in fields.items() if k not in t_fields}
        if batch:
            t_fields.update(batch=batch, ema_kimg=batch * 10 / 32)
        return replace(p, D=replace(p.D, **d_fields), training=replace(p.training, **t_fields))

    return build


CANDIDATES = {
    "old": _variant("cpu-32-v1"),
    "new": _variant("cpu-32-v2"),
    "v3": _variant("cpu-32"),
    "proj": _variant("cpu-32-projected"),
    "proj-lr1e-3": _variant("cpu-32-projected", lr=0.001),
    "proj-lr5e-4": _variant("cpu-32-projected", lr=0.0005),
    "proj-bn": _variant("cpu-32-projected", head_norm="batch"),
    "proj-bn-lr1e-3": _variant("cpu-32-projected", lr=0.001, head_norm="batch"),
    "proj-b32": _variant("cpu-32-projected", batch=32),
    "proj-b32-lr1e-3": _variant("cpu-32-projected", lr=0.001, batch=32),
    "proj-bn-b32-lr1e-3": _variant("cpu-32-projected", lr=0.001, batch=32, head_norm="batch"),
    "proj-r128-lr1e-3": _variant("cpu-32-projected", lr=0.001, backbone_resolution=128),
    "proj-r128": _variant("cpu-32-projected", backbone_resolution=128),
    "proj-bn-b32": _variant("cpu-32-projected", batch=32, head_norm="batch"),
    "proj-z64": _variant("cpu-32-projected", g={"z_dim": 64}),
    "old-d-half": _variant("cpu-32-v1", channel_base=1024, channel_max=64),
    "old-d-quarter": _variant("cpu-32-v1", channel_base=512, channel_max=32),
    "old-d-half-b32": _variant("cpu-32-v1", batch=32, channel_base=1024, channel_max=64),
    "old-d-half-lr5e-3": _variant("cpu-32-v1", lr=0.005, channel_base=1024, channel_max=64),
    "old-d-half-lr5e-3-g1": _variant("cpu-32-v1", lr=0.005, r1_gamma=1.0, channel_base=1024, channel_max=64),
    "old-d-half-lr5e-3-g0.1": _variant("cpu-32-v1", lr=0.005, r1_gamma=0.1, channel_base=1024, channel_max=64),
    "old-d-half-g4x": _variant("cpu-32-v1", r1_gamma=0.0512, channel_base=1024, channel_max=64),
    "proj-dlr2e-4": _variant("cpu-32-projected", d_lr=0.0002),
    "proj-dlr5e-4-mbstd": _variant("cpu-32-projected", d_lr=0.0005, head_mbstd=4),
    "proj-mbstd": _variant("cpu-32-projected", head_mbstd=4),
    "proj-mbstd-r128": _variant("cpu-32-projected", head_mbstd=4, backbone_resolution=128),
    "new-d-quarter": _variant("cpu-32-v2", channel_base=512, channel_max=32),
    "new-b8": _variant("cpu-32-v2", batch=8),
}


LABELS = {"old": "recipe v1 (cpu-32-v1)", "new": "recipe v2 (cpu-32-v2)", "v3": "recipe v3 (cpu-32)",
          "v1-beside-v3": "recipe v1, beside v3"}


def _leg_dir(run: Path, minutes: float) -> Path:
    return run / f"leg-{minutes:g}min"


def run_candidate(root: Path, name: str, seed: int, legs: list[float]) -> None:
    preset_name = f"sweep-{name}"
    config.PRESETS[preset_name] = lambda resolution=32, img_channels=3: replace(
        CANDIDATES[name](resolution, img_channels), name=preset_name)
    preset = config.PRESETS[preset_name](32, 1)
    run = root / f"{name}-s{seed}"
    done = 0.0
    for minutes in legs:
        leg = _leg_dir(run, minutes)
        if leg.is_dir():
            done = minutes
            continue
        resume = run if done else None
        options = RunOptions(data="fashion-mnist", preset=None if resume else preset_name, progress=False,
                             minutes=minutes - done)
        record = train(run, options, resume=resume, overrides={} if resume else {"seed": seed}, log=print)
        tmp = leg.with_name(leg.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(run / "export", tmp)
        grids = sorted((run / "samples").glob("fakes*.png"))
        if grids:
            shutil.copy(grids[-1], tmp / "grid.png")
        (tmp / "leg.json").write_text(json.dumps({
            "candidate": name, "seed": seed, "minutes": minutes, "kimg": record["kimg"],
            "img_per_s": record.get("img_per_s"), "threads": torch.get_num_threads(),
            "cpu": _cpu(), "G": preset.G.to_dict(), "D": preset.D.to_dict(),
            "training": replace(preset.training, seed=seed).to_dict(),
        }, indent=1))
        tmp.rename(leg)
        done = minutes


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def score(root: Path, metrics: str, match: str = "*-s*") -> None:
    for leg in sorted(root.glob(f"{match}/leg-*min")):
        out = leg / "metrics.json"
        have = json.loads(out.read_text()) if out.is_file() else {}
        wanted = [m for m in metrics.split(",") if m not in have]
        if not wanted:
            continue
        cmd = [sys.executable, "-m", "inrgan", "metrics", "--checkpoint", str(leg), "--data", "fashion-mnist",
               "--metrics", ",".join(wanted), "--threads", "1", "--json"]
        print(" ".join(cmd), flush=True)
        text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        records = json.loads(text[text.index("["):])
        have.update({r["metric"]: r for r in records})
        out.with_suffix(".tmp").write_text(json.dumps(have, indent=1))
        out.with_suffix(".tmp").replace(out)


def table(root: Path, quiet: bool = False) -> list[dict]:
    rows = []
    for leg in sorted(root.glob("*-s*/leg-*min")):
        info = json.loads((leg / "leg.json").read_text())
        scores = json.loads((leg / "metrics.json").read_text()) if (leg / "metrics.json").is_file() else {}
        row = {k: info[k] for k in ("candidate", "seed", "minutes", "kimg", "img_per_s")}
        for record in scores.values():
            row.update({k: round(v, 3) for k, v in record["results"].items() if isinstance(v, (int, float))})
            if "real_test_scores" in record["protocol"]:
                row[f"{record['metric']}_class_shares"] = record["results"][f"{record['metric']}_class_shares"]
        rows.append(row)
        if not quiet:
            print(json.dumps(row))
    return rows


def markdown(root: Path) -> None:
    """The table of docs/training.md: one row per candidate, seed and leg."""
    print("| candidate | seed | minutes | kimg | img/s | FID2k | precision | recall | cls score | confidence "
          "| smallest class |")
    print("|---" * 11 + "|")
    for r in sorted(table(root, quiet=True), key=lambda r: (r["candidate"], r["seed"], r["minutes"])):
        if "fid2k" in r:
            print(f"| `{r['candidate']}` | {r['seed']} | {r['minutes']:g} | {r['kimg']:.1f} | {r['img_per_s']:.1f} "
                  f"| {r['fid2k']:.1f} | {r['pr2k_precision']:.3f} | {r['pr2k_recall']:.3f} | {r['cls2k_score']:.2f} "
                  f"| {r['cls2k_confidence']:.2f} | {r['cls2k_min_class_share']:.3f} |")


def plot(root: Path, out: Path, metric: str = "fid2k") -> None:
    """FID against wall-clock minutes, one line per candidate and seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict[str, list[tuple[float, float]]] = {}
    for row in table(root, quiet=True):
        if metric in row:
            name = LABELS.get(row["candidate"], row["candidate"])
            lines.setdefault(f"{name}, seed {row['seed']}", []).append((row["minutes"], row[metric]))
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in sorted(lines.items()):
        xs, ys = zip(*sorted(points), strict=True)
        ax.plot(xs, ys, marker="o", label=label)
    ax.set(xlabel="training wall clock (minutes, one core each, side by side)", ylabel=f"{metric} (effnet-lite0)",
           yscale="log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def grids(images: list[Path], labels: list[str], out: Path) -> None:
    """Sample grids side by side, each under its label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 3.5), squeeze=False)
    for ax, image, label in zip(axes[0], images, labels, strict=True):
        ax.imshow(plt.imread(image), cmap="gray", interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("run", "score", "table", "markdown", "plot", "grids"))
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--candidates", default="proj")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--legs", default="5", help="cumulative minutes after which the export is kept")
    parser.add_argument("--metrics", default="fid2k,pr2k,cls2k")
    parser.add_argument("--out", type=Path, help="plot: the PNG to write")
    parser.add_argument("--match", default="*-s*", help="score: the run folders to score (a glob)")
    parser.add_argument("--images", default="", help="grids: PNG=LABEL pairs, comma-separated")
    args = parser.parse_args()
    if args.mode == "run":
        torch.set_num_threads(1)
        for name in args.candidates.split(","):
            run_candidate(args.root, name, args.seed, [float(m) for m in args.legs.split(",")])
    elif args.mode == "score":
        score(args.root, args.metrics, args.match)
    elif args.mode == "markdown":
        markdown(args.root)
    elif args.mode == "plot":
        plot(args.root, args.out)
    elif args.mode == "grids":
        pairs = [item.split("=", 1) for item in args.images.split(",") if item]
        if not pairs or any(len(pair) != 2 for pair in pairs) or args.out is None:
            parser.error(f"grids needs --out and --images PNG=LABEL,...; got --images {args.images!r}")
        grids([args.root / p for p, _ in pairs], [label for _, label in pairs], args.out)
    else:
        table(args.root)


if __name__ == "__main__":
    main()
