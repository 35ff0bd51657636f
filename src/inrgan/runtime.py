"""How the commands use the CPU: OpenMP's waiting and the number of intra-op threads.

A training step of a small preset is thousands of small parallel regions, each ending at a barrier. On
an idle machine, threads that spin at the barrier for a while are fastest. On a machine where another
program holds a core, a spinning thread takes the time slices the working thread needs, and a 2-core run
of ``cpu-32`` fell from 60 to 6 img/s, where losing a core should cost half. Sleeping at once (passive
waits) keeps 89% of the speed under load but loses 41% on an idle machine, and one thread keeps 97%
under load (docs/performance.md, "A busy machine"). So the commands:

- spin briefly (``GOMP_SPINCOUNT`` = 30,000 instead of libgomp's 300,000), set by ``prepare()`` before
  anything imports torch;
- start with as many threads as there are CPUs that other programs leave free (``free_cpus``);
- and, while training, follow that count as other programs come and go (``ThreadGovernor``).

Environment variables the user set win: ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` over the spin, and
``OMP_NUM_THREADS`` over the thread count; a command's ``--threads N`` fixes the count. Linux only
measures the load (``/proc/stat``); elsewhere every usable CPU is taken.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, MutableMapping

SPIN_COUNT = "30000"
GOVERNOR_INTERVAL_S = 2.0  # how often training looks at the load
LOAD_SAMPLE_S = 0.2  # how long a command looks at it before it starts


def prepare(env: MutableMapping[str, str] = os.environ) -> None:
    """Brief OpenMP spinning unless the environment chose a policy (call before torch is imported)."""
    if "OMP_WAIT_POLICY" not in env and "GOMP_SPINCOUNT" not in env:
        env["GOMP_SPINCOUNT"] = SPIN_COUNT


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def busy_seconds(cpus: list[int], stat: str = "/proc/stat") -> float | None:
    """CPU seconds spent running anything (user, nice, system, irq, softirq) on ``cpus`` since boot; None
    where ``/proc/stat`` cannot be read."""
    wanted = {f"cpu{c}" for c in cpus}
    try:
        with open(stat) as f:
            lines = [ln.split() for ln in f if ln.startswith("cpu")]
    except OSError:
        return None
    ticks = sum(sum(int(v) for v in (f[1], f[2], f[3], f[6], f[7])) for f in lines if f[0] in wanted)
    return ticks / os.sysconf("SC_CLK_TCK")


def free_threads(others: float, cpus: int) -> int:
    """Threads to run when other programs keep ``others`` CPUs busy: the CPUs they leave, at least one (a
    core counts as taken when another program holds more than half of it)."""
    return max(1, min(cpus, int(cpus - others + 0.5)))


class LoadMeter:
    """The CPUs other programs keep busy: busy time of the usable CPUs minus this process's own, per second."""

    def __init__(self, cpus: list[int] | None = None, clock: Callable[[], float] = time.monotonic,
                 busy: Callable[[list[int]], float | None] = busy_seconds,
                 own: Callable[[], float] = time.process_time):
        self.cpus = cpus if cpus is not None else usable_cpus()
        self._clock, self._busy, self._own = clock, busy, own
        self._last = self._sample()

    def _sample(self) -> tuple[float, float | None, float]:
        return self._clock(), self._busy(self.cpus), self._own()

    def others(self) -> float | None:
        """Other programs' load since the last call, in CPUs; None where it cannot be measured."""
        (t0, b0, o0), (t1, b1, o1) = self._last, self._sample()
        self._last = (t1, b1, o1)
        if b0 is None or b1 is None or t1 <= t0:
            return None
        return max(0.0, ((b1 - b0) - (o1 - o0)) / (t1 - t0))


def choose_threads(threads: int | None, env: MutableMapping[str, str] = os.environ,
                   sample_s: float = LOAD_SAMPLE_S) -> int | None:
    """The intra-op thread count a command starts with: ``threads`` if given; None where the user's
    ``OMP_NUM_THREADS`` decides (torch already follows it); else the CPUs other programs leave free."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be at least 1, got {threads}")
        return threads
    if env.get("OMP_NUM_THREADS"):
        return None
    cpus = usable_cpus()
    meter = LoadMeter(cpus)
    time.sleep(sample_s)
    others = meter.others()
    return len(cpus) if others is None else free_threads(others, len(cpus))


def set_threads(threads: int | None = None) -> int:
    """Apply ``choose_threads(threads)`` to torch; returns the intra-op thread count in effect."""
    import torch

    n = choose_threads(threads)
    if n is not None and n != torch.get_num_threads():
        torch.set_num_threads(n)
    return torch.get_num_threads()


def threads_are_automatic(threads: int | None, env: MutableMapping[str, str] = os.environ) -> bool:
    """Whether the thread count is the command's to choose (no ``--threads``, no ``OMP_NUM_THREADS``)."""
    return threads is None and not env.get("OMP_NUM_THREADS")


class ThreadGovernor:
    """Training's intra-op threads, following the CPUs that other programs leave free.

    ``update()`` is called once per training step; every ``interval_s`` it measures the others' load and
    sets ``torch.set_num_threads`` to ``free_threads``. A thread count changes the order of some sums, so a
    run whose count changed is exact to float32 rounding, not bit for bit: fix ``--threads`` for that.
    """

    def __init__(self, max_threads: int, interval_s: float = GOVERNOR_INTERVAL_S, meter: LoadMeter | None = None,
                 set_threads_fn: Callable[[int], None] | None = None):
        import torch

        self.max_threads = max_threads
        self.interval_s = interval_s
        self.meter = meter or LoadMeter()
        self._set = set_threads_fn or torch.set_num_threads
        self.threads = max_threads
        self._next = self.meter._clock() + interval_s

    def update(self) -> int:
        """Re-measure if the interval has passed; returns the thread count in effect."""
        now = self.meter._clock()
        if now < self._next:
            return self.threads
        self._next = now + self.interval_s
        others = self.meter.others()
        if others is not None:
            want = min(self.max_threads, free_threads(others, len(self.meter.cpus)))
            if want != self.threads:
                self._set(want)
                self.threads = want
        return self.threads
