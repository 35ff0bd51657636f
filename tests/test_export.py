"""inrgan export: the ONNX graph renders as PyTorch does at any size, box, batch and truncation; the file is a
checkpoint for generate, video and interpolate; bad models, opsets and files get clear errors and leave
nothing written; and the web export renders, zooms, pans and interpolates in a real headless browser."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnx", reason="onnx (the onnx extra) is not installed")
pytest.importorskip("onnxruntime", reason="onnxruntime (the onnx extra) is not installed")

import onnx  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from inrgan import Generator, get_preset  # noqa: E402
from inrgan.cli import main  # noqa: E402
from inrgan.export import (  # noqa: E402
    DEFAULT_OPSET,
    ExportError,
    OnnxGenerator,
    export_onnx,
    graph_inputs,
    graph_outputs,
    onnxfile,
)
from inrgan.export import web as webexport  # noqa: E402
from inrgan.models import Generator as ReferenceGenerator  # noqa: E402
from inrgan.models.generator import seed_latents  # noqa: E402
from inrgan.rendering.images import to_uint8  # noqa: E402

TOL = 1e-4 * 2  # 1e-4 of the image range [-1, 1]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def shipped():
    return Generator.from_pretrained("fashion-mnist-32")


@pytest.fixture(scope="module")
def onnx_path(shipped, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "fashion.onnx"
    export_onnx(shipped, path, source="fashion-mnist-32")
    return path


def _structured(G):
    """Random weights with non-zero biases, constants and w_avg: images with structure at every scale."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if p.ndim == 1 or name.endswith("const"):
                p.copy_(torch.randn(p.shape) * 0.5)
        G.mapping.w_avg.copy_(torch.randn(G.w_dim) * 0.3)
    return G.eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------------
# The graph against PyTorch.


@pytest.mark.parametrize("height,width,bbox", [
    (32, 32, None),  # the training grid
    (24, 40, (-2.5, -1.0, 2.5, 1.0)),  # non-square, extrapolated left and right
    (128, 128, None),  # x4 super-resolution
])
def test_the_shipped_model_renders_through_onnxruntime_within_1e4_of_pytorch(shipped, onnx_path, height, width, bbox):
    og = OnnxGenerator(onnx_path, threads=1)
    z = seed_latents([0, 1, 2, 3], shipped.z_dim)
    with torch.inference_mode():
        for psi in (1.0, 0.7):
            out = og(z, truncation_psi=psi, height=height, width=width, bbox=bbox)
            assert out.shape == (4, 1, height, width)
            fast = shipped(z, truncation_psi=psi, height=height, width=width, bbox=bbox)
            assert (out - fast).abs().max() <= TOL, (psi, float((out - fast).abs().max()))
    reference = ReferenceGenerator.from_pretrained("fashion-mnist-32")
    with torch.inference_mode():
        ref = reference(z, truncation_psi=0.7, height=height, width=width, bbox=bbox)
    assert (out - ref).abs().max() <= TOL


def test_one_psi_per_image_and_any_batch(shipped, onnx_path):
    og = OnnxGenerator(onnx_path, threads=1)
    z = seed_latents([5, 6, 7], shipped.z_dim).numpy()
    both = og.render(z, [0.5, 1.0, 0.8], 16, 20, (-0.5, -1.5, 1.5, 0.5))
    for i, psi in enumerate((0.5, 1.0, 0.8)):
        one = og.render(z[i:i + 1], psi, 16, 20, (-0.5, -1.5, 1.5, 0.5))
        assert np.abs(both[i:i + 1] - one).max() <= 1e-5


