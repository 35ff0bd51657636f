"""Issue 27's measurements: the ablation ladder and INR-GAN against StyleGAN2 and CIPS, at one budget.

    python benchmarks/ladder.py speed  [--out docs/results/ladder/speed.json]  # sizes, MACs, G forward img/s
    python benchmarks/ladder.py run    [--presets P,...] [--seeds 0,1]          # the queue of equal-budget runs
    python benchmarks/ladder.py report [--write docs/fidelity.md]              # the tables, from the results

**speed** builds every preset (1 channel, 32^2) and times G's forward pass (``inrgan.Generator``: the fast
path for the INR-GAN family, the reference render for the others) at the training grid and at 4x the
density (128^2; StyleGAN2 renders its training grid only), batch 16, one thread, in interleaved rounds so
that every preset meets the same background load; the median round is kept.

**run** is a queue of runs that each finish: per preset and seed, one training of BUDGET_KIMG on one thread
(sized so that the slowest preset takes at most about an hour), then its evaluation, then (cpu-32 and
stylegan2) the geometric probe. The plain commands are printed and kept in RESULTS/commands.txt::

    OMP_NUM_THREADS=1 inrgan train --preset P --data fashion-mnist --out RUNS/P-seedS --seed S \
        --kimg K --minutes 75 --device cpu --threads 1 --no-progress
    OMP_NUM_THREADS=1 inrgan metrics --checkpoint RUNS/P-seedS --data fashion-mnist \
        --metrics fid5k,kid5k,pr5k --threads 1 --json
    OMP_NUM_THREADS=1 inrgan probe --checkpoint RUNS/P-seedS --num 2000 --paths 200 --threads 1 --json

A finished run commits its results, never its training state: RESULTS/P-seedS/result.json (the commands, the
preset's configs, the kimg reached, the wall clock, img/s, the training process's peak RSS, the metric
records with their protocol, the probe) and grid.png (the 16 fixed seeds' samples of the last tick).
result.json is written last, atomically: it is what marks a run done. The queue skips the runs whose result
exists and claims the next one (RUNS/P-seedS.claim, created exclusively), so two queues started side by
side, one a core, share the work; a stopped queue loses at most the run in flight (its state in RUNS
continues it by ``--resume`` when the same machine takes it up again). The order fills the tables breadth
first: every preset's seed 0, then every seed 1.

**report** reads RESULTS only, and writes the tables of docs/fidelity.md between its
``<!-- ladder:NAME -->`` markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from own_data import _done_kimg  # the run bookkeeping of issue 18's queue

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results" / "ladder"
RUNS = REPO / "runs" / "ladder"
PRESETS = ("ladder-1-latent-mlp", "ladder-2-hypernet", "ladder-3-fourier", "ladder-4-fmm", "cpu-32", "cips",
           "stylegan2")
RUNGS = PRESETS[:5]
SEEDS = (0, 1)
BUDGET_KIMG = 24.0  # every preset's kimg: stylegan2, the slowest (16.7 img/s), trains it in ~25 min of one core
MINUTES_CAP = 75  # a run that overruns stops here and is reported short of the budget
METRICS = "fid5k,kid5k,pr5k"
PROBED = ("cpu-32", "stylegan2")
PAPER_LADDER = {"ladder-1-latent-mlp": 1.0, "ladder-2-hypernet": 0.125, "ladder-3-fourier": 0.100,
                "ladder-4-fmm": 0.050, "cpu-32": 0.025}  # the paper's FID ratio to rung 1 (its Table 1)


def _inrgan() -> list[str]:
    return [sys.executable, "-m", "inrgan"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _log(results: Path, cmd: list[str]) -> str:
    line = "OMP_NUM_THREADS=1 inrgan " + shlex.join(cmd[3:]).replace(f"{REPO}/", "")  # paths from the repo root
    print(line, flush=True)
    with open(results / "commands.txt", "a") as f:
        f.write(line + "\n")
    return line


def _train(results: Path, cmd: list[str]) -> dict:
    """Run a training command on one thread: its wall clock and its own peak RSS (MiB, from wait4)."""
    line, start = _log(results, cmd), time.monotonic()
    child = subprocess.Popen(cmd, env=_env())
    _, status, usage = os.wait4(child.pid, 0)
    if status:
        raise SystemExit(f"failed ({status}): {line}")
    return {"command": line, "wall_s": round(time.monotonic() - start, 1), "peak_rss_mib": usage.ru_maxrss / 1024}


def _json_out(results: Path, cmd: list[str]) -> tuple[str, object]:
    """Run a command on one thread and parse the JSON it prints."""
    line = _log(results, cmd)
    text = subprocess.run(cmd, env=_env(), check=True, capture_output=True, text=True).stdout
    return line, json.loads(text[min(i for i in (text.find("["), text.find("{")) if i >= 0):])


def _claim(runs: Path, name: str) -> Path | None:
    """Claim a run for this queue (an exclusive file with our pid); None if a live queue holds it."""
    claim = runs / f"{name}.claim"
    for _ in range(2):
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                os.kill(int(claim.read_text() or "0"), 0)
                return None  # held by a live queue
            except (ProcessLookupError, ValueError):
                claim.unlink(missing_ok=True)  # a stopped queue's: take it over
                continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return claim
    return None


def queue(results: Path, runs: Path, presets: list[str], seeds: list[int], kimg: float = BUDGET_KIMG) -> None:
    """Every missing run, breadth first over the seeds; those another queue holds are left to it."""
    results.mkdir(parents=True, exist_ok=True)
    runs.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        for preset in presets:
            name = f"{preset}-seed{seed}"
            if (results / name / "result.json").is_file():
                continue
            claim = _claim(runs, name)
            if claim is None:
                continue
            try:
                _run(results, runs / name, preset, seed, kimg)
            finally:
                claim.unlink(missing_ok=True)


def _run(results: Path, run: Path, preset: str, seed: int, kimg: float) -> None:
    """Train one run to ``kimg`` (or continue its state), evaluate and probe it, and commit its results."""
    done = _done_kimg(run)
    start = ["--preset", preset, "--data", "fashion-mnist", "--out", str(run), "--seed", str(seed)]
    cmd = [*_inrgan(), "train", *(["--resume", str(run)] if done >= 0 else start), "--kimg", f"{kimg:g}",
           "--minutes", f"{MINUTES_CAP:g}", "--device", "cpu", "--threads", "1", "--no-progress"]
    training = _train(results, cmd) if done < kimg - 1e-6 else {"command": None}
    stats = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    metrics_cmd, records = _json_out(results, [*_inrgan(), "metrics", "--checkpoint", str(run), "--data",
                                               "fashion-mnist", "--metrics", METRICS, "--threads", "1", "--json"])
    probe = None
    if preset in PROBED:
        probe_cmd, probe = _json_out(results, [*_inrgan(), "probe", "--checkpoint", str(run), "--num", "2000",
                                               "--paths", "200", "--threads", "1", "--json"])
        probe = {"command": probe_cmd, **probe}
    out = results / run.name
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(sorted((run / "samples").glob("fakes*.png"))[-1], out / "grid.png")
    info = json.loads((run / "run.json").read_text())
    _write(out / "result.json", json.dumps({
        "preset": preset, "seed": seed, "budget_kimg": kimg, "kimg": stats[-1]["kimg"],
        "train_time_s": stats[-1]["time_s"], "img_per_s": 1000 * stats[-1]["kimg"] / stats[-1]["time_s"],
        "machine": _cpu_name(), "python": platform.python_version(), "training": training,
        "metrics_command": metrics_cmd, "metrics": records, "probe": probe,
        "config": {k: info[k] for k in ("G", "D", "training") if k in info},
    }, indent=1))


def _cpu_name() -> str:
    from inrgan.bench import _cpu_name

    return _cpu_name()


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


def _results(results: Path) -> dict[str, list[dict]]:
    """The committed results, by preset (every seed that has one)."""
    by_preset: dict[str, list[dict]] = {}
    for path in sorted(results.glob("*-seed*/result.json")):
        record = json.loads(path.read_text())
        by_preset.setdefault(record["preset"], []).append(record)
    return by_preset


def _value(record: dict, suffix: str) -> float | None:
    """A result of the run's metrics: ``fid``, ``kid``, ``precision`` or ``recall``, whatever the sample size."""
    for m in record["metrics"]:
        for key, value in m["results"].items():
            if re.fullmatch(rf"{suffix}\d+k|pr\d+k_{suffix}", key):
                return value
    return None


