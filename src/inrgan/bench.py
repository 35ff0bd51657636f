"""Measure the generator and the training step: speed, peak memory, cost and the machine's matmul peak.

Everything a figure needs is measured in the same run: the matmul peak on the same device, dtype and
threads, just before and just after the timed loop (the best of the two is kept, so a busy machine
lowers the peak and the measurement alike). A measurement runs in a fresh subprocess by default, so its
peak RSS is that of the measured work alone (Python, torch, the model and its activations).

Cost is counted from the layer shapes by the one cost counter, :mod:`inrgan.models.cost`: per output
pixel of a level, ``c_in * c_out`` multiply-accumulates for every FMM layer and ``C * img_channels`` for
every ToRGB, times the cells of that level. The fast path computes a level's first layer on the previous
level's features at the coarse grid, so it executes fewer; both figures are reported (``gmac_per_img``
and ``executed_gmac_per_img``). The hypernetwork (mapping, affine heads, modulated weights) is per sample,
not per pixel, and is reported on its own (``hyper_gmac_per_img``).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from . import runtime

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class BenchSpec:
    """What to measure; plain data, so it crosses into the measuring subprocess as JSON."""

    preset: str = "inr-gan"
    resolution: int | None = None  # the model's training resolution (default: the preset's)
    render_height: int | None = None  # rendered size (default: the training resolution)
    render_width: int | None = None
    batch: int = 4
    mode: str = "forward"  # "forward" (inference of G) or "train" (G, D and lazy R1)
    device: str = "cpu"
    amp: str = "none"  # autocast dtype on CUDA: "bf16" or "fp16" ("bf16" only for training)
    compile: bool = False  # torch.compile the networks
    reference: bool = False  # the plain reference path instead of the fast one
    sample_parallel: bool = True  # forward on the CPU: the batch split over single-threaded workers
    native: bool = True  # forward on the CPU: one-thread workers run inrgan's C kernels (models/native.py)
    warmup: int = 1
    repeats: int = 5  # timed batches (forward) or rounds of r1_interval training steps (train)
    threads: int | None = None  # torch intra-op threads (default: torch's, the physical cores)
    seed: int = 0
    compare_full: bool = False  # forward: also time the training-resolution render, alternating with this one
    g_tile: int | None = None  # train: the G phase in tiles recomputed in the backward pass (inrgan train --g-tile)
    d_checkpoint: bool = False  # train: D's blocks recomputed in the backward pass (inrgan train --d-checkpoint)
    r1_batch: int | None = None  # train: R1 in micro-batches of this many reals (inrgan train --r1-batch)

    def __post_init__(self) -> None:
        from .config import get_preset

        for name in ("batch", "repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be 0 or more, got {self.warmup}")
        for name in ("render_height", "render_width", "threads", "g_tile", "r1_batch"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1, got {value}")
        if self.mode not in ("forward", "train"):
            raise ValueError(f"mode must be forward or train, got {self.mode!r}")
        if self.amp not in AMP_DTYPES:
            raise ValueError(f"amp must be one of {sorted(AMP_DTYPES)}, got {self.amp!r}")
        get_preset(self.preset, self.resolution)  # a ConfigError names an unknown preset or resolution
        try:
            device = torch.device(self.device)
        except RuntimeError as e:
            raise ValueError(f"unknown device {self.device!r}: {e}") from None
        if self.compare_full and self.mode != "forward":
            raise ValueError("--compare-full goes with --mode forward")
        if not self.sample_parallel and self.mode != "forward":
            raise ValueError("--no-sample-parallel goes with --mode forward")
        if not self.native and self.mode != "forward":
            raise ValueError("--no-native goes with --mode forward")
        if (self.g_tile is not None or self.d_checkpoint or self.r1_batch is not None) and self.mode != "train":
            raise ValueError("--g-tile, --d-checkpoint and --r1-batch go with --mode train")
        if self.compare_full and self.render_height is None and self.render_width is None:
            raise ValueError("--compare-full compares a render size with the training resolution: "
                             "give --render-height or --render-width")
        if self.amp != "none" and device.type != "cuda":
            raise ValueError("--amp is for CUDA; the CPU figures are fp32")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {self.device} was asked for, but CUDA is not available on this machine")


# ----------------------------------------------------------------------------------------------
# Timing helpers.


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Seconds per call of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype = torch.float32, n: int | None = None,
                       repeats: int = 5) -> float:
    """Best GFLOP/s of an n x n x n matrix product (n = 2048 on the CPU, 8192 on a GPU)."""
    n = n or (2048 if device.type == "cpu" else 8192)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    c = torch.empty(n, n, device=device, dtype=dtype)
    times = time_calls(lambda: torch.mm(a, b, out=c), device, warmup=1, repeats=repeats)
    return 2 * n**3 / min(times) / 1e9


def peak_memory_mb(device: torch.device) -> float:
    """Peak RSS of this process (CPU) or peak allocated device memory (CUDA), in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource  # POSIX only

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


