"""When a leg of a run ends before its kimg: a wall-clock budget (``--minutes``), SIGTERM or Ctrl-C.

Each ends the run the same way: the step in flight finishes, then the tick's stats, sample grid, training
state and export are written (atomically) and ``train`` returns. ``--resume`` continues exactly from there.
A second Ctrl-C interrupts at once (the last checkpoint written stays intact).
"""

from __future__ import annotations

import signal
import threading
import time

import torch

SIGNALS = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "Ctrl-C"}


class StopRequest:
    """A context that catches SIGTERM and SIGINT while it is open and tells the loop when to stop.

    Args:
        minutes: the wall-clock budget from now; None for none.
        log: where to say why the run stops.
    """

    def __init__(self, minutes: float | None, log=print) -> None:
        if minutes is not None and minutes <= 0:
            raise ValueError(f"--minutes must be positive, got {minutes}")
        self.minutes, self.log = minutes, log
        self.deadline = None if minutes is None else time.monotonic() + 60.0 * minutes
        self.reason: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.reason is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        if self.reason is None:
            self.reason = SIGNALS[signum]
            self.log(f"{self.reason}: stopping after this step, with a checkpoint (Ctrl-C again to stop at once)")

    def due(self, dist=None) -> bool:
        """Whether the loop stops after this step; under torchrun, whether any rank was asked to (every rank
        calls it after every step, so they stop together)."""
        if self.reason is None and self.deadline is not None and time.monotonic() >= self.deadline:
            self.reason = f"the --minutes {self.minutes:g} budget"
            self.log(f"{self.reason} is spent: stopping with a checkpoint")
        if dist is None or not dist.active:
            return self.reason is not None
        flag = torch.tensor(float(self.reason is not None), device=dist.device)
        return dist.mean(flag)[0] > 0
