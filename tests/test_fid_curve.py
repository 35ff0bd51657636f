"""benchmarks/fid_curve.py: the power law of FID's excess over its floor, and the hours it leaves, on a run
whose curve and speed are known."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fid_curve.py"


@pytest.fixture()
def fid_curve():
    spec = importlib.util.spec_from_file_location("fid_curve_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(tmp_path: Path, a: float, b: float, floor: float) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    # FID2k every 40 kimg on the power law, one row of another metric that the fit must ignore
    rows = [{"kimg": k, "metric": "fid2k", "value": floor + a * k**b} for k in (40.0, 80.0, 120.0, 160.0)]
    rows.insert(1, {"kimg": 40.0, "metric": "fid10k", "value": 1.0})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # two legs: 0-100 kimg in 2000 s, then 100-160 kimg in 1200 s (time_s starts again from 0): 50 img/s
    ticks = [{"kimg": k, "time_s": 20.0 * k} for k in range(10, 101, 10)]
    ticks += [{"kimg": k, "time_s": 20.0 * (k - 100)} for k in range(110, 161, 10)]
    (run / "stats.jsonl").write_text("".join(json.dumps(t) + "\n" for t in ticks))
    return run


def test_the_fit_recovers_the_power_law_and_the_hours_left(fid_curve, tmp_path):
    run = _run(tmp_path, a=1000.0, b=-0.5, floor=9.2)
    out = fid_curve.distance(run, "fid2k", floor=9.2, target=14.2, last=3)
    assert out["fit"]["a"] == pytest.approx(1000.0) and out["fit"]["b"] == pytest.approx(-0.5)
    # 1000 / sqrt(k) = 5 at k = 40,000 kimg; 39,840 kimg left at 50 img/s of the last leg
    assert out["target_kimg"] == pytest.approx(40_000.0) and out["img_per_s"] == pytest.approx(50.0)
    assert out["hours_left"] == pytest.approx(39_840 * 1000 / 50 / 3600)
    assert [k for k, _ in out["points"]] == [40.0, 80.0, 120.0, 160.0]


def test_a_curve_that_does_not_fall_has_no_distance(fid_curve, tmp_path):
    run = _run(tmp_path, a=10.0, b=0.1, floor=9.2)
    out = fid_curve.distance(run, "fid2k", floor=9.2, target=14.2, last=4)
    assert out["target_kimg"] is None and out["hours_left"] is None
    assert math.isclose(out["fit"]["b"], 0.1, rel_tol=1e-9)


def test_an_evaluation_below_the_floor_is_a_clear_error(fid_curve, tmp_path):
    run = _run(tmp_path, a=1000.0, b=-0.5, floor=9.2)
    with pytest.raises(SystemExit, match="at or below the floor 200"):
        fid_curve.distance(run, "fid2k", floor=200.0, target=210.0, last=4)
    with pytest.raises(SystemExit, match="no fid5k evaluations"):
        fid_curve.distance(run, "fid5k", floor=9.2, target=14.2, last=4)
