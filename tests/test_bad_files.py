"""Truncated and foreign checkpoints: every command that reads one says which file is wrong, in one line.

Each case runs the command through click as a user would; an exception that escapes the command fails
the test (``catch_exceptions=False``), so a raw traceback cannot pass.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from inrgan import Generator, get_preset
from inrgan.cli import main
from inrgan.training.runlock import LOCK_NAME


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real one-tick run of a 16^2 model (state.pt, run.json, export/)."""
    d = tmp_path_factory.mktemp("bad")
    imgs = d / "imgs"
    imgs.mkdir()
    rng = np.random.RandomState(0)
    for i in range(8):
        Image.fromarray((rng.rand(16, 16) * 255).astype(np.uint8), "L").save(imgs / f"{i}.png")
    out = d / "run"
    r = _run("train", "--data", imgs, "--out", out, "--preset", "cpu-32", "--resolution", 16, "--batch", 4,
             "--kimg", 0.004, "--tick", 0.004, "--device", "cpu", "--no-progress", "--threads", 1)
    assert r.exit_code == 0, r.output
    return out


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _assert_clean_error(result, names: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error: ")]
    assert len(errors) == 1 and names in errors[0], result.output
    assert "Traceback" not in result.output


def _truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.fixture
def copy_of(run_dir, tmp_path):
    def make():
        dst = tmp_path / "copy"
        shutil.copytree(run_dir, dst)
        return dst
    return make


@pytest.mark.parametrize("damage", ["truncated", "foreign", "incomplete", "empty"])
def test_resume_from_a_bad_state_is_one_line_and_keeps_the_files(copy_of, damage):
    run = copy_of()
    state = run / "state.pt"
    if damage == "truncated":
        _truncate(state)
    elif damage == "foreign":
        state.write_bytes(b"\x89PNG\r\n\x1a\n not a checkpoint")
    elif damage == "incomplete":  # readable, of the right version, but without its optimizers
        s = torch.load(state, weights_only=True)
        del s["G_opt"], s["D_opt"]
        torch.save(s, state)
    else:
        state.write_bytes(b"")
    def files():
        return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != LOCK_NAME}

    before = files()
    r = _run("train", "--resume", run, "--kimg", 0.008, "--no-progress", "--threads", 1)
    _assert_clean_error(r, "state.pt")
    assert files() == before  # nothing lost (the trainer lock names the last process to take it)


def test_resume_with_a_state_of_another_architecture_is_refused(copy_of):
    run = copy_of()
    s = torch.load(run / "state.pt", weights_only=True)
    s["G"]["mapping.w_avg"] = torch.zeros(3)  # a tensor of another shape
    torch.save(s, run / "state.pt")
    _assert_clean_error(_run("train", "--resume", run, "--kimg", 0.008, "--no-progress"), "state.pt")


def test_a_torn_run_json_is_rewritten_from_the_training_state(copy_of):
    # state.pt holds the TrainingConfig and the run's options: run.json only describes the run
    run = copy_of()
    _truncate(run / "run.json")
    r = _run("train", "--resume", run, "--kimg", 0.008, "--no-progress")
    assert r.exit_code == 0, r.output
    assert json.loads((run / "run.json").read_text())["training"]["batch"] == 4


def test_resume_of_an_old_state_with_a_torn_run_json_is_refused(tmp_path):
    # a state written before states held the recipe (tests/data/legacy) needs its run.json
    from pathlib import Path

    run = tmp_path / "run"
    shutil.copytree(Path(__file__).parent / "data" / "legacy" / "run", run)
    assert "training" not in torch.load(run / "state.pt", weights_only=True)
    _truncate(run / "run.json")
    _assert_clean_error(_run("train", "--resume", run, "--kimg", 0.024, "--no-progress"), "run.json")


def _bad_export(run, damage: str):
    export = run / "export"
    if damage == "truncated weights":
        _truncate(export / "model.safetensors")
    elif damage == "foreign weights":
        (export / "model.safetensors").write_bytes(b"GIF89a" + bytes(200))
    elif damage == "torn config":
        _truncate(export / "config.json", 0.3)
    elif damage == "foreign config":
        (export / "config.json").write_text(json.dumps({"format": "something-else"}))
    elif damage == "other architecture":  # weights of a 32^2 model beside a 16^2 config
        other = Generator(get_preset("cpu-32", 32, 1).G)
        other.save_pretrained(run / "other")
        shutil.copy(run / "other" / "model.safetensors", export / "model.safetensors")
    return export, "config.json" if "config" in damage else "model.safetensors"


DAMAGES = ["truncated weights", "foreign weights", "torn config", "foreign config", "other architecture"]


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("command", ["generate", "interpolate", "video", "metrics"])
def test_every_reader_of_an_export_names_the_bad_file(copy_of, tmp_path, command, damage):
    export, name = _bad_export(copy_of(), damage)
    args = {
        "generate": ["generate", "--checkpoint", export, "--seeds", "0", "--out", tmp_path / "g"],
        "interpolate": ["interpolate", "--checkpoint", export, "--seeds", "0,1", "--out", tmp_path / "i"],
        "video": ["video", "--checkpoint", export, "--out", tmp_path / "v.gif", "--frames", 2],
        "metrics": ["metrics", "--checkpoint", export, "--data", export, "--metrics", "fid50",
                    "--features", "effnet-lite0"],
    }[command]
    _assert_clean_error(_run(*args, "--threads", 1), name)


@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_import_official_names_a_bad_pickle(tmp_path, damage):
    pkl = tmp_path / "network.pkl"
    if damage == "truncated":
        import pickle

        pkl.write_bytes(pickle.dumps({"G_ema": list(range(1000))}, protocol=4)[:50])
    else:
        pkl.write_bytes(b"PK\x03\x04 a zip, not a pickle")
    _assert_clean_error(_run("import-official", pkl, tmp_path / "out"), "network.pkl")
