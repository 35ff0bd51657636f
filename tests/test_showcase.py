"""inrgan showcase: every rendering the page promises, with the sizes it says, and an index.html whose
pictures all exist (and load in a real browser where chromium is installed)."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from inrgan import Generator, get_preset
from inrgan.cli import main
from inrgan.serve.browser import FLAGS


@pytest.fixture(scope="module")
def showcase(tmp_path_factory):
    d = tmp_path_factory.mktemp("showcase")
    torch.manual_seed(0)
    Generator(get_preset("cpu-32", 16, 1).G).save_pretrained(d / "export")
    (d / "run" / "samples").mkdir(parents=True)  # a live run's grids: reals 2x2, fakes after 3 kimg
    Image.new("RGB", (32, 32), (200, 0, 0)).save(d / "run" / "samples" / "reals.png")
    Image.new("RGB", (32, 32), (0, 0, 200)).save(d / "run" / "samples" / "fakes000003.png")
    r = CliRunner().invoke(main, ["showcase", "--checkpoint", str(d / "export"), "--out", str(d / "demo"),
                                  "--seeds", "0-3", "--zoom", "4", "--threads", "1", "--run", str(d / "run")],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return d / "demo", r.output


def test_every_picture_is_rendered_at_its_size(showcase):
    out, log = showcase
    sizes = {"samples.png": (32, 32), "samples_x4.png": (128, 128), "samples_x16.png": (512, 256),
             "wide.png": (48, 64), "extrapolate2.png": (128, 32), "interp_z.png": (144, 16),
             "live_run.png": (72, 32)}
    for name, size in sizes.items():
        assert Image.open(out / name).size == size, name
    for gif in ("interp_z.gif", "interp_w.gif", "interp_inr.gif", "zoom.gif"):
        im = Image.open(out / gif)
        assert im.n_frames > 1, gif
    assert re.search(r"low-resolution speed-up: 4\^2 renders [0-9.]+x faster than 16\^2", log)
    live = np.asarray(Image.open(out / "live_run.png").convert("RGB"))
    assert tuple(live[5, 5]) == (200, 0, 0) and tuple(live[5, 60]) == (0, 0, 200)  # reals left, fakes right


def test_the_index_shows_every_file_with_a_caption(showcase):
    out, _ = showcase
    page = (out / "index.html").read_text()
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == 13 and srcs[0] == "live_run.png" and all((out / s).is_file() for s in srcs)
    assert "after 3 kimg" in page
    assert page.count("<figcaption>") == len(srcs)
    assert re.search(r"is [0-9.]+x faster than at 16x16", page)


def test_the_index_loads_in_a_headless_browser(showcase, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (make setup installs it where apt-get is available)")
    out, _ = showcase
    # Chromium runs the page's own check: the number of images that decoded, written into the title.
    probe = out / "probe.html"
    probe.write_text((out / "index.html").read_text().replace(
        "</body>", "<script>window.onload=()=>{document.title='loaded '+[...document.images]"
                   ".filter(i=>i.complete&&i.naturalWidth>0).length}</script></body>"))
    r = subprocess.run([chromium, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
                        "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    assert "<title>loaded 13</title>" in r.stdout, r.stderr[-2000:]