# ----------------------------------------------------------------------------------------------
# The measurements.


def _setup(spec: BenchSpec, any_family: bool = False):
    """Threads, device, autocast dtype and the preset; the forward bench takes the inr-gan family only (its
    fast paths and cost model), the training step (``any_family``) every family ``inrgan train`` trains."""
    from .config import ConfigError, get_preset

    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    device = torch.device(spec.device)  # checked by BenchSpec
    amp = AMP_DTYPES[spec.amp]
    torch.manual_seed(spec.seed)
    preset = get_preset(spec.preset, spec.resolution)
    if preset.G.family != "inr-gan" and not any_family:
        raise ConfigError(f"inrgan bench's forward mode measures the inr-gan family (its fast paths and layers); "
                          f"{spec.preset} is {preset.G.family}'s: `--mode train` times its training step, and "
                          "`python benchmarks/ladder.py speed` every family's forward pass side by side")
    return device, amp, preset


def _autocast(device: torch.device, amp: torch.dtype | None):
    return torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext()


def _generator(spec: BenchSpec, cfg):
    """The model to measure: ``inrgan.Generator`` (the fast paths), or the paper's plain model (--reference);
    another family's config builds that family's generator."""
    from .accel import Generator
    from .models import Generator as ReferenceGenerator

    return (ReferenceGenerator if spec.reference else Generator).build(cfg)


def bench_forward(spec: BenchSpec) -> dict[str, Any]:
    """Inference of G (mapping + synthesis) on ``batch`` fresh latents per call."""
    from .accel import RenderOptions, native
    from .accel.render import sample_parallel_threads
    from .models.cost import hyper_macs, inr_costs, mapping_macs

    device, amp, preset = _setup(spec)
    G = _generator(spec, preset.G).eval().requires_grad_(False).to(device)
    options = RenderOptions(sample_parallel=spec.sample_parallel, native=spec.native)
    render = {} if spec.reference else {"options": options}
    h = spec.render_height or preset.G.resolution
    w = spec.render_width or preset.G.resolution
    costs = inr_costs(G.synthesis, G.synthesis.make_grid(h, w))
    model = torch.compile(G) if spec.compile else G
    gen = torch.Generator(device=device).manual_seed(spec.seed)

    def step(height: int = h, width: int = w) -> None:
        z = torch.randn(spec.batch, G.z_dim, device=device, generator=gen)
        with torch.inference_mode(), _autocast(device, amp):
            model(z, height=height, width=width, **render)

    peak_dtype = amp or torch.float32
    peak_before = matmul_peak_gflops(device, peak_dtype)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = time_calls(step, device, spec.warmup, spec.repeats)
    mem = peak_memory_mb(device)  # before any full-resolution render of the comparison
    compared = _compare_full(spec, step, device, (h, w), preset.G.resolution) if spec.compare_full else {}
    peak = max(peak_before, matmul_peak_gflops(device, peak_dtype))
    best = min(times)
    gmac = sum(c.macs for c in costs) / 1e9
    executed = sum(c.executed_macs for c in costs) / 1e9
    hyper = (hyper_macs(G.synthesis) + mapping_macs(G.mapping)) / 1e9
    img_per_s = spec.batch / best
    split = bool(not spec.reference and not spec.compile and sample_parallel_threads(
        G.synthesis, spec.batch, device, G.synthesis.make_grid(h, w), options))
    one_thread = torch.get_num_threads() == 1
    return {
        "img_per_s": img_per_s,
        "ms_per_batch": best * 1000,
        "ms_per_batch_median": statistics.median(times) * 1000,
        "peak_mem_mb": mem,
        "gmac_per_img": gmac,
        "gflops": 2 * gmac * img_per_s,
        "matmul_peak_gflops": peak,
        "fraction_of_peak": 2 * gmac * img_per_s / peak,
        "executed_gmac_per_img": executed + hyper,
        "executed_gflops": 2 * (executed + hyper) * img_per_s,
        "executed_fraction_of_peak": 2 * (executed + hyper) * img_per_s / peak,
        "hyper_gmac_per_img": hyper,
        "render": [h, w],
        "sample_parallel": split,
        "native_kernels": bool(not spec.reference and not spec.compile and spec.native and (split or one_thread)
                               and device.type == "cpu" and native.library() is not None),
        **compared,
        **_context(spec, device),
    }