def _mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def _spread(values: list[float | None], digits: int = 4) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    mean = statistics.mean(values)
    return f"{mean:.{digits}g}" if len(values) == 1 else f"{mean:.{digits}g} ± {statistics.stdev(values):.2g}"


def table(by_preset: dict[str, list[dict]]) -> str:
    """Every preset: the mean and the spread over its seeds."""
    metric = next((m["metric"] for rs in by_preset.values() for m in rs[0]["metrics"] if m["metric"].startswith("fid")),
                  "fid5k")
    n = metric[3:]
    lines = [f"| preset | seeds | kimg | FID{n} | KID{n} | precision | recall | train img/s | peak RSS MiB "
             "| train minutes |", "|---" * 10 + "|"]
    for preset in PRESETS:
        rs = by_preset.get(preset, [])
        if not rs:
            lines.append(f"| `{preset}` | - | not yet run | | | | | | | |")
            continue
        seeds = ",".join(str(r["seed"]) for r in rs)
        kimgs = sorted({round(r["kimg"], 2) for r in rs})
        kimg = f"{kimgs[0]:g}" if len(kimgs) == 1 else f"{kimgs[0]:g} to {kimgs[-1]:g}"
        cells = [_spread([_value(r, k) for r in rs], d) for k, d in (("fid", 4), ("kid", 3), ("precision", 3),
                                                                        ("recall", 3))]
        rss = _spread([r["training"].get("peak_rss_mib") for r in rs], 4)
        lines.append(f"| `{preset}` | {seeds} | {kimg} | " + " | ".join(cells) + f" | {_spread([r['img_per_s'] for r in rs], 3)}"
                     f" | {rss} | {_spread([r['train_time_s'] / 60 for r in rs], 3)} |")
    return "\n".join(lines)


