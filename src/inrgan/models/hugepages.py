"""Transparent huge pages for the weights that CPU inference streams from memory.

Every forward reads the affine heads' 238 MB of weights (at 256^2) once, at memory speed. On 4 KB pages
the hardware prefetcher stops at every page boundary and every page costs a TLB miss; on 2 MB pages the
stream runs about 20% faster (docs/performance.md, "Huge pages for the heads"). Linux gives huge pages
to memory marked ``MADV_HUGEPAGE`` when transparent huge pages are set to ``always`` or ``madvise`` (the
usual default), but torch's allocator neither marks nor aligns its memory for them unless
``THP_MEM_ALLOC_ENABLE=1`` is set before it starts.

:func:`move_to_huge_pages` copies parameters into 2 MB-aligned anonymous memory marked for huge pages and
points them there (``param.data``): the parameters stay the same objects, with the same values, so
optimisers, state dicts and checkpoints are unaffected. Nothing happens at import, and nothing at all
where the kernel offers no transparent huge pages.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import sys
import threading
from collections.abc import Iterable

import torch
from torch import nn

HUGE_PAGE = 2 << 20
_MOVED = "_inrgan_huge_page_ptr"  # attribute on a moved parameter: the data pointer it was given
_lock = threading.Lock()


@functools.cache
def available() -> bool:
    """Whether this system gives transparent huge pages to memory that asks for them."""
    if not sys.platform.startswith("linux") or not hasattr(mmap, "MADV_HUGEPAGE"):
        return False
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            mode = f.read()
    except OSError:
        return False
    return "[always]" in mode or "[madvise]" in mode


def empty(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An uninitialised CPU tensor in anonymous memory marked for huge pages, starting at a 2 MB boundary.

    The memory (an ``mmap`` object, kept alive by the tensor) is returned to the system with the tensor."""
    numel = 1
    for s in shape:
        numel *= int(s)
    nbytes = numel * torch.empty((), dtype=dtype).element_size()
    buf = mmap.mmap(-1, nbytes + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buf.madvise(mmap.MADV_HUGEPAGE)
    raw = torch.frombuffer(buf, dtype=torch.uint8)
    start = -raw.data_ptr() % HUGE_PAGE
    return raw[start : start + nbytes].view(dtype).view(shape)


def move_to_huge_pages(params: Iterable[nn.Parameter], min_bytes: int | None = None) -> int:
    """Move contiguous CPU parameters of at least ``min_bytes`` (default: one huge page) to huge-page memory
    (once: a parameter already moved, and not given other storage since, is skipped). Returns the bytes moved."""
    if not available():
        return 0
    min_bytes = HUGE_PAGE if min_bytes is None else min_bytes
    moved = 0
    # Readers that took a parameter's tensor before the move keep its old storage alive (tensors own
    # their storage), so a render running on another thread reads the old copy to its end.
    with _lock, torch.no_grad(), torch.inference_mode(False):  # the new storage must serve training too
        for p in params:
            nbytes = p.numel() * p.element_size()
            if (p.device.type != "cpu" or nbytes < min_bytes or not p.is_contiguous()
                    or getattr(p, _MOVED, None) == p.data_ptr()):
                continue
            new = empty(tuple(p.shape), p.dtype)
            new.copy_(p)
            p.data = new
            setattr(p, _MOVED, p.data_ptr())
            moved += nbytes
            _return_freed_memory()  # else the old copies stay resident: 238 MB more at 256^2
    return moved


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc
    except (OSError, AttributeError):
        return None


def _return_freed_memory() -> None:
    """Give the memory that malloc holds free back to the system (glibc's malloc_trim; elsewhere nothing)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
