"""inrgan video: a continuous zoom into a point, or a pan across an extrapolated strip, as GIF or MP4."""

from __future__ import annotations

from pathlib import Path

import click

from ..runtime import set_threads
from . import threads_option
from .generate import load_generator, parse_bbox, parse_numbers


def parse_point(text: str | None) -> tuple[float, float] | None:
    return None if text is None else parse_numbers(text, 2, "--center")  # type: ignore[return-value]


@click.command()
@click.option("--checkpoint", required=True,
              help="Run directory, export, a shipped model's name (fashion-mnist-32), or an ONNX file (model.onnx).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--mode", type=click.Choice(["zoom", "pan"]), default="zoom", show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output file: .gif or .mp4.")
@click.option("--frames", type=int, default=72, show_default=True)
@click.option("--fps", type=float, default=24.0, show_default=True)
@click.option("--height", type=int, default=None, help="Frame height (default: training size).")
@click.option("--width", type=int, default=None, help="Frame width (default: the height).")
@click.option("--bbox", default=None, help="First frame's box x0,y0,x1,y1 (default: the training box).")
@click.option("--center", default=None, help="zoom: the point x,y to zoom into (default: the box centre).")
@click.option("--zoom", type=float, default=16.0, show_default=True, help="zoom: total magnification.")
@click.option("--extrapolate", type=float, default=3.0, show_default=True,
              help="pan: strip width in box widths, centred on the box.")
@click.option("--strip", type=click.Path(dir_okay=False), default=None,
              help="pan: also write the whole strip as a PNG here.")
@click.option("--trunc", "truncation_psi", type=float, default=1.0, show_default=True, help="Truncation psi.")
@click.option("--tile", type=int, default=None, help="Render in tiles of this size.")
@click.option("--device", default="cpu", show_default=True)
@threads_option
def command(checkpoint, seed, mode, out, frames, fps, height, width, bbox, center, zoom, extrapolate, strip,
            truncation_psi, tile, device, threads) -> None:
    """Render one seed along a camera path: zoom in (detail added at every scale) or pan past the edges."""
    set_threads(threads)
    import torch

    from ..models.coords import default_bbox
    from ..models.generator import seed_latents
    from ..rendering.images import save_png, to_uint8
    from ..rendering.video import pan_boxes, render_boxes, save_animation, zoom_boxes

    if Path(out).suffix.lower() not in (".gif", ".mp4"):
        raise click.BadParameter(f"{out}: use a .gif or .mp4 file name", param_hint="--out")
    if frames < 1:
        raise click.BadParameter("must be >= 1", param_hint="--frames")
    G = load_generator(checkpoint, device, onnx=True)
    height = height or width or G.resolution
    width = width or height
    box = parse_bbox(bbox) or default_bbox(G.cfg.grid)
    try:
        if mode == "zoom":
            x0, y0, x1, y1 = box
            point = parse_point(center) or ((x0 + x1) / 2, (y0 + y1) / 2)
            boxes = zoom_boxes(box, point, zoom, frames)
        else:
            boxes = pan_boxes(box, extrapolate, frames)
    except ValueError as e:
        raise click.BadParameter(str(e)) from e
    z = seed_latents([seed], G.z_dim, device)  # [1, z_dim]
    with torch.inference_mode():
        ws = G.mapping(z, truncation_psi)
        try:
            save_animation(render_boxes(G, ws, boxes, height, width, tile), out, fps)
        except RuntimeError as e:
            raise click.ClickException(str(e)) from e
        if mode == "pan" and strip is not None:
            x0, y0, x1, y1 = box
            half = (x1 - x0) * extrapolate / 2
            cx = (x0 + x1) / 2
            img = G.synthesis(ws, height=height, width=max(1, round(width * extrapolate)),
                              bbox=(cx - half, y0, cx + half, y1), tile=tile)
            save_png(to_uint8(img)[0], strip)
    click.echo(f"wrote {frames} frames of {height}x{width} ({mode}) to {out}")