def verdicts(by_preset: dict[str, list[dict]]) -> str:
    """The paper's claims against the measured FIDs: the ladder's order and ratios, INR-GAN against StyleGAN2."""
    fid = {p: _mean([_value(r, "fid") for r in rs]) for p, rs in by_preset.items()}
    lines = ["| claim | paper | measured | verdict |", "|---|---|---|---|"]
    rungs = [p for p in RUNGS if fid.get(p) is not None]
    if len(rungs) == len(RUNGS):
        order = all(fid[a] > fid[b] for a, b in zip(RUNGS, RUNGS[1:], strict=False))
        measured = " > ".join(f"{fid[p]:.4g}" for p in RUNGS)
        lines.append(f"| each rung lowers FID (rung 1 to 5) | strictly decreasing | {measured} | "
                     f"{'holds' if order else 'does not hold'} |")
    base = fid.get(RUNGS[0])
    for p in rungs[1:] if base is not None else []:
        ratio = fid[p] / base
        lines.append(f"| `{p}`: FID ratio to rung 1 | {PAPER_LADDER[p]:.3f} | {ratio:.3f} | "
                     f"{ratio / PAPER_LADDER[p]:.2g}x the paper's ratio |")
    if fid.get("cpu-32") is not None and fid.get("stylegan2") is not None:
        ratio = fid["cpu-32"] / fid["stylegan2"]
        verdict = "within" if 1.15 <= ratio <= 2.5 else ("better than" if ratio < 1.15 else "worse than")
        lines.append(f"| INR-GAN (`cpu-32`) FID / StyleGAN2's | 1.15 to 2.5 | {ratio:.3f} | {verdict} the paper's "
                     "range |")
    if fid.get("cips") is not None and fid.get("stylegan2") is not None:
        lines.append(f"| CIPS FID / StyleGAN2's | 0.76 (Churches) to 1.14 (FFHQ) | {fid['cips'] / fid['stylegan2']:.3f} | "
                     "- |")
    lines += _prior_verdicts(by_preset)
    if len(lines) == 2:
        lines.append("| - | - | not yet run | - |")
    return "\n".join(lines)