def test_the_metadata_records_the_opset_inputs_outputs_and_config(shipped, onnx_path):
    model = onnx.load(str(onnx_path))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["format"] == "inrgan-onnx" and meta["format_version"] == "1" and model.producer_name == "inrgan"
    assert int(meta["opset"]) == DEFAULT_OPSET == next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert json.loads(meta["config"]) == json.loads(json.dumps(shipped.cfg.to_dict()))
    inputs, outputs = json.loads(meta["inputs"]), json.loads(meta["outputs"])
    assert inputs == graph_inputs(shipped.cfg) and outputs == graph_outputs(shipped.cfg)
    assert [(i["name"], i["type"], i["shape"]) for i in inputs] == [
        ("z", "float32", ["batch", 128]), ("truncation_psi", "float32", ["psi_batch"]), ("bbox", "float64", [4]),
        ("height", "int64", []), ("width", "int64", [])]
    assert outputs[0]["shape"] == ["batch", 1, "height", "width"]
    graph = [(v.name, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim])
             for v in [*model.graph.input, *model.graph.output]]
    assert graph == [(i["name"], i["shape"]) for i in inputs + outputs]
    assert json.loads(meta["verified"])["max_abs_diff"] <= TOL and meta["source"] == "fashion-mnist-32"


def _small(kind: str):
    if kind == "conditional":
        return Generator.build(dataclasses.replace(get_preset("cpu-32", 16, 1).G, class_names=("a", "b", "c")))
    if kind == "bil-release":  # the -bil variant's upsampling and normalisation in the release frame
        cfg = get_preset("cpu-32", 16, 3).G
        return Generator.build(dataclasses.replace(cfg, upsampling="bilinear", instance_norm=True, grid="release"))
    return Generator.build(get_preset("ladder-3-fourier", 16, 1).G)  # a single-scale INR (hypernetwork)


@pytest.mark.parametrize("kind", ["conditional", "bil-release", "single-scale"])
def test_other_models_export_and_match(kind, tmp_path):
    from inrgan.models.coords import default_bbox, scale_box

    G = _structured(_small(kind))
    export_onnx(G, tmp_path / "m.onnx", opset=13 if kind == "conditional" else DEFAULT_OPSET)
    og = OnnxGenerator(tmp_path / "m.onnx", threads=1)
    z = seed_latents([1, 2], G.z_dim)
    c = torch.eye(3)[[2, 0]] if G.c_dim else None
    wide = scale_box(default_bbox(G.cfg.grid), 2.0, 1.0)
    with torch.inference_mode():
        for grid in ({}, {"height": 12, "width": 28, "bbox": wide}, {"height": 32, "width": 32}):
            out, ref = og(z, c, truncation_psi=0.8, **grid), G(z, c, truncation_psi=0.8, **grid)
            assert out.shape == ref.shape and (out - ref).abs().max() <= TOL, (kind, grid)
    if G.c_dim:
        with pytest.raises(ValueError, match="conditional"):
            og(z)


# ----------------------------------------------------------------------------------------------
# The ONNX file as a checkpoint.


def test_generate_video_and_interpolate_take_the_onnx_file(onnx_path, tmp_path):
    common = ["--seeds", "0-2", "--raw", "--threads", 1, "--trunc", 0.7, "--height", 24, "--width", 40,
              "--bbox", "-2.5,-1,2.5,1"]
    r = run("generate", "--checkpoint", onnx_path, "--out", tmp_path / "onnx", *common)
    assert r.exit_code == 0, r.output
    assert run("generate", "--checkpoint", "fashion-mnist-32", "--out", tmp_path / "torch", *common).exit_code == 0
    for s in range(3):
        a, b = np.load(tmp_path / "onnx" / f"seed{s:04d}.npy"), np.load(tmp_path / "torch" / f"seed{s:04d}.npy")
        assert a.shape == (1, 24, 40) and np.abs(a - b).max() <= TOL
    # tiles of 10 pixels start at multiples of the coarsest cells (4): the same pixels as the whole render
    r = run("generate", "--checkpoint", onnx_path, "--out", tmp_path / "tiled", *common, "--tile", 10)
    assert r.exit_code == 0, r.output
    assert np.abs(np.load(tmp_path / "tiled" / "seed0001.npy") - np.load(tmp_path / "onnx" / "seed0001.npy")).max() <= 1e-5

    r = run("video", "--checkpoint", onnx_path, "--out", tmp_path / "zoom.gif", "--frames", 3, "--height", 16,
            "--threads", 1)
    assert r.exit_code == 0 and (tmp_path / "zoom.gif").stat().st_size > 100, r.output
    r = run("interpolate", "--checkpoint", onnx_path, "--seeds", "0,1", "--space", "z", "--steps", 3,
            "--out", tmp_path / "interp", "--threads", 1)
    assert r.exit_code == 0 and (tmp_path / "interp" / "strip_z.png").is_file(), r.output
    r = run("interpolate", "--checkpoint", onnx_path, "--space", "w", "--out", tmp_path / "w", "--threads", 1)
    assert r.exit_code == 2 and "--space z" in r.output


