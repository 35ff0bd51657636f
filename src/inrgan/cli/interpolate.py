"""inrgan interpolate: strips and animations between seeds, in z, in w, or in the generated INR parameters."""

from __future__ import annotations

from pathlib import Path

import click

from ..runtime import set_threads
from . import threads_option
from .generate import load_generator, parse_bbox, parse_seeds

SPACE_CHOICES = ("z", "w", "inr")


def parse_spaces(text: str) -> list[str]:
    spaces = ["z", "w", "inr"] if text.strip() == "all" else [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in spaces if s not in SPACE_CHOICES]
    if bad or not spaces:
        raise click.BadParameter(f"{text!r}: choose from z, w, inr (comma-separated) or all", param_hint="--space")
    return spaces


@click.command()
@click.option("--checkpoint", required=True,
              help="Run directory, export, a shipped model's name (fashion-mnist-32), or an ONNX file (model.onnx, "
                   "--space z only).")
@click.option("--seeds", default="0,1", show_default=True, help="Keyframe seeds, visited in order, e.g. 0,5,9.")
@click.option("--space", default="w", show_default=True,
              help="z (spherical), w (linear), inr (linear in the generated INR weights), a list, or all.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--steps", type=int, default=8, show_default=True, help="Images per strip row, endpoints included.")
@click.option("--frames", type=int, default=24, show_default=True, help="Animation frames per pair of seeds.")
@click.option("--gif", is_flag=True, help="Also write an animated GIF per space.")
@click.option("--mp4", is_flag=True, help="Also write an MP4 per space (needs the video extra).")
@click.option("--fps", type=float, default=24.0, show_default=True)
@click.option("--loop/--no-loop", default=True, show_default=True, help="Animations return to the first seed.")
@click.option("--trunc", "truncation_psi", type=float, default=1.0, show_default=True, help="Truncation psi.")
@click.option("--height", type=int, default=None, help="Output height (default: training size).")
@click.option("--width", type=int, default=None, help="Output width (default: the height).")
@click.option("--bbox", default=None, help="Box x0,y0,x1,y1 in the training frame.")
@click.option("--tile", type=int, default=None, help="Render in tiles of this size.")
@click.option("--device", default="cpu", show_default=True)
@threads_option
def command(checkpoint, seeds, space, out, steps, frames, gif, mp4, fps, loop, truncation_psi, height, width, bbox,
            tile, device, threads) -> None:
    """Interpolate between seeds: one PNG strip per space (a row per pair of seeds), and GIF/MP4 animations."""
    set_threads(threads)
    import torch

    from ..rendering.images import make_grid, save_png, to_uint8
    from ..rendering.interpolate import ease, interpolate, path_fractions
    from ..rendering.video import save_animation

    keys = parse_seeds(seeds)
    if len(keys) < 2:
        raise click.BadParameter("give at least two seeds", param_hint="--seeds")
    spaces = parse_spaces(space)
    if steps < 2 or frames < 1:
        raise click.BadParameter("--steps must be >= 2 and --frames >= 1")
    if width is not None and height is None:
        height = width
    width = width if width is not None else height
    from ..models.generator import seed_latents

    G = load_generator(checkpoint, device, onnx=True)
    if getattr(G, "renders_from_z", False) and spaces != ["z"]:
        raise click.BadParameter("an ONNX checkpoint's graph starts at z: interpolate with --space z",
                                 param_hint="--space")
    if "inr" in spaces and not G.has_inr:
        raise click.BadParameter(f"the {G.cfg.family} generator makes no INR parameters: interpolate in z or w",
                                 param_hint="--space")
    zs = list(seed_latents(keys, G.z_dim, device))  # [z_dim] each
    render = dict(truncation_psi=truncation_psi, height=height, width=width, bbox=parse_bbox(bbox), tile=tile)
    pairs = list(zip(zs, zs[1:] + (zs[:1] if loop else []), strict=False))
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for sp in spaces:
        with torch.inference_mode():
            rows = [interpolate(G, a, b, path_fractions(steps), space=sp, **render) for a, b in pairs[: len(keys) - 1]]
        strip = to_uint8(torch.cat(rows))
        save_png(make_grid(strip, cols=steps), out_dir / f"strip_{sp}.png")
        written = [f"strip_{sp}.png"]
        if gif or mp4:
            ts = [ease(t) for t in path_fractions(frames, endpoint=False)]
            anim = []
            with torch.inference_mode():
                for a, b in pairs:
                    anim.extend(to_uint8(interpolate(G, a, b, ts, space=sp, **render)))
                if not loop:
                    anim.extend(to_uint8(interpolate(G, zs[-1], zs[-1], [0.0], space=sp, **render)))
            for ext, wanted in (("gif", gif), ("mp4", mp4)):
                if wanted:
                    try:
                        save_animation(anim, out_dir / f"interp_{sp}.{ext}", fps)
                    except RuntimeError as e:
                        raise click.ClickException(str(e)) from e
                    written.append(f"interp_{sp}.{ext}")
        click.echo(f"{sp}: wrote {', '.join(written)} to {out_dir}")
