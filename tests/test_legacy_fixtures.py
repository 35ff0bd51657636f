"""Files saved by earlier code still load, render and resume the same (tests/data/legacy, written by
tests/data/make_legacy_fixtures.py with the code of commit 1783867, before the models/accel redesign).

Golden renders are float64. A float64 render today is the same maths in another order: it agrees to 1e-9
(rounding at 1e-16 over chains of a few hundred operations). The float32 render agrees to 1e-4 (fp32
rounding over the same chains, the image range being about 2), as for the shipped model. A resumed
tick repeats three fp32 training steps: the losses agree to 1e-4 relative and G_ema's pixels to 1e-4.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from inrgan import Generator
from inrgan.models.generator import seed_latents
from inrgan.rendering.interpolate import interpolate
from inrgan.training.checkpoint import load_training_state
from inrgan.training.loop import RunOptions, train

LEGACY = Path(__file__).parent / "data" / "legacy"
GOLDEN = json.loads((LEGACY / "golden.json").read_text())
EXPORTS = {"run": LEGACY / "run" / "export", "inr-gan-narrow": LEGACY / "inr-gan-narrow"}


def _renders(G: Generator, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    G = G.to(dtype)
    z = seed_latents(GOLDEN["seeds"], G.z_dim).to(dtype)
    other = dict(GOLDEN["other"], bbox=tuple(GOLDEN["other"]["bbox"]))
    with torch.no_grad():
        return {"train_grid": G(z), "other_grid": G(z, **other),
                "inr_midpoint": interpolate(G, z[0], z[1], [0.5], space="inr")}


def _check(img: torch.Tensor, golden: dict, atol: float) -> None:
    assert list(img.shape) == golden["shape"]
    got = [[img[i, c, y, x].item() for c, y, x in golden["pixels"]] for i in range(img.shape[0])]
    np.testing.assert_allclose(got, golden["values"], rtol=0, atol=atol)
    np.testing.assert_allclose(img.mean(dim=(1, 2, 3)).tolist(), golden["mean"], rtol=0, atol=atol)


@pytest.mark.parametrize("name", sorted(EXPORTS))
@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_an_old_export_renders_its_golden_pixels(name, dtype, atol):
    renders = _renders(Generator.from_pretrained(EXPORTS[name]), dtype)
    for kind, img in renders.items():
        _check(img, GOLDEN[name][kind], atol)


def _noise_images(folder: Path, count: int = 12, size: int = 20) -> str:
    from PIL import Image

    folder.mkdir()
    rng = np.random.RandomState(0)  # the fixture run's data, as make_legacy_fixtures.py wrote it
    for i in range(count):
        Image.fromarray((rng.rand(size, size) * 255).astype(np.uint8), "L").save(folder / f"{i:03d}.png")
    return str(folder)


def test_an_old_training_state_loads_and_resumes_to_its_golden_tick(tmp_path):
    state = load_training_state(LEGACY / "run")
    assert state["cur_nimg"] == 12 and state["batch_idx"] == 3
    run = tmp_path / "run"
    shutil.copytree(LEGACY / "run", run)
    data = _noise_images(tmp_path / "imgs")
    last = train(run, RunOptions(data=data, preset=None, device="cpu", progress=False), resume=run,
                 overrides={"kimg": 0.024}, log=lambda *_: None)
    golden = GOLDEN["resume"]
    assert last["kimg"] == golden["kimg"]
    for key in ("loss_G", "loss_D", "D_real", "D_fake", "loss_r1"):
        assert last[key] == pytest.approx(golden[key], rel=1e-4, abs=1e-6), key
    G_ema = Generator.from_pretrained(run / "export").double()
    with torch.no_grad():
        img = G_ema(seed_latents(GOLDEN["seeds"], G_ema.z_dim).double())
    _check(img, golden["G_ema"], 1e-4)
