"""Continuous rendering: training-grid equality, tiles, extrapolation, memory, interpolation, videos, CLI."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

from autograd_memory import saved_bytes
from inrgan import Generator, LevelConfig, get_preset
from inrgan.accel.inr import prepare
from inrgan.cli import main
from inrgan.cli.generate import render_geometry
from inrgan.models.coords import default_bbox
from inrgan.rendering.interpolate import inr_parameters, interpolate, lerp_params, render_inr, select, slerp
from inrgan.rendering.superres import superres_variants
from inrgan.rendering.video import pan_boxes, save_gif, zoom_boxes


def _randomise(G: Generator, seed: int = 0) -> Generator:
    """Random biases and embeddings everywhere, so no term of the forward hides behind a zero init."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if p.ndim == 1 or name.endswith("const"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return G.eval().requires_grad_(False)


def small_release_cfg(resolution: int = 64, img_channels: int = 3):
    """The released architecture and coordinate frame (two pyramid levels at 64), with narrow layers."""
    return dataclasses.replace(get_preset("inr-gan", resolution, img_channels).G, z_dim=32, w_dim=32,
                               channel_base=1024, channel_max=32)


CONFIGS = {
    "cpu-32@16": lambda: get_preset("cpu-32", 16, 1).G,
    "cpu-32@32-upsample": lambda: dataclasses.replace(get_preset("cpu-32", 32, 3).G, superres="upsample"),
    "release@64": lambda: small_release_cfg(64),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def G(request):
    torch.manual_seed(0)
    return _randomise(Generator(CONFIGS[request.param]()))


# ----------------------------------------------------------------------------------------------
# At the training resolution and box the continuous render is the discrete training-time forward.


def _training_grid_forward(G: Generator, ws: torch.Tensor) -> torch.Tensor:
    """Multi-scale INR written directly on the training grids, as the reference code does it:
    coordinates from the grid formula, learned constants read from their stored grid (no sampling),
    and x2 nearest upsampling between levels."""
    cfg, syn = G.cfg, G.synthesis
    x = img = None
    w_idx = 0
    for block in syn.blocks:
        block_ws = ws[:, w_idx : w_idx + block.num_conv + 1]
        w_idx += block.num_conv
        if block.level is not None:
            emb = syn.embeddings[block.level]
            g = cfg.grid_resolutions[block.level]
            steps = torch.arange(g, dtype=torch.float64)
            if cfg.grid == "center":
                xs = ys = (steps + 0.5) / g * 2 - 1  # pixel centres, y down
            else:
                xs = steps / g * 2 - 1  # left edges, y up
                ys = xs.flip(0)
            basis = emb.fixed_basis().double()
            e = basis[:, 0, None, None] * xs[None, None, :] + basis[:, 1, None, None] * ys[None, :, None]
            feats = torch.cat([e.sin(), e.cos(), emb.const.double()]).float()[None].expand(ws.shape[0], -1, -1, -1)
            if x is not None:
                x, img = F.interpolate(x, scale_factor=2, mode="nearest"), F.interpolate(img, scale_factor=2)
            x = feats if x is None else torch.cat([x, feats], dim=1)
        for layer, w in zip(block.layers(), block_ws.unbind(1), strict=False):
            x = layer(x, w)
        rgb = block.torgb(x, block_ws[:, block.num_conv])
        img = rgb if img is None else img + rgb
    return img


def test_training_resolution_render_equals_training_time_forward(G):
    z = torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(1))
    ws = G.mapping(z, truncation_psi=0.8)
    ref = _training_grid_forward(G, ws)
    R = G.resolution
    assert ref.shape == (3, G.img_channels, R, R)
    # Equal up to float rounding (the default forward regroups the same products).
    torch.testing.assert_close(G(z, truncation_psi=0.8), ref, rtol=1e-5, atol=1e-5)
    explicit = G.synthesis(ws, height=R, width=R, bbox=default_bbox(G.cfg.grid))
    torch.testing.assert_close(explicit, ref, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Tiles and extrapolation.


@pytest.mark.parametrize("height,width,tile,bbox", [
    (37, 53, 16, None),  # tiles do not divide the size
    (64, 64, 24, None),  # x2 or x4: "upsample" models switch to the paper-v1 pyramid here
    (30, 18, 7, (-0.3, -1.4, 0.9, 0.2)),  # a box that leaves the training box
])
def test_tiled_render_equals_whole_render(G, height, width, tile, bbox):
    ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(2)))
    if bbox is not None and G.cfg.grid == "release":
        bbox = (bbox[0], -bbox[1], bbox[2], -bbox[3])  # the release frame's y points up
    whole = G.synthesis(ws, height=height, width=width, bbox=bbox)
    tiled = G.synthesis(ws, height=height, width=width, bbox=bbox, tile=tile)
    assert tiled.shape == (2, G.img_channels, height, width)
    assert (tiled - whole).abs().max().item() <= 1e-5