# ----------------------------------------------------------------------------------------------
# Bad inputs: clear errors, nothing half-written.


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_models_that_cannot_be_exported_and_wrong_opsets_write_nothing(tmp_path):
    sg2 = Generator.build(get_preset("stylegan2", 16, 1).G)
    with pytest.raises(ExportError, match="renders its training grid only"):
        export_onnx(sg2, tmp_path / "sg2.onnx")
    upsample = Generator.build(dataclasses.replace(get_preset("cpu-32", 16, 1).G, superres="upsample"))
    with pytest.raises(ExportError, match="superres='upsample'"):
        export_onnx(upsample, tmp_path / "up.onnx")
    small = _structured(_small("conditional"))
    for opset in (7, 12, 21, 99):
        with pytest.raises(ExportError, match="opsets 13 to 20"):
            export_onnx(small, tmp_path / "small.onnx", opset=opset)
    with pytest.raises(ExportError, match=r"\*\.onnx"):
        export_onnx(small, tmp_path / "small.bin")
    assert _files(tmp_path) == []

    sg2.save_pretrained(tmp_path / "sg2-export")
    r = run("export", "--checkpoint", tmp_path / "sg2-export", "--out", tmp_path / "sg2.onnx", "--threads", 1)
    assert r.exit_code == 1 and "renders its training grid only" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1
    r = run("export", "--checkpoint", "fashion-mnist-32", "--out", tmp_path / "x.onnx", "--opset", 9)
    assert r.exit_code == 1 and "opset 9" in r.output
    assert _files(tmp_path) == ["sg2-export"]


def test_a_failed_export_leaves_the_previous_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"the previous export")
    monkeypatch.setattr(onnxfile, "verify", lambda data, G, threads=1: 0.5)  # a graph that renders wrongly
    with pytest.raises(ExportError, match="0.5 away from the PyTorch model"):
        export_onnx(_structured(_small("conditional")), target)
    assert target.read_bytes() == b"the previous export" and _files(tmp_path) == ["model.onnx"]


def test_an_onnx_file_that_is_not_ours_gets_a_one_line_error(onnx_path, tmp_path):
    from onnx import TensorProto, helper

    foreign = helper.make_model(helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "foreign",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]))
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    (tmp_path / "garbage.onnx").write_bytes(b"\x00not a protobuf at all" * 10)
    damaged = onnx.load(str(onnx_path))
    for p in damaged.metadata_props:
        if p.key == "config":
            p.value = "{not json"
    onnx.save(damaged, str(tmp_path / "damaged.onnx"))
    for name, message in (("foreign.onnx", "not an inrgan generator"), ("garbage.onnx", "not a readable ONNX model"),
                          ("missing.onnx", "no such ONNX file"), ("damaged.onnx", "metadata is damaged")):
        r = run("generate", "--checkpoint", tmp_path / name, "--out", tmp_path / "out", "--threads", 1)
        assert r.exit_code == 1 and message in r.output, (name, r.output)
        assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    r = run("export", "--checkpoint", tmp_path / "foreign.onnx", "--format", "web", "--out", tmp_path / "page")
    assert r.exit_code == 1 and "not an inrgan generator" in r.output and not (tmp_path / "page").exists()
    r = run("export", "--checkpoint", onnx_path, "--out", tmp_path / "again.onnx")
    assert r.exit_code == 1 and "already an ONNX file" in r.output

    from inrgan.cli.generate import load_generator  # the commands that need PyTorch say so

    with pytest.raises(Exception, match="takes a PyTorch checkpoint"):
        load_generator(str(onnx_path))


