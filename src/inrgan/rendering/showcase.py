"""The showcase of a trained model: what a continuous generator does, rendered into one folder with an
``index.html`` that shows it all, each picture with a one-line caption.

Samples at the training density, x4 and x16; a non-square render; a 2x extrapolation; interpolation
strips and GIFs in z, w and the INR parameters; a zoom in which detail is rendered at every scale; and the
low-resolution speed-up, measured side by side.
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_write_text
from ..models.coords import default_bbox, scale_box
from ..models.generator import seed_latents
from .images import make_grid, save_png, to_uint8
from .interpolate import interpolate, path_fractions
from .video import save_gif, zoom_boxes


def _grid(imgs: torch.Tensor, cols: int | None = None) -> np.ndarray:
    return make_grid(to_uint8(imgs), cols)


def _box(G, fx: float, fy: float) -> tuple[float, float, float, float]:
    """The training box enlarged fx times in x and fy times in y about its centre."""
    return scale_box(default_bbox(G.cfg.grid), fx, fy)


def speedup(G, batch: int = 16, factor: int = 4, rounds: int = 5) -> dict[str, float]:
    """ms per batch at the training resolution and at 1/factor of it, alternating, best of ``rounds``."""
    R = G.resolution
    z = torch.randn(batch, G.z_dim, generator=torch.Generator().manual_seed(0))
    times: dict[int, list[float]] = {R: [], R // factor: []}
    with torch.inference_mode():
        for _ in range(rounds):
            for size in times:
                G(z, height=size, width=size)  # untimed: the same grid's features, as in a run of one size
                t0 = time.perf_counter()
                G(z, height=size, width=size)
                times[size].append(time.perf_counter() - t0)
    full, low = min(times[R]) * 1000, min(times[R // factor]) * 1000
    return {"full_ms": full, "low_ms": low, "speedup": full / low, "batch": batch, "low_resolution": R // factor}


def make_showcase(G, out: str | os.PathLike, seeds: list[int] | None = None, zoom: float = 16.0,
                  log: Callable[[str], None] = print, run_dir: str | os.PathLike | None = None
                  ) -> list[tuple[str, str]]:
    """Render the showcase of ``G`` into ``out``; returns (file, caption) in page order. With ``run_dir``
    (a training run), the page starts with its reals beside its latest samples."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = seeds or list(range(16))
    R, z = G.resolution, seed_latents(seeds, G.z_dim)
    items: list[tuple[str, str]] = []

    def keep(name: str, caption: str) -> None:
        items.append((name, caption))
        log(f"  {out / name}: {caption}")

    if run_dir is not None:
        _live_run(Path(run_dir), out, keep)

    with torch.inference_mode():
        for k, name in ((1, "samples.png"), (4, "samples_x4.png")):
            save_png(_grid(G(z, height=R * k, width=R * k)), out / name)
            keep(name, f"{len(seeds)} seeds rendered at {R * k}x{R * k}: " +
                 ("the training grid" if k == 1 else f"{k}x the training density, no upsampling"))
        save_png(_grid(G(z[:2], height=R * 16, width=R * 16), cols=2), out / "samples_x16.png")
        keep("samples_x16.png", f"2 seeds at {R * 16}x{R * 16}, 16x the training density")
        save_png(_grid(G(z[:4], height=R, width=3 * R, bbox=_box(G, 3, 1)), cols=1), out / "wide.png")
        keep("wide.png", f"a non-square render: {R}x{3 * R} over a box 3x wider than the training box")
        save_png(_grid(G(z[:8], height=2 * R, width=2 * R, bbox=_box(G, 2, 2)), cols=4), out / "extrapolate2.png")
        keep("extrapolate2.png", "2x extrapolation: the box doubled at the same density; the centre is the image")
        for space, what in (("z", "spherical in z"), ("w", "linear in w"), ("inr", "linear in the INR weights")):
            frames = to_uint8(interpolate(G, z[0], z[1], path_fractions(9), space=space))
            save_png(make_grid(frames, cols=len(frames)), out / f"interp_{space}.png")
            gif = to_uint8(interpolate(G, z[0], z[1], path_fractions(24), space=space, height=2 * R, width=2 * R))
            save_gif([*gif, *gif[::-1]], out / f"interp_{space}.gif", fps=12)
            keep(f"interp_{space}.png", f"seed {seeds[0]} to seed {seeds[1]}, {what}")
            keep(f"interp_{space}.gif", f"the same path, {what}, at 2x density")
        boxes = zoom_boxes(_box(G, 1, 1), (0.0, 0.0), zoom, 48)
        frames = [to_uint8(G(z[:1], height=4 * R, width=4 * R, bbox=b))[0] for b in boxes]
        save_gif(frames, out / "zoom.gif", fps=12)
        keep("zoom.gif", f"a {zoom:g}x zoom into the centre: every frame rendered at {4 * R}x{4 * R}, detail at every scale")
    sp = speedup(G)
    log(f"  low-resolution speed-up: {sp['low_resolution']}^2 renders {sp['speedup']:.1f}x faster than {R}^2 "
        f"({sp['low_ms']:.1f} against {sp['full_ms']:.1f} ms per batch of {sp['batch']})")
    write_index(out, items, sp, G)
    return items


