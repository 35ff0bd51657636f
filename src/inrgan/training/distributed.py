"""Data-parallel training on torch.distributed: one process per GPU (or per CPU worker), started by torchrun.

Every rank holds a full replica of G, D and G_ema and trains on its own shard of each global batch.
After the backward pass of every phase (Gmain, Dmain and the lazy R1 phase Dreg) the gradients are
averaged over the ranks in one all_reduce, so every replica takes the same optimiser step. This is the
scheme of DistributedDataParallel written out by hand: R1 differentiates a gradient (double backward),
which DDP's gradient hooks do not support, and StyleGAN2-ADA averages its gradients the same way.
Each phase's loss is a mean over the rank's shard, and shards are of equal size, so the average of
the ranks' gradients is the gradient of the mean over the global batch.

Nothing happens at import. :func:`init_distributed` reads torchrun's environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT). Without it, training runs in one process and every collective
here is a no-op. NCCL is used for CUDA devices and gloo for the CPU.

Failures: a collective that fails because a peer exited, or did not answer within
``$INRGAN_DIST_TIMEOUT`` seconds (default 300), raises :class:`DistributedError` naming this rank. While
rank 0 writes a checkpoint or evaluates metrics, the other ranks wait for up to
``$INRGAN_DIST_WAIT_TIMEOUT`` seconds (default 3600).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..config import ConfigError

TIMEOUT_ENV = "INRGAN_DIST_TIMEOUT"
WAIT_TIMEOUT_ENV = "INRGAN_DIST_WAIT_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0
DEFAULT_WAIT_TIMEOUT_S = 3600.0
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(RuntimeError):
    """Another rank of a multi-process run failed or stopped answering; this rank stops too."""


@dataclass
class Distributed:
    """This process's place in the run: rank, number of ranks, device, and the collectives of a step.

    ``Distributed()`` is a single process: every method returns at once and nothing is communicated.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None  # "nccl" or "gloo"; None: one process without a process group
    owns_group: bool = False  # init_distributed created the process group, so shutdown destroys it
    wait_group: Any = None  # gloo group with the long timeout, for waiting on rank 0

    @property
    def active(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs, sample grids, checkpoints and metrics; the others only train."""
        return self.rank == 0

    def describe(self) -> str:
        if not self.active:
            return "1 process"
        return f"{self.world_size} ranks ({self.backend}), this is rank {self.rank} on {self.device}"

    # ------------------------------------------------------------------------------------------
    # The collectives of a training step.

    def mean(self, *values: Tensor) -> list[float]:
        """Means over ranks of scalar tensors (losses, mean logits), as floats: one all_reduce for all."""
        x = torch.stack([v.detach().double().reshape(()) for v in values])  # [n]
        if self.active:
            self._all_reduce(x, "averaging the losses")
            x /= self.world_size
        return x.tolist()

    def average_gradients(self, module: nn.Module) -> None:
        """Replace every gradient of ``module`` by its mean over ranks, in one flat all_reduce."""
        if not self.active:
            return
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])  # [sum of numel]
        self._all_reduce(flat, "averaging the gradients")
        flat /= self.world_size
        for g, avg in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
            g.copy_(avg.view_as(g))

    @torch.no_grad()
    def average_(self, tensor: Tensor) -> Tensor:
        """In place: ``tensor`` <- its mean over ranks (e.g. the mapping network's w_avg)."""
        if self.active:
            self._all_reduce(tensor, "averaging w_avg")
            tensor /= self.world_size
        return tensor

    @torch.no_grad()
    def broadcast_(self, modules: Iterable[nn.Module]) -> None:
        """Copy rank 0's parameters and buffers into every rank's replica of ``modules``."""
        if not self.active:
            return
        for module in modules:
            for t in [*module.parameters(), *module.buffers()]:
                try:
                    dist.broadcast(t.data, src=0)
                except RuntimeError as e:
                    raise self._peer_failed("copying rank 0's weights", e) from e

    def wait_for_main(self, what: str = "rank 0") -> None:
        """Barrier with the long timeout: the other ranks wait while rank 0 writes files or evaluates."""
        if not self.active:
            return
        try:
            dist.barrier(group=self.wait_group)
        except RuntimeError as e:
            raise self._peer_failed(f"waiting for {what}", e) from e

    def all_gather(self, local: Tensor) -> Tensor:
        """Concatenate every rank's ``local`` [N_r, ...] along dim 0, in rank order; N_r may differ.

        For metrics computed from all ranks: each rank embeds its share of the images and every rank
        receives the features of all of them. Under NCCL, ``local`` must be on this rank's GPU.
        """
        if not self.active:
            return local
        local = local.contiguous()
        sizes = torch.zeros(self.world_size, dtype=torch.long, device=local.device)
        sizes[self.rank] = local.shape[0]
        self._all_reduce(sizes, "gathering feature counts")
        padded = local.new_zeros((int(sizes.max()), *local.shape[1:]))
        padded[: local.shape[0]] = local
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        try:
            dist.all_gather(parts, padded)
        except RuntimeError as e:
            raise self._peer_failed("gathering features", e) from e
        return torch.cat([p[: int(n)] for p, n in zip(parts, sizes, strict=True)])

    def shutdown(self) -> None:
        """Destroy the process group if :func:`init_distributed` created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
        self.owns_group = False

    def _all_reduce(self, x: Tensor, what: str) -> None:
        try:
            dist.all_reduce(x)
        except RuntimeError as e:  # gloo: a peer closed its connection, or the timeout passed
            raise self._peer_failed(what, e) from e

    def _peer_failed(self, what: str, error: BaseException) -> DistributedError:
        return DistributedError(
            f"rank {self.rank} of {self.world_size}: {what} failed because another rank exited or stopped "
            f"answering ({_first_sentence(error)}); stopping this rank too. The last checkpoint in the run "
            f"directory is intact: fix the cause and resume with --resume."
        )


def _first_sentence(error: BaseException) -> str:
    """The gist of a backend error: its first sentence, without gloo's source location."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", str(error).strip())
    return text.splitlines()[0].split(". ")[0].rstrip(".") if text else type(error).__name__


# ----------------------------------------------------------------------------------------------
# Set-up from torchrun's environment.


def torchrun_ranks() -> tuple[int, int, int] | None:
    """(rank, world_size, local_rank) when this process was started by torchrun, else None."""
    if not all(k in os.environ for k in TORCHRUN_ENV):
        return None
    try:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    except ValueError as e:
        raise ConfigError(f"torchrun's RANK, WORLD_SIZE and LOCAL_RANK must be integers ({e})") from e


def _seconds(env: str, default: float) -> timedelta:
    value = os.environ.get(env)
    if not value:
        return timedelta(seconds=default)
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ConfigError(f"${env} must be a positive number of seconds, got {value!r}")
    return timedelta(seconds=seconds)


def rank_device(device: torch.device, local_rank: int) -> torch.device:
    """The device of one rank: cuda:LOCAL_RANK for CUDA, else the CPU."""
    if device.type == "cuda":
        if device.index is not None:
            raise ConfigError(f"--device {device} under torchrun: give --device cuda (or auto); each rank uses "
                              f"the GPU cuda:LOCAL_RANK")
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise ConfigError(f"LOCAL_RANK {local_rank} but this node has {count} GPU(s): --nproc_per_node must "
                              f"be at most the number of GPUs per node")
        return torch.device("cuda", local_rank)
    if device.type != "cpu":
        raise ConfigError(f"multi-process training runs on CUDA (NCCL) or on the CPU (gloo), not on {device.type}; "
                          f"use --device cuda or --device cpu")
    return device


def init_distributed(device: torch.device) -> Distributed:
    """Join the run's process group when started by torchrun; otherwise a single process on ``device``.

    A process group that the caller initialised already is used as it is (and left to the caller).
    """
    if dist.is_available() and dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        owns = False
    else:
        ranks = torchrun_ranks()
        if ranks is None:
            return Distributed(device=device)
        if not dist.is_available():
            raise ConfigError("started by torchrun, but this build of PyTorch has no torch.distributed")
        rank, world_size, local_rank = ranks
        owns = True
    device = rank_device(device, local_rank)
    timeout = _seconds(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)
    wait_timeout = _seconds(WAIT_TIMEOUT_ENV, DEFAULT_WAIT_TIMEOUT_S)
    if owns:
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        try:
            dist.init_process_group(backend, timeout=timeout)
        except (RuntimeError, TimeoutError) as e:  # the rendezvous at MASTER_ADDR:MASTER_PORT failed
            raise DistributedError(f"rank {rank} of {world_size}: cannot join the process group at "
                                   f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} ({e})") from e
    else:
        backend = dist.get_backend()
        if backend == "nccl" and device.type != "cuda":
            raise ConfigError(f"the process group uses NCCL, which needs CUDA tensors, but the device is {device}")
    ctx = Distributed(rank=rank, world_size=world_size, local_rank=local_rank, device=device, backend=backend,
                      owns_group=owns)
    try:
        ctx.wait_group = dist.new_group(backend="gloo", timeout=wait_timeout)
    except RuntimeError as e:
        ctx.shutdown()
        raise ctx._peer_failed("creating the process group", e) from e
    return ctx