def _compare_full(spec: BenchSpec, step: Callable[..., None], device: torch.device, render: tuple[int, int],
                  resolution: int) -> dict[str, Any]:
    """The requested render and the training-resolution one, timed side by side: ``repeats`` rounds of one
    call of each, alternating, so that both see the same machine; the best of each gives the speed-up.

    Each timed call follows an untimed one of the same size: the coordinate features kept between calls
    (one set of cells per level) are then those of its own grid, as in a run of one size.
    """
    full = (resolution, resolution)
    this, other = [], []
    for _ in range(spec.repeats):
        this += time_calls(lambda: step(*render), device, 1, 1)
        other += time_calls(lambda: step(*full), device, 1, 1)
    return {"full_render": list(full), "full_ms_per_batch": min(other) * 1000,
            "compare_ms_per_batch": min(this) * 1000, "speedup_vs_full": min(other) / min(this)}


def _training_config(spec: BenchSpec, preset):
    """The preset's training recipe with the bench's memory options, checked against the generator."""
    from .training.loop import fitted

    return fitted(preset.G, replace(preset.training, g_tile=spec.g_tile, d_checkpoint=spec.d_checkpoint,
                                    r1_batch=spec.r1_batch))


def _training_nets(spec: BenchSpec, preset, device: torch.device):
    """G, D, G_ema and both optimizers as the training loop makes them, for the preset."""
    import copy

    from .models import build_discriminator
    from .training.loop import make_optimizers

    G = _generator(spec, preset.G).to(device).train()
    D = build_discriminator(preset.D).to(device).train()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    G_opt, D_opt = make_optimizers(G, D, preset.training)
    return G, D, G_ema, G_opt, D_opt


def bench_train(spec: BenchSpec) -> dict[str, Any]:
    """The training loop's iteration (Gmain, Dmain, lazy Dreg, G_ema update) on synthetic reals.

    ``repeats`` rounds of ``r1_interval`` steps each, so every round holds exactly one R1 step; the
    data pipeline is not measured.
    """
    from .training.ema import update_ema
    from .training.loop import training_step

    device, amp, preset = _setup(spec, any_family=True)
    if amp is torch.float16:
        raise ValueError("training under fp16 autocast needs a loss scaler; use --amp bf16")
    t = _training_config(spec, preset)
    G, D, G_ema, G_opt, D_opt = _training_nets(spec, preset, device)
    Gc, Dc = (torch.compile(G), torch.compile(D)) if spec.compile else (G, D)
    gen = torch.Generator(device=device).manual_seed(spec.seed)
    res, ch = preset.G.resolution, preset.G.img_channels
    state = {"i": 0}

    def step() -> None:
        real = torch.rand(spec.batch, ch, res, res, device=device, generator=gen) * 2 - 1
        gen_z = torch.randn(2, spec.batch, G.z_dim, device=device, generator=gen)
        with _autocast(device, amp):
            training_step(Gc, Dc, G_opt, D_opt, real, (gen_z[0], gen_z[1]), state["i"] % t.r1_interval == 0, t,
                          mixed_precision=t.mixed_precision and device.type == "cuda", D_reg=D)
        update_ema(G_ema, G, 0.999)
        state["i"] += 1

    def round_() -> None:
        for _ in range(t.r1_interval):
            step()

    peak_before = matmul_peak_gflops(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = time_calls(round_, device, spec.warmup, spec.repeats)
    mem = peak_memory_mb(device)
    peak = max(peak_before, matmul_peak_gflops(device))
    best = min(times)
    n = spec.batch * t.r1_interval
    return {
        "img_per_s": n / best,
        "ms_per_batch": best * 1000 / t.r1_interval,
        "ms_per_batch_median": statistics.median(times) * 1000 / t.r1_interval,
        "peak_mem_mb": mem,
        "matmul_peak_gflops": peak,
        "r1_interval": t.r1_interval,
        **_context(spec, device),
    }


def profile_train(spec: BenchSpec, steps: int | None = None, row_limit: int = 15) -> dict[str, Any]:
    """Where the training step's time goes: wall time per phase and the top operators (torch.profiler).

    The phases are the parts of the loop's own ``training_step``, timed through its ``phase`` hook.
    """
    from .training.ema import update_ema
    from .training.loop import training_step

    device, _, preset = _setup(spec, any_family=True)
    t = _training_config(spec, preset)
    G, D, G_ema, G_opt, D_opt = _training_nets(spec, preset, device)
    res, ch = preset.G.resolution, preset.G.img_channels
    gen = torch.Generator(device=device).manual_seed(spec.seed)
    steps = steps or t.r1_interval
    phases: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(name: str):
        _sync(device)
        t0 = time.perf_counter()
        yield
        _sync(device)
        phases[name] = phases.get(name, 0.0) + time.perf_counter() - t0

    def one_step(i: int, timed: bool) -> None:
        real = torch.rand(spec.batch, ch, res, res, device=device, generator=gen) * 2 - 1
        z = torch.randn(2, spec.batch, G.z_dim, device=device, generator=gen)
        hook = {"phase": phase} if timed else {}
        training_step(G, D, G_opt, D_opt, real, (z[0], z[1]), i % t.r1_interval == 0, t, **hook)
        with phase("G_ema update") if timed else contextlib.nullcontext():
            update_ema(G_ema, G, 0.999)

    for i in range(max(spec.warmup, 1)):
        one_step(i, timed=False)
    t0 = time.perf_counter()
    for i in range(steps):
        one_step(i, timed=True)
    total = time.perf_counter() - t0
    with torch.profiler.profile() as prof:
        for i in range(steps):
            one_step(i, timed=False)
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    op_total = sum(e.self_cpu_time_total for e in ops)
    return {
        "img_per_s": spec.batch * steps / total,
        "ms_per_step": total * 1000 / steps,
        "phases_ms_per_step": {k: v * 1000 / steps for k, v in phases.items()},
        "top_ops": [
            {"op": e.key, "calls_per_step": e.count / steps, "ms_per_step": e.self_cpu_time_total / 1000 / steps,
             "share": e.self_cpu_time_total / op_total}
            for e in ops[:row_limit]
        ],
        **_context(spec, device),
    }


def _context(spec: BenchSpec, device: torch.device) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return {"spec": asdict(spec), "device_name": name, "threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"), "torch": torch.__version__}


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} CPUs)"
    return f"cpu ({os.cpu_count()} CPUs)"