def _live_run(run_dir: Path, out: Path, keep: Callable[[str, str], None]) -> None:
    """The run's real images beside its latest sample grid, side by side in one picture."""
    from PIL import Image

    fakes = sorted((run_dir / "samples").glob("fakes*.png"))
    reals = run_dir / "samples" / "reals.png"
    if not fakes or not reals.is_file():
        raise FileNotFoundError(f"{run_dir}: no samples/reals.png and samples/fakes*.png to show")
    left, right = np.asarray(Image.open(reals).convert("RGB")), np.asarray(Image.open(fakes[-1]).convert("RGB"))
    h = max(left.shape[0], right.shape[0])
    left, right = (np.pad(a, ((0, h - a.shape[0]), (0, 0), (0, 0))) for a in (left, right))
    save_png(np.concatenate([left, np.full((h, 8, 3), 255, np.uint8), right], axis=1), out / "live_run.png")
    keep("live_run.png", f"the live training run: real images (left) beside its samples after "
                         f"{int(fakes[-1].stem[5:])} kimg (right); its grids per tick are in {run_dir}/samples")


def write_index(out: Path, items: list[tuple[str, str]], sp: dict[str, float], G) -> Path:
    """``index.html``: every picture with its caption, and the speed-up."""
    rows = []
    for name, caption in items:
        rows.append(f'<figure><img src="{html.escape(name)}" alt="{html.escape(caption)}">'
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    speed = (f"Rendering at {sp['low_resolution']}x{sp['low_resolution']} is {sp['speedup']:.1f}x faster than at "
             f"{G.resolution}x{G.resolution} ({sp['low_ms']:.1f} against {sp['full_ms']:.1f} ms for a batch of "
             f"{sp['batch']}, measured when this page was made).")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>inrgan showcase</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;background:#fafafa}}
figure{{display:inline-block;margin:1em;vertical-align:top}}
img{{image-rendering:pixelated;max-width:1000px;min-width:128px;border:1px solid #ccc}}
figcaption{{font-size:0.9em;color:#333;max-width:520px}}</style></head>
<body><h1>A continuous image generator</h1>
<p>Every picture is rendered from one INR-GAN model ({G.resolution}x{G.resolution}, {G.img_channels} channel(s)) by
evaluating its per-pixel network on a grid of coordinates: any density, any box.</p>
<p id="speedup">{html.escape(speed)}</p>
{chr(10).join(rows)}
</body></html>
"""
    atomic_write_text(out / "index.html", page)
    return out / "index.html"
