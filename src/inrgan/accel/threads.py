"""Sample-parallel CPU inference: the batch split over threads that each run single-threaded kernels.

Intra-op parallelism (torch's default) splits every operation over the cores and joins them at a
barrier: a 64^2 forward of ``inr-gan`` is about 2,000 operations, and with OpenMP's passive waits each
one wakes the sleeping threads again. For inference on a batch at least as large as the thread count
there is a cheaper split: every thread renders its own samples with one-thread kernels, so nothing
waits on anything until the images are put together. The affine heads are the exception, since their
weights (59.4M at 256^2) serve every sample: the threads take their rows in pieces, so that every weight
is read once for the whole batch, while the calling thread makes the INR parameters of the blocks whose
heads are done; then the samples are split.

The pool is made on first use (nothing happens at import), one per process (a forked child makes its
own), and remade when ``torch.get_num_threads()`` changes. Its threads run torch with one intra-op
thread; the calling thread's setting is left as it was.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch
from torch import Tensor

from ..models.layers import EqualLinear, equal_linear
from . import native

T = TypeVar("T")

_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, threads, executor)
_pool_lock = threading.Lock()
_worker = threading.local()


# Below this much work per thread (multiply-accumulates by the layer shapes), running every operation once
# per thread costs more than the barriers it saves: every thread repeats the Python and dispatch overhead
# of the whole forward, one at a time under the GIL. Measured on 2 cores (docs/performance.md): cpu-32 at
# 32^2, batch 4 (63M per thread) was 0.88x as fast split, at 16^2, batch 16 (78M) 0.93x; cpu-32 at 32^2,
# batch 8 (126M) 1.11x; inr-gan at 8^2, batch 4 (209M, most of it the affine heads) 1.21x.
MIN_MACS_PER_THREAD = 100_000_000


def use_sample_parallel(batch: int, threads: int) -> bool:
    """Whether a batch splits well over ``threads``: every thread gets a sample, and the groups are even or
    the batch is large enough that one sample more on some threads costs little."""
    return threads >= 2 and batch >= threads and (batch % threads == 0 or batch >= 2 * threads)


def in_worker() -> bool:
    """True on a pool thread (a render there must not wait on the pool it runs on)."""
    return getattr(_worker, "active", False)


def sample_groups(batch: int, threads: int) -> list[tuple[int, int]]:
    """Contiguous sample ranges, one per thread, sizes differing by at most one."""
    bounds = [batch * t // threads for t in range(threads + 1)]
    return [(b0, b1) for b0, b1 in zip(bounds[:-1], bounds[1:], strict=True) if b1 > b0]


def _init_worker(barrier: threading.Barrier) -> None:
    _worker.active = True
    # torch sets a new thread's count lazily, from the process default, at its first parallel operation or
    # query: trigger that first, or it would undo the setting below once the caller restores the default.
    torch.get_num_threads()
    torch.set_num_threads(1)
    barrier.wait(timeout=60)  # every task on its own thread: each pool thread gets initialised


def pool(threads: int) -> ThreadPoolExecutor:
    """The process's pool of ``threads`` single-threaded workers."""
    global _pool
    with _pool_lock:
        if _pool is not None and _pool[:2] == (os.getpid(), threads):
            return _pool[2]
        if _pool is not None and _pool[0] == os.getpid():
            _pool[2].shutdown(wait=False)
        caller_threads = torch.get_num_threads()
        executor = ThreadPoolExecutor(threads, thread_name_prefix="inrgan-sample")
        barrier = threading.Barrier(threads)
        list(executor.map(lambda _: _init_worker(barrier), range(threads)))
        # torch.set_num_threads also sets the count that threads started later begin with: put it back.
        torch.set_num_threads(caller_threads)
        _pool = (os.getpid(), threads, executor)
        return executor


def submit_on_pool(threads: int, fn: Callable[[int], T]) -> list[Future[T]]:
    """Start ``fn(0), ..., fn(threads - 1)`` on the pool's threads, under the caller's grad mode."""
    inference = torch.is_inference_mode_enabled()
    grad = torch.is_grad_enabled()

    def call(t: int) -> T:
        # Grad and inference modes are per thread: the workers take the caller's.
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return fn(t)

    executor = pool(threads)
    return [executor.submit(call, t) for t in range(threads)]


def run_on_pool(threads: int, fn: Callable[[int], T]) -> list[T]:
    """``[fn(0), ..., fn(threads - 1)]``, one call per pool thread, under the caller's grad mode."""
    return [f.result() for f in submit_on_pool(threads, fn)]


# The heads' rows go out in pieces of about this many bytes of weight, taken by whichever thread is free:
# the calling thread makes INR parameters meanwhile and takes a core from one worker or the other.
HEAD_PIECE_BYTES = 4 << 20