def test_differentiable_tiled_render_keeps_one_tile_and_equals_the_whole_gradient():
    # With autograd, tiles are recomputed in the backward pass, so the graph holds no tile's activations:
    # it saves what computing the INR parameters saves, at any render size, and the gradients match.
    torch.manual_seed(0)
    G = _randomise(Generator(get_preset("cpu-32", 32, 3).G)).requires_grad_(True)
    ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(5))).detach().requires_grad_(True)
    target = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(6))

    def loss(tile):
        img, saved = saved_bytes(lambda: G.synthesis(ws, height=64, width=64, tile=tile))
        grads = torch.autograd.grad((img * target).sum(), [ws, *G.synthesis.parameters()], allow_unused=True)
        return img, saved, grads

    whole, saved_whole, grads_whole = loss(None)
    tiled, saved_tiled, grads_tiled = loss(16)  # 16 tiles
    assert (tiled - whole).abs().max().item() <= 1e-5
    _, saved_params = saved_bytes(lambda: prepare(G.synthesis, ws))  # what computing the INR keeps
    assert saved_tiled == saved_params  # no activations of any tile
    assert saved_whole > 2 * saved_params  # the whole render keeps every level's activations
    _, saved_larger = saved_bytes(lambda: G.synthesis(ws, height=128, width=128, tile=16))
    assert saved_larger == saved_params  # 4x the pixels, the same graph
    for gw, gt in zip(grads_whole, grads_tiled, strict=True):
        assert (gw is None) == (gt is None)
        if gw is not None:
            # the tiles sum the same terms in another order: equal to 1e-5 of the largest gradient
            assert (gt - gw).abs().max().item() <= 1e-5 * gw.abs().max().item()


@pytest.mark.parametrize("factor", [2, 4])
def test_extrapolated_render_has_the_plain_render_in_its_centre(G, factor):
    # Also for superres="upsample": the pyramid follows the pixel density, not the output size.
    R = G.resolution
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(3))
    # The CLI's geometry: `--height FR --width FR --extrapolate F` keeps the training pixel density.
    H, W, bbox = render_geometry(G, None, factor * R, factor * R, None, None, factor)
    big = G(z, height=H, width=W, bbox=bbox, tile=R)
    plain = G(z)
    lo = (factor - 1) * R // 2
    assert (big[:, :, lo : lo + R, lo : lo + R] - plain).abs().max().item() <= 1e-4
    # Outside, the image goes on rather than repeating the border.
    assert (big[:, :, :lo] - big[:, :, lo : lo + 1]).abs().max().item() > 1e-2


def test_extrapolate_without_a_size_keeps_the_density():
    G = Generator(get_preset("cpu-32", 16, 1).G)
    assert render_geometry(G, None, None, None, None, None, 2.0) == (32, 32, (-2.0, -2.0, 2.0, 2.0))
    assert render_geometry(G, None, None, None, 4.0, None, None) == (64, 64, None)


# ----------------------------------------------------------------------------------------------
# Memory: a tiled render holds the output buffer and one tile's working set, at any output size.

_MEMORY_PROBE = r"""
import json, sys, torch
from inrgan import Generator, get_preset

def mib(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field + ":")) / 1024

torch.set_num_threads(1)
preset, res, tile, sizes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), [int(s) for s in sys.argv[4:]]
G = Generator(get_preset(preset, res).G).eval()
z = torch.randn(1, G.z_dim)
out = {"base": mib("VmRSS"), "extra": []}
for size in sizes:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak RSS starts again from the current RSS
    before = mib("VmRSS")
    with torch.inference_mode():
        img = G(z, height=size, width=size, tile=tile)
    out["extra"].append(mib("VmHWM") - before)
    del img
print(json.dumps(out))
"""


def _clear_refs_works() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _clear_refs_works(),
                    reason="needs Linux's resettable peak RSS (/proc/self/clear_refs)")
