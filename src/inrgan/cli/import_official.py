"""`inrgan import-official FILE.pkl OUT_DIR`: convert a released INR-GAN pickle into our export format."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("import-official")
@click.argument("pkl", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--network",
    type=click.Choice(["G_ema", "G"]),
    default="G_ema",
    show_default=True,
    help="Which generator of the pickle to import (G_ema is the one to sample from).",
)
@click.option(
    "--upsampling",
    type=click.Choice(["auto", "nearest", "bilinear"]),
    default="auto",
    show_default=True,
    help="Override the upsampling mode stored in the pickle (needed only if it stores none).",
)
def command(pkl: Path, out_dir: Path, network: str, upsampling: str) -> None:
    """Import an official INR-GAN network pickle (e.g. churches.pkl) into OUT_DIR.

    The pickle is read with a restricted unpickler: only tensors, plain containers and the reference's
    persistent-class records are accepted, and no code stored in the file is run. OUT_DIR receives
    config.json + model.safetensors, loadable with Generator.from_pretrained and renderable at any size.
    """
    from ..official import OfficialPickleError, import_official

    try:
        result = import_official(
            pkl, out_dir, network=network, upsampling=None if upsampling == "auto" else upsampling
        )
    except OfficialPickleError as e:
        raise click.ClickException(str(e)) from e
    info = result.metadata["imported_from"]
    click.echo(f"read {pkl.name} (sha256 {info['sha256'][:16]}...), network {network}")
    click.echo(f"variant: {result.variant.describe()}")
    for note in result.variant.notes:
        click.echo(f"note: {note}")
    click.echo(f"weights: {result.weight_map.summary()}")
    click.echo(f"wrote {result.out_dir}/config.json and model.safetensors")
    res = result.variant.config.resolution
    click.echo(
        f"render: inrgan generate --checkpoint {result.out_dir} --seeds 0-7 --resolution {2 * res} --out samples"
    )
