"""The training loop: phases Gmain, Dmain and lazy Dreg (R1), G_ema, logging, sample grids, checkpoints.

Read top to bottom: :func:`training_step` is one iteration of the GAN game; :func:`train` builds or
resumes a run and drives the steps, writing everything under the run directory:

    run/
      run.json             the resolved configs and options of the run (a description: state.pt holds them too)
      stats.jsonl          one record per tick
      samples/             reals.png, fakes000000.png, ... (fixed seeds)
      state.pt             complete training state (weights_only loadable), atomically replaced: networks,
                           optimizers, counters, random streams, the TrainingConfig and the run options
      export/              G_ema as config.json + model.safetensors (Generator.from_pretrained)
      metrics.jsonl        metric records, when --metrics is given
      plots/training.png   losses, D outputs, speed and metrics against kimg (with matplotlib installed)

Under torchrun every rank runs :func:`train` on its shard of each global batch and only rank 0 writes
the run directory; see :mod:`inrgan.training.distributed` and docs/distributed.md.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..accel import Generator
from ..config import (
    AnyDiscriminatorConfig,
    AnyGeneratorConfig,
    ConfigError,
    TrainingConfig,
    discriminator_config_from_dict,
    generator_config_from_dict,
    get_preset,
)
from ..io import CheckpointError, atomic_write_text
from ..models import build_discriminator
from ..models.discriminator import mbstd_micro_batches
from ..rendering.images import save_grid
from ..runtime import ThreadGovernor
from .augment import AugmentedD, AugmentPipe, ada_update
from .checkpoint import STATE_NAME, load_training_state, save_training_state
from .distributed import Distributed, init_distributed
from .ema import ema_beta, update_ema
from .loss import LOSSES, d_r1_loss
from .runlock import run_lock
from .stop import StopRequest

RUN_CONFIG = "run.json"


class TrainingDivergedError(RuntimeError):
    """A loss became NaN or Inf; the last good checkpoint is left untouched."""


@dataclass
class RunOptions:
    """How a run is carried out (not part of the recipe): data, device, logging and evaluation."""

    data: str | None = "fashion-mnist"
    preset: str | None = "cpu-32"
    resolution: int | None = None
    device: str = "auto"
    workers: int = 0
    progress: bool = True
    # Evaluation during training. None (not given): a resumed run keeps the metrics, interval and features
    # of its last leg; a new run has no metrics, at the end, on effnet-lite0 (plan_run fills them in).
    metrics: list[str] | None = None
    metrics_every: float | None = None  # kimg; None: at the end of each leg
    features: str | None = None  # None: effnet-lite0
    # CPU training follows the CPUs other programs leave free (inrgan.runtime.ThreadGovernor); the CLI sets
    # it unless --threads or OMP_NUM_THREADS fixes the count.
    adaptive_threads: bool = False
    # A new run that starts from trained weights (a run directory or an export): its architecture, and for a
    # run directory its recipe, come from there; optimizers and counters start afresh.
    init_from: str | None = None
    cond: bool = False  # a new run conditioned on the data's class labels (--cond)
    # A wall-clock budget for this leg of the run: when it is spent, training writes its checkpoint and
    # export and stops, as on SIGTERM or Ctrl-C; --resume continues exactly. None: until kimg.
    minutes: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


_OPTION_DEFAULTS = {"metrics": [], "metrics_every": None, "features": "effnet-lite0"}


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name not in ("cpu", "cuda", "mps") and not name.startswith("cuda:"):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or mps")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but CUDA is not available on this machine")
    return torch.device(name)


# ----------------------------------------------------------------------------------------------
# Data order: a deterministic, resumable stream of index batches.


def batch_indices(num_images: int, seed: int, start: int, batch: int) -> list[int]:
    """Indices of images ``start .. start + batch`` of an endless stream of seeded permutations.

    The stream depends only on (seed, position), so a run resumed at ``cur_nimg`` reads exactly the
    images that an uninterrupted run would have read next.
    """
    out: list[int] = []
    pos = start
    while len(out) < batch:
        epoch, offset = divmod(pos, num_images)
        perm = torch.randperm(num_images, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        take = min(batch - len(out), num_images - offset)
        out.extend(perm[offset : offset + take].tolist())
        pos += take
    return out


class StreamBatchSampler:
    """Endless batch sampler over :func:`batch_indices`; rank ``rank`` of ``world`` takes its shard of each
    global batch.

    The shard is strided, images ``rank, rank + world, ...``. D's minibatch-std layer puts images i and j
    of a batch of B in one group when i = j mod (B / group_size), so a strided shard holds whole groups:
    when a shard has at least group_size images, the ranks form exactly the groups that one process
    forms from the global batch.
    """

    def __init__(self, num_images: int, seed: int, start_nimg: int, batch: int, rank: int = 0, world: int = 1):
        if batch % world:
            raise ConfigError(f"batch {batch} is not divisible by the number of processes {world}")
        self.num_images, self.seed, self.pos, self.batch = num_images, seed, start_nimg, batch
        self.rank, self.world = rank, world

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            idx = batch_indices(self.num_images, self.seed, self.pos, self.batch)
            self.pos += self.batch
            yield idx[self.rank :: self.world]  # [local]


# ----------------------------------------------------------------------------------------------
# Optimisers and one training iteration.


def make_optimizers(G: nn.Module, D: nn.Module, t: TrainingConfig) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for G (``lr``) and D (``d_lr``, default ``lr``) with the lazy-regularisation correction of lr and
    betas (ratio = k / (k + 1))."""

    def adam(params: list[nn.Parameter], interval: int, lr: float) -> torch.optim.Adam:
        ratio = interval / (interval + 1)
        betas = (t.betas[0] ** ratio, t.betas[1] ** ratio)
        return torch.optim.Adam(params, lr=lr * ratio, betas=betas, eps=t.eps)

    d_lr = t.lr if t.d_lr is None else t.d_lr
    return (adam(list(G.parameters()), t.g_reg_interval, t.lr),
            adam(trainable_d_params(D, t.freeze_d), t.r1_interval, d_lr))


