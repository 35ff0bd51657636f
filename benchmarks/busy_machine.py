"""`inrgan train` on an idle machine and beside one CPU-bound process, side by side in one run.

    python benchmarks/busy_machine.py [--rounds 2] [--kimg 1.0] [--out docs/results/busy_machine.json]

Each measurement is a real `inrgan train` of the default `cpu-32` preset (32^2, batch 16) on
Fashion-MNIST, in a fresh process; its img/s is the median of the ticks after the first (which holds the
start-up). The "load" is one single-threaded CPU-bound program (a Python busy loop) started beside it.
Three settings are compared:
- "spinning, 2 threads": libgomp's default spin-then-sleep (``GOMP_SPINCOUNT=300000``) on every CPU, how
  the commands ran before ``inrgan.runtime``;
- "passive, 2 threads": ``OMP_WAIT_POLICY=PASSIVE`` on every CPU, what `inrgan bench` measures with;
- "inrgan default": what `inrgan train` chooses now (a brief spin, and threads that follow the CPUs the
  other programs leave free).
Rounds alternate the four cells, so a slow spell of the shared machine falls on all of them. Prints a
Markdown table and writes the raw figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SETTINGS = {
    "spinning, 2 threads": {"GOMP_SPINCOUNT": "300000", "OMP_NUM_THREADS": "2"},
    "passive, 2 threads": {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "2"},
    "inrgan default": {},
}
BUSY_LOOP = "while True: pass"


def train_img_per_s(kimg: float, tick: float, env: dict[str, str]) -> float:
    """The median img/s of one `inrgan train` run's ticks after the first."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "inrgan", "train", "--data", "fashion-mnist", "--out", str(run),
               "--kimg", str(kimg), "--tick", str(tick), "--snap", "1000", "--device", "cpu", "--no-progress"]
        subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
        ticks = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    return statistics.median(t["img_per_s"] for t in ticks[1:])


def measure(setting: str, loaded: bool, kimg: float, tick: float) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env.update(SETTINGS[setting])
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if loaded else None
    try:
        return train_img_per_s(kimg, tick, env)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--kimg", type=float, default=1.0)
    ap.add_argument("--tick", type=float, default=0.25)
    ap.add_argument("--out", type=Path, default=None, help="Write the raw figures here as JSON.")
    args = ap.parse_args()

    cells = [(s, loaded) for s in SETTINGS for loaded in (False, True)]
    runs: dict[str, list[float]] = {f"{s}/{'loaded' if ld else 'idle'}": [] for s, ld in cells}
    for r in range(args.rounds):
        for s, loaded in cells:
            key = f"{s}/{'loaded' if loaded else 'idle'}"
            runs[key].append(measure(s, loaded, args.kimg, args.tick))
            print(f"round {r + 1}: {key}: {runs[key][-1]:.1f} img/s", file=sys.stderr)

    print(f"cpu-32 training, 32^2, batch 16, {os.cpu_count()} CPUs; img/s, median of {args.rounds} runs\n")
    best_idle = max(statistics.median(runs[f"{s}/idle"]) for s in SETTINGS)
    print("| setting | idle | one busy process beside it | kept of its idle | of the best idle |")
    print("|---|---|---|---|---|")
    for s in SETTINGS:
        idle, loaded = statistics.median(runs[f"{s}/idle"]), statistics.median(runs[f"{s}/loaded"])
        print(f"| {s} | {idle:.1f} | {loaded:.1f} | {loaded / idle:.0%} | {loaded / best_idle:.0%} |")
    if args.out:
        args.out.write_text(json.dumps({"kimg": args.kimg, "cpus": os.cpu_count(), "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
