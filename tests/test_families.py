"""The generator families beside INR-GAN: StyleGAN2, CIPS and the ablation ladder (issue 17).

Parameter counts against a hand count from the layer shapes, the cost counter against the layer shapes,
the maths of each family's layers against an explicit computation in float64, rendering (any grid for the
INR families, the training grid only for StyleGAN2), training from the CLI, and the export round trip.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import write_noise_images
from inrgan import Generator, get_preset
from inrgan.cli import main
from inrgan.config import ConfigError, GeneratorConfig, PixelINRConfig, generator_config_from_dict
from inrgan.metrics import probe
from inrgan.models.coords import GridError, RenderGrid
from inrgan.models.cost import family_macs
from inrgan.models.stylegan2 import modulated_conv2d, upsample_2x

FAMILY_PRESETS = ["stylegan2", "cips", "ladder-1-latent-mlp", "ladder-2-hypernet", "ladder-3-fourier", "ladder-4-fmm"]
PIXEL_INR_PRESETS = ["cips", "ladder-1-latent-mlp", "ladder-2-hypernet", "ladder-3-fourier"]
W = 128  # w_dim of every preset here
MAPPING = 2 * (W * W + W)  # two fully connected layers
LADDER = [(128, None), (128, 128), (128, 128), (128, 128), (128, 128), (64, 128), (64, 64)]  # (c_out, c_in)
LADDER_TORGB = (0, 2, 4, 6)


def _fc(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_in * n_out + (n_out if bias else 0)


def _build(name: str, resolution: int | None = None, dtype=torch.float32):
    torch.manual_seed(0)
    return Generator.build(get_preset(name, resolution, 1).G).to(dtype).eval().requires_grad_(False)


def _params(G) -> int:
    return sum(p.numel() for p in G.parameters())


def _ladder_layers(first_in: int):
    return [(o, first_in if i is None else i) for o, i in LADDER]


def test_parameter_counts_are_the_hand_counts_of_the_layer_shapes():
    # StyleGAN2: 160 channels everywhere; a conv = 3x3 weight, affine head (w -> c_in), bias, noise strength.
    conv = 160 * 160 * 9 + _fc(W, 160) + 160 + 1
    torgb = 160 + _fc(W, 160) + 1  # weight [1, 160], affine, bias
    assert _params(_build("stylegan2")) == 7 * conv + 4 * torgb + 160 * 4 * 4 + MAPPING == 1_877_195
    # CIPS: 64 learned frequencies (sin, cos) + 128 constants = 256 input channels, 8 layers of 256.
    layer = 256 * 256 + _fc(W, 256) + 256
    torgb = 256 + _fc(W, 256) + 1
    assert _params(_build("cips")) == 8 * layer + 4 * torgb + 64 * 2 + 128 * 32 * 32 + MAPPING
    # Rung 1: shared layers; the first acts on [x, y, w].
    layers = _ladder_layers(2)
    shared = sum(_fc(i + (W if k == 0 else 0), o) for k, (o, i) in enumerate(layers))
    torgbs = sum(_fc(layers[k][0], 1) for k in LADDER_TORGB)
    assert _params(_build("ladder-1-latent-mlp")) == shared + torgbs + MAPPING
    # Rungs 2 and 3: a head per layer generates c_out * c_in + c_out parameters from w.
    for name, first_in, const in (("ladder-2-hypernet", 2, 0), ("ladder-3-fourier", 2 * 4 * 5 + 16, 16)):
        layers = _ladder_layers(first_in)
        heads = sum(_fc(W, o * i + o) for o, i in layers) + sum(_fc(W, layers[k][0] + 1) for k in LADDER_TORGB)
        assert _params(_build(name)) == heads + const * 32 * 32 + MAPPING, name
    # Rung 4: FMM layers (rank 8) with cpu-32's widths at one 32^2 level: W_s, bias, head w -> (c_in + c_out) r.
    fmm = sum(o * i + o + _fc(W, (i + o) * 8) for o, i in _ladder_layers(56))
    torgbs = sum(_fc(W, LADDER[k][0]) + LADDER[k][0] + 1 for k in LADDER_TORGB)
    assert _params(_build("ladder-4-fmm")) == fmm + torgbs + 16 * 32 * 32 + MAPPING


def test_the_macs_are_the_layer_shapes_times_the_pixels():
    sg2 = family_macs(_build("stylegan2"))
    convs = 160 * 160 * 9 * (4**2 + 2 * (8**2 + 16**2 + 32**2))
    ups = 4 * (160 + 1) * (8**2 + 16**2 + 32**2)  # features and skip image, 4 taps per output value
    torgbs = 160 * (4**2 + 8**2 + 16**2 + 32**2)
    assert sg2["render"] == convs + ups + torgbs
    assert sg2["mapping"] == 2 * W * W
    rung3, rung4 = family_macs(_build("ladder-3-fourier")), family_macs(_build("ladder-4-fmm"))
    per_pixel = sum(o * i for o, i in _ladder_layers(56)) + sum(LADDER[k][0] for k in LADDER_TORGB)
    assert rung3["render"] == rung4["render"] == per_pixel * 32 * 32  # one layout, FMM or generated weights
    assert rung3["hyper"] == sum(W * (o * i + o) for o, i in _ladder_layers(56)) + sum(
        W * (LADDER[k][0] + 1) for k in LADDER_TORGB)


@pytest.mark.parametrize("name", FAMILY_PRESETS)
def test_output_shapes_and_the_info_command(name):
    G = _build(name, 16)
    img = G(torch.randn(3, G.z_dim))
    assert img.shape == (3, 1, 16, 16) and torch.isfinite(img).all()
    if G.renders_any_grid:
        assert G(torch.randn(2, G.z_dim), height=20, width=48).shape == (2, 1, 20, 48)
    r = CliRunner().invoke(main, ["info", "--preset", name, "--channels", "1", "--json"], catch_exceptions=False)
    info = json.loads(r.output)
    assert info["G_params"] == _params(_build(name)) and info["family"] == get_preset(name).G.family
    assert info["macs"]["total"] == sum(info["macs"][k] for k in ("mapping", "hyper", "render"))


def test_the_latent_mlp_is_an_mlp_on_coordinates_and_w():
    G = _build("ladder-1-latent-mlp", 16, torch.float64)
    z = torch.randn(2, G.z_dim, dtype=torch.float64)
    ws = G.mapping(z)
    syn = G.synthesis
    ys = (torch.arange(16, dtype=torch.float64) + 0.5) / 8 - 1
    yy, xx = torch.meshgrid(ys, ys, indexing="ij")
    x = torch.cat([torch.stack([xx, yy]).flatten(1).T[None].expand(2, -1, -1),
                   ws[:, 0, None, :].expand(-1, 256, -1)], dim=2)  # [B, pixels, 2 + w_dim]: [x, y, w]
    img = 0
    for k, layer in enumerate(syn.layers):
        x = torch.nn.functional.leaky_relu(x @ (layer.weight * layer.weight_gain).T + layer.bias, 0.2) * math.sqrt(2)
        if str(k) in syn.torgbs:
            rgb = syn.torgbs[str(k)]
            img = img + x @ (rgb.weight * rgb.weight_gain).T + rgb.bias
    torch.testing.assert_close(syn(ws), img.transpose(1, 2).reshape(2, 1, 16, 16), rtol=0, atol=1e-12)


def test_the_cips_layer_is_modulated_and_demodulated():
    G = _build("cips", 16, torch.float64)
    layer, w = G.synthesis.layers[1], torch.randn(2, W, dtype=torch.float64)
    weight, _ = layer.inr(w)
    s = layer.affine(w) * layer.weight_gain  # [B, c_in]: ToRGB's styles (the gain only meets demod's eps)
    for b in range(2):
        ref = layer.weight * s[b][None, :]
        ref = ref / (ref.norm(dim=1, keepdim=True) + 1e-8)
        torch.testing.assert_close(weight[b], ref, rtol=0, atol=1e-14)


def test_stylegan2_upsampling_and_modulated_convolution_against_explicit_sums():
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    k = torch.tensor([1.0, 3, 3, 1], dtype=torch.float64)
    up = upsample_2x(x, (k[:, None] * k[None, :]) / 64)
    assert up.shape == (2, 3, 10, 10)
    taps = {0: ((0, 3), (-1, 1)), 1: ((0, 3), (1, 1))}  # output parity -> (input offset, tap weight) pairs
    for i, j in ((4, 6), (3, 5), (2, 7), (7, 2)):
        ref = sum(wa * wb * x[:, :, i // 2 + da, j // 2 + db] for da, wa in taps[i % 2] for db, wb in taps[j % 2])
        torch.testing.assert_close(up[:, :, i, j], ref / 16, rtol=0, atol=1e-14)
    weight = torch.randn(2, 4, 3, 3, 3, dtype=torch.float64)
    out = modulated_conv2d(x, weight)
    ref = torch.cat([torch.nn.functional.conv2d(x[b:b + 1], weight[b], padding=1) for b in range(2)])
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


def test_stylegan2_renders_its_training_grid_only_and_its_noise_is_fixed_in_eval_mode():
    G = _build("stylegan2", 16)
    z = torch.randn(2, G.z_dim)
    assert G(z, height=16, width=16, bbox=(-1, -1, 1, 1)).shape == (2, 1, 16, 16)
    for kwargs in ({"height": 32, "width": 32}, {"bbox": (-1.5, -1, 1, 1)}, {"tile": 8}):
        with pytest.raises(GridError, match="16x16 training grid only"):
            G(z, **kwargs)
    for conv in G.synthesis.blocks[-1].convs():
        conv.noise_strength.fill_(0.5)
    torch.testing.assert_close(G(z), G(z), rtol=0, atol=0)  # eval: noise_const
    G.train()
    assert (G(z, update_w_avg=False) - G(z, update_w_avg=False)).abs().max() > 1e-3  # training: fresh noise
    with pytest.raises(ValueError, match="no INR parameters"):
        probe.render_path(G.eval(), z[:1], z[1:], torch.full((1, 1), 0.5), "inr")
    lengths = probe.path_lengths(G, lambda a, b: ((a - b) ** 2).flatten(1).mean(1), num=4, batch=2, spaces=("z", "w"))
    assert set(lengths) == {"z", "w"} and all(math.isfinite(v) and v > 0 for v in lengths.values())


@pytest.mark.parametrize("name", PIXEL_INR_PRESETS)
def test_pixel_inrs_render_any_window_on_its_own_and_denser_grids_through_the_training_pixels(name):
    G = _build(name, 16, torch.float64)
    ws = G.mapping(torch.randn(2, G.z_dim, dtype=torch.float64))
    whole = G.synthesis(ws, height=48, width=48)
    # pixel independence: tiles, and a window of rows and columns, are the same pixels of the whole render
    torch.testing.assert_close(G.synthesis(ws, height=48, width=48, tile=20), whole, rtol=0, atol=1e-12)
    window = RenderGrid(48, 48, (-1.0, -1.0, 1.0, 1.0), "center", rows=(5, 30), cols=(17, 41))
    torch.testing.assert_close(G.synthesis(ws, grid=window), whole[:, :, 5:30, 17:41], rtol=0, atol=1e-12)
    # at 3x the density, pixel 3i + 1 has the centre of training pixel i: its float32 coordinates (which the
    # coordinate embedding computes with) are the same here, so the render is the training render
    dense, base = RenderGrid(48, 48, (-1.0, -1.0, 1.0, 1.0)), RenderGrid(16, 16, (-1.0, -1.0, 1.0, 1.0))
    assert torch.equal(dense.cell_coords(1, "x")[1::3].float(), base.cell_coords(1, "x").float())
    torch.testing.assert_close(whole[:, :, 1::3, 1::3], G.synthesis(ws), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["stylegan2", "cips", "ladder-3-fourier"])
def test_export_and_from_pretrained_rebuild_the_family(name, tmp_path):
    G = _build(name, 16)
    G.save_pretrained(tmp_path / "export")
    loaded = Generator.from_pretrained(tmp_path / "export")
    assert type(loaded) is type(G) and loaded.cfg == G.cfg
    z = torch.randn(2, G.z_dim)
    torch.testing.assert_close(loaded(z), G(z), rtol=0, atol=0)


def test_configs_name_their_family_and_old_ones_are_inr_gan():
    old = get_preset("cpu-32").G.to_dict()
    del old["family"]  # written before families existed
    assert isinstance(generator_config_from_dict(old), GeneratorConfig)
    cips = get_preset("cips").G
    assert generator_config_from_dict(json.loads(json.dumps(cips.to_dict()))) == cips
    with pytest.raises(ConfigError, match="unknown generator family 'pggan'"):
        generator_config_from_dict({**old, "family": "pggan"})
    with pytest.raises(ConfigError, match="unknown key"):
        generator_config_from_dict({**old, "family": "stylegan2"})
    with pytest.raises(ConfigError, match="torgb_layers"):
        PixelINRConfig(coords="raw", channels=(8, 8), torgb_layers=(0,))
    with pytest.raises(ConfigError, match="use Generator.build"):
        Generator(cips)


@pytest.fixture(scope="module")
def noise_folder(tmp_path_factory):
    return write_noise_images(tmp_path_factory.mktemp("noise"), 8, 16)


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("name", ["stylegan2", "ladder-1-latent-mlp"])
def test_a_few_training_steps_from_the_cli_resume_and_generate(name, noise_folder, tmp_path):
    out = tmp_path / "run"
    r = _cli("train", "--preset", name, "--data", noise_folder, "--out", out, "--resolution", 16, "--kimg", 0.008,
             "--batch", 4, "--tick", 0.008, "--snap", 1, "--device", "cpu", "--no-progress", "--threads", 1)
    assert r.exit_code == 0, r.output
    r = _cli("train", "--resume", out, "--kimg", 0.012, "--no-progress", "--threads", 1)
    assert r.exit_code == 0 and "resuming" in r.output, r.output
    stats = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    assert [s["kimg"] for s in stats] == [0.008, 0.012]
    assert all(np.isfinite(s["loss_G"]) and np.isfinite(s["loss_D"]) for s in stats)
    assert json.loads((out / "export" / "config.json").read_text())["config"]["family"] == get_preset(name).G.family
    r = _cli("generate", "--checkpoint", out, "--seeds", "0-1", "--out", tmp_path / "gen", "--scale", 2)
    if name == "stylegan2":
        assert r.exit_code != 0 and "training grid only" in r.output and "Traceback" not in r.output
        r = _cli("interpolate", "--checkpoint", out, "--space", "inr", "--out", tmp_path / "interp")
        assert r.exit_code != 0 and "no INR parameters" in r.output
        r = _cli("serve", "--checkpoint", out)
        assert r.exit_code != 0 and "training grid only" in r.output
        r = _cli("probe", "--checkpoint", out, "--num", 20, "--paths", 0, "--json", "--threads", 1)
        result = json.loads(r.output)
        assert set(result["geometric_prior_r2"]) == {"z", "w"} and "inr" in result["skipped"]
    else:
        assert r.exit_code == 0, r.output
