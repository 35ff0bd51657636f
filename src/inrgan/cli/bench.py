"""inrgan bench: speed, peak memory and cost of the generator or of a training step, against the matmul peak."""

from __future__ import annotations

import json

import click

from ..config import PRESETS

KEYS = ("img_per_s", "ms_per_batch", "peak_mem_mb", "gmac_per_img", "gflops", "matmul_peak_gflops",
        "fraction_of_peak", "executed_gmac_per_img", "executed_fraction_of_peak", "full_ms_per_batch",
        "compare_ms_per_batch", "speedup_vs_full")


@click.command()
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="inr-gan", show_default=True)
@click.option("--resolution", type=int, default=None, help="Model resolution (default: the preset's).")
@click.option("--render-height", type=int, default=None, help="Rendered height (default: the resolution).")
@click.option("--render-width", type=int, default=None, help="Rendered width (default: the resolution).")
@click.option("--batch", type=int, default=4, show_default=True)
@click.option("--mode", type=click.Choice(["forward", "train"]), default="forward", show_default=True,
              help="forward: G inference; train: G, D and lazy R1 steps (the training loop's iteration).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--amp", type=click.Choice(["none", "bf16", "fp16"]), default="none", show_default=True,
              help="Autocast dtype on CUDA (training: bf16 only).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the networks.")
@click.option("--reference", is_flag=True, help="The plain reference synthesis instead of the fast path.")
@click.option("--sample-parallel/--no-sample-parallel", default=True, show_default=True,
              help="Forward on the CPU: split the batch over single-threaded workers, or keep intra-op threads.")
@click.option("--native/--no-native", default=True, show_default=True,
              help="Forward on the CPU: the affine heads and modulated weights of one-thread workers through "
                   "inrgan's C kernels (compiled on first use), or through torch.")
@click.option("--repeats", type=int, default=5, show_default=True,
              help="Timed batches (forward) or rounds of r1_interval steps (train); the best is reported.")
@click.option("--warmup", type=int, default=1, show_default=True)
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
@click.option("--omp-wait-policy", type=click.Choice(["passive", "active", "inherit"]), default="passive",
              show_default=True, help="OMP_WAIT_POLICY of the measuring process (inherit: leave the environment's).")
@click.option("--profile", is_flag=True, help="With --mode train: time per phase and the top operators.")
@click.option("--compare-full", is_flag=True,
              help="With a render size: also time the training-resolution render in the same process, "
                   "alternating with this one, and report the speed-up (speedup_vs_full).")
@click.option("--g-tile", "g_tile", type=int, default=None,
              help="With --mode train: the G phase in TxT tiles recomputed in the backward pass (inrgan train --g-tile).")
@click.option("--d-checkpoint", is_flag=True,
              help="With --mode train: D's blocks recomputed in the backward pass (inrgan train --d-checkpoint).")
@click.option("--r1-batch", type=int, default=None,
              help="With --mode train: R1 in micro-batches of this many reals (inrgan train --r1-batch).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(preset: str, resolution: int | None, render_height: int | None, render_width: int | None, batch: int,
            mode: str, device: str, amp: str, compile_: bool, reference: bool, sample_parallel: bool, native: bool,
            repeats: int, warmup: int, threads: int | None, omp_wait_policy: str, profile: bool, compare_full: bool,
            g_tile: int | None, d_checkpoint: bool, r1_batch: int | None, as_json: bool) -> None:
    """Measure img/s, ms per batch, peak memory, GMAC per image and the fraction of the matmul peak.

    The measurement runs in a fresh subprocess (so peak RSS is its own) that also measures the machine's
    fp32 matmul peak on the same threads.
    """
    from ..bench import BenchSpec, run
    from ..config import ConfigError

    if profile and mode != "train":
        raise click.BadParameter("--profile goes with --mode train", param_hint="--profile")
    try:
        spec = BenchSpec(preset=preset, resolution=resolution, render_height=render_height,
                         render_width=render_width, batch=batch, mode=mode, device=device, amp=amp,
                         compile=compile_, reference=reference, sample_parallel=sample_parallel, native=native,
                         warmup=warmup, repeats=repeats, threads=threads, compare_full=compare_full, g_tile=g_tile,
                         d_checkpoint=d_checkpoint, r1_batch=r1_batch)
        result = run(spec, "profile" if profile else mode,
                     omp_wait_policy=None if omp_wait_policy == "inherit" else omp_wait_policy)
    except (ConfigError, RuntimeError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{preset} {mode} on {result['device_name']}, {result['threads']} threads, batch {batch}"
               + (f", render {result['render'][0]}x{result['render'][1]}" if "render" in result else ""))
    if profile:
        click.echo(f"  {result['img_per_s']:.1f} img/s, {result['ms_per_step']:.0f} ms per step")
        click.echo("  phase                                         ms/step")
        for name, ms in result["phases_ms_per_step"].items():
            click.echo(f"  {name:44s} {ms:8.1f}")
        click.echo("  operator                           calls/step  ms/step  share")
        for op in result["top_ops"]:
            click.echo(f"  {op['op']:34s} {op['calls_per_step']:9.1f} {op['ms_per_step']:8.1f} {op['share']:6.1%}")
        return
    for key in KEYS:
        if key in result:
            value = result[key]
            click.echo(f"  {key:26s} {value:.3f}" if isinstance(value, float) else f"  {key:26s} {value}")
