"""`inrgan dataset SOURCE DEST.zip`: convert images into a StyleGAN2-ADA zip."""

from __future__ import annotations

from pathlib import Path

import click
from tqdm import tqdm

from ..data import DatasetError, make_dataset_zip


@click.command("dataset")
@click.argument("source")
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--resolution", type=click.IntRange(min=1), default=None,
              help="Resize every (centre-cropped) image to RxR. Default: keep sizes.")
@click.option("--channels", type=click.Choice(["1", "3"]), default=None,
              help="1 (grayscale) or 3 (RGB). Default: 1 if every image is grayscale, else 3.")
def command(source: str, dest: Path, resolution: int | None, channels: str | None) -> None:
    """Convert SOURCE into DEST.zip (StyleGAN2-ADA layout: 00000/img00000000.png, dataset.json).

    SOURCE is a folder of images (searched recursively), a .zip of images, "fashion-mnist" or
    "fashion-mnist:/path/to/idx/folder". Images are centre-cropped to squares.
    """
    bar: tqdm | None = None  # opened at the first image, after the source is validated

    def advance(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc="images", unit="img", leave=False)
        bar.update(done - bar.n)

    try:
        count = make_dataset_zip(source, dest, resolution=resolution,
                                 channels=None if channels is None else int(channels), progress=advance)
    except DatasetError as e:
        raise click.ClickException(str(e)) from e
    finally:
        if bar is not None:
            bar.close()
    click.echo(f"wrote {count} images to {dest}")
