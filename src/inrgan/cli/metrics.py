"""inrgan metrics: FID, KID, precision/recall and the classifier scores of a run or export against a dataset, with the protocol."""

from __future__ import annotations

import json
from typing import Any

import click

from ..metrics.extractors import EXTRACTORS, INCEPTION_ENV
from ..runtime import set_threads
from . import threads_option


def format_value(record: dict[str, Any]) -> str:
    name, results = record["metric"], record["results"]
    if f"{name}_precision" in results:
        return f"precision {results[f'{name}_precision']:.4f}, recall {results[f'{name}_recall']:.4f}"
    if f"{name}_confidence" in results:
        real = record["protocol"]["real_test_scores"]
        return (f"score {results[f'{name}_score']:.2f}, confidence {results[f'{name}_confidence']:.3f}, class entropy "
                f"{results[f'{name}_class_entropy']:.3f}, smallest class {results[f'{name}_min_class_share']:.3f} "
                f"(test images: {real['score']:.2f}, {real['confidence']:.3f}, {real['class_entropy']:.3f}, "
                f"{real['min_class_share']:.3f})")
    if f"{name}_std" in results:
        return f"{results[name]:.5f} ± {results[f'{name}_std']:.5f}"
    return f"{results[name]:.3f}"


def format_table(records: list[dict[str, Any]]) -> str:
    """A readable table: one line per metric, then the protocol they share."""
    rows = [("metric", "value", "generated", "real", "comparable to papers")]
    for r in records:
        p = r["protocol"]
        rows.append((r["metric"], format_value(r), str(p["num_gen"]), f"{p['num_real']} ({p['real_subset']})",
                     "yes" if r["comparable_to_published"] else "no"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    p = records[0]["protocol"]
    lines.append("")
    for q in {r["protocol"]["extractor"]: r["protocol"] for r in records}.values():
        sha = q["weights_sha256"] or "random weights"
        lines += [
            f"extractor   {q['extractor']} ({q['feature_dim']}-d), weights {q['weights_file']} sha256 {sha}",
            f"input       {q['input_size']}x{q['input_size']}, resize {q['resize_filter']}, "
            f"{q['normalisation']}, grayscale {q['grayscale']}",
        ]
        if "classifier_test_accuracy" in q:
            lines.append(f"classifier  trained here on Fashion-MNIST's training split, test accuracy "
                         f"{q['classifier_test_accuracy']:.4f}")
    lines += [
        f"generator   resolution {p['resolution']}, truncation psi {p['truncation_psi']}, seed {p['seed']}",
        f"real data   {p['dataset']} (fingerprint {(p['dataset_fingerprint'] or 'none')[:16]}), "
        f"cached statistics: {records[0]['real_stats_cache']}",
        f"time        {records[0]['time_s']:.1f} s",
    ]
    if any(not r["comparable_to_published"] for r in records if r["metric"][:2] in ("fi", "ki")):
        lines.append("note        not comparable to published FID/KID, which use the standard Inception network "
                     "and its published weights (--features inception)")
    return "\n".join(lines)


@click.command()
@click.option("--checkpoint", required=True, help="Run directory, export, or a shipped model's name (fashion-mnist-32).")
@click.option("--data", required=True, help="Real images: fashion-mnist, a folder or a zip.")
@click.option("--metrics", "metric_names", default="fid10k,kid10k,pr10k", show_default=True,
              help="Comma-separated: fid50k, fid10k_full, kid10k, pr10k, fid1k, fid500, ...; cls2k: a "
                   "Fashion-MNIST classifier's confidence and class balance on the samples (Fashion-MNIST only).")
@click.option("--features", type=click.Choice(EXTRACTORS), default="effnet-lite0", show_default=True,
              help="Feature extractor: inception (standard FID, needs its weights file) or effnet-lite0 "
                   "(offline, not comparable to published numbers).")
@click.option("--resolution", type=click.IntRange(min=4), default=None, help="Render and compare at R x R (default: training size).")
@click.option("--trunc", "truncation_psi", type=float, default=1.0, show_default=True, help="Truncation psi.")
@click.option("--json", "as_json", is_flag=True, help="Print the records as a JSON list.")
@click.option("--num-real", type=click.IntRange(min=2), default=None,
              help="Real images per metric (default: as the metric name says).")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Images per batch.")
@click.option("--device", default="cpu", show_default=True, help="Torch device, e.g. cpu or cuda.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated latents.")
@click.option("--inception-weights", type=click.Path(dir_okay=False), default=None,
              help=f"pytorch-fid's pt_inception-2015-12-05-6726825d.pth (or ${INCEPTION_ENV}).")
@threads_option
def command(checkpoint: str, data: str, metric_names: str, features: str, resolution: int | None,
            truncation_psi: float, as_json: bool, num_real: int | None, batch_size: int, device: str, seed: int,
            inception_weights: str | None, threads: int | None) -> None:
    """Evaluate a generator: prints each metric with its protocol (extractor and weights sha256, resize
    filter, image counts, resolution, truncation, seed, time)."""
    import torch

    set_threads(threads)

    from ..accel import Generator
    from ..data import DatasetError, open_dataset
    from ..metrics import ExtractorError, MetricsError, build_extractor, evaluate, parse_metric

    metrics = [m for m in metric_names.split(",") if m.strip()]
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as e:
        raise click.ClickException(f"device {device!r} is not usable: {e}") from None
    try:
        for m in metrics:
            parse_metric(m)
        if not metrics:
            raise MetricsError("no metrics given")
        extractor = build_extractor(features, device, inception_weights)
    except (MetricsError, ExtractorError) as e:
        raise click.ClickException(str(e)) from None
    try:
        G = Generator.from_pretrained(checkpoint).to(device)
    except (FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    if resolution not in (None, G.resolution) and not G.renders_any_grid:
        raise click.BadParameter(f"the {G.cfg.family} generator renders its {G.resolution}x{G.resolution} training "
                                 f"grid only", param_hint="--resolution")
    try:
        dataset = open_dataset(data, resolution or G.resolution, channels=G.img_channels)
    except DatasetError as e:
        raise click.ClickException(str(e)) from None
    try:
        with torch.inference_mode():
            records = evaluate(G, dataset, metrics, features=extractor, truncation_psi=truncation_psi, seed=seed,
                               batch_size=batch_size, num_real=num_real)
    except MetricsError as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps(records, indent=2) if as_json else format_table(records))
