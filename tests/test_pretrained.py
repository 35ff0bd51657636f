"""The shipped models: each loads by name, renders its golden pixels, and works wherever a checkpoint is
taken. The golden values are float64 renders (benchmarks/ship_model.py); the float32 render agrees to
1e-4 (fp32 rounding over chains of a few hundred multiply-adds, the image range being about 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from inrgan import Generator
from inrgan.cli import main
from inrgan.pretrained import SHIPPED, resolve_checkpoint, shipped_dir

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_a_shipped_model_renders_its_golden_pixels(name):
    golden = json.loads((DATA / f"{name}.golden.json").read_text())
    G = Generator.from_pretrained(name)
    assert resolve_checkpoint(name) == shipped_dir(name)
    size = sum(f.stat().st_size for f in shipped_dir(name).iterdir())
    assert size <= 25 * 2**20
    z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in golden["seeds"]])).float()
    with torch.no_grad():
        img = G(z)
    got = [[img[i, c, y, x].item() for c, y, x in golden["pixels"]] for i in range(len(golden["seeds"]))]
    np.testing.assert_allclose(got, golden["values"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(img.mean(dim=(1, 2, 3)).numpy(), golden["mean"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_command_takes_the_name(name, tmp_path):
    run = CliRunner().invoke
    r = run(main, ["generate", "--checkpoint", name, "--seeds", "0-1", "--out", str(tmp_path / "g"), "--threads", "1"])
    assert r.exit_code == 0 and (tmp_path / "g" / "seed0001.png").is_file(), r.output
    r = run(main, ["interpolate", "--checkpoint", name, "--seeds", "0,1", "--steps", "3", "--out", str(tmp_path / "i")])
    assert r.exit_code == 0, r.output
    r = run(main, ["video", "--checkpoint", name, "--frames", "2", "--out", str(tmp_path / "v.gif")])
    assert r.exit_code == 0 and (tmp_path / "v.gif").is_file(), r.output


def test_a_path_wins_over_a_name_and_unknown_names_are_explained(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_checkpoint("fashion-mnist-32") == shipped_dir("fashion-mnist-32")
    (tmp_path / "fashion-mnist-32").mkdir()
    assert resolve_checkpoint("fashion-mnist-32") == Path("fashion-mnist-32")  # the folder here wins
    with pytest.raises(FileNotFoundError, match="nor a shipped model"):
        Generator.from_pretrained(tmp_path / "no-such-model")