def _mean_r2(by_preset: dict[str, list[dict]], preset: str, space: str) -> dict[str, float] | None:
    """The probe's held-out R^2 per attribute from ``space``, the mean over the preset's probed seeds."""
    probes = [r["probe"]["geometric_prior_r2"][space] for r in by_preset.get(preset, []) if r.get("probe")]
    return {a: statistics.mean(p[a] for p in probes) for a in probes[0]} if probes else None


def _prior_verdicts(by_preset: dict[str, list[dict]]) -> list[str]:
    """The geometric prior (the paper: a linear model reads keypoints from INR-GAN's latents better than from
    StyleGAN2's; it gives no number): the silhouette's R^2, attribute by attribute, from z and from w."""
    lines = []
    for space in ("z", "w"):
        inr, sg2 = _mean_r2(by_preset, "cpu-32", space), _mean_r2(by_preset, "stylegan2", space)
        if inr is None or sg2 is None:
            continue
        wins = sum(inr[a] > sg2[a] for a in inr)
        m_inr, m_sg2 = statistics.mean(inr.values()), statistics.mean(sg2.values())
        verdict = "holds" if m_inr > m_sg2 and wins > len(inr) / 2 else "does not hold"
        lines.append(f"| geometric prior: silhouette R² from {space}, INR-GAN against StyleGAN2 | INR-GAN higher "
                     f"(no number) | mean {m_inr:.3f} against {m_sg2:.3f}; higher on {wins} of {len(inr)} "
                     f"attributes | {verdict} |")
    return lines


def probe_table(by_preset: dict[str, list[dict]]) -> str:
    """The probe per family (the mean over its probed seeds): the held-out R^2 of each silhouette attribute from
    z and from w, then the perceptual path lengths in z, w and the INR's parameters."""
    probes = {p: [r["probe"] for r in by_preset.get(p, []) if r.get("probe")] for p in PROBED}
    cols = [(p, space) for p in PROBED for space in ("z", "w")]
    lines = ["| attribute | " + " | ".join(f"`{p}` R² from {space}" for p, space in cols) + " |",
             "|---" * (len(cols) + 1) + "|"]
    attrs = next((ps[0]["geometric_prior_r2"]["z"] for ps in probes.values() if ps), None)
    if attrs is None:
        return "\n".join([*lines, "| not yet run |" + " |" * len(cols)])
    for attr in attrs:
        cells = [_spread([x["geometric_prior_r2"][space][attr] for x in probes[p]], 3) for p, space in cols]
        lines.append(f"| {attr} | " + " | ".join(cells) + " |")
    lines += ["", "| preset | path length in z | in w | in the INR's parameters |", "|---|---|---|---|"]
    for p, ps in probes.items():
        cells = [_spread([x["path_length"].get(space) for x in ps], 4) for space in ("z", "w", "inr")]
        lines.append(f"| `{p}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(results: Path, write: Path | None = None) -> str:
    by_preset = _results(results)
    parts = {"table": table(by_preset), "verdicts": verdicts(by_preset), "probe": probe_table(by_preset)}
    if write is not None:
        text = write.read_text()
        for name, body in parts.items():
            pattern = re.compile(rf"(<!-- ladder:{name} -->\n)(?:.*?\n)?(<!-- /ladder:{name} -->)", re.S)
            if not pattern.search(text):
                raise SystemExit(f"{write} has no <!-- ladder:{name} --> ... <!-- /ladder:{name} --> markers")
            text = pattern.sub(lambda m, b=body: m.group(1) + b + "\n" + m.group(2), text)
        _write(write, text)
    return "\n\n".join(parts.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("speed", "run", "report"))
    ap.add_argument("--results", type=Path, default=RESULTS, help="the committed results (one folder a run)")
    ap.add_argument("--runs", type=Path, default=RUNS, help="the training states (not committed)")
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    ap.add_argument("--kimg", type=float, default=BUDGET_KIMG)
    ap.add_argument("--out", type=Path, default=None, help="speed: the JSON to write")
    ap.add_argument("--write", type=Path, default=None, help="report: the markdown whose tables to replace")
    args = ap.parse_args()
    if args.step == "speed":
        print(json.dumps(speed(args.out), indent=1))
    elif args.step == "run":
        queue(args.results, args.runs, args.presets.split(","), [int(s) for s in args.seeds.split(",")], args.kimg)
    else:
        print(report(args.results, args.write))


if __name__ == "__main__":
    main()