class SharedStyles:
    """The affine heads' outputs being computed on the pool (:func:`start_shared_styles`)."""

    def __init__(self, out: list[Tensor], pieces_per_head: tuple[int, ...]) -> None:
        self.out = out  # every head's output [B, n], complete for the first heads that wait() has returned on
        self._left = list(pieces_per_head)  # pieces not done yet, per head
        self._complete = 0  # heads 0 .. _complete - 1 are done
        self._error: BaseException | None = None
        self._cond = threading.Condition()

    def _piece_done(self, head: int) -> None:
        with self._cond:
            self._left[head] -= 1
            while self._complete < len(self._left) and self._left[self._complete] == 0:
                self._complete += 1
            self._cond.notify_all()

    def _failed(self, err: BaseException) -> None:
        with self._cond:
            self._error = err
            self._cond.notify_all()

    def wait(self, heads: int) -> None:
        """Block until the first ``heads`` outputs are complete (re-raising a worker's error)."""
        with self._cond:
            while self._complete < heads and self._error is None:
                self._cond.wait()
            if self._error is not None:
                raise self._error


def start_shared_styles(heads: list[tuple[EqualLinear, Tensor]], threads: int, use_native: bool = False) -> SharedStyles:
    """Start computing every head's output [B, n] (``head(w)``) on the pool's threads,
    head after head, each head's rows in pieces that the threads take as they come free (every weight is
    read once for the whole batch); :meth:`SharedStyles.wait` follows their progress.

    With ``use_native`` the heads run through the C kernel of :mod:`.native` where it applies (fp32, no
    autograd, the kernels built), writing straight into the outputs; otherwise, or once a kernel call failed,
    through :func:`~inrgan.models.layers.equal_linear` on the rows.
    """
    batch = heads[0][1].shape[0]
    out = [w.new_empty(batch, head.weight.shape[0]) for head, w in heads]
    pieces, counts = _pieces(tuple((head.weight.shape[0], head.weight.shape[1] * head.weight.element_size())
                                   for head, _ in heads))
    state = SharedStyles(out, counts)
    lib = None
    if use_native and all(head.activation == "linear" and native.applies(head.weight, w) for head, w in heads):
        lib = native.library()
    # (the weights as tensors of their own: they keep their storage, whatever happens to the parameters)
    inputs = [(head.weight.detach(), w.contiguous(), _head_bias(head)) for head, w in heads] if lib else None
    queue, queue_lock = iter(pieces), threading.Lock()

    def work(_: int) -> None:
        try:
            while True:
                with queue_lock:
                    piece = next(queue, None)
                if piece is None:
                    return
                h, r0, r1 = piece
                if inputs is None or not _native_rows(lib, heads[h][0], inputs[h], out[h], r0, r1):
                    head, w = heads[h]
                    bias = None if head.bias is None else head.bias[r0:r1]
                    out[h][:, r0:r1] = equal_linear(w, head.weight[r0:r1], bias, head.weight_gain, head.bias_gain)
                state._piece_done(h)
        except BaseException as err:
            state._failed(err)
            raise

    submit_on_pool(threads, work)
    return state


def _native_rows(lib, head: EqualLinear, inputs: tuple[Tensor, Tensor, Tensor | None], out: Tensor, r0: int,
                 r1: int) -> bool:
    """Rows r0:r1 of a head by the C kernel; False (the kernels turned off, one warning) where the call failed."""
    if native.library() is None:  # turned off by an earlier failure
        return False
    weight, x, bias = inputs
    try:
        native.heads(lib, weight, x, bias, head.weight_gain, out, r0, r1)
    except native.CALL_ERRORS as err:
        native.disable(err)
        return False
    return True


@functools.lru_cache(maxsize=16)
def _pieces(shapes: tuple[tuple[int, int], ...]) -> tuple[tuple[tuple[int, int, int], ...], tuple[int, ...]]:
    """Every head's rows in pieces of about HEAD_PIECE_BYTES, in head order, as (head, r0, r1), and the
    number of pieces of each head; from each head's (rows, bytes per row)."""
    pieces, counts = [], []
    for h, (n, row_bytes) in enumerate(shapes):
        k = max(1, -(-n * row_bytes // HEAD_PIECE_BYTES))
        pieces += [(h, n * i // k, n * (i + 1) // k) for i in range(k)]
        counts.append(k)
    return tuple(pieces), tuple(counts)


def shared_styles(heads: list[tuple[EqualLinear, Tensor]], threads: int, use_native: bool = False) -> list[Tensor]:
    """Every head's output [B, n] (``head(w)``), the rows shared out over the pool's threads
    (:func:`start_shared_styles`, waited for)."""
    state = start_shared_styles(heads, threads, use_native)
    state.wait(len(heads))
    return state.out


def _head_bias(head: EqualLinear) -> Tensor | None:
    """The head's bias [n] with its gain applied, or None."""
    if head.bias is None or head.bias_gain == 1:
        return head.bias
    return head.bias * head.bias_gain