# ----------------------------------------------------------------------------------------------
# The web export.


def test_the_web_export_needs_the_vendored_runtime_and_a_folder_of_its_own(onnx_path, tmp_path, monkeypatch):
    monkeypatch.setenv("INRGAN_ORT_WEB_DIR", str(tmp_path / "nothing"))
    r = run("export", "--checkpoint", onnx_path, "--format", "web", "--out", tmp_path / "page")
    assert r.exit_code == 1 and "make setup" in r.output and "python -m inrgan.export fetch" in r.output
    assert not (tmp_path / "page").exists()
    fake = tmp_path / "fake"
    fake.mkdir()
    for name in webexport.ORT_WEB_FILES:
        (fake / name).write_bytes(b"not the real file")
    monkeypatch.setenv("INRGAN_ORT_WEB_DIR", str(fake))
    r = run("export", "--checkpoint", onnx_path, "--format", "web", "--out", tmp_path / "page")
    assert r.exit_code == 1 and "(sha256)" in r.output and not (tmp_path / "page").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    monkeypatch.delenv("INRGAN_ORT_WEB_DIR")
    r = run("export", "--checkpoint", onnx_path, "--format", "web", "--out", other)
    assert r.exit_code == 1 and "other files" in r.output and _files(other) == ["notes.txt"]


def _vendored() -> bool:
    try:
        webexport.runtime_files()
        return True
    except ExportError:
        return False


@pytest.fixture(scope="module")
def web_dir(onnx_path, tmp_path_factory):
    if not _vendored():
        pytest.skip(f"onnxruntime-web {webexport.ORT_WEB_VERSION} is not vendored ({webexport.FETCH_COMMAND})")
    out = tmp_path_factory.mktemp("web") / "page"
    for _ in range(2):  # an earlier web export is replaced whole
        r = run("export", "--checkpoint", onnx_path, "--format", "web", "--out", out)
        assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.parent.iterdir()) == ["page"]
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["index.html", "inrgan-web.js", "model.json", "model.onnx", "ort/NOTICE",
                     "ort/ort-wasm-simd-threaded.wasm", "ort/ort.wasm.bundle.min.mjs", "style.css"]
    assert (out / "model.onnx").read_bytes() == onnx_path.read_bytes()
    return out


@pytest.fixture(scope="module")
def static_server(web_dir):
    with webexport.serve_static(web_dir) as url:
        yield url


def _wait(driver, script, timeout=90):
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d):
        errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        return d.execute_script(script)

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(ready)


CANVAS = """
const c = document.getElementById('canvas');
const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
return {height: c.height, width: c.width, red: Array.from(px.filter((_, k) => k % 4 === 0)), shown: window.inrgan.shown};
"""

RENDER = """
const done = arguments[arguments.length - 1];
window.inrgan.render(arguments[0]).then(r => done({data: Array.from(r.data), dims: r.dims}),
                                        e => done({error: String(e)}));
"""


def _torch_uint8(G, z, psi, box, height, width):
    with torch.inference_mode():
        img = G(torch.tensor(z, dtype=torch.float32).reshape(1, -1), truncation_psi=psi, height=height,
                width=width, bbox=tuple(box))
    return to_uint8(img)[0, ..., 0].astype(int)