MEASUREMENTS = {"forward": bench_forward, "train": bench_train, "profile": profile_train}


def run(spec: BenchSpec, what: str | None = None, isolate: bool = True,
        omp_wait_policy: str | None = "passive", timeout: float | None = None) -> dict[str, Any]:
    """Run one measurement (``what``: forward, train or profile; default ``spec.mode``).

    By default it runs in a fresh subprocess, so that its peak memory is its own, with OpenMP's idle
    threads sleeping (``OMP_WAIT_POLICY=passive``) unless the environment already sets the policy: on a
    machine shared with other work, spinning threads stall every parallel region (a 2x-5x slowdown
    measured on a busy 2-core machine). None leaves the environment as it is. ``timeout`` (seconds) stops
    the subprocess with a RuntimeError.
    """
    what = what or spec.mode
    if what not in MEASUREMENTS:
        raise ValueError(f"unknown measurement {what!r}; choose one of {sorted(MEASUREMENTS)}")
    if not isolate:
        return MEASUREMENTS[what](spec)
    env = dict(os.environ)
    if omp_wait_policy is not None and "OMP_WAIT_POLICY" not in env:
        env["OMP_WAIT_POLICY"] = omp_wait_policy.upper()
        if env.get("GOMP_SPINCOUNT") == runtime.SPIN_COUNT:  # the inrgan command's own default, not the user's
            del env["GOMP_SPINCOUNT"]
    cmd = [sys.executable, "-m", "inrgan.bench", what, json.dumps(asdict(spec))]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the measurement did not finish in {timeout:g} s") from None
    if proc.returncode == USAGE_ERROR:  # a clear message from the measurement itself
        raise ValueError(proc.stderr.strip().splitlines()[-1])
    if proc.returncode != 0:
        raise RuntimeError(f"the measuring subprocess failed:\n{proc.stderr.strip()[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


USAGE_ERROR = 3  # exit status of the measuring subprocess for a bad spec (its message is the last line)


def _subprocess_main(argv: list[str]) -> int:
    from .config import ConfigError

    try:
        what, spec = argv[0], BenchSpec(**json.loads(argv[1]))
        result = MEASUREMENTS[what](spec)
    except (ConfigError, ValueError) as e:
        print(e, file=sys.stderr)
        return USAGE_ERROR
    print(json.dumps(result))
    return 0


if __name__ == "__main__":  # the measuring subprocess: python -m inrgan.bench WHAT SPEC_JSON
    sys.exit(_subprocess_main(sys.argv[1:]))
