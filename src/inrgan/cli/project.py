"""inrgan project: fit a real image, then render it at any density, beyond its borders, or as a zoom."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..runtime import set_threads
from . import threads_option
from .generate import load_generator

MAX_TARGET_PIXELS = 4096 * 4096


def read_target(path: Path, channels: int, convert: bool):
    """IMAGE -> float [C, H, W] in [-1, 1] with the model's channel count, or a one-line error."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode, size = im.mode, im.size
            want = "L" if channels == 1 else "RGB"
            has = {"L": 1, "RGB": 3}.get(mode)
            if has != channels and not convert:
                raise click.ClickException(
                    f"{path}: a {mode} image ({has or 'other'} channels) but the model makes {channels}; "
                    f"convert it to {want} first, or pass --convert")
            arr = np.asarray(im.convert(want), dtype=np.float32)
    except (UnidentifiedImageError, OSError) as e:
        raise click.ClickException(f"{path}: not a readable image ({e})") from None
    if size[0] * size[1] > MAX_TARGET_PIXELS:
        raise click.ClickException(f"{path}: {size[0]}x{size[1]} pixels; targets up to {MAX_TARGET_PIXELS:,} "
                                   f"pixels are fitted (downsample it first: the fit is on the target's own grid)")
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(arr / 127.5 - 1)


def _write_losses(out: Path, losses: list[dict]) -> None:
    from ..io import atomic_write_text

    atomic_write_text(out / "losses.json", json.dumps(losses))
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    ax.plot([r["loss"] for r in losses], label="loss")
    ax.plot([r["pixel_mse"] for r in losses], label="pixel MSE")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss.png")
    plt.close(fig)


def _renders(p, out: Path, scale, extrapolate, zoom) -> list[str]:
    from ..models.coords import scale_box
    from ..rendering.images import save_png, to_uint8
    from ..rendering.video import save_gif, zoom_boxes

    written = []
    if scale:
        img = p.render(height=round(p.height * scale), width=round(p.width * scale))
        written.append(save_png(to_uint8(img)[0], out / f"scale{scale:g}.png").name)
    if extrapolate:
        img = p.render(height=round(p.height * extrapolate), width=round(p.width * extrapolate),
                       bbox=scale_box(p.bbox, extrapolate))
        written.append(save_png(to_uint8(img)[0], out / f"extrapolate{extrapolate:g}.png").name)
    if zoom:
        size = max(64, p.height, p.width)
        frames = [to_uint8(p.render(height=size, width=size * p.width // p.height, bbox=box))[0]
                  for box in zoom_boxes(p.bbox, ((p.bbox[0] + p.bbox[2]) / 2, (p.bbox[1] + p.bbox[3]) / 2), zoom, 48)]
        written.append(save_gif(frames, out / "zoom.gif", fps=16).name)
    return written


def _interpolate(p, other_dir: Path, out: Path) -> list[str]:
    import numpy as np

    from ..rendering.images import make_grid, save_png, to_uint8
    from ..rendering.interpolate import lerp_params
    from ..rendering.projection import Projection, ProjectionError, load_projection
    from ..rendering.video import save_gif

    try:
        q = load_projection(other_dir / "projection.npz", p.G)
    except ProjectionError as e:
        raise click.ClickException(str(e)) from None
    if q.space != p.space or q.tuned or p.tuned:
        raise click.ClickException(f"{other_dir}: interpolation needs two untuned projections in one space "
                                   f"(this one: {p.space}{', tuned' if p.tuned else ''}; that one: {q.space}"
                                   f"{', tuned' if q.tuned else ''})")
    frames = []
    for t in np.linspace(0, 1, 9):
        params = lerp_params(p.params, q.params, float(t)) if p.params is not None else None
        mid = Projection(p.G, p.space, p.ws.lerp(q.ws, float(t)), params, p.height, p.width, p.bbox)
        frames.append(to_uint8(mid.render())[0])
    save_png(make_grid(np.stack(frames), cols=len(frames)), out / "interpolation.png")
    save_gif(frames + frames[::-1], out / "interpolation.gif", fps=8)
    return ["interpolation.png", "interpolation.gif"]


@click.command()
@click.option("--checkpoint", required=True, help="Run directory, export, or a shipped model's name (fashion-mnist-32).")
@click.option("--target", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The image to fit, any size and aspect ratio.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--space", type=click.Choice(["w", "w+", "inr"]), default="w+", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--tune", "tune_steps", type=click.IntRange(min=0), default=0, show_default=True,
              help="Pivotal tuning steps after the fit (w and w+).")
@click.option("--perceptual", type=float, default=0.5, show_default=True,
              help="Weight of the perceptual distance (0: pixels only).")
@click.option("--convert", is_flag=True, help="Convert the target to the model's channel count.")
@click.option("--scale", type=float, default=None, help="Also render at K times the target's density.")
@click.option("--extrapolate", type=float, default=None, help="Also render the box enlarged F times.")
@click.option("--zoom", type=float, default=None, help="Also write zoom.gif, zooming Z times into the centre.")
@click.option("--interpolate-with", "other", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Another projection's folder: write an interpolation strip and GIF.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@threads_option
def command(checkpoint, target, out, space, steps, tune_steps, perceptual, convert, scale, extrapolate, zoom, other,
            seed, device, threads) -> None:
    """Project IMAGE into the generator on the image's own pixel grid, then render the result."""
    from ..metrics.perceptual import build_perceptual
    from ..rendering.images import save_png, to_uint8
    from ..rendering.projection import ProjectionConfig, ProjectionError, project
    from ..rendering.video import save_gif

    set_threads(threads)
    G = load_generator(checkpoint, device)
    image = read_target(target, G.img_channels, convert).to(device)
    try:
        cfg = ProjectionConfig(space=space, steps=steps, tune_steps=tune_steps, perceptual_weight=perceptual,
                               seed=seed)
        p = project(G, image, cfg, perceptual=build_perceptual(device) if perceptual > 0 else None)
    except ProjectionError as e:
        raise click.ClickException(f"{target}: {e}") from None
    out.mkdir(parents=True, exist_ok=True)
    p.save(out / "projection.npz")
    if p.tuned:
        p.G.save_pretrained(out / "generator", extra={"tuned_for": str(target)})
    save_png(to_uint8(p.render())[0], out / "reconstruction.png")
    _write_losses(out, p.losses)
    save_gif(p.frames, out / "optimisation.gif", fps=8)
    written = ["projection.npz", "reconstruction.png", "losses.json", "optimisation.gif"]
    written += _renders(p, out, scale, extrapolate, zoom)
    if other is not None:
        written += _interpolate(p, other, out)
    last = p.losses[-1]
    click.echo(f"projected {target.name} ({p.width}x{p.height}) in {space}: loss {last['loss']:.4f}, "
               f"pixel MSE {last['pixel_mse']:.4f}; wrote {', '.join(written)} to {out}")
