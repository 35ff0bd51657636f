"""inrgan probe: the geometric prior (silhouette attributes predicted linearly from z and w) and the
perceptual path lengths and midpoint acceptance of interpolation in z, w and the INR parameters."""

from __future__ import annotations

import json

import click

from ..runtime import set_threads
from . import threads_option
from .generate import load_generator


@click.command()
@click.option("--checkpoint", required=True, help="Run directory, export, or a shipped model's name.")
@click.option("--num", type=click.IntRange(min=20), default=2000, show_default=True,
              help="Latents of the geometric probe (half fit the linear model, half test it).")
@click.option("--paths", type=click.IntRange(min=0), default=200, show_default=True,
              help="Pairs of latents for the path lengths and midpoints (0: skip them).")
@click.option("--data", default="fashion-mnist", show_default=True, help="Real images for the midpoints' manifold.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@threads_option
def command(checkpoint: str, num: int, paths: int, data: str, as_json: bool, threads: int | None) -> None:
    """Measure the geometric prior and the interpolation of CHECKPOINT (an unconditional model)."""
    from ..metrics.probe import ATTRIBUTES, geometric_prior

    set_threads(threads)
    G = load_generator(checkpoint)
    if G.c_dim:
        raise click.ClickException("inrgan probe measures unconditional models")
    result = {"family": G.cfg.family, "geometric_prior_r2": geometric_prior(G, num)}
    spaces = ("z", "w", "inr") if G.has_inr else ("z", "w")
    if not G.has_inr:
        result["skipped"] = {"inr": f"the {G.cfg.family} generator makes no INR parameters to interpolate"}
    if paths:
        result.update(_interpolation(G, paths, data, spaces))
    if as_json:
        click.echo(json.dumps(result, indent=1))
        return
    click.echo(f"held-out R^2 of a linear model from the latent ({num // 2} fit, {num - num // 2} test):")
    click.echo(f"  {'attribute':16s} {'from z':>8s} {'from w':>8s}")
    for a in ATTRIBUTES:
        click.echo(f"  {a:16s} {result['geometric_prior_r2']['z'][a]:8.3f} {result['geometric_prior_r2']['w'][a]:8.3f}")
    if paths:
        for space in spaces:
            click.echo(f"path in {space:3s}: perceptual path length {result['path_length'][space]:.2f}, midpoints in the "
                       f"real manifold {result['midpoint_acceptance'][space]:.1%}")
    for space, why in result.get("skipped", {}).items():
        click.echo(f"path in {space:3s}: skipped, {why}")


def _interpolation(G, paths: int, data: str, spaces: tuple[str, ...]) -> dict:
    import torch

    from ..data import DatasetError, open_dataset
    from ..metrics import build_extractor
    from ..metrics.evaluate import embed, real_batches, real_subset
    from ..metrics.perceptual import build_perceptual
    from ..metrics.probe import midpoint_acceptance, path_lengths

    try:
        dataset = open_dataset(data, G.resolution, channels=G.img_channels)
    except DatasetError as e:
        raise click.ClickException(str(e)) from None
    extractor = build_extractor("effnet-lite0")
    idx = real_subset(max(paths, 1000), len(dataset))
    with torch.inference_mode():
        real = embed(extractor, real_batches(dataset, idx, 100), -(-len(idx) // 100), "reals", progress=False)
    return {"path_length": path_lengths(G, build_perceptual(), paths, spaces=spaces),
            "midpoint_acceptance": midpoint_acceptance(G, extractor, real, paths, spaces=spaces)}
