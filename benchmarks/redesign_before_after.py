"""The performance figures before and after the models/accel redesign (issue 15), side by side in one run.

    python benchmarks/redesign_before_after.py [--before 1783867] [--rounds 3]

"before" is the code of a git revision (default 1783867, the last one before the redesign), extracted
into a temporary folder; "after" is this working tree. Every measurement is ``inrgan.bench``'s own
measuring subprocess (``python -m inrgan.bench``, the same spec for both), run with the tree's ``src``
first on ``PYTHONPATH``; rounds alternate before and after, so that both see the same machine, and the
best of each is reported:

- ``inr-gan`` at 256^2, batch 4, forward: ms per batch and peak RSS;
- the 64^2 render against the 256^2 one (``--compare-full``, in one process): the speed-up;
- ``cpu-32`` training: img/s over rounds of r1_interval steps.

Prints a Markdown table, with after/before ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPECS = {
    "forward 256": dict(preset="inr-gan", batch=4, repeats=3, warmup=1),
    "64 vs 256": dict(preset="inr-gan", batch=4, repeats=3, warmup=1, render_height=64, render_width=64,
                      compare_full=True),
    "train cpu-32": dict(preset="cpu-32", mode="train", repeats=2, warmup=1),
}


def extract(revision: str, into: Path) -> Path:
    archive = into / "src.tar"
    subprocess.run(["git", "archive", "-o", str(archive), revision, "src"], cwd=ROOT, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def measure(src: Path, what: str) -> dict:
    spec = SPECS[what]
    mode = spec.get("mode", "forward")
    env = dict(os.environ, PYTHONPATH=str(src), OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    proc = subprocess.run([sys.executable, "-m", "inrgan.bench", mode, json.dumps(spec)], capture_output=True,
                          text=True, env=env, cwd=src.parent)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} with {src}: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="1783867")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"before": extract(args.before, Path(tmp)), "after": ROOT / "src"}
        results: dict[tuple[str, str], list[dict]] = {}
        for rnd in range(args.rounds):
            for what in SPECS:
                for name, src in (trees.items() if rnd % 2 == 0 else reversed(trees.items())):
                    r = measure(src, what)
                    results.setdefault((name, what), []).append(r)
                    print(f"round {rnd} {what:12s} {name:6s} " + json.dumps(
                        {k: r.get(k) for k in ("ms_per_batch", "peak_mem_mb", "speedup_vs_full", "img_per_s",
                                               "sample_parallel", "native_kernels")}), flush=True)
    rows = [
        ("inr-gan 256^2 forward, batch 4 (ms, best)", "forward 256", "ms_per_batch", min),
        ("peak RSS of that process (MiB)", "forward 256", "peak_mem_mb", min),
        ("64^2 render, batch 4 (ms, best)", "64 vs 256", "compare_ms_per_batch", min),
        ("256^2 / 64^2 speed-up (same process)", "64 vs 256", "speedup_vs_full", max),
        ("cpu-32 training (img/s, best round)", "train cpu-32", "img_per_s", max),
    ]
    print(f"\nbefore = {args.before}, after = the working tree; best of {args.rounds} alternating rounds; "
          f"threads {results[('after', 'forward 256')][0]['threads']}")
    print("| figure | before | after | after / before |")
    print("|---|---|---|---|")
    for label, what, key, best in rows:
        b = best(r[key] for r in results[("before", what)])
        a = best(r[key] for r in results[("after", what)])
        print(f"| {label} | {b:.1f} | {a:.1f} | {a / b:.3f} |")


if __name__ == "__main__":
    main()
