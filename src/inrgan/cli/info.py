"""inrgan info: a preset's architecture, parameter counts and cost."""

from __future__ import annotations

import json

import click

from ..config import DEFAULT_PRESET, PRESETS


def describe(preset_name: str, resolution: int | None, img_channels: int = 3) -> dict:
    from ..config import get_preset
    from ..models import Discriminator, Generator

    p = get_preset(preset_name, resolution, img_channels)
    G, D = Generator(p.G), Discriminator(p.D)
    blocks = []
    for b in G.synthesis.blocks:
        blocks.append({"block": b.block_res, "grid": b.grid_res,
                       "layers": [[layer.out_channels, layer.in_channels] for layer in b.layers()]})
    return {
        "preset": p.name,
        "description": p.description,
        "resolution": p.G.resolution,
        "img_channels": p.G.img_channels,
        "G_params": sum(x.numel() for x in G.parameters()),
        "D_params": sum(x.numel() for x in D.parameters()),
        "mapping_params": sum(x.numel() for x in G.mapping.parameters()),
        "num_ws": G.num_ws,
        "levels": p.G.grid_resolutions,
        "blocks": blocks,
        "G": p.G.to_dict(),
        "D": p.D.to_dict(),
        "training": p.training.to_dict(),
    }


@click.command()
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=DEFAULT_PRESET, show_default=True)
@click.option("--resolution", type=int, default=None, help="Resolution (default: the preset's).")
@click.option("--channels", type=click.Choice(["1", "3"]), default="3", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def command(preset: str, resolution: int | None, channels: str, as_json: bool) -> None:
    """Show a preset: parameter counts, layer shapes and the training recipe."""
    from ..config import ConfigError

    try:
        info = describe(preset, resolution, int(channels))
    except ConfigError as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"{info['preset']}: {info['description']}")
    click.echo(f"  resolution {info['resolution']}, channels {info['img_channels']}, num_ws {info['num_ws']}, "
               f"grid levels {info['levels']}")
    click.echo(f"  G_params {info['G_params']:,} (mapping {info['mapping_params']:,})   D_params {info['D_params']:,}")
    for b in info["blocks"]:
        click.echo(f"  b{b['block']:<4} grid {b['grid']:>4}^2  FMM layers (c_out, c_in): "
                   + ", ".join(f"({o},{i})" for o, i in b["layers"]))