def test_the_page_renders_zooms_pans_and_interpolates_in_headless_chromium(shipped, static_server, tmp_path):
    from inrgan.serve import browser

    if not browser.available():
        pytest.skip("chromium and chromium-driver are not installed (make setup installs them where apt-get is)")
    driver = browser.chromium_driver(tmp_path / "profile", 900, 600)
    driver.set_script_timeout(60)
    try:
        driver.get(static_server)
        _wait(driver, "return window.inrgan && !window.inrgan.busy")
        # the page's seeds are inrgan generate's latents
        js_z = np.array(driver.execute_script("return Array.from(window.inrgan.seedLatent(7))"))
        assert np.abs(js_z.astype(np.float32) - seed_latents([7], 128).numpy()[0]).max() == 0
        # zoom 8x into a point right of the centre, then drag and scroll with real pointer and wheel events:
        # the shown image is the PyTorch render of its box, at the canvas's density
        for _ in range(3):
            driver.execute_script("window.inrgan.zoomAt(2, 170, 100)")
            _wait(driver, "return !window.inrgan.busy")
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.actions.wheel_input import ScrollOrigin

        canvas_element = driver.find_element("id", "canvas")
        before = driver.execute_script("return window.inrgan.viewBox()")
        ActionChains(driver).click_and_hold(canvas_element).move_by_offset(-20, 10).move_by_offset(-20, 15) \
            .release().perform()
        _wait(driver, "return !window.inrgan.busy")
        after = driver.execute_script("return window.inrgan.viewBox()")
        step = (before[2] - before[0]) / 256  # box units per CSS pixel
        assert abs((after[0] - before[0]) - 40 * step) < 1e-9 and abs((after[1] - before[1]) + 25 * step) < 1e-9
        ActionChains(driver).scroll_from_origin(ScrollOrigin.from_element(canvas_element), 0, -200).perform()
        _wait(driver, "return !window.inrgan.busy && window.inrgan.view.zoom > 8.1")
        seen = driver.execute_script(CANVAS)
        shown = seen["shown"]
        zoom = driver.execute_script("return window.inrgan.view.zoom")
        assert abs(zoom - 8 * np.exp(0.4)) < 1e-6 and not shown["preview"] and seen["height"] == shown["height"]
        assert abs(shown["bbox"][2] - shown["bbox"][0] - 2 / zoom) < 1e-12
        expected = _torch_uint8(shipped, shown["z"], shown["psi"], shown["bbox"], shown["height"], shown["width"])
        canvas = np.array(seen["red"]).reshape(seen["height"], seen["width"])
        assert canvas.std() > 1 and np.abs(canvas - expected).max() <= 1
        # a zoomed tile through the page's hook: the raw floats within 1e-4 of the range of PyTorch's
        z = seed_latents([3], 128).numpy()[0].tolist()
        box = [0.1, -0.35, 0.1 + 1 / 32, -0.35 + 1 / 32]  # 64x zoom
        r = driver.execute_async_script(RENDER, {"z": z, "bbox": box, "height": 48, "width": 64, "psi": 0.7})
        assert "error" not in r, r
        with torch.inference_mode():
            ref = shipped(torch.tensor([z]), truncation_psi=0.7, height=48, width=64, bbox=tuple(box))
        assert r["dims"] == [1, 1, 48, 64]
        assert np.abs(np.array(r["data"]).reshape(1, 1, 48, 64) - ref.numpy()).max() <= TOL
        # the interpolation slider's end is the second seed
        z1 = np.random.RandomState(1).randn(128)  # the default second seed
        driver.execute_script("window.inrgan.reset(); const t = document.getElementById('t'); t.value = 1;"
                              "t.dispatchEvent(new Event('input'))")
        _wait(driver, f"return !window.inrgan.busy && window.inrgan.shown.z[0] === {float(z1[0])!r}")
        seen = driver.execute_script(CANVAS)
        assert np.abs(np.array(seen["shown"]["z"]) - z1).max() < 1e-15
        expected = _torch_uint8(shipped, z1, 1.0, seen["shown"]["bbox"], seen["height"], seen["width"])
        assert np.abs(np.array(seen["red"]).reshape(seen["height"], seen["width"]) - expected).max() <= 1
        frames = driver.execute_script("return window.inrgan.frames")
        assert len(frames) >= 6 and all(f["ms"] > 0 for f in frames)
    finally:
        driver.quit()
