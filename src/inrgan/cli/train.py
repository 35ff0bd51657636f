"""inrgan train: train a new run, or resume one; under torchrun, one rank of a multi-process run."""

from __future__ import annotations

import click

from ..config import DEFAULT_PRESET, PRESETS
from ..runtime import set_threads, threads_are_automatic
from . import threads_option


def _parse_metrics(value: str | None) -> list[str] | None:
    """None when not given (a resumed run keeps its own); "none" for no evaluations."""
    if value is None:
        return None
    names = [m.strip() for m in value.split(",") if m.strip()]
    return [] if names == ["none"] else names


@click.command()
@click.option("--data", default=None, help='Images: "fashion-mnist", a folder, or a zip. Required for a new run.')
@click.option("--out", "out", type=click.Path(file_okay=False), default=None,
              help="Run directory (default: the --resume directory).")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=None,
              help=f"Architecture and recipe (default {DEFAULT_PRESET}).")
@click.option("--resolution", type=int, default=None, help="Training resolution (default: the preset's).")
@click.option("--batch", type=int, default=None, help="Total batch size.")
@click.option("--kimg", type=float, default=None, help="Train until this many thousand images in total.")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Wall-clock budget of this leg: then write the checkpoint and export and stop (as on SIGTERM "
                   "or Ctrl-C); --resume continues exactly.")
@click.option("--resume", type=click.Path(exists=True, file_okay=False), default=None,
              help="Continue the run in this directory exactly where it stopped.")
@click.option("--seed", type=int, default=None, help="Random seed of a new run.")
@click.option("--gamma", "r1_gamma", type=float, default=None, help="R1 weight (default: the preset's).")
@click.option("--lr", type=float, default=None, help="Base learning rate (default 0.0025).")
@click.option("--tick", "tick_kimg", type=float, default=None, help="kimg between ticks (stats and sample grids).")
@click.option("--snap", "snapshot_ticks", type=int, default=None, help="Ticks between checkpoints.")
@click.option("--mirror/--no-mirror", "xflip", default=None, help="Random x-flips of the reals.")
@click.option("--g-tile", "g_tile", type=int, default=None,
              help="Render G's images in TxT tiles in the G phase, each recomputed in the backward pass: "
                   "activation memory of one tile, the same gradients, a second forward of G.")
@click.option("--r1-batch", "r1_batch", type=int, default=None,
              help="R1 on micro-batches of about this many reals (whole minibatch-std groups): the same "
                   "penalty and gradients, the R1 step's memory of one micro-batch.")
@click.option("--d-checkpoint/--no-d-checkpoint", "d_checkpoint", default=None,
              help="Recompute D's block activations in the backward pass instead of keeping them: the same "
                   "gradients, a second forward of D.")
@click.option("--aug", type=click.Choice(["none", "ada", "diffaugment"]), default=None,
              help="Augment every image D sees: ADA (adaptive p) or DiffAugment (default: none).")
@click.option("--aug-target", type=float, default=None, help="ADA's target for E[sign(D(real))] (default 0.6).")
@click.option("--aug-p", type=float, default=None, help="ADA at this fixed probability instead of the adaptive one.")
@click.option("--ada-kimg", type=float, default=None, help="kimg in which ADA's p can go from 0 to 1 (default 500).")
@click.option("--cond", is_flag=True, default=None,
              help="Train a class-conditional model on the data's labels (Fashion-MNIST's, a dataset.json, or "
                   "one sub-folder per class).")
@click.option("--init-from", default=None,
              help="Start a new run from trained weights: a run directory (G, D, recipe) or an export or shipped "
                   "model (G; D from scratch). The architecture comes from it.")
@click.option("--freeze-d", type=int, default=None, help="Keep D's first N blocks (from the image side) frozen.")
@click.option("--device", default="auto", show_default=True,
              help="auto, cpu, cuda or mps. Under torchrun: cuda (each rank on cuda:LOCAL_RANK, NCCL) or cpu (gloo).")
@click.option("--workers", type=int, default=0, show_default=True, help="Data loading processes.")
@click.option("--metrics", default=None,
              help='Metrics to evaluate during training, e.g. fid5k,kid5k; "none" for none. A resumed run keeps its '
                   "last leg's metrics, interval and features unless given.")
@click.option("--metrics-every", type=float, default=None, help="kimg between evaluations (default: at the end).")
@click.option("--features", default=None, help="Feature extractor for metrics (default: effnet-lite0).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@threads_option
def command(data, out, preset, resolution, batch, kimg, minutes, resume, seed, r1_gamma, lr, tick_kimg, snapshot_ticks,
            xflip, g_tile, r1_batch, d_checkpoint, aug, aug_target, aug_p, ada_kimg, cond, init_from, freeze_d, device,
            workers, metrics, metrics_every, features, no_progress, threads) -> None:
    """Train INR-GAN (or continue a run with --resume RUN_DIR).

    Started by torchrun (torchrun --nproc_per_node N -m inrgan train ...), every process trains on its
    share of the --batch images of each step; see docs/distributed.md.
    """
    from ..config import ConfigError
    from ..data import DatasetError
    from ..io import CheckpointError
    from ..training.distributed import DistributedError, torchrun_ranks
    from ..training.loop import RunOptions, TrainingDivergedError, train
    from ..training.runlock import RunLockedError

    if out is None and resume is None:
        raise click.UsageError("give --out RUN_DIR for a new run, or --resume RUN_DIR")
    set_threads(threads)
    if resume is None and data is None:
        data = "fashion-mnist"
    if init_from is not None and (resume is not None or preset is not None):
        raise click.UsageError("--init-from starts a new run whose architecture comes from the checkpoint: "
                               "do not combine it with --resume or --preset")
    if resume is not None and seed is not None:
        raise click.UsageError("--seed applies to new runs; a resumed run keeps its random state")
    options = RunOptions(data=data, preset=preset if resume is None else preset, resolution=resolution,
                         device=device, workers=workers, progress=not no_progress,
                         metrics=_parse_metrics(metrics), metrics_every=metrics_every, features=features,
                         init_from=init_from, cond=bool(cond), minutes=minutes)
    if resume is None:
        options.preset = preset or DEFAULT_PRESET
    options.adaptive_threads = threads_are_automatic(threads)
    overrides = dict(batch=batch, kimg=kimg, seed=seed, r1_gamma=r1_gamma, lr=lr, tick_kimg=tick_kimg,
                     snapshot_ticks=snapshot_ticks, xflip=xflip, g_tile=g_tile,
                     r1_batch=r1_batch, d_checkpoint=d_checkpoint, aug=aug, aug_target=aug_target, aug_p=aug_p,
                     ada_kimg=ada_kimg, freeze_d=freeze_d)
    try:
        last = train(out or resume, options, resume=resume, overrides=overrides, log=click.echo)
    except (ConfigError, CheckpointError, DatasetError, FileNotFoundError, TrainingDivergedError,
            DistributedError, RunLockedError) as e:
        raise click.ClickException(str(e)) from e
    rank = (torchrun_ranks() or (0, 1, 0))[0]
    if last and rank == 0 and last.get("stopped"):
        click.echo(f"stopped by {last['stopped']} at {last['kimg']:.3f} kimg, with a checkpoint; continue with "
                   f"inrgan train --resume {out or resume}")
    elif last and rank == 0:
        click.echo(f"done: {last['kimg']:.3f} kimg, {last['img_per_s']:.1f} img/s in the last tick; "
                   f"run in {out or resume}")
