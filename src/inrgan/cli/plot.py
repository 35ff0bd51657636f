"""inrgan plot: a run's training curves (losses, D's outputs, speed, metrics) as one PNG."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG to write (default RUN_DIR/plots/training.png).")
def command(run_dir: Path, out: Path | None) -> None:
    """Draw RUN_DIR's stats.jsonl and metrics.jsonl against kimg (needs matplotlib: pip install inrgan[plot])."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise click.ClickException("inrgan plot needs matplotlib: pip install 'inrgan[plot]'") from None
    from ..training.plots import PlotError, plot_run

    try:
        path = plot_run(run_dir, out)
    except PlotError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"wrote {path}")
