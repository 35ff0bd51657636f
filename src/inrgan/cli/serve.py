"""inrgan serve: the deep-zoom viewer of a model in the browser, on a local web server."""

from __future__ import annotations

import click

from ..runtime import set_threads
from . import threads_option
from .generate import load_generator


@click.command()
@click.option("--checkpoint", required=True, help="Run directory, export, or a shipped model's name (fashion-mnist-32).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (the default: this machine only).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@threads_option
def command(checkpoint: str, host: str, port: int, device: str, threads: int | None) -> None:
    """Serve a zoom-and-pan viewer of CHECKPOINT: tiles rendered on demand at the view's density."""
    from ..serve.app import create_app

    set_threads(threads)
    G = load_generator(checkpoint, device)
    if not G.renders_any_grid:
        raise click.ClickException(f"the viewer zooms and pans: the {G.cfg.family} generator renders its training "
                                   f"grid only")
    app = create_app(G)
    click.echo(f"inrgan viewer of {checkpoint}: http://{host}:{port}/  (Ctrl-C stops it)")
    app.run(host=host, port=port, threaded=True, debug=False, use_reloader=False)
