"""inrgan generate: render images from a run or an export, at any size, box or zoom."""

from __future__ import annotations

from pathlib import Path

import click

from ..runtime import set_threads
from . import threads_option

MAX_BATCH_PIXELS = 2**19  # without --tile, a batch of renders holds at most this many pixels


def parse_seeds(text: str) -> list[int]:
    """'0-3,7,10-11' -> [0, 1, 2, 3, 7, 10, 11]."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else (part, part)
                seeds.extend(range(int(lo), int(hi) + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise click.BadParameter(f"{part!r} is not a seed or a range like 0-15", param_hint="--seeds") from None
    if not seeds:
        raise click.BadParameter("no seeds given", param_hint="--seeds")
    return seeds


def parse_numbers(text: str, count: int, param_hint: str) -> tuple[float, ...]:
    """'a,b,...' -> exactly ``count`` floats, or a clear usage error naming the option."""
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != count:
        raise click.BadParameter(f"{text!r}: expected {count} comma-separated numbers", param_hint=param_hint)
    return vals


def parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    """'x0,y0,x1,y1' -> the box, or None."""
    return None if text is None else parse_numbers(text, 4, "--bbox")  # type: ignore[return-value]


def load_generator(checkpoint: str, device: str = "cpu", onnx: bool = False):
    """The generator of ``--checkpoint``; with ``onnx`` an inrgan ONNX file (``*.onnx``) too, rendered by
    onnxruntime on the CPU (``inrgan.export.OnnxGenerator``)."""
    from ..export.session import is_onnx_path

    if is_onnx_path(checkpoint):
        return load_onnx(checkpoint, device, onnx)
    from ..accel import Generator

    try:
        return Generator.from_pretrained(checkpoint, map_location=device)
    except (FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from e


def load_onnx(checkpoint: str, device: str, allowed: bool):
    from ..export import ExportError, OnnxGenerator

    if not allowed:
        raise click.ClickException(f"{checkpoint}: this command takes a PyTorch checkpoint, not an ONNX file "
                                   "(generate, video and interpolate take both)")
    if device != "cpu":
        raise click.BadParameter("an ONNX checkpoint renders on the CPU (onnxruntime)", param_hint="--device")
    try:
        return OnnxGenerator(checkpoint)
    except ExportError as e:
        raise click.ClickException(str(e)) from None


@click.command()
@click.option("--checkpoint", required=True,
              help="Run directory, export, a shipped model's name (fashion-mnist-32), or an ONNX file (model.onnx).")
@click.option("--seeds", default="0-15", show_default=True, help="Seeds, e.g. 0-15 or 1,5,9.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--trunc", "truncation_psi", type=float, default=1.0, show_default=True, help="Truncation psi.")
@click.option("--resolution", type=int, default=None, help="Square output size (default: training size).")
@click.option("--height", type=int, default=None, help="Output height in pixels.")
@click.option("--width", type=int, default=None, help="Output width in pixels.")
@click.option("--scale", type=float, default=None, help="Render at K times the training density.")
@click.option("--bbox", default=None, help="Box x0,y0,x1,y1 in the training frame (top-left, bottom-right).")
@click.option("--extrapolate", type=float, default=None,
              help="Enlarge the box F times around its centre at the same pixel density.")
@click.option("--tile", type=int, default=None, help="Render in tiles of this size (bounded memory).")
@click.option("--raw", is_flag=True, help="Also write float32 .npy arrays.")
@click.option("--batch", type=click.IntRange(min=1), default=8, show_default=True,
              help="Seeds rendered together (each z still from its own seed; the pixels do not depend on it); "
                   "fewer for large renders without --tile, at most 2^19 pixels at once.")
@click.option("--class", "class_", default=None,
              help="A conditional model's class: its index or name (e.g. 7 or Sneaker).")
@click.option("--device", default="cpu", show_default=True)
@threads_option
def command(checkpoint, seeds, out, truncation_psi, resolution, height, width, scale, bbox, extrapolate, tile,
            raw, batch, class_, device, threads) -> None:
    """Write one PNG per seed and a grid."""
    import numpy as np

    from ..rendering.images import make_grid, save_png, to_uint8

    set_threads(threads)
    seed_list = parse_seeds(seeds)
    G = load_generator(checkpoint, device, onnx=True)
    cls = class_for(G, class_)
    box = parse_bbox(bbox)
    try:
        H, W, box = render_geometry(G, resolution, height, width, scale, box, extrapolate)
    except ValueError as e:
        raise click.BadParameter(str(e)) from e
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = []
    step = batch if tile else max(1, min(batch, MAX_BATCH_PIXELS // (H * W)))  # large renders: fewer at once
    for i in range(0, len(seed_list), step):
        group = seed_list[i:i + step]
        imgs = render_seeds(G, group, truncation_psi, device, cls, height=H, width=W, bbox=box, tile=tile)
        for seed, img, arr in zip(group, imgs, to_uint8(imgs), strict=True):
            frames.append(arr)
            save_png(arr, out_dir / f"seed{seed:04d}.png")
            if raw:
                np.save(out_dir / f"seed{seed:04d}.npy", img.float().cpu().numpy())
    save_png(make_grid(np.stack(frames)), out_dir / "grid.png")
    click.echo(f"wrote {len(seed_list)} images of {H}x{W} and grid.png to {out_dir}")


def class_for(G, value: str | None) -> int | None:
    """The class index that ``--class`` names, None for an unconditional model; clear errors otherwise."""
    from ..models.generator import one_hot

    if not G.c_dim:
        if value is not None:
            raise click.BadParameter("this model is unconditional: it has no classes", param_hint="--class")
        return None
    if value is None:
        raise click.UsageError(f"this model is conditional: give --class, one of 0..{G.c_dim - 1} or a name "
                               f"({', '.join(G.class_names)})")
    try:
        return int(one_hot(G, [value]).argmax())
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--class") from None


def render_seeds(G, seeds: list[int], truncation_psi: float = 1.0, device="cpu", cls: int | None = None, **render):
    """Images [len(seeds), C, H, W] of ``seeds`` in one batch (all of class ``cls`` for a conditional G); a
    seed's image does not depend on the batch it is in (to fp32 rounding, tests/test_rendering.py)."""
    import torch

    from ..models.generator import seed_latents

    c = None if cls is None else torch.nn.functional.one_hot(torch.full((len(seeds),), cls), G.c_dim).float()
    with torch.inference_mode():
        return G(seed_latents(seeds, G.z_dim, device), None if c is None else c.to(device),
                 truncation_psi=truncation_psi, **render)


def render_geometry(G, resolution, height, width, scale, bbox, extrapolate):
    """Resolve the CLI's size options into (height, width, bbox).

    Without an explicit size the render keeps the training pixel density: R * scale * extrapolate pixels.
    """
    from ..models.coords import default_bbox, scale_box

    if resolution is not None:
        if height is not None or width is not None:
            raise ValueError("--resolution cannot be combined with --height/--width")
        height = width = resolution
    for name, v in (("--scale", scale), ("--extrapolate", extrapolate)):
        if v is not None and v <= 0:
            raise ValueError(f"{name} must be positive")
    if height is None and width is None:
        height = width = max(1, int(round(G.resolution * (scale or 1.0) * (extrapolate or 1.0))))
    elif scale is not None:
        raise ValueError("--scale sets the size: do not combine it with --resolution/--height/--width")
    height, width = height or width, width or height
    if height < 1 or width < 1:
        raise ValueError("sizes must be positive")
    if extrapolate is not None:
        bbox = scale_box(bbox or default_bbox(G.cfg.grid), extrapolate)
    return height, width, bbox