@pytest.mark.parametrize("preset,res,tile,sizes", [("cpu-32", 32, 128, (128, 512)), ("inr-gan", 256, 128, (128, 256))])
def test_tiled_render_memory_does_not_grow_with_the_output(preset, res, tile, sizes):
    # Rendering 4096^2 itself takes minutes for inr-gan on 2 cores (docs/results.md has the measured
    # peaks); here: memory beyond the output buffer is the same at two sizes, and the 4096^2 buffer
    # plus that working set stays under 2 GB.
    proc = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, preset, str(res), str(tile), *map(str, sizes)],
                          capture_output=True, text=True, check=True, timeout=300)
    m = json.loads(proc.stdout)
    buffer = [3 * s * s * 4 / 2**20 for s in sizes]  # float32 RGB output, MiB
    working = [e - b for e, b in zip(m["extra"], buffer, strict=True)]
    assert working[1] <= working[0] + 16, (m, buffer)
    peak_4096 = m["base"] + max(working) + 3 * 4096 * 4096 * 4 / 2**20
    assert peak_4096 < 2000, (m, peak_4096)


# ----------------------------------------------------------------------------------------------
# Interpolation.


def _variant(name: str):
    cfg = get_preset("cpu-32", 16, 3).G
    if name == "predicted":  # per-sample Fourier basis and biases are INR parameters too
        levels = tuple(LevelConfig(const=4, gaussian=2, predicted=3) for _ in cfg.levels)
        return dataclasses.replace(cfg, levels=levels, predict_bias=True, fmm_modulation="sigmoid", final_tanh=True)
    if name == "bil":
        return dataclasses.replace(small_release_cfg(64), upsampling="bilinear", instance_norm=True)
    return cfg


@pytest.mark.parametrize("variant", ["cpu-32", "predicted", "bil"])
def test_rendering_from_inr_parameters_equals_the_render(variant):
    # The same maths in another order (weights folded before the render): in float64, so that the
    # bound (1e-10 of the image's range) holds on any CPU; a wrong fold is O(1).
    torch.manual_seed(0)
    G = _randomise(Generator(_variant(variant))).double()
    ws = G.mapping(torch.randn(2, G.z_dim, dtype=torch.float64))
    params = inr_parameters(G.synthesis, ws)
    kw = dict(height=23, width=31, bbox=(-1.3, -0.7, 0.8, 1.2))
    ref = G.synthesis(ws, **kw)
    assert ref.dtype == torch.float64
    tol = 1e-10 * (ref.max() - ref.min()).item()
    torch.testing.assert_close(render_inr(G.synthesis, params, **kw), ref, rtol=0, atol=tol)
    if variant != "bil":
        torch.testing.assert_close(render_inr(G.synthesis, params, tile=8, **kw), ref, rtol=0, atol=tol)


