"""inrgan plot: the curves read back from a run's logs, the PNG, and clear errors on bad logs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from inrgan.cli import main
from inrgan.training.plots import PlotError, read_curves

pytest.importorskip("matplotlib", reason="matplotlib (the plot extra) is not installed")


@pytest.fixture
def run_dir(tmp_path):
    stats = [{"tick": i, "kimg": 4.0 * (i + 1), "img_per_s": 60.0 - i, "loss_G": 1.0 + i, "loss_D": 0.5,
              "D_real": 0.1 * i, "D_fake": -0.1 * i, "threads": 2} for i in range(5)]
    stats[2]["loss_r1"] = 0.03  # recorded on some ticks only
    (tmp_path / "stats.jsonl").write_text("\n".join(json.dumps(s) for s in stats) + "\n")
    metrics = [{"kimg": 8.0, "metric": "fid2k", "value": 150.0}, {"kimg": 20.0, "metric": "fid2k", "value": 90.0}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(m) for m in metrics) + "\n")
    return tmp_path


def test_the_curves_are_the_logged_values(run_dir):
    c = read_curves(run_dir)
    assert c.stats["loss_G"] == ([4.0, 8.0, 12.0, 16.0, 20.0], [1.0, 2.0, 3.0, 4.0, 5.0])
    assert c.stats["loss_r1"] == ([12.0], [0.03])
    assert c.stats["img_per_s"][1] == [60.0, 59.0, 58.0, 57.0, 56.0]
    assert c.metrics == {"fid2k": ([8.0, 20.0], [150.0, 90.0])}
    assert "threads" not in c.stats


def test_the_command_writes_a_png_with_four_panels(run_dir):
    r = CliRunner().invoke(main, ["plot", str(run_dir)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    img = np.asarray(Image.open(run_dir / "plots" / "training.png").convert("RGB"))
    assert img.shape == (340, 1680, 3)
    # matplotlib's first two line colours (C0 blue, C1 orange) are drawn: the curves are there
    for colour in ((31, 119, 180), (255, 127, 14)):
        assert (np.abs(img.astype(int) - colour).sum(axis=2) < 30).sum() > 50, colour


def test_bad_logs_are_named(tmp_path, run_dir):
    r = CliRunner().invoke(main, ["plot", str(tmp_path / "nothing")])
    assert r.exit_code == 2  # click: the folder does not exist
    (tmp_path / "empty").mkdir()
    with pytest.raises(PlotError, match="no stats.jsonl"):
        read_curves(tmp_path / "empty")
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"kimg": 24.0, "metric": "fid2k", "val\n')
    r = CliRunner().invoke(main, ["plot", str(run_dir)], catch_exceptions=False)
    assert r.exit_code == 1 and "metrics.jsonl, line 3: not a JSON record" in r.output
