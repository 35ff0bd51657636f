"""One trainer per run directory: an advisory lock on RUN/train.lock, held for the whole of a leg.

Two ``inrgan train`` processes on one run directory (a ``--resume`` started while the last leg is still
writing its final evaluation, say) would each write state.pt, stats.jsonl and the export over the other's.
The lock is an ``flock`` on RUN/train.lock: the kernel releases it when the process ends, however it
ends, so a crashed or killed trainer never leaves a stale lock behind. The file keeps the holder's PID,
host and start time, which the refusal names. Where ``fcntl`` does not exist (Windows) no lock is taken.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

LOCK_NAME = "train.lock"


class RunLockedError(RuntimeError):
    """Another process is training in this run directory."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
        return f"process {info['pid']} on {info['host']}, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[Path | None]:
    """Hold RUN/train.lock while the body runs; raise RunLockedError at once if another process holds it."""
    if fcntl is None:
        yield None
        return
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(f"{run_dir} is being trained by {_holder(path)}: wait for it to end (or stop it) "
                                 "before training in this directory again") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock
