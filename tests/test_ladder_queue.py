"""benchmarks/ladder.py's queue and report (issue 27): it runs only what has no result, two queues share the
work through claims, a stopped queue's claim is taken over, and the report reads the committed results alone.
The runs themselves are replaced by a stand-in that writes a result, so no training happens here."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LADDER = Path(__file__).resolve().parents[1] / "benchmarks" / "ladder.py"


@pytest.fixture()
def ladder(monkeypatch):
    monkeypatch.syspath_prepend(str(LADDER.parent))  # as when run as a script: its sibling modules import
    spec = importlib.util.spec_from_file_location("ladder_under_test", LADDER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _result(preset: str, seed: int, fid: float, probe: dict | None = None) -> dict:
    records = [{"metric": "fid5k", "results": {"fid5k": fid}},
               {"metric": "kid5k", "results": {"kid5k": fid / 1000}},
               {"metric": "pr5k", "results": {"pr5k_precision": 0.5, "pr5k_recall": 0.1 * (seed + 1)}}]
    return {"preset": preset, "seed": seed, "budget_kimg": 12.0, "kimg": 12.0, "train_time_s": 600.0 * (seed + 1),
            "img_per_s": 20.0, "training": {"command": "x", "peak_rss_mib": 500.0}, "metrics": records,
            "probe": probe}


def _fake_run(calls: list):
    def run(results: Path, run: Path, preset: str, seed: int, kimg: float) -> None:
        calls.append(run.name)
        (results / run.name).mkdir(parents=True)
        (results / run.name / "result.json").write_text(json.dumps(_result(preset, seed, 10.0 + seed)))

    return run


def test_queue_runs_only_the_missing_breadth_first(ladder, tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(ladder, "_run", _fake_run(calls))
    results, runs = tmp_path / "results", tmp_path / "runs"
    (results / "cips-seed0").mkdir(parents=True)
    (results / "cips-seed0" / "result.json").write_text(json.dumps(_result("cips", 0, 5.0)))
    ladder.queue(results, runs, ["cpu-32", "cips"], [0, 1])
    assert calls == ["cpu-32-seed0", "cpu-32-seed1", "cips-seed1"]  # every seed 0 first; cips-seed0 was done
    assert not list(runs.glob("*.claim"))  # each claim is released when its run ends
    ladder.queue(results, runs, ["cpu-32", "cips"], [0, 1])
    assert len(calls) == 3  # nothing left to do


def test_claims_share_the_work_and_a_dead_queues_claim_is_taken_over(ladder, tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(ladder, "_run", _fake_run(calls))
    results, runs = tmp_path / "results", tmp_path / "runs"
    runs.mkdir()
    (runs / "cpu-32-seed0.claim").write_text(str(os.getppid()))  # a live process holds it
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (runs / "cpu-32-seed1.claim").write_text(str(dead.pid))  # a queue that has exited
    ladder.queue(results, runs, ["cpu-32"], [0, 1])
    assert calls == ["cpu-32-seed1"]
    assert (runs / "cpu-32-seed0.claim").read_text() == str(os.getppid())  # the live claim is left alone


def test_a_failed_run_writes_no_result_and_frees_its_claim(ladder, tmp_path, monkeypatch):
    def fail(results, run, preset, seed, kimg):
        raise SystemExit("failed (1): inrgan train ...")

    monkeypatch.setattr(ladder, "_run", fail)
    results, runs = tmp_path / "results", tmp_path / "runs"
    with pytest.raises(SystemExit):
        ladder.queue(results, runs, ["cpu-32"], [0])
    assert not list(results.glob("*/result.json")) and not list(runs.glob("*.claim"))


def test_report_means_spreads_and_verdicts(ladder, tmp_path):
    results = tmp_path / "results"
    fids = {"ladder-1-latent-mlp": 200.0, "ladder-2-hypernet": 100.0, "ladder-3-fourier": 80.0,
            "ladder-4-fmm": 60.0, "cpu-32": 50.0, "stylegan2": 25.0}
    r2 = {"z": {"centroid_x": 0.2, "extent_x": 0.4}, "w": {"centroid_x": 0.3, "extent_x": 0.6}}
    r2_sg2 = {"z": {"centroid_x": 0.1, "extent_x": 0.5}, "w": {"centroid_x": 0.2, "extent_x": 0.4}}
    for preset, fid in fids.items():
        for seed, delta in ((0, -2.0), (1, 2.0)):
            probe = {"geometric_prior_r2": r2 if preset == "cpu-32" else r2_sg2,
                     "path_length": {"z": 40.0, "w": 30.0 + seed}} if preset in ("cpu-32", "stylegan2") else None
            (results / f"{preset}-seed{seed}").mkdir(parents=True)
            (results / f"{preset}-seed{seed}" / "result.json").write_text(
                json.dumps(_result(preset, seed, fid + delta, probe)))
    doc = tmp_path / "fidelity.md"
    doc.write_text("intro\n" + "".join(f"<!-- ladder:{n} -->\nstale\n<!-- /ladder:{n} -->\n"
                                       for n in ("table", "verdicts", "probe")) + "outro\n")
    ladder.report(results, doc)
    text = doc.read_text()
    assert "stale" not in text and text.startswith("intro\n") and text.endswith("outro\n")
    # cpu-32: FIDs 48 and 52, mean 50, sample standard deviation 2 * sqrt(2) = 2.8
    assert "| `cpu-32` | 0,1 | 12 | 50 ± 2.8 | 0.05 ± 0.0028 | 0.5 ± 0 | 0.15 ± 0.071 | 20 ± 0 | 500 ± 0 | 15 ± 7.1 |" \
        in text
    assert "| `cips` | - | not yet run |" in text
    assert "| each rung lowers FID (rung 1 to 5) | strictly decreasing | 200 > 100 > 80 > 60 > 50 | holds |" in text
    assert "| `cpu-32`: FID ratio to rung 1 | 0.025 | 0.250 | 10x the paper's ratio |" in text
    assert "| INR-GAN (`cpu-32`) FID / StyleGAN2's | 1.15 to 2.5 | 2.000 | within the paper's range |" in text
    assert "| extent_x | 0.4 ± 0 | 0.6 ± 0 | 0.5 ± 0 | 0.4 ± 0 |" in text
    # from z: means 0.3 against 0.3, INR-GAN ahead on centroid_x only (1 of 2); from w: 0.45 against 0.3, both
    assert ("| geometric prior: silhouette R² from z, INR-GAN against StyleGAN2 | INR-GAN higher (no number) | "
            "mean 0.300 against 0.300; higher on 1 of 2 attributes | does not hold |") in text
    assert ("| geometric prior: silhouette R² from w, INR-GAN against StyleGAN2 | INR-GAN higher (no number) | "
            "mean 0.450 against 0.300; higher on 2 of 2 attributes | holds |") in text
    assert "| `stylegan2` | 40 ± 0 | 30.5 ± 0.71 | - |" in text


def test_report_refuses_a_document_without_markers(ladder, tmp_path):
    doc = tmp_path / "fidelity.md"
    doc.write_text("no markers\n")
    with pytest.raises(SystemExit, match="ladder:table"):
        ladder.report(tmp_path / "results", doc)
    assert doc.read_text() == "no markers\n"


def test_verdicts_without_rung_one_give_no_ratios(ladder):
    # the table fills a few runs at a time: rungs 2 and 5 before rung 1 have nothing to be a ratio of
    by_preset = {p: [_result(p, 0, fid)] for p, fid in (("ladder-2-hypernet", 100.0), ("cpu-32", 50.0))}
    assert ladder.verdicts(by_preset).splitlines()[2] == "| - | - | not yet run | - |"
