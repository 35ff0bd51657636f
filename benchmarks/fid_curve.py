"""How far a training run is from a target FID: its curve, a power law fitted to its tail, and the hours left.

    python benchmarks/fid_curve.py RUN [--metric fid2k] [--floor 9.2] [--target 14.67] [--last 4] [--json OUT]

The run's evaluations (RUN/metrics.jsonl, those of ``--metric``) give FID against kimg. FID falls towards
the floor (real images against real images by the same protocol: 9.2 for FID2k with effnet-lite0 on
Fashion-MNIST, docs/results.md), not towards 0, so the model is a power law of the excess over the floor,

    FID(kimg) - floor = a * kimg ** b        (b < 0)

fitted by least squares in log-log to the last ``--last`` evaluations (the early ones fall faster than the
tail). The kimg where the fit meets ``--target``, less the kimg trained, divided by the run's speed (kimg over
the wall clock of its last leg, from RUN/stats.jsonl, whose time_s includes the leg's evaluations and
snapshots), is the distance in hours on the machine that ran the leg, evaluating as often as it did. It is an extrapolation: a plateau comes sooner than a
power law says, so read it as a lower bound.

The default target is the shipped model's, FID10k at most 4 times its floor (7.3 against 1.83): the excess over
the floor, 5.47, is taken to be the same at 2k (the bias that raises FID2k's floor to 9.2 cancels in it),
so the FID2k target is 9.2 + 5.47 = 14.67.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def curve(run: Path, metric: str) -> list[tuple[float, float]]:
    """(kimg, value) of every evaluation of ``metric`` in the run, in kimg order."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise SystemExit(f"{run}: no metrics.jsonl (train with --metrics {metric} --metrics-every K)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    points = sorted((r["kimg"], r["value"]) for r in rows if r.get("metric") == metric)
    if not points:
        raise SystemExit(f"{path}: no {metric} evaluations")
    return points


def fit_power_law(points: list[tuple[float, float]], floor: float) -> tuple[float, float]:
    """(a, b) of value - floor = a * kimg ** b, least squares in log-log."""
    if len(points) < 2:
        raise SystemExit("a fit needs at least two evaluations")
    if any(v <= floor for _, v in points):
        raise SystemExit(f"an evaluation is at or below the floor {floor}: no power law of the excess")
    xs = [math.log(k) for k, _ in points]
    ys = [math.log(v - floor) for _, v in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise SystemExit("the evaluations are all at one kimg")
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return math.exp(my - b * mx), b


def last_leg_speed(run: Path) -> tuple[float, float]:
    """(kimg trained, img/s over the last leg's wall clock): each leg's time_s starts again from 0."""
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines() if line.strip()]
    start = 0
    for i in range(1, len(stats)):
        if stats[i]["time_s"] < stats[i - 1]["time_s"]:
            start = i
    kimg0 = stats[start - 1]["kimg"] if start else 0.0
    return stats[-1]["kimg"], 1000 * (stats[-1]["kimg"] - kimg0) / stats[-1]["time_s"]


def distance(run: Path, metric: str, floor: float, target: float, last: int) -> dict:
    points = curve(run, metric)
    a, b = fit_power_law(points[-last:], floor)
    kimg, img_per_s = last_leg_speed(run)
    out = {"run": str(run), "metric": metric, "floor": floor, "target": target, "points": points,
           "fit": {"a": a, "b": b, "on_last": min(last, len(points)), "formula": "value - floor = a * kimg ** b"},
           "kimg": kimg, "img_per_s": img_per_s}
    if b >= 0:
        return {**out, "target_kimg": None, "hours_left": None, "note": "the tail does not fall: no distance"}
    target_kimg = ((target - floor) / a) ** (1 / b)
    return {**out, "target_kimg": target_kimg,
            "hours_left": max(target_kimg - kimg, 0.0) * 1000 / img_per_s / 3600}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--metric", default="fid2k")
    ap.add_argument("--floor", type=float, default=9.2, help="the metric's real-against-real value")
    ap.add_argument("--target", type=float, default=9.2 + 3 * 1.8273, help="default: FID10k 4x its floor, at 2k")
    ap.add_argument("--last", type=int, default=4, help="fit the last N evaluations")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    result = distance(args.run, args.metric, args.floor, args.target, args.last)
    text = json.dumps(result, indent=1)
    if args.json is not None:
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(args.json)
    print(text)


if __name__ == "__main__":
    main()