def trainable_d_params(D: nn.Module, freeze: int) -> list[nn.Parameter]:
    """D's parameters but those of its first ``freeze`` blocks (from the image side), which stay fixed."""
    if freeze == 0:
        return list(D.parameters())
    if not hasattr(D, "block_resolutions"):
        raise ConfigError("--freeze-d applies to the resnet D's blocks; the projected D's backbone is frozen "
                          "already and its heads are small")
    if freeze > len(D.block_resolutions):
        raise ConfigError(f"--freeze-d {freeze}: D has {len(D.block_resolutions)} blocks before its epilogue "
                          f"({', '.join(f'b{r}' for r in D.block_resolutions)})")
    frozen = {f"b{r}." for r in D.block_resolutions[:freeze]}
    return [p for name, p in D.named_parameters() if not any(name.startswith(f) for f in frozen)]


def _check_finite(name: str, value: float, nimg: int) -> None:
    if not math.isfinite(value):
        raise TrainingDivergedError(
            f"{name} became {value} at step {nimg} images ({nimg / 1000:.3f} kimg); training stopped, "
            f"the last good checkpoint is kept. Try a lower learning rate or a larger r1_gamma."
        )


def r1_backward(D: nn.Module, real: Tensor, t: TrainingConfig, c: Tensor | None = None, **d_opts: Any) -> Tensor:
    """Backpropagate the lazy R1 penalty at ``real`` into D's gradients (added to them); returns the penalty.

    It runs on micro-batches of about ``t.r1_batch`` reals made of whole minibatch-std groups, each in the
    order that makes D form the same groups on it alone: every real gets the logit it has in the whole
    batch, so the penalty, a mean over the reals, is the size-weighted sum of the micro-batches'.
    """
    n = real.shape[0]
    total = real.new_zeros(())
    group = getattr(D.cfg, "mbstd_group_size", 1)  # the projected D has no minibatch-std layer
    for idx in mbstd_micro_batches(n, group, t.r1_batch or n):
        idx = idx.to(real.device)
        real_req = real[idx].detach().requires_grad_(True)
        logits = D(real_req, **d_opts) if c is None else D(real_req, c=c[idx], **d_opts)
        loss = d_r1_loss(logits, real_req, t.r1_gamma, t.r1_interval) * (len(idx) / n)
        (loss + logits.sum() * 0).backward()  # the zero term gives every parameter a gradient
        total = total + loss.detach()
    return total


def untimed(name: str) -> contextlib.AbstractContextManager:
    """The default ``phase`` of :func:`training_step`: its parts are not timed."""
    return contextlib.nullcontext()


def training_step(
    G: nn.Module,
    D: nn.Module,
    G_opt: torch.optim.Optimizer,
    D_opt: torch.optim.Optimizer,
    real: Tensor,
    gen_z: tuple[Tensor, Tensor],
    do_r1: bool,
    t: TrainingConfig,
    cur_nimg: int = 0,
    mixed_precision: bool = False,
    dist: Distributed | None = None,
    D_reg: nn.Module | None = None,
    real_c: Tensor | None = None,
    gen_c: tuple[Tensor, Tensor] | None = None,
    phase: Callable[[str], contextlib.AbstractContextManager] = untimed,
) -> dict[str, float]:
    """One iteration: Gmain, Dmain and (every ``r1_interval`` steps) Dreg.

    Args:
        real: real images in [-1, 1], [B, C, R, R] (already flipped).
        gen_z: latents for the G phase and the D phase, each [B, z_dim].
        do_r1: whether this iteration runs the lazy R1 phase.
        dist: under torchrun, this rank's place in the run: ``real`` and ``gen_z`` are then this rank's
            shard of the global batch, and every phase's gradients are averaged over the ranks.
        D_reg: the discriminator for the R1 phase, default ``D``; it must share D's parameters. R1
            differentiates twice, which a ``torch.compile``d D cannot: pass the eager module there.
        real_c, gen_c: a conditional run's one-hot classes of the reals [B, c_dim] and of the two phases'
            latents (each [B, c_dim]); None for an unconditional one.
        phase: a name -> a context manager around each part of the step (``inrgan bench --profile`` times them).

    Returns the phase losses as floats (means over the ranks).
    """
    dist = dist or Distributed()
    d_opts = dict(mixed_precision=mixed_precision, checkpoint_blocks=t.d_checkpoint)
    c_opts = [{} if gen_c is None else {"c": c} for c in (gen_c or (None, None))]  # per phase
    g_loss, d_loss = LOSSES[t.loss]
    stats = g_main(G, D, G_opt, gen_z[0], c_opts[0], t, d_opts, dist, cur_nimg, phase, g_loss)
    stats |= d_main(G, D, D_opt, real, {} if real_c is None else {"c": real_c}, gen_z[1], c_opts[1], d_opts, dist,
                    cur_nimg, phase, d_loss)
    if do_r1 and t.r1_gamma > 0:
        with phase("Dreg: R1 (forward, double backward, step)"):
            stats |= d_reg(D if D_reg is None else D_reg, D, D_opt, real, real_c, t, d_opts, dist, cur_nimg)
    D.requires_grad_(False)
    # Each rank moved w_avg towards its own shard's mean w. The update is linear in that mean, so the
    # mean over ranks is the update by the global batch's mean, as in one process.
    if dist.active:
        dist.average_(G.mapping.w_avg)
    return stats