@pytest.mark.parametrize("space", ["z", "w", "inr"])
def test_interpolation_endpoints_equal_the_endpoint_renders(G, space):
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(4))
    kw = dict(truncation_psi=0.7, height=19, width=26)
    frames = interpolate(G, z[0], z[1], [0.0, 0.4, 1.0], space=space, batch_size=2, **kw)
    ends = G(z, **kw)
    assert frames.shape == (3, G.img_channels, 19, 26)
    torch.testing.assert_close(frames[0], ends[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(frames[2], ends[1], rtol=1e-5, atol=1e-5)
    assert (frames[1] - ends[0]).abs().max().item() > 1e-3


def test_inr_space_interpolates_the_generated_weights_linearly():
    torch.manual_seed(0)
    G = _randomise(Generator(get_preset("cpu-32", 16, 1).G))
    ws = G.mapping(torch.randn(2, G.z_dim))
    p = inr_parameters(G.synthesis, ws)
    mid = lerp_params(select(p, [0]), select(p, [1]), 0.25)
    w = p["blocks.1.conv0.weight"]  # [2, c_out, c_in], demodulated rows at the endpoints
    torch.testing.assert_close(mid["blocks.1.conv0.weight"][0], 0.75 * w[0] + 0.25 * w[1])
    torch.testing.assert_close(w.norm(dim=2), torch.ones(w.shape[:2]), atol=1e-5, rtol=0)
    # Halfway in weights is not halfway in w: the two paths differ.
    frames_inr = interpolate(G, torch.randn(G.z_dim), torch.randn(G.z_dim), [0.5], space="inr")
    assert frames_inr.shape == (1, 1, 16, 16)
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    torch.testing.assert_close(slerp(a, b, 0.5).norm(dim=-1), (a.norm(dim=-1) + b.norm(dim=-1)) / 2)


def test_superres_variants_share_the_generator():
    torch.manual_seed(0)
    G = _randomise(Generator(get_preset("cpu-32", 16, 1).G))
    v = superres_variants(G)
    z = torch.randn(2, G.z_dim)
    native = G(z)
    torch.testing.assert_close(v["inr-dense"](z), native)
    torch.testing.assert_close(v["inr-upsample"](z), native)  # same weights, same training-size render
    torch.testing.assert_close(v["bicubic"](z), native)
    doubled = native.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    torch.testing.assert_close(v["nearest"](z, height=32, width=32), doubled)
    assert v["bilinear"](z, height=48, width=40).shape == (2, 1, 48, 40)
    # Above the training size the two pyramid rules differ; "dense" is G itself.
    assert (v["inr-upsample"](z, height=32, width=32) - G(z, height=32, width=32)).abs().max() > 1e-3


# ----------------------------------------------------------------------------------------------
# Camera paths and files.


def test_zoom_and_pan_boxes():
    zb = zoom_boxes((-1, -1, 1, 1), (0.5, 0.0), 16, 5)
    assert zb[0] == pytest.approx((-1, -1, 1, 1))
    assert zb[-1] == pytest.approx((0.5 - 1.5 / 16, -1 / 16, 0.5 + 0.5 / 16, 1 / 16))
    sides = [b[2] - b[0] for b in zb]
    assert all(math.isclose(s1 / s0, 0.5) for s0, s1 in zip(sides, sides[1:], strict=False))  # constant rate
    pb = pan_boxes((-1, 1, 1, -1), 3.0, 3)
    assert pb == [(-3.0, 1, -1.0, -1), (-1.0, 1, 1.0, -1), (1.0, 1, 3.0, -1)]


def test_gif_keeps_the_frames(tmp_path):
    frames = [np.full((5, 7, 3), 40 * i, np.uint8) for i in range(6)]
    save_gif(frames, tmp_path / "a.gif", fps=10)
    with Image.open(tmp_path / "a.gif") as im:
        assert im.n_frames == 6 and im.size == (7, 5) and im.info["duration"] == 100


# ----------------------------------------------------------------------------------------------
# The CLI on a random-weights export.


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    torch.manual_seed(0)
    return _randomise(Generator(get_preset("cpu-32", 16, 1).G)).save_pretrained(tmp_path_factory.mktemp("g") / "g")


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_generate_any_size_extrapolate_and_tile(export, tmp_path):
    run("generate", "--checkpoint", export, "--seeds", "3", "--out", tmp_path / "plain")
    run("generate", "--checkpoint", export, "--seeds", "3", "--out", tmp_path / "ext", "--height", 32, "--width", 32,
        "--extrapolate", 2, "--tile", 12)
    plain, ext = _png(tmp_path / "plain" / "seed0003.png"), _png(tmp_path / "ext" / "seed0003.png")
    assert ext.shape == (32, 32)
    assert np.abs(ext[8:24, 8:24].astype(int) - plain.astype(int)).max() <= 1  # float ties may round apart
    run("generate", "--checkpoint", export, "--seeds", "3", "--out", tmp_path / "x", "--height", 24, "--width", 61,
        "--bbox", "-1,-0.5,1,0.5")
    assert _png(tmp_path / "x" / "seed0003.png").shape == (24, 61)


def test_interpolate_cli_strips_and_animations(export, tmp_path):
    out = tmp_path / "interp"
    run("interpolate", "--checkpoint", export, "--seeds", "0,1,2", "--space", "all", "--steps", 5, "--frames", 4,
        "--gif", "--out", out)
    run("generate", "--checkpoint", export, "--seeds", "0-2", "--out", tmp_path / "gen")
    seeds = [_png(tmp_path / "gen" / f"seed{s:04d}.png") for s in range(3)]
    for space in ("z", "w", "inr"):
        strip = _png(out / f"strip_{space}.png")
        assert strip.shape == (2 * 16, 5 * 16)  # a row per pair of seeds, endpoints included
        np.testing.assert_array_equal(strip[:16, :16], seeds[0])
        np.testing.assert_array_equal(strip[:16, -16:], seeds[1])
        np.testing.assert_array_equal(strip[16:, -16:], seeds[2])
        with Image.open(out / f"interp_{space}.gif") as im:
            assert im.n_frames == 3 * 4 and im.size == (16, 16)  # looped: 0 -> 1 -> 2 -> 0
            np.testing.assert_array_equal(np.asarray(im.convert("L")), seeds[0])


def test_video_cli_zoom_and_pan(export, tmp_path):
    run("video", "--checkpoint", export, "--seed", 3, "--mode", "zoom", "--zoom", 8, "--center", "0.25,-0.25",
        "--frames", 6, "--height", 20, "--width", 28, "--out", tmp_path / "zoom.gif")
    with Image.open(tmp_path / "zoom.gif") as im:
        assert im.n_frames == 6 and im.size == (28, 20)
    run("video", "--checkpoint", export, "--seed", 3, "--mode", "pan", "--extrapolate", 3, "--frames", 5,
        "--out", tmp_path / "pan.gif", "--strip", tmp_path / "strip.png")
    run("generate", "--checkpoint", export, "--seeds", "3", "--out", tmp_path / "gen")
    strip, plain = _png(tmp_path / "strip.png"), _png(tmp_path / "gen" / "seed0003.png")
    assert strip.shape == (16, 48)
    assert np.abs(strip[:, 16:32].astype(int) - plain.astype(int)).max() <= 1
    with Image.open(tmp_path / "pan.gif") as im:
        assert im.n_frames == 5
        im.seek(2)  # the middle frame is the training box
        assert np.abs(np.asarray(im.convert("L")).astype(int) - plain.astype(int)).max() <= 1
    if _has_imageio_ffmpeg():
        run("video", "--checkpoint", export, "--mode", "pan", "--frames", 3, "--out", tmp_path / "pan.mp4")
        assert (tmp_path / "pan.mp4").stat().st_size > 0


def _has_imageio_ffmpeg() -> bool:
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


def test_rendering_from_inr_parameters_is_differentiable_in_them():
    # Every block's ToRGB bias is added once to every output pixel (skip architecture, nearest
    # upsampling, no final tanh): d sum(image) / d bias = H * W for each block and channel.
    torch.manual_seed(0)
    G = _randomise(Generator(get_preset("cpu-32", 16, 1).G))
    assert not G.synthesis.cfg.final_tanh
    with torch.no_grad():
        params = inr_parameters(G.synthesis, G.mapping(torch.randn(2, G.z_dim)))
    biases = [f"blocks.{i}.torgb.bias" for i in range(len(G.synthesis.blocks))]
    for name in biases:
        params[name] = params[name].clone().requires_grad_(True)
    img = render_inr(G.synthesis, params, height=12, width=20)
    img.sum().backward()
    for name in biases:
        torch.testing.assert_close(params[name].grad, torch.full_like(params[name], 12 * 20))


# ----------------------------------------------------------------------------------------------
# A seed's image does not depend on the batch it is rendered in, nor on the thread count.


@pytest.mark.parametrize("threads", [1, 2])
def test_a_seed_renders_the_same_image_in_any_batch(threads, monkeypatch):
    from inrgan.accel import threads as pool

    monkeypatch.setattr(pool, "MIN_MACS_PER_THREAD", 0)  # take the batch split wherever it applies
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        G = _randomise(Generator(get_preset("cpu-32", 32, 1).G))
        z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in range(8)])).float()
        with torch.inference_mode():
            batch = G(z, truncation_psi=0.7)  # [8, 1, 32, 32]
            alone = torch.cat([G(z[i:i + 1], truncation_psi=0.7) for i in range(8)])
            other_threads = _with_threads(3 - threads, lambda: G(z, truncation_psi=0.7))
    finally:
        torch.set_num_threads(before)
    scale = (alone.max() - alone.min()).item()
    assert scale > 0.1
    for out in (batch, other_threads):
        err = (out - alone).abs().max().item()
        print(f"threads {threads}: max difference {err:.2e} = {err / scale:.1e} of the image range")
        assert err <= 1e-5 * scale  # fp32 rounding of reordered sums; a sample mixed with another is O(1)


def _with_threads(n: int, fn):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


def test_generate_renders_its_seeds_in_batches_with_the_same_pixels(tmp_path):
    torch.manual_seed(0)
    G = _randomise(Generator(get_preset("cpu-32", 16, 1).G))
    G.save_pretrained(tmp_path / "export")
    outs = {}
    for b in (1, 3):
        d = tmp_path / f"b{b}"
        r = CliRunner().invoke(main, ["generate", "--checkpoint", str(tmp_path / "export"), "--seeds", "0-6",
                                      "--out", str(d), "--raw", "--batch", str(b), "--threads", "2"])
        assert r.exit_code == 0, r.output
        outs[b] = np.stack([np.load(d / f"seed{s:04d}.npy") for s in range(7)])
    scale = outs[1].max() - outs[1].min()
    assert np.abs(outs[3] - outs[1]).max() <= 1e-5 * scale
    single = G(torch.from_numpy(np.random.RandomState(5).randn(1, G.z_dim)).float())[0].numpy()
    assert np.abs(outs[3][5] - single).max() <= 1e-5 * scale  # seed 5 from its own RandomState
