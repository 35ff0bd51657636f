"""Fine-tuning: --init-from a run or an export starts a new run from its weights, --freeze-d keeps D's
first blocks fixed, and architectures that do not fit are refused."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from conftest import write_noise_images
from inrgan.cli import main
from inrgan.training.checkpoint import load_training_state

COMMON = ["--batch", "4", "--tick", "0.008", "--device", "cpu", "--no-progress", "--threads", "1"]


def _train(*args):
    return CliRunner().invoke(main, ["train", *map(str, args), *COMMON], catch_exceptions=False)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    d = tmp_path_factory.mktemp("ft")
    data = write_noise_images(d, 12, 16, seed=1)
    r = _train("--data", data, "--out", d / "src", "--preset", "cpu-32", "--resolution", 16, "--kimg", 0.016,
               "--seed", 1)
    assert r.exit_code == 0, r.output
    return d / "src"


@pytest.fixture(scope="module")
def new_data(tmp_path_factory):
    return write_noise_images(tmp_path_factory.mktemp("new"), 12, 16, seed=2)


def _distance(a: dict, b: dict) -> float:
    return sum((a[k].double() - b[k].double()).norm().item() for k in a)


def test_a_run_starts_from_the_weights_of_another_and_freezes_d(source, new_data, tmp_path):
    r = _train("--data", new_data, "--out", tmp_path / "ft", "--init-from", source, "--kimg", 0.008,
               "--freeze-d", 1, "--seed", 5)
    assert r.exit_code == 0, r.output
    assert f"starting from the weights of {source}" in r.output
    src, ft = load_training_state(source), load_training_state(tmp_path / "ft")
    fresh_dir = tmp_path / "fresh"
    assert _train("--data", new_data, "--out", fresh_dir, "--preset", "cpu-32", "--resolution", 16, "--kimg", 0.008,
                  "--seed", 5).exit_code == 0
    fresh = load_training_state(fresh_dir)
    # two steps from the source's weights stay near them; a new run is far from them
    assert _distance(ft["G"], src["G"]) < 0.2 * _distance(fresh["G"], src["G"])
    assert ft["cur_nimg"] == 8 and ft["G_cfg"] == src["G_cfg"]
    for k in src["D"]:  # --freeze-d 1: D's first block (b16) is where the source left it, the rest moved
        if k.startswith("b16."):
            assert torch.equal(ft["D"][k], src["D"][k]), k
    assert not torch.equal(ft["D"]["b4.out.weight"], src["D"]["b4.out.weight"])


def test_an_export_gives_g_and_d_starts_afresh(source, new_data, tmp_path):
    r = _train("--data", new_data, "--out", tmp_path / "ft", "--init-from", source / "export", "--kimg", 0.004)
    assert r.exit_code == 0, r.output
    assert "an export: D starts from scratch" in r.output


@pytest.mark.parametrize("extra,message", [
    (["--resolution", "32"], "is a 16^2 model"),
    (["--preset", "cpu-64"], "do not combine it with --resume or --preset"),
    (["--freeze-d", "5"], "D has 2 blocks before its epilogue (b16, b8)"),
])
def test_what_does_not_fit_is_refused(source, new_data, tmp_path, extra, message):
    r = CliRunner().invoke(main, ["train", "--data", new_data, "--out", str(tmp_path / "x"), "--init-from",
                                  str(source), "--kimg", "0.004", *extra, *COMMON])
    assert r.exit_code != 0 and message in r.output, r.output
    assert not (tmp_path / "x" / "state.pt").exists()


def test_data_of_another_channel_count_is_refused(source, tmp_path):
    import numpy as np
    from PIL import Image

    for i in range(4):
        Image.fromarray(np.zeros((16, 16, 3), np.uint8), "RGB").save(tmp_path / f"{i}.png")
    r = CliRunner().invoke(main, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "x"), "--init-from",
                                  str(source), "--kimg", "0.004", *COMMON])
    assert r.exit_code == 1 and "channels" in r.output, r.output