def g_main(G: nn.Module, D: nn.Module, G_opt: torch.optim.Optimizer, z: Tensor, c_opts: dict, t: TrainingConfig,
           d_opts: dict, dist: Distributed, cur_nimg: int, phase, g_loss=LOSSES["logistic"][0]) -> dict[str, float]:
    """Gmain: make D say "real" to fresh fakes (G's loss: non-saturating or hinge), and step G."""
    G.requires_grad_(True)
    D.requires_grad_(False)
    with phase("Gmain: G forward"):
        fake = G(z, tile=t.g_tile, **c_opts)
    with phase("Gmain: D forward"):
        loss_G = g_loss(D(fake, **d_opts, **c_opts))
    stats = dict(zip(["loss_G"], dist.mean(loss_G), strict=True))
    _check_finite("loss_G", stats["loss_G"], cur_nimg)
    _descend(loss_G, G, G_opt, dist, phase, "Gmain: backward (D and G)", "Gmain: Adam step")
    return stats


def _descend(loss: Tensor, net: nn.Module, opt: torch.optim.Optimizer, dist: Distributed, phase, backward: str,
             step: str) -> None:
    """Backpropagate ``loss`` and step ``opt`` on ``net``'s gradients, averaged over the ranks."""
    opt.zero_grad(set_to_none=True)
    with phase(backward):
        loss.backward()
    with phase(step):
        dist.average_gradients(net)
        opt.step()


def d_main(G: nn.Module, D: nn.Module, D_opt: torch.optim.Optimizer, real: Tensor, real_opts: dict, z: Tensor,
           c_opts: dict, d_opts: dict, dist: Distributed, cur_nimg: int, phase,
           d_loss=LOSSES["logistic"][1]) -> dict[str, float]:
    """Dmain: D's loss (logistic or hinge) on reals and on fakes of G (no gradient to G), and step D."""
    G.requires_grad_(False)
    D.requires_grad_(True)
    with phase("Dmain: G forward (no grad)"), torch.no_grad():
        fake = G(z, **c_opts)
    with phase("Dmain: D forward (fake + real)"):
        fake_logits = D(fake, **d_opts, **c_opts)
        real_logits = D(real, **d_opts, **real_opts)
        loss_D = d_loss(real_logits, fake_logits)
    stats = dict(zip(["loss_D", "D_real", "D_fake", "D_real_sign"], dist.mean(
        loss_D, real_logits.mean(), fake_logits.mean(), real_logits.sign().mean()), strict=True))
    _check_finite("loss_D", stats["loss_D"], cur_nimg)
    _descend(loss_D, D, D_opt, dist, phase, "Dmain: D backward", "Dmain: Adam step")
    return stats


def d_reg(D_reg: nn.Module, D: nn.Module, D_opt: torch.optim.Optimizer, real: Tensor, real_c: Tensor | None,
          t: TrainingConfig, d_opts: dict, dist: Distributed, cur_nimg: int) -> dict[str, float]:
    """Dreg: the lazy R1 penalty on the reals, weighted by the interval, and a step of D."""
    D_opt.zero_grad(set_to_none=True)
    loss_r1 = r1_backward(D_reg, real, t, real_c, **d_opts)
    stats = dict(zip(["loss_r1"], dist.mean(loss_r1), strict=True))
    _check_finite("loss_r1", stats["loss_r1"], cur_nimg)
    dist.average_gradients(D)
    D_opt.step()
    return stats


# ----------------------------------------------------------------------------------------------
# The run.


