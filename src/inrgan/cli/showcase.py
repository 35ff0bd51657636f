"""inrgan showcase: render what a continuous generator does into a folder with an index.html."""

from __future__ import annotations

from pathlib import Path

import click

from ..runtime import set_threads
from . import threads_option
from .generate import load_generator, parse_seeds


@click.command()
@click.option("--checkpoint", required=True, help="Run directory or export.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--seeds", default="0-15", show_default=True, help="Seeds of the sample grids (the first two: paths).")
@click.option("--zoom", type=float, default=16.0, show_default=True, help="Magnification of the zoom GIF.")
@click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A training run whose reals and latest samples open the page.")
@threads_option
def command(checkpoint: str, out: Path, seeds: str, zoom: float, run_dir: Path | None, threads: int | None) -> None:
    """Samples at x1, x4 and x16, a non-square render, 2x extrapolation, interpolations in z, w and INR
    space, a zoom, and the low-resolution speed-up, shown by OUT/index.html."""
    from ..rendering.showcase import make_showcase

    set_threads(threads)
    seed_list = parse_seeds(seeds)
    if len(seed_list) < 2:
        raise click.BadParameter("give at least two seeds (the interpolations go from the first to the second)",
                                 param_hint="--seeds")
    G = load_generator(checkpoint)
    click.echo(f"showcase of {checkpoint} into {out}:")
    try:
        make_showcase(G, out, seed_list, zoom=zoom, log=click.echo, run_dir=run_dir)
    except FileNotFoundError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"open {out / 'index.html'}")
