"""The `inrgan` command end to end: info, train, resume, generate, and clean errors on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from inrgan.cli import main
from inrgan.training.checkpoint import load_training_state
from inrgan.training.runlock import LOCK_NAME, run_lock


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("faces")
    rng = np.random.RandomState(1)
    for i in range(20):
        Image.fromarray((rng.rand(24, 30, 3) * 255).astype(np.uint8), "RGB").save(d / f"img{i}.png")
    return d


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


def test_info_prints_the_release_counts():
    r = run("info", "--preset", "inr-gan", "--resolution", 256, "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["G_params"] == 72_436_573 and info["D_params"] == 28_864_129
    r = run("info", "--preset", "inr-gan-noextra", "--json")
    assert json.loads(r.output)["G_params"] == 68_414_429


def test_train_resume_generate(tmp_path, image_folder):
    out = tmp_path / "run"
    common = ["--preset", "cpu-32", "--resolution", 16, "--batch", 4, "--tick", 0.008, "--snap", 1,
              "--device", "cpu", "--no-progress"]
    r = run("train", "--data", image_folder, "--out", out, "--kimg", 0.008, *common)
    assert r.exit_code == 0, r.output
    assert (out / "state.pt").is_file() and (out / "export" / "model.safetensors").is_file()
    assert (out / "samples" / "reals.png").is_file() and (out / "samples" / "fakes000000.png").is_file()
    r = run("train", "--resume", out, "--kimg", 0.016, "--no-progress")
    assert r.exit_code == 0, r.output
    assert "resuming" in r.output
    stats = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    assert [s["kimg"] for s in stats] == [0.008, 0.016]
    assert all(np.isfinite(s["loss_G"]) and np.isfinite(s["loss_D"]) for s in stats)
    run_cfg = json.loads((out / "run.json").read_text())
    assert run_cfg["G"]["img_channels"] == 3 and run_cfg["options"]["data"] == str(image_folder)
    r = run("train", "--data", image_folder, "--out", out, "--kimg", 0.008, *common)  # a new run over this one
    assert r.exit_code != 0 and "already holds a run" in r.output and "Traceback" not in r.output
    with run_lock(out):  # a leg still running
        r = run("train", "--resume", out, "--kimg", 0.024, "--no-progress")
    assert r.exit_code != 0 and "is being trained by process" in r.output and "Traceback" not in r.output
    assert load_training_state(out)["cur_nimg"] == 16

    g = tmp_path / "gen"
    r = run("generate", "--checkpoint", out, "--seeds", "0-2,5", "--out", g, "--raw", "--trunc", 0.7)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in g.glob("*.png")) == ["grid.png", "seed0000.png", "seed0001.png", "seed0002.png",
                                                      "seed0005.png"]
    arr = np.load(g / "seed0000.npy")
    assert arr.shape == (3, 16, 16) and arr.dtype == np.float32
    assert Image.open(g / "seed0000.png").size == (16, 16)
    # Same seed, same image: the PNG is the rounded float render.
    png = np.asarray(Image.open(g / "seed0000.png")).astype(np.float32)
    ref = np.clip(np.round((arr.transpose(1, 2, 0) + 1) * 127.5), 0, 255)
    np.testing.assert_array_equal(png, ref)

    r = run("generate", "--checkpoint", out / "export", "--seeds", "3", "--out", g, "--height", 20, "--width", 44,
            "--tile", 8)
    assert r.exit_code == 0, r.output
    assert Image.open(g / "seed0003.png").size == (44, 20)


def test_train_errors_are_clean(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run("train", "--data", empty, "--out", tmp_path / "run", "--kimg", 0.01, "--no-progress")
    assert r.exit_code != 0
    assert "empty" in r.output and "Traceback" not in r.output
    r = run("train", "--data", empty, "--out", tmp_path / "run", "--preset", "nope")
    assert r.exit_code != 0 and "nope" in r.output
    r = run("generate", "--checkpoint", tmp_path, "--seeds", "x-y", "--out", tmp_path / "g")
    assert r.exit_code != 0 and "x-y" in r.output


def _files(run_dir):
    """The run's files and their bytes, but its trainer lock (which names the last process to take it)."""
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != LOCK_NAME}


def test_bad_input_keeps_what_the_run_already_wrote(tmp_path, image_folder):
    out = tmp_path / "run"
    args = ["--preset", "cpu-32", "--resolution", 16, "--batch", 4, "--tick", 0.008, "--device", "cpu",
            "--no-progress"]
    assert run("train", "--data", image_folder, "--out", out, "--kimg", 0.004, *args).exit_code == 0
    before = _files(out)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    r = run("train", "--data", corrupt, "--out", out, "--kimg", 0.01, *args)  # a new run over the run
    assert r.exit_code != 0 and "already holds a run" in r.output
    r = run("train", "--data", corrupt, "--out", tmp_path / "new", "--kimg", 0.01, *args)
    assert r.exit_code != 0 and "broken.png" in r.output
    assert _files(out) == before
