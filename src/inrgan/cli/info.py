"""inrgan info: a preset's architecture, parameter counts and cost."""

from __future__ import annotations

import json

import click

from ..config import DEFAULT_PRESET, PRESETS


def describe(preset_name: str, resolution: int | None, img_channels: int = 3) -> dict:
    from ..config import get_preset
    from ..models import Generator, build_discriminator
    from ..models.cost import family_macs, layer_costs

    p = get_preset(preset_name, resolution, img_channels)
    G, D = Generator.build(p.G), build_discriminator(p.D)
    info = {
        "preset": p.name,
        "description": p.description,
        "family": p.G.family,
        "resolution": p.G.resolution,
        "img_channels": p.G.img_channels,
        "G_params": sum(x.numel() for x in G.parameters()),
        "D_params": sum(x.numel() for x in D.parameters()),
        "mapping_params": sum(x.numel() for x in G.mapping.parameters()),
        "num_ws": G.num_ws,
        # per image at the training resolution, from the layer shapes (models/cost.py)
        "macs": family_macs(G),
        "layers": [{"block": c.block, "layer": c.layer, "c_in": c.c_in, "c_out": c.c_out, "pixels": c.pixels,
                    "macs": c.macs} for c in layer_costs(G.synthesis)],
        "renders_any_grid": G.renders_any_grid,
    }
    if p.G.family == "inr-gan":
        info["levels"] = p.G.grid_resolutions
        info["blocks"] = [{"block": b.block_res, "grid": b.grid_res,
                           "layers": [[layer.out_channels, layer.in_channels] for layer in b.layers()]}
                          for b in G.synthesis.blocks]
    return {**info, "G": p.G.to_dict(), "D": p.D.to_dict(), "training": p.training.to_dict()}


@click.command()
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=DEFAULT_PRESET, show_default=True)
@click.option("--resolution", type=int, default=None, help="Resolution (default: the preset's).")
@click.option("--channels", type=click.Choice(["1", "3"]), default="3", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def command(preset: str, resolution: int | None, channels: str, as_json: bool) -> None:
    """Show a preset: parameter counts, layer shapes, MACs per image and the training recipe."""
    from ..config import ConfigError

    try:
        info = describe(preset, resolution, int(channels))
    except ConfigError as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"{info['preset']}: {info['description']}")
    macs = info["macs"]
    click.echo(f"  family {info['family']}, resolution {info['resolution']}, channels {info['img_channels']}, "
               f"num_ws {info['num_ws']}" + (f", grid levels {info['levels']}" if "levels" in info else "")
               + ("" if info["renders_any_grid"] else " (renders its training grid only)"))
    click.echo(f"  G_params {info['G_params']:,} (mapping {info['mapping_params']:,})   D_params {info['D_params']:,}")
    click.echo(f"  MACs per image at {info['resolution']}^2: {macs['total']:,} (mapping {macs['mapping']:,}, "
               f"per-sample parameters {macs['hyper']:,}, render {macs['render']:,})")
    for b in info.get("blocks", []):
        click.echo(f"  b{b['block']:<4} grid {b['grid']:>4}^2  FMM layers (c_out, c_in): "
                   + ", ".join(f"({o},{i})" for o, i in b["layers"]))
    if "blocks" not in info:
        for layer in info["layers"]:
            click.echo(f"  {layer['layer']:<10} at {layer['block']:>4}^2  (c_out, c_in) ({layer['c_out']},{layer['c_in']})"
                       f"  {layer['macs']:>12,} MACs")
