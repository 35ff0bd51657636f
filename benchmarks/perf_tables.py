"""The measurements behind docs/performance.md, printed as markdown tables.

    python benchmarks/perf_tables.py [--device cpu] [--repeats 5] [--json-dir DIR]

Every row is one ``inrgan bench`` measurement (a fresh subprocess; see ``inrgan.bench``), so each
figure can also be reproduced alone with the command printed beside it. The 64^2 rows also time the
256^2 render side by side in their process (``--compare-full``) and print that speed-up.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from inrgan.bench import BenchSpec, run

LOW = dict(render_height=64, render_width=64)
FORWARD_ROWS = [
    ("fast, 256^2", dict()),
    ("reference path, 256^2", dict(reference=True)),
    ("fast, 64^2 render", dict(**LOW, compare_full=True)),
    ("reference path, 64^2 render", dict(reference=True, **LOW)),
    ("fast, torch kernels, 256^2", dict(native=False)),
    ("fast, torch kernels, 64^2 render", dict(native=False, **LOW, compare_full=True)),
    ("fast, intra-op threads, 256^2", dict(sample_parallel=False)),
    ("fast, intra-op threads, 64^2 render", dict(sample_parallel=False, **LOW, compare_full=True)),
    ("fast, 256^2, batch 16", dict(batch=16)),
    ("fast, 64^2 render, batch 16", dict(batch=16, **LOW, compare_full=True)),
]
# 64^2 against 256^2: (label, the 256^2 row, the 64^2 row)
RATIOS = [("batch 4", "fast, 256^2", "fast, 64^2 render"),
          ("torch kernels, batch 4", "fast, torch kernels, 256^2", "fast, torch kernels, 64^2 render"),
          ("intra-op threads, batch 4", "fast, intra-op threads, 256^2", "fast, intra-op threads, 64^2 render"),
          ("batch 16", "fast, 256^2, batch 16", "fast, 64^2 render, batch 16"),
          ("reference path, batch 4", "reference path, 256^2", "reference path, 64^2 render")]


def command_line(spec: BenchSpec, omp: str | None) -> str:
    parts = [f"inrgan bench --preset {spec.preset}"]
    if spec.resolution:
        parts.append(f"--resolution {spec.resolution}")
    parts.append(f"--batch {spec.batch} --mode {spec.mode} --device {spec.device}")
    if spec.render_height:
        parts.append(f"--render-height {spec.render_height} --render-width {spec.render_width}")
    if spec.reference:
        parts.append("--reference")
    if not spec.sample_parallel:
        parts.append("--no-sample-parallel")
    if not spec.native:
        parts.append("--no-native")
    if spec.compare_full:
        parts.append("--compare-full")
    if omp is None:
        parts.append("--omp-wait-policy inherit")
    return " ".join(parts) + " --json"


def forward_table(device: str, repeats: int, omp: str | None, json_dir: Path | None) -> dict[str, dict]:
    base = BenchSpec(preset="inr-gan", resolution=256, batch=4, mode="forward", device=device, repeats=repeats)
    print("| run | img/s | ms/batch | peak mem MB | GMAC/img | GFLOP/s | matmul peak GFLOP/s | fraction of peak | "
          "executed fraction |")
    print("|---|---|---|---|---|---|---|---|---|")
    results = {}
    for name, kw in FORWARD_ROWS:
        spec = replace(base, **kw)
        r = run(spec, omp_wait_policy=omp)
        results[name] = r
        print(f"| {name} | {r['img_per_s']:.2f} | {r['ms_per_batch']:.0f} | {r['peak_mem_mb']:.0f} | "
              f"{r['gmac_per_img']:.2f} | {r['gflops']:.1f} | {r['matmul_peak_gflops']:.1f} | "
              f"{r['fraction_of_peak']:.2f} | {r['executed_fraction_of_peak']:.2f} |")
        if json_dir is not None:
            (json_dir / f"forward_{name.replace(' ', '_').replace(',', '').replace('^', '')}.json").write_text(
                json.dumps(r, indent=2))
    for name, a, b in RATIOS:
        print(f"\n64^2 render vs 256^2, {name}: {results[b]['img_per_s'] / results[a]['img_per_s']:.1f}x faster")
        if "speedup_vs_full" in results[b]:
            r = results[b]
            print(f"  side by side in one process: {r['full_ms_per_batch']:.0f} / {r['compare_ms_per_batch']:.1f} ms, "
                  f"{r['speedup_vs_full']:.2f}x")
    print("\nCommands:")
    for name, kw in FORWARD_ROWS:
        print(f"- {name}: `{command_line(replace(base, **kw), omp)}`")
    return results


def train_table(device: str, repeats: int, omp: str | None) -> dict:
    spec = BenchSpec(preset="cpu-32", batch=16, mode="train", device=device, repeats=repeats)
    r = run(spec, "profile", omp_wait_policy=omp)
    print(f"\ncpu-32 training step at 32^2, batch 16: {r['img_per_s']:.1f} img/s ({r['ms_per_step']:.0f} ms per step)")
    print("\n| phase | ms per step |\n|---|---|")
    for k, v in r["phases_ms_per_step"].items():
        print(f"| {k} | {v:.1f} |")
    print("\n| operator | calls per step | ms per step | share |\n|---|---|---|---|")
    for op in r["top_ops"][:12]:
        print(f"| `{op['op']}` | {op['calls_per_step']:.0f} | {op['ms_per_step']:.1f} | {op['share']:.1%} |")
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--omp-wait-policy", choices=["passive", "active", "inherit"], default="passive")
    ap.add_argument("--json-dir", type=Path, default=None)
    ap.add_argument("--skip-train", action="store_true")
    args = ap.parse_args()
    omp = None if args.omp_wait_policy == "inherit" else args.omp_wait_policy
    if args.json_dir is not None:
        args.json_dir.mkdir(parents=True, exist_ok=True)
    forward_table(args.device, args.repeats, omp, args.json_dir)
    if not args.skip_train:
        train_table(args.device, max(1, args.repeats // 2), omp)


if __name__ == "__main__":
    main()