def _rng_state(rng: torch.Generator) -> dict[str, Any]:
    state = {"rng": rng.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(rng: torch.Generator, state: dict[str, Any]) -> None:
    rng.set_state(state["rng"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Run:
    """Everything a run needs, resolved from a preset or from a run directory to resume."""

    G_cfg: AnyGeneratorConfig
    D_cfg: AnyDiscriminatorConfig
    t: TrainingConfig
    options: RunOptions
    state: dict[str, Any] | None = None  # training state to resume from
    init_weights: dict[str, Any] | None = None  # G, G_ema (and D) state dicts a fine-tuning run starts from


def _restore(s: dict[str, Any], G, D, G_ema, G_opt, D_opt, t: TrainingConfig) -> None:
    """Load the networks and optimizers of a training state; the recipe's lr, betas and eps win (--lr etc.)."""
    G.load_state_dict(s["G"])
    D.load_state_dict(s["D"])
    G_ema.load_state_dict(s["G_ema"])
    for opt, fresh in zip((G_opt, D_opt), make_optimizers(G, D, t), strict=True):
        opt.load_state_dict(s["G_opt" if opt is G_opt else "D_opt"])
        for group, new in zip(opt.param_groups, fresh.param_groups, strict=True):
            group.update(lr=new["lr"], betas=new["betas"], eps=new["eps"])


def _load_init_weights(weights: dict[str, Any], G, D, G_ema, source, log) -> None:
    try:
        G.load_state_dict(weights["G"])
        G_ema.load_state_dict(weights["G_ema"])
        if "D" in weights:
            D.load_state_dict(weights["D"])
    except RuntimeError as e:
        raise CheckpointError(f"{source}: its weights do not fit its own configs ({str(e).splitlines()[0]})") from e
    log(f"starting from the weights of {source}" + ("" if "D" in weights else " (an export: D starts from scratch)"))


def _restore_augment(s: dict[str, Any], pipe, t: TrainingConfig) -> None:
    """The augmentation's p and random stream; a run that did not augment before starts at --aug-p or 0."""
    if pipe is None or "augment" not in s:
        return
    pipe.p.fill_(t.aug_p if t.aug_p is not None else float(s["augment"]["p"]))
    pipe.generator.set_state(s["augment"]["rng"])


def plan_run(
    options: RunOptions,
    resume: str | os.PathLike | None = None,
    overrides: dict[str, Any] | None = None,
    img_channels: int = 3,
) -> Run:
    """Resolve configs: from the preset for a new run, from the run directory when resuming.

    ``overrides`` replaces fields of the training config (e.g. batch, kimg, seed, r1_gamma); when
    resuming, options left as None (data, preset, resolution, and the metrics, their interval and
    features) are taken from the run.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if resume is None:
        for key in ("metrics", "metrics_every", "features"):
            if getattr(options, key) is None:
                setattr(options, key, copy.copy(_OPTION_DEFAULTS[key]))
    if resume is None and options.init_from is not None:
        return _plan_fine_tuning(options, overrides)
    if resume is None:
        if options.data is None:
            raise ConfigError("--data is required for a new run")
        preset = get_preset(options.preset or "cpu-32", options.resolution, img_channels)
        options.preset, options.resolution = preset.name, preset.G.resolution
        return Run(preset.G, preset.D, fitted(preset.G, replace(preset.training, **overrides)), options)
    resume = Path(resume)
    if not (resume / STATE_NAME).is_file() and not (resume / RUN_CONFIG).is_file():
        raise FileNotFoundError(f"{resume}: not a run directory (no {STATE_NAME} or {RUN_CONFIG})")
    state = load_training_state(resume / STATE_NAME)
    t, saved_options = _recipe(resume, state)
    for key in ("data", "preset", "resolution", "metrics", "metrics_every", "features"):
        if getattr(options, key) is None:  # not given for this leg: the run's own
            setattr(options, key, copy.copy(saved_options.get(key, _OPTION_DEFAULTS.get(key))))
    try:
        G_cfg, D_cfg = generator_config_from_dict(state["G_cfg"]), discriminator_config_from_dict(state["D_cfg"])
    except (TypeError, ConfigError) as e:
        raise CheckpointError(f"{resume / STATE_NAME}: its configs are not readable ({e})") from e
    return Run(G_cfg, D_cfg, fitted(G_cfg, replace(t, **overrides)), options, state)


def _recipe(run_dir: Path, state: dict[str, Any]) -> tuple[TrainingConfig, dict[str, Any]]:
    """A run's TrainingConfig and options: from its training state, or from run.json for a state written
    before states held them."""
    if "training" in state and "options" in state:
        try:
            return TrainingConfig.from_dict(state["training"]), dict(state["options"])
        except (TypeError, ConfigError) as e:
            raise CheckpointError(f"{run_dir / STATE_NAME}: its training config is not readable ({e})") from e
    run_json = run_dir / RUN_CONFIG
    if not run_json.is_file():
        raise FileNotFoundError(f"{run_dir}: not a run directory (no {RUN_CONFIG})")
    try:
        meta = json.loads(run_json.read_text())
        return TrainingConfig.from_dict(meta["training"]), {k: meta["options"][k] for k in ("data", "preset",
                                                                                              "resolution")}
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ConfigError) as e:
        raise CheckpointError(f"{run_json}: not a readable run description ({type(e).__name__}: {e})") from e


def _plan_fine_tuning(options: RunOptions, overrides: dict[str, Any]) -> Run:
    """A new run from trained weights: G (and D for a run directory) from ``options.init_from``."""
    from ..pretrained import resolve_checkpoint

    if options.data is None:
        raise ConfigError("--data is required for a new run")
    source = resolve_checkpoint(options.init_from)
    if (source / STATE_NAME).is_file():  # a run directory: G, D, G_ema and the recipe
        state = load_training_state(source / STATE_NAME)
        G_cfg, D_cfg = generator_config_from_dict(state["G_cfg"]), discriminator_config_from_dict(state["D_cfg"])
        t = _recipe(source, state)[0]
        weights = {k: state[k] for k in ("G", "D", "G_ema")}
    else:  # an export: G_ema for G and G_ema, a new D, the default recipe
        G_ema = Generator.from_pretrained(source)
        G_cfg = G_ema.cfg
        preset = get_preset(options.preset or "cpu-32", G_cfg.resolution, G_cfg.img_channels)
        D_cfg, t = preset.D, preset.training
        weights = {"G": G_ema.state_dict(), "G_ema": G_ema.state_dict()}
    if options.resolution is not None and options.resolution != G_cfg.resolution:
        raise ConfigError(f"--resolution {options.resolution}: {options.init_from} is a {G_cfg.resolution}^2 model; "
                          f"the architecture of a fine-tuning run comes from it")
    options.resolution = G_cfg.resolution
    return Run(G_cfg, D_cfg, fitted(G_cfg, replace(t, **overrides)), options, init_weights=weights)


def fitted(G_cfg: AnyGeneratorConfig, t: TrainingConfig) -> TrainingConfig:
    """``t``, once it is checked against the generator it trains (ConfigError otherwise)."""
    if t.g_tile is not None and not G_cfg.pixel_independent:
        raise ConfigError("g_tile (--g-tile) needs a pixel-independent generator (nearest upsampling, no spatial std "
                          "normalisation); the -bil variants and stylegan2 train on whole images")
    return t


def train(
    run_dir: str | os.PathLike,
    options: RunOptions,
    resume: str | os.PathLike | None = None,
    overrides: dict[str, Any] | None = None,
    log=print,
) -> dict[str, Any]:
    """Train (or resume) a run until ``kimg`` thousand images; returns the last tick's stats.

    Started by torchrun, every rank calls this: it joins the process group here and leaves it at the
    end, and only rank 0 logs and writes the run directory.
    """
    dist = init_distributed(resolve_device(options.device))
    try:
        return _train(Path(run_dir), options, resume, overrides, log if dist.is_main else _quiet, dist)
    finally:
        dist.shutdown()


def _quiet(*_args: Any, **_kwargs: Any) -> None:
    pass


def _train(
    run_dir: Path,
    options: RunOptions,
    resume: str | os.PathLike | None,
    overrides: dict[str, Any] | None,
    log,
    dist: Distributed,
) -> dict[str, Any]:
    with run_lock(run_dir) if dist.is_main else contextlib.nullcontext():
        if (run_dir / STATE_NAME).is_file() and (resume is None or Path(resume).resolve() != run_dir.resolve()):
            raise ConfigError(f"{run_dir} already holds a run ({STATE_NAME}): continue it with --resume {run_dir}, "
                              "or give a new --out")
        run, dataset = _plan_with_data(options, resume, overrides, log, dist)
        trainer = Trainer(run, dataset, run_dir, options, dist, log)
        trainer.restore(resume)
        return trainer.run()


def _plan_with_data(options: RunOptions, resume, overrides, log, dist: Distributed):
    """The run's configs and its dataset, checked against each other and against the ranks."""
    from ..data import open_dataset

    run = plan_run(options, resume, overrides)
    dataset = open_dataset(options.data, run.G_cfg.resolution)
    if resume is None and dataset.num_channels != run.G_cfg.img_channels:
        run = plan_run(options, None, overrides, img_channels=dataset.num_channels)
    if run.G_cfg.img_channels != dataset.num_channels:
        raise ConfigError(f"the run has {run.G_cfg.img_channels} channels but {options.data} has "
                          f"{dataset.num_channels}")
    run = _with_labels(run, dataset, options, log)
    if run.t.batch % dist.world_size:
        raise ConfigError(f"the global batch {run.t.batch} cannot be split over {dist.world_size} ranks: give a "
                          f"--batch that is a multiple of {dist.world_size}")
    if dist.active:
        log(f"distributed: {dist.world_size} ranks ({dist.backend} on {dist.device.type}), "
            f"{run.t.batch // dist.world_size} images per rank of the global batch of {run.t.batch}")
    return run, dataset


def _with_labels(run: Run, dataset, options: RunOptions, log) -> Run:
    """A new run with --cond takes the data's classes; a conditional run needs data with the same classes."""
    labels = dataset.labels
    if run.state is None and run.init_weights is None:
        if options.cond and labels is None:
            raise ConfigError(f"--cond: {options.data} has no class labels (Fashion-MNIST's label file, a "
                              f"dataset.json, or one sub-folder per class)")
        if options.cond:
            return replace(run, G_cfg=replace(run.G_cfg, class_names=labels.names),
                           D_cfg=replace(run.D_cfg, c_dim=len(labels.names)))
        if labels is not None:
            log(f"{options.data} has labels ({len(labels.names)} classes, from {labels.source}); they are ignored: "
                f"pass --cond to train a class-conditional model")
        return run
    if run.G_cfg.c_dim and (labels is None or labels.names != run.G_cfg.class_names):
        raise ConfigError(f"the model is conditional on {list(run.G_cfg.class_names)}, but {options.data} has "
                          f"{'no labels' if labels is None else f'the classes {list(labels.names)}'}")
    return run


class Trainer:
    """One run's networks, optimizers, counters and random stream, and the loop over its steps and ticks.

    ``restore`` loads a fine-tuning start or a training state, ``run`` trains to ``t.kimg``: each step is
    ``training_step`` plus the EMA and the augmentation's p; each tick writes stats and a sample grid, and
    every ``snapshot_ticks`` ticks the checkpoint (rank 0 alone).
    """

    def __init__(self, run: Run, dataset, run_dir: Path, options: RunOptions, dist: Distributed, log):
        self.run_cfg, self.dataset, self.run_dir = run, dataset, run_dir
        self.options, self.dist, self.log = options, dist, log
        self.t, device = run.t, dist.device
        torch.manual_seed(self.t.seed)
        self.G = Generator.build(run.G_cfg).to(device).train()
        self.D = build_discriminator(run.D_cfg).to(device).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.G_opt, self.D_opt = make_optimizers(self.G, self.D, self.t)
        t = self.t
        self.pipe = AugmentPipe(t.aug, p=t.aug_p or 0.0, seed=t.seed + 1) if t.aug != "none" else None
        # every phase's D, R1 included, sees augmented images
        self.D_seen = AugmentedD(self.D, self.pipe) if self.pipe is not None else self.D
        self.rng = torch.Generator().manual_seed(t.seed)
        self.cur_nimg, self.cur_tick, self.batch_idx = 0, 0, 0
        self.c_dim = run.G_cfg.c_dim  # a conditional run's classes (0: unconditional)
        dataset.return_labels = bool(self.c_dim)
        self.meta = {"G": run.G_cfg.to_dict(), "D": run.D_cfg.to_dict(), "training": t.to_dict(),
                     "options": options.to_dict(), "dataset": {"name": dataset.name, "size": len(dataset)},
                     "ranks": dist.world_size}

    def restore(self, resume) -> None:
        """Fine-tuning weights or a training state (resume), then every replica from rank 0's weights."""
        run = self.run_cfg
        if run.init_weights is not None:
            _load_init_weights(run.init_weights, self.G, self.D, self.G_ema, self.options.init_from, self.log)
        if run.state is not None:
            s = run.state
            try:
                _restore(s, self.G, self.D, self.G_ema, self.G_opt, self.D_opt, self.t)
                _restore_augment(s, self.pipe, self.t)
                self.cur_nimg, self.cur_tick = int(s["cur_nimg"]), int(s["cur_tick"])
                self.batch_idx = int(s["batch_idx"])
                _set_rng_state(self.rng, s["rng_state"])
            except (RuntimeError, KeyError, TypeError, ValueError) as e:
                first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
                raise CheckpointError(f"{Path(resume) / STATE_NAME}: the training state does not fit its own "
                                      f"configs ({first})") from e
            self.log(f"resuming from {resume} at {self.cur_nimg / 1000:.3f} kimg")
        self.dist.broadcast_((self.G, self.D, self.G_ema))

    def snapshot(self) -> None:
        """The training state, run.json and the export, each written atomically; then the plot."""
        state = {
            "G_cfg": self.run_cfg.G_cfg.to_dict(), "D_cfg": self.run_cfg.D_cfg.to_dict(),
            "G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
            "G_opt": self.G_opt.state_dict(), "D_opt": self.D_opt.state_dict(),
            "cur_nimg": self.cur_nimg, "cur_tick": self.cur_tick, "batch_idx": self.batch_idx,
            "rng_state": _rng_state(self.rng),
            # the recipe and the options: the state alone resumes the run (run.json describes it for people)
            "training": self.t.to_dict(), "options": self.options.to_dict(),
        }
        if self.pipe is not None:
            state["augment"] = {"p": float(self.pipe.p), "rng": self.pipe.generator.get_state()}
        save_training_state(self.run_dir / STATE_NAME, state)
        atomic_write_text(self.run_dir / RUN_CONFIG, json.dumps(self.meta, indent=2))
        self.G_ema.save_pretrained(self.run_dir / "export",
                                   extra={"kimg": self.cur_nimg / 1000, "run": str(self.run_dir)})
        _plot(self.run_dir)

    def step(self, loader, shard: slice) -> tuple[dict[str, float], float]:
        """One iteration on the next batch: the three phases, the EMA and ADA's p. Returns (stats, EMA beta)."""
        t, device = self.t, self.dist.device
        real, labels = next(loader) if self.c_dim else (next(loader), None)
        real = real.to(device).float() / 127.5 - 1  # [B / ranks, C, R, R]
        # Every rank draws the flips and latents of the whole global batch and keeps its shard, so the
        # random stream, and with it the run, is the same for any number of ranks.
        if t.xflip:
            flip = (torch.rand(t.batch, generator=self.rng) < 0.5)[shard]
            real = torch.where(flip.to(device)[:, None, None, None], real.flip(3), real)
        gen_z = torch.randn(2, t.batch, self.G.z_dim, generator=self.rng)[:, shard].to(device)  # [2, B/ranks, z_dim]
        mixed = t.mixed_precision and device.type == "cuda"
        classes = self._classes(labels, shard) if self.c_dim else {}
        stats = training_step(self.G, self.D_seen, self.G_opt, self.D_opt, real, (gen_z[0], gen_z[1]),
                              self.batch_idx % t.r1_interval == 0, t, self.cur_nimg, mixed, self.dist, **classes)
        self.cur_nimg += t.batch
        self.batch_idx += 1
        beta = ema_beta(t.batch, self.cur_nimg, t.ema_kimg, t.ema_rampup)
        update_ema(self.G_ema, self.G, beta)
        if self.pipe is not None and t.aug == "ada" and t.aug_p is None:
            p = ada_update(float(self.pipe.p), stats["D_real_sign"], t.aug_target, t.batch, t.ada_kimg)
            self.pipe.p.fill_(p)
        return stats, beta

    def _classes(self, labels: Tensor, shard: slice) -> dict[str, Any]:
        """One-hot classes of the reals, and of the latents: the labels of random reals of the whole global
        batch, as StyleGAN2-ADA draws them, this rank's shard kept."""
        device, values = self.dist.device, self.dataset.labels.values
        picks = torch.randint(len(values), (2, self.t.batch), generator=self.rng)[:, shard]  # [2, B / ranks]
        gen = F.one_hot(torch.from_numpy(values[picks.numpy()]), self.c_dim).float().to(device)  # [2, B/r, c]
        return {"real_c": F.one_hot(labels, self.c_dim).float().to(device), "gen_c": (gen[0], gen[1])}

    def grid_classes(self, n: int) -> Tensor | None:
        """The sample grid's classes: seed i shows class i mod c_dim (one row of classes after another)."""
        if not self.c_dim:
            return None
        return F.one_hot(torch.arange(n) % self.c_dim, self.c_dim).float().to(self.dist.device)  # [n, c_dim]

    def tick(self, record: dict[str, Any], grid_z: Tensor, writer, done: bool) -> None:
        """A tick's stats line, TensorBoard scalars and sample grid, and every snapshot_ticks the checkpoint."""
        self.cur_tick += 1
        if not self.dist.is_main:
            return
        with open(self.run_dir / "stats.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if writer is not None:
            for k, v in record.items():
                if k != "tick":
                    writer.add_scalar(f"train/{k}", v, self.cur_nimg)
        grid_c = self.grid_classes(len(grid_z))
        with torch.no_grad():
            fakes = torch.cat([self.G_ema(z[None], None if grid_c is None else grid_c[i:i + 1])
                               for i, z in enumerate(grid_z)])
        save_grid(fakes, self.run_dir / "samples" / f"fakes{self.cur_nimg // 1000:06d}.png")
        if done or self.cur_tick % self.t.snapshot_ticks == 0:
            self.snapshot()

    def _prepare_dir(self, grid_seeds: int) -> None:
        if not self.dist.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "samples").mkdir(exist_ok=True)
        if not (self.run_dir / RUN_CONFIG).is_file():
            atomic_write_text(self.run_dir / RUN_CONFIG, json.dumps(self.meta, indent=2))
        if self.run_cfg.state is not None:  # ticks logged after the last snapshot are trained again
            for log_name in ("stats.jsonl", "metrics.jsonl"):
                _drop_records_after(self.run_dir / log_name, self.cur_nimg / 1000)
        if self.run_cfg.state is None:
            items = [self.dataset[i] for i in range(min(grid_seeds, len(self.dataset)))]
            reals = torch.stack([item[0] if self.c_dim else item for item in items])
            save_grid(reals.float() / 127.5 - 1, self.run_dir / "samples" / "reals.png")

    def run(self) -> dict[str, Any]:
        """Train until ``t.kimg``, or until the ``minutes`` budget, SIGTERM or Ctrl-C, each of which ends with a
        checkpoint; returns the last tick's record (empty when there was nothing to do)."""
        with StopRequest(self.options.minutes, self.log) as stop:
            return self._run(stop)

    def _run(self, stop: StopRequest) -> dict[str, Any]:
        t, dist, options = self.t, self.dist, self.options
        device = dist.device
        self._prepare_dir(t.grid_seeds)
        total_nimg = int(round(t.kimg * 1000))
        sampler = StreamBatchSampler(len(self.dataset), t.seed, self.cur_nimg, t.batch, dist.rank,
                                     dist.world_size)
        loader = iter(torch.utils.data.DataLoader(self.dataset, batch_sampler=sampler,
                                                  num_workers=options.workers, pin_memory=device.type == "cuda"))
        shard = slice(dist.rank, None, dist.world_size)  # this rank's images of a global batch, as the sampler's
        grid_z = torch.randn(t.grid_seeds, self.G.z_dim, generator=torch.Generator().manual_seed(0)).to(device)
        writer = _tensorboard(self.run_dir) if dist.is_main else None
        progress = _progress(options.progress and dist.is_main, total_nimg, self.cur_nimg)
        adaptive = options.adaptive_threads and device.type == "cpu" and not dist.active
        governor = ThreadGovernor(torch.get_num_threads()) if adaptive else None
        tick_start_nimg, tick_start_time, start_time = self.cur_nimg, time.time(), time.time()
        accum: dict[str, list[float]] = {}
        last: dict[str, Any] = {}
        while self.cur_nimg < total_nimg:
            if governor is not None:
                governor.update()
            stats, beta = self.step(loader, shard)
            for k, v in stats.items():
                accum.setdefault(k, []).append(v)
            if progress is not None:
                progress.update(t.batch)
                progress.set_postfix_str(f"kimg {self.cur_nimg / 1000:.2f} | G {stats['loss_G']:.3f} | "
                                         f"D {stats['loss_D']:.3f}", refresh=False)
            done = self.cur_nimg >= total_nimg or stop.due(dist)
            if not done and self.cur_nimg < tick_start_nimg + t.tick_kimg * 1000:
                continue
            last = self._record(accum, beta, tick_start_nimg, tick_start_time, start_time)
            if progress is None and options.progress and dist.is_main:
                self.log(f"tick {last['tick']}: {last['kimg']:.2f} kimg, {last['img_per_s']:.1f} img/s, G "
                         f"{last['loss_G']:.3f}, D {last['loss_D']:.3f}, samples/fakes{self.cur_nimg // 1000:06d}.png")
            self.tick(last, grid_z, writer, done)
            dist.wait_for_main("rank 0 to write the tick's stats, samples and checkpoint")
            if options.metrics and (done or _metrics_due(options, self.cur_nimg, tick_start_nimg)):
                # Every rank renders and embeds its share of the generated images; rank 0 does the rest.
                _evaluate(self.G_ema, self.dataset, options, self.run_dir, self.cur_nimg, device, self.log, dist)
                dist.wait_for_main("rank 0 to compute the metrics")
            accum = {}
            tick_start_nimg, tick_start_time = self.cur_nimg, time.time()
            if done:
                break
        for closing in (progress, writer):
            if closing is not None:
                closing.close()
        if self.run_cfg.state is not None and not last:
            self.log(f"nothing to do: the run is already at {self.cur_nimg / 1000:.3f} kimg >= --kimg {t.kimg}")
        return {**last, "stopped": stop.reason} if stop.reason and last else last

    def _record(self, accum: dict[str, list[float]], beta: float, tick_start_nimg: int, tick_start_time: float,
                start_time: float) -> dict[str, Any]:
        now = time.time()
        record = {
            "tick": self.cur_tick, "kimg": self.cur_nimg / 1000, "time_s": round(now - start_time, 3),
            "img_per_s": round((self.cur_nimg - tick_start_nimg) / max(now - tick_start_time, 1e-9), 3),
            "ema_beta": beta, "threads": torch.get_num_threads(), **{k: sum(v) / len(v) for k, v in accum.items()},
        }
        if self.pipe is not None:
            record["aug_p"] = float(self.pipe.p)
        return record


def _drop_records_after(path: Path, kimg: float) -> None:
    """Rewrite a run's log (atomically) without the records past ``kimg``: a run stopped between a tick
    and its snapshot logged ticks that the resumed run trains again."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    keep = [ln for ln in lines if not ln.strip() or json.loads(ln).get("kimg", 0) <= kimg + 1e-9]
    if len(keep) != len(lines):
        atomic_write_text(path, "".join(ln + "\n" for ln in keep))


def _metrics_due(options: RunOptions, cur_nimg: int, tick_start_nimg: int) -> bool:
    every = options.metrics_every
    if every is None:
        return False
    step = int(every * 1000)
    return step > 0 and cur_nimg // step > tick_start_nimg // step


def _evaluate(G_ema, dataset, options: RunOptions, run_dir: Path, cur_nimg: int, device, log,
              dist: Distributed) -> None:
    from ..metrics import evaluate

    records = evaluate(G_ema, dataset, options.metrics, features=options.features, device=device,
                       progress=False, dist=dist)
    if not dist.is_main:
        return
    with open(run_dir / "metrics.jsonl", "a") as f:
        for r in records:
            f.write(json.dumps({"kimg": cur_nimg / 1000, **r}) + "\n")
    log(" ".join(f"{r['metric']}={r['value']:.4g}" for r in records))
    _plot(run_dir)


def _plot(run_dir: Path) -> None:
    """The training curves at each snapshot, where matplotlib is installed (the ``plot`` extra)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    from .plots import plot_run

    plot_run(run_dir)


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed: logging goes to stats.jsonl only
        return None
    return SummaryWriter(str(run_dir / "tb"))


def _progress(enabled: bool, total: int, initial: int):
    """A tqdm bar on a terminal; None elsewhere (a log gets one line per tick instead of carriage returns)."""
    import sys

    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="img", unit_scale=True, dynamic_ncols=True,
                desc="train", smoothing=0.1)

