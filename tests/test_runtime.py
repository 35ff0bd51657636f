"""inrgan.runtime: the OpenMP set-up, the thread count chosen from the load, and the training governor."""

from __future__ import annotations

import subprocess
import sys

import pytest

from inrgan import runtime


def test_prepare_sets_a_brief_spin_unless_the_user_chose():
    env: dict[str, str] = {}
    runtime.prepare(env)
    assert env == {"GOMP_SPINCOUNT": runtime.SPIN_COUNT}
    for mine in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "7"}):
        env = dict(mine)
        runtime.prepare(env)
        assert env == mine  # the user's setting wins, nothing added


def test_the_command_sets_openmp_up_before_torch_loads():
    code = ("import os, sys; from inrgan.cli import main; "
            "sys.argv = ['inrgan', 'info', '--preset', 'cpu-32', '--json']; "
            "import atexit; atexit.register(lambda: print(os.environ.get('GOMP_SPINCOUNT'), file=sys.stderr)); "
            "main()")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines()[-1] == runtime.SPIN_COUNT


@pytest.mark.parametrize("others,cpus,threads", [
    (0.0, 2, 2), (0.3, 2, 2), (0.67, 2, 1), (1.0, 2, 1), (2.5, 2, 1), (1.0, 8, 7), (3.4, 8, 5), (0.0, 1, 1),
])
def test_free_threads_leave_the_cores_other_programs_hold(others, cpus, threads):
    assert runtime.free_threads(others, cpus) == threads


class FakeMachine:
    """A clock, the busy CPU seconds of the machine and this process's own CPU seconds, moved by hand."""

    def __init__(self):
        self.t = self.busy = self.own = 0.0

    def run(self, seconds: float, ours: float, others: float) -> None:
        self.t += seconds
        self.own += ours * seconds
        self.busy += (ours + others) * seconds

    def meter(self) -> runtime.LoadMeter:
        return runtime.LoadMeter([0, 1], clock=lambda: self.t, busy=lambda cpus: self.busy, own=lambda: self.own)


def test_the_load_meter_counts_the_other_programs_only():
    m = FakeMachine()
    meter = m.meter()
    m.run(2.0, ours=1.3, others=0.7)
    assert meter.others() == pytest.approx(0.7)
    m.run(1.0, ours=2.0, others=0.0)
    assert meter.others() == pytest.approx(0.0)
    unreadable = runtime.LoadMeter([0], clock=lambda: m.t, busy=lambda cpus: None, own=lambda: m.own)
    m.run(1.0, ours=1.0, others=1.0)
    assert unreadable.others() is None


def test_busy_seconds_reads_the_usable_cpus_of_proc_stat(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  300 0 30 900 5 0 0 0 0 0\n"
                    "cpu0 100 10 10 400 5 1 2 7 0 0\n"
                    "cpu1 200 0 20 500 0 0 0 0 0 0\n")
    hz = __import__("os").sysconf("SC_CLK_TCK")
    assert runtime.busy_seconds([0], str(stat)) == pytest.approx((100 + 10 + 10 + 1 + 2) / hz)  # not idle, iowait, steal
    assert runtime.busy_seconds([0, 1], str(stat)) == pytest.approx((123 + 220) / hz)
    assert runtime.busy_seconds([0], str(tmp_path / "missing")) is None


def test_the_governor_follows_the_load_every_interval():
    m = FakeMachine()
    calls: list[int] = []
    gov = runtime.ThreadGovernor(2, interval_s=2.0, meter=m.meter(), set_threads_fn=calls.append)
    m.run(1.0, ours=2.0, others=0.0)
    assert gov.update() == 2 and calls == []  # before the interval: no measurement
    m.run(1.0, ours=2.0, others=0.0)
    assert gov.update() == 2 and calls == []  # measured: nobody else, no change
    m.run(2.0, ours=1.3, others=0.7)  # a busy loop starts beside training
    assert gov.update() == 1 and calls == [1]
    m.run(2.0, ours=1.0, others=1.0)
    assert gov.update() == 1 and calls == [1]  # unchanged: no call
    m.run(2.0, ours=1.0, others=0.0)  # it stops
    assert gov.update() == 2 and calls == [1, 2]


def test_choose_threads_precedence(monkeypatch):
    assert runtime.choose_threads(3, env={"OMP_NUM_THREADS": "1"}) == 3  # --threads first
    assert runtime.choose_threads(None, env={"OMP_NUM_THREADS": "1"}) is None  # then the environment
    monkeypatch.setattr(runtime, "usable_cpus", lambda: [0, 1, 2, 3])
    # unmeasurable load: every CPU (LoadMeter binds busy_seconds as a default argument, so patching the
    # module's function alone left the real meter running, and the test failed on a busy machine)
    monkeypatch.setattr(runtime.LoadMeter, "others", lambda self: None)
    assert runtime.choose_threads(None, env={}, sample_s=0) == 4
    with pytest.raises(ValueError, match="--threads"):
        runtime.choose_threads(0, env={})
    assert runtime.threads_are_automatic(None, env={}) and not runtime.threads_are_automatic(2, env={})
    assert not runtime.threads_are_automatic(None, env={"OMP_NUM_THREADS": "2"})


def test_the_bench_measures_with_passive_waits_unless_the_user_chose(monkeypatch):
    import inrgan.bench as bench

    seen = []

    def fake_run(cmd, env, **kw):
        seen.append({k: env.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")})
        return subprocess.CompletedProcess(cmd, 0, stdout='{"ok": 1}\n', stderr="")

    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    spec = bench.BenchSpec(preset="cpu-32", resolution=16, batch=1)
    for env, expected in (({"GOMP_SPINCOUNT": runtime.SPIN_COUNT}, {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": None}),
                          ({"GOMP_SPINCOUNT": "5"}, {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "5"}),
                          ({"OMP_WAIT_POLICY": "ACTIVE"}, {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": None})):
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
        monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        assert bench.run(spec) == {"ok": 1}
        assert seen[-1] == expected
