"""Every fast path of inrgan.accel against the model's reference render (inrgan.models), and the cost
counter against a hand count.

Tolerances: fp32 outputs agree to 2e-5 of the reference's largest magnitude (rounding of reordered
sums); float64 gradients to 1e-9 relative; bf16 autocast to 5% of the largest magnitude.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from inrgan import Discriminator, Generator, RenderOptions, get_preset
from inrgan.accel import features, render
from inrgan.accel.inr import fold, prepare
from inrgan.bench import BenchSpec, bench_forward
from inrgan.config import ConfigError, GeneratorConfig, LevelConfig
from inrgan.models import synthesis
from inrgan.models.coords import CoordEmbedding
from inrgan.models.cost import hyper_macs, inr_costs, mapping_macs
from inrgan.models.discriminator import blur_kernel
from inrgan.models.layers import EqualLinear, equal_linear

FP32_TOL = 2e-5


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Numerics only: one intra-op thread keeps these many tiny ops quick on a shared machine, where
    # OpenMP's spinning threads otherwise wait on each other at every op. Restored afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _close(out: torch.Tensor, ref: torch.Tensor, tol: float = FP32_TOL) -> None:
    assert out.shape == ref.shape and out.dtype == ref.dtype
    err = (out - ref).abs().max().item()
    assert err <= tol * ref.abs().max().item(), f"max error {err} vs reference scale {ref.abs().max().item()}"


def _randomise(module: torch.nn.Module) -> torch.nn.Module:
    """Non-zero biases everywhere, so that every term of the computation is exercised."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim == 1:
                p.normal_(0, 0.3)
    return module


def _every_option_config() -> GeneratorConfig:
    """Predicted basis and biases, sigmoid FMM without demodulation, reflection padding, tanh, superres
    by upsampling: the options the presets leave off."""
    levels = (LevelConfig(log_diagonals=False, gaussian=3, learned=2, predicted=3, const=4),
              LevelConfig(predicted=2, const=4), LevelConfig(gaussian=2, const=0))
    return GeneratorConfig(resolution=16, z_dim=16, w_dim=16, channel_base=128, channel_max=16, first_grid=4,
                           extra_layers=(8,), fmm_rank=3, fmm_modulation="sigmoid", fmm_demodulate=False,
                           predict_bias=True, levels=levels, const_padding="reflection", superres="upsample",
                           final_tanh=True)


def _render(G: Generator, ws: torch.Tensor, fast: bool, **kw) -> torch.Tensor:
    return G.synthesis(ws, options=RenderOptions(fast=fast), **kw)


CASES = [
    ("cpu-32", 16, {}),
    ("cpu-32", 16, dict(height=21, width=13)),  # partial cells at every level
    ("cpu-32", 32, dict(height=40, width=40, bbox=(-1.3, -1.2, 1.1, 1.4))),  # extrapolation, other box
    ("inr-gan", 128, {}),  # the release's frame, embeddings, levels and extra layers (32 channels)
    ("inr-gan", 128, dict(height=32, width=32)),  # a low-resolution render
    ("inr-gan-bil", 128, {}),  # bilinear upsampling and spatial std normalisation
    ("every-option", 16, dict(height=32, width=32)),
]


def _generator(name: str, res: int) -> Generator:
    torch.manual_seed(0)
    if name == "every-option":
        cfg = _every_option_config()
    elif name.startswith("inr-gan"):  # the release's architecture, narrowed to 32 channels to stay fast
        cfg = dataclasses.replace(get_preset(name, res).G, channel_max=32)
    else:
        cfg = get_preset(name, res).G
    return _randomise(Generator(cfg)).eval()


@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "plain"])
@pytest.mark.parametrize("name,res,kw", CASES)
def test_fast_inference_equals_reference(name, res, kw, onednn):
    # The CPU inference path with oneDNN's fused layers (where the build has them) and without.
    G = _generator(name, res)
    ws = G.mapping(torch.randn(3, G.z_dim))
    with torch.no_grad():
        ref = _render(G, ws, fast=False, **kw)
    with torch.inference_mode():
        fast = G.synthesis(ws, options=RenderOptions(onednn=onednn), **kw)
        # whole levels, as on a GPU; then many chunks, some not a multiple of the upsampling
        whole = G.synthesis(ws, options=RenderOptions(onednn=onednn, chunk_pixels=None), **kw)
        tiny = G.synthesis(ws, options=RenderOptions(onednn=onednn, chunk_pixels=7), **kw)
    _close(fast, ref)
    _close(whole, ref)
    _close(tiny, ref)


@pytest.mark.parametrize("name,res,tile", [("cpu-32", 16, 5), ("inr-gan", 128, 48)])
def test_fast_tiles_equal_the_whole_render(name, res, tile):
    G = _generator(name, res)
    ws = G.mapping(torch.randn(2, G.z_dim))
    with torch.inference_mode():
        whole = G.synthesis(ws, height=res + 3, width=res - 2)
        tiled = G.synthesis(ws, height=res + 3, width=res - 2, tile=tile)
        ref = _render(G, ws, fast=False, height=res + 3, width=res - 2)
    _close(whole, ref)
    _close(tiled, whole)


def test_inr_params_are_contiguous():
    # oneDNN takes ~1000x longer on strided weights: every fast-path weight must be contiguous.
    G = _generator("inr-gan", 128)
    with torch.no_grad():
        params = prepare(G.synthesis, G.mapping(torch.randn(2, G.z_dim)))
    for block in params:
        for layer in [*block.layers, block.torgb]:
            for t in (layer.weight, layer.emb_weight):
                assert t is None or t.is_contiguous()


def test_fast_path_with_autograd_enabled_equals_inference():
    G = _generator("cpu-32", 16).train()
    ws = G.mapping(torch.randn(2, G.z_dim), update_w_avg=False)
    with torch.inference_mode():
        inference = G.synthesis(ws)
    tracked = G.synthesis(ws)  # out-of-place, whole levels
    assert tracked.requires_grad
    _close(tracked.detach(), inference)


@pytest.mark.parametrize("name,res", [("cpu-32", 16), ("inr-gan-bil", 64), ("every-option", 16)])
def test_fast_training_gradients_equal_reference(name, res):
    G = _generator(name, res).train().double()
    ws = torch.randn(2, G.num_ws, G.w_dim, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ws.requires_grad_(True)
    grads = []
    for fast in (False, True):
        G.zero_grad(set_to_none=True)
        ws.grad = None
        out = _render(G, ws, fast=fast)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        named = {n: p.grad for n, p in G.named_parameters() if p.grad is not None}
        grads.append({**named, "ws": ws.grad.clone()})
    assert grads[0].keys() == grads[1].keys()
    for n, ref in grads[0].items():
        err = (grads[1][n] - ref).abs().max().item()
        assert err <= 1e-9 * max(ref.abs().max().item(), 1e-12), n


def test_fast_training_gradients_fp32_default_preset():
    G = _generator("cpu-32", 32).train()
    z = torch.randn(4, G.z_dim)
    grads = []
    for fast in (False, True):
        G.zero_grad(set_to_none=True)
        G(z, update_w_avg=False, options=RenderOptions(fast=fast)).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in G.named_parameters() if p.grad is not None})
    for n, ref in grads[0].items():
        _close(grads[1][n], ref, tol=1e-4)


def test_bf16_autocast_path_runs_and_stays_close():
    G = _generator("cpu-32", 16)
    z = torch.randn(2, G.z_dim)
    with torch.inference_mode():
        ref = G(z)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = G(z)
    assert out.dtype == torch.float32
    _close(out, ref, tol=0.05)


def test_a_training_step_of_the_mapping_under_bf16_autocast_keeps_w_in_fp32():
    """Under autocast the mapping's layers give bf16; w_avg's update and the truncation mixed it with the fp32
    w_avg and failed (a GPU run found it: "expected dtype BFloat16 for `end`")."""
    G = _generator("cpu-32", 16).train()
    z = torch.randn(3, G.z_dim)
    before = G.mapping.w_avg.clone()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ws = G.mapping(z, truncation_psi=0.7)
        img = G(z, truncation_psi=0.7)
    assert ws.dtype == torch.float32 and G.mapping.w_avg.dtype == torch.float32
    assert not torch.equal(G.mapping.w_avg, before)  # updated (twice)
    img.float().square().mean().backward()
    assert all(p.grad is not None for p in G.mapping.parameters())


# ----------------------------------------------------------------------------------------------
# The pieces.


@pytest.mark.parametrize("name,res", [("inr-gan", 128), ("inr-gan-bil", 64), ("every-option", 16)])
@pytest.mark.parametrize("grad", [False, True])
def test_the_fast_form_of_the_inr_is_the_models_with_the_gains_folded(name, res, grad):
    # float64: the same maths, so agreement to rounding (1e-12 of the scale); with and without autograd.
    G = _generator(name, res).double().requires_grad_(grad)
    ws = G.mapping(torch.randn(2, G.z_dim, dtype=torch.float64))
    with torch.set_grad_enabled(grad):
        params = G.synthesis.inr_parameters(ws)
        blocks = prepare(G.synthesis, ws)
    gain = math.sqrt(2)
    for spec in G.synthesis.inr_layers():
        block = blocks[spec.block]
        layer = block.torgb if spec.is_torgb else block.layers[[s.name for s in G.synthesis.inr_layers()
                                                                 if s.block == spec.block].index(spec.name)]
        weight = params[f"{spec.path}.weight"].detach()
        if spec.starts_level:
            n = spec.prev_channels
            _close(layer.emb_weight.detach(), weight[:, :, n:], tol=1e-12)
            assert (layer.weight is None) == (n == 0)
            if n:
                _close(layer.weight.detach(), weight[:, :, :n] * gain, tol=1e-12)
        else:
            folded = 1.0 if layer.normalize else gain
            _close(layer.weight.detach(), weight * folded, tol=1e-12)
        assert layer.weight is None or layer.weight.requires_grad == grad
        _close(layer.bias.detach().expand_as(params[f"{spec.path}.bias"]), params[f"{spec.path}.bias"].detach(),
               tol=0)
        assert fold(spec, weight, params[f"{spec.path}.bias"]).normalize == layer.normalize


def test_cached_coordinate_features_follow_every_change_of_the_model():
    G = _generator("inr-gan", 128)
    ws = G.mapping(torch.randn(2, G.z_dim))
    emb = G.synthesis.embeddings[1]
    cache = G.synthesis.features._entries
    with torch.inference_mode():
        first = G.synthesis(ws)
        assert 1 in cache  # kept for the next call with these cells
        cached_features = cache[1].features
        again = G.synthesis(ws)
        assert cache[1].features is cached_features  # reused, not recomputed
        _close(again, first, tol=0)
        other = G.synthesis(ws, height=40, width=24)  # other cells replace the entry
        assert cache[1].features is not cached_features
        _close(other, _render(G, ws, fast=False, height=40, width=24))
    with torch.no_grad():  # an in-place change, as an optimizer step makes
        emb.const.mul_(-1.5)
    with torch.inference_mode():
        _close(G.synthesis(ws, height=40, width=24), _render(G, ws, fast=False, height=40, width=24))
    state = {k: v.clone() for k, v in G.state_dict().items()}
    state["synthesis.embeddings.1.const"].normal_()
    G.load_state_dict(state)
    with torch.inference_mode():
        _close(G.synthesis(ws, height=40, width=24), _render(G, ws, fast=False, height=40, width=24))


def test_the_cache_compares_the_constant_only_where_the_features_read_it():
    G = _generator("inr-gan", 128)
    ws = G.mapping(torch.randn(2, G.z_dim))
    emb, cache = G.synthesis.embeddings[1], G.synthesis.features._entries
    with torch.inference_mode():
        G.synthesis(ws, height=40, width=24)
    rows, cols = (sorted({i for t in parts for i in (range(n)[t] if isinstance(t, slice) else t.tolist())})
                  for parts, n in zip(cache[1].taps, emb.const.shape[1:], strict=True))
    kept = cache[1].features
    unread = sorted(set(range(emb.const.shape[1])) - set(rows))
    assert unread and len(cols) < emb.const.shape[2]  # a coarse render reads a part of the constant
    emb.const.data[:, unread[0]] += 1.0  # not read by these cells: the features hold
    with torch.inference_mode():
        out = G.synthesis(ws, height=40, width=24)
    assert cache[1].features is kept
    _close(out, _render(G, ws, fast=False, height=40, width=24))
    emb.const.data[3, rows[len(rows) // 2], cols[-1]] += 1.0  # one value read, written past autograd's counter
    with torch.inference_mode():
        out = G.synthesis(ws, height=40, width=24)
    assert cache[1].features is not kept
    _close(out, _render(G, ws, fast=False, height=40, width=24))


def test_coordinate_feature_cache_is_bounded(monkeypatch):
    G = _generator("cpu-32", 16)
    ws = G.mapping(torch.randn(2, G.z_dim))
    monkeypatch.setattr(features, "FEATURE_CACHE_BYTES", 0)  # nothing fits: computed per chunk, nothing kept
    with torch.inference_mode():
        out = G.synthesis(ws)
    assert not G.synthesis.features._entries
    with torch.no_grad():
        _close(out, _render(G, ws, fast=False))
    with torch.enable_grad():  # autograd: never from the cache
        with pytest.raises(RuntimeError, match="inference"):
            G.synthesis.features.get(0, G.synthesis.embeddings[0], (), torch.zeros(2).double(),
                                     torch.zeros(2).double())


def test_the_cache_sees_a_change_of_one_value_anywhere():
    # values compared in pieces: a change in the first, a middle or the last element of a piece counts
    big = torch.randn(3 * features.COMPARE_PIECE_BYTES // 4 + 5)
    for i in (0, features.COMPARE_PIECE_BYTES // 4 - 1, features.COMPARE_PIECE_BYTES // 4, big.numel() - 1):
        changed = big.clone()
        changed[i] = torch.nextafter(changed[i], torch.tensor(float("inf")))
        assert not features._same([big], [changed]) and features._same([big], [big.clone()])
    assert not features._same([big], [big.double()]) and not features._same([big[:-1]], [big[1:]])
    grid = torch.randn(40, 64, 64)  # a strided view (a constant read at every 4th cell), compared in place
    view = grid[:, 1::4, 2::4]
    kept = view.clone()
    assert features._same([kept], [view])
    grid[39, 61, 62] += 1.0  # the view's last element
    assert not features._same([kept], [view])


def test_a_copied_model_has_its_own_feature_cache():
    import copy

    G = _generator("cpu-32", 16)
    with torch.inference_mode():
        G.synthesis(G.mapping(torch.randn(2, G.z_dim)))
    assert G.synthesis.features._entries and not copy.deepcopy(G).synthesis.features._entries


def test_the_affine_head_is_the_written_out_formula():
    # gain * x W^T + lr_mult * b, in float64 (the same maths: agreement to rounding)
    torch.manual_seed(0)
    affine = EqualLinear(16, 40, bias_init=1.0, lr_multiplier=0.5).double()
    with torch.no_grad():
        affine.bias.normal_()
    w = torch.randn(3, 16, dtype=torch.float64)
    ref = w @ (affine.weight * (0.5 / 4)).t() + affine.bias * 0.5
    _close(affine(w), ref, tol=1e-14)
    rows = equal_linear(w, affine.weight[5:9], affine.bias[5:9], affine.weight_gain, affine.bias_gain)
    _close(rows, ref[:, 5:9], tol=1e-14)


def test_channels_last_coordinate_features_are_bitwise_the_reference():
    torch.manual_seed(0)
    cfg = LevelConfig(log_diagonals=True, gaussian=3, learned=2, predicted=2, const=5)
    for padding in ("border", "reflection"):
        emb = CoordEmbedding(cfg, 8, 16, "center", padding)
        basis = emb.predicted_basis(torch.randn(2, 16))
        for ys, xs in [((torch.arange(8) + 0.5) / 4 - 1, (torch.arange(8) + 0.5) / 4 - 1),  # the training grid
                       (torch.linspace(-1.4, 1.3, 11), torch.linspace(-1.0, 1.7, 6))]:  # off the grid
            ys, xs = ys.double(), xs.double()
            ref = emb(ys, xs, basis).permute(0, 2, 3, 1)
            assert torch.equal(features.channels_last(emb, ys, xs, basis), ref)


def _reference_conv_layer(layer, x: torch.Tensor, gain: float) -> torch.Tensor:
    """StyleGAN2's layer as written: zero-pad, depthwise [1,3,3,1] blur, conv, bias, lrelu * sqrt(2) * gain."""
    w = layer.weight * layer.weight_gain
    f = blur_kernel().to(x.dtype)[None, None].repeat(x.shape[1], 1, 1, 1)
    if layer.down and layer.kernel == 1:
        x = F.conv2d(F.conv2d(F.pad(x, [1] * 4), f, stride=2, groups=x.shape[1]), w)
    elif layer.down:
        x = F.conv2d(F.conv2d(F.pad(x, [2] * 4), f, groups=x.shape[1]), w, stride=2)
    else:
        x = F.conv2d(x, w, padding=layer.kernel // 2)
    if layer.bias is not None:
        x = x + layer.bias[None, :, None, None]
    return F.leaky_relu(x, 0.2) * math.sqrt(2) * gain if layer.activation == "lrelu" else x * gain


def test_discriminator_layers_equal_the_written_out_math():
    torch.manual_seed(0)
    D = _randomise(Discriminator(dataclasses.replace(get_preset("cpu-32", 16).D, channel_base=128,
                                                     channel_max=8))).double()
    x = torch.randn(2, 8, 8, 8, dtype=torch.float64)
    block = D.b8
    for layer, gain in [(block.conv0, 1.0), (block.conv1, math.sqrt(0.5)), (block.skip, math.sqrt(0.5))]:
        xr = x.clone().requires_grad_(True)
        out = layer(xr, gain=gain)
        (g,) = torch.autograd.grad(out.square().sum(), xr)
        xr2 = x.clone().requires_grad_(True)
        ref = _reference_conv_layer(layer, xr2, gain)
        (g_ref,) = torch.autograd.grad(ref.square().sum(), xr2)
        _close(out.contiguous(), ref, tol=1e-12)
        _close(g.contiguous(), g_ref, tol=1e-12)


# ----------------------------------------------------------------------------------------------
# Cost counting and the bench.


def test_cost_counter_against_a_hand_count():
    G = Generator(get_preset("cpu-32", 16).G)
    # cpu-32 at 16: levels 8 (64 cells, 40 coordinate channels) and 16 (256 cells, 48); 128 channels.
    # b4: conv1 (128, 40); b8: conv0, conv1 (128, 128); b16: conv0 (128, 128 + 48), conv1 (128, 128).
    by_hand = (64 * (128 * 40 + 2 * 128 * 128) + 2 * 64 * 3 * 128  # level 8 and its two ToRGBs
               + 256 * (128 * 176 + 128 * 128) + 256 * 3 * 128)  # level 16
    # Fast path: b16.conv0's 128 inputs from level 8 are mixed at level 8's 64 cells.
    executed = by_hand - 256 * 128 * 176 + 128 * (48 * 256 + 128 * 64)
    costs = inr_costs(G.synthesis, G.synthesis.make_grid(16, 16))
    assert sum(c.macs for c in costs) == by_hand == 12_533_760
    assert sum(c.executed_macs for c in costs) == executed == 9_388_032
    assert [c.layer for c in costs] == ["conv1", "torgb", "conv0", "conv1", "torgb", "conv0", "conv1", "torgb"]
    # Half the resolution: a quarter of the cells at every level.
    assert sum(c.macs for c in inr_costs(G.synthesis, G.synthesis.make_grid(8, 8))) * 4 == by_hand


def test_cost_counter_reproduces_the_release_figure():
    # The reference counts 14.9 GMAC per 256^2 image with extra layers, 12.7 without.
    G = Generator(get_preset("inr-gan", 256).G)
    assert sum(c.macs for c in inr_costs(G.synthesis, G.synthesis.make_grid())) / 1e9 == pytest.approx(14.85, abs=0.01)
    heads = sum(p.numel() for n, p in G.synthesis.named_parameters() if n.endswith("affine.weight")
                and not n.startswith("embeddings"))
    low_rank = sum(layer.in_channels * layer.out_channels * layer.rank for b in G.synthesis.blocks for layer in b.layers())
    assert hyper_macs(G.synthesis) == heads + low_rank
    assert mapping_macs(G.mapping) == 2 * 512 * 512


class FakeClock:
    """A perf_counter that only moves when the model runs: each G forward at H x W advances it by
    H * W * 1e-5 s, so a bench's figures have known values whatever the machine's speed."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def forward(self, real_forward):
        def forward(G, z, **kw):
            self.now += kw["height"] * kw["width"] * 1e-5
            return real_forward(G, z, **kw)
        return forward


@pytest.fixture
def fake_clock(monkeypatch):
    import inrgan.bench

    clock = FakeClock()
    monkeypatch.setattr(inrgan.bench.time, "perf_counter", clock)
    monkeypatch.setattr(inrgan.bench, "matmul_peak_gflops", lambda device, dtype=torch.float32: 50.0)
    monkeypatch.setattr(Generator, "forward", clock.forward(Generator.forward))
    return clock


def test_bench_forward_times_only_the_forward_calls(fake_clock):
    # 16^2, batch 2: each timed call is 2.56 ms of the fake clock; warm-up and setup are not timed.
    spec = BenchSpec(preset="cpu-32", resolution=16, batch=2, repeats=3, warmup=2)
    r = bench_forward(spec)
    assert r["ms_per_batch"] == pytest.approx(2.56)
    assert r["img_per_s"] == pytest.approx(2 / 2.56e-3)
    assert r["gmac_per_img"] == pytest.approx(12_533_760 / 1e9)
    # 2 flops per MAC: 0.01253 GMAC x 2 x 781.25 img/s = 19.58 GFLOP/s, 0.392 of the (fake) 50 GFLOP/s peak
    assert r["gflops"] == pytest.approx(2 * 12_533_760e-9 * 2 / 2.56e-3)
    assert r["fraction_of_peak"] == pytest.approx(0.39168) and r["matmul_peak_gflops"] == 50.0
    assert fake_clock.now == pytest.approx(5 * 2.56e-3)  # 2 warm-up + 3 timed calls, nothing more
    assert r["peak_mem_mb"] > 0


def test_bench_compares_a_render_with_the_full_resolution_side_by_side(fake_clock, monkeypatch):
    # --compare-full alternates the requested render with the training-resolution one in one process.
    sizes = []
    forward = Generator.forward
    monkeypatch.setattr(Generator, "forward", lambda self, z, **kw: sizes.append((kw["height"], kw["width"]))
                        or forward(self, z, **kw))
    spec = BenchSpec(preset="cpu-32", resolution=32, render_height=8, render_width=8, batch=2, repeats=3,
                     warmup=1, compare_full=True)
    r = bench_forward(spec)
    # warm-up and 3 timed calls at 8^2; then 3 rounds of (8^2, 32^2), each timed call after an untimed one
    assert sizes == [(8, 8)] * 4 + [(8, 8), (8, 8), (32, 32), (32, 32)] * 3
    assert r["full_render"] == [32, 32]
    assert r["compare_ms_per_batch"] == pytest.approx(0.64) and r["full_ms_per_batch"] == pytest.approx(10.24)
    assert r["speedup_vs_full"] == pytest.approx(16.0)  # 16 times the pixels, on this clock


def test_bench_times_the_training_step_and_profiles_it(monkeypatch):
    import inrgan.bench

    g_tile = 8

    peak = inrgan.bench.matmul_peak_gflops
    monkeypatch.setattr(inrgan.bench, "matmul_peak_gflops", lambda device, dtype=torch.float32: peak(device, dtype, n=256,
                                                                                                    repeats=1))
    tiles = []
    render_tiled = synthesis.SynthesisNetwork.render_tiled
    monkeypatch.setattr(synthesis.SynthesisNetwork, "render_tiled",
                        lambda self, grid, tile, fn: tiles.append(tile) or render_tiled(self, grid, tile, fn))
    spec = BenchSpec(preset="cpu-32", resolution=16, batch=8, mode="train", repeats=1, warmup=0, g_tile=g_tile,
                     d_checkpoint=True, r1_batch=4)
    clock = FakeClock()  # advanced by G's forwards at 16^2 (the training grid: no height/width given)
    forward = Generator.forward
    with monkeypatch.context() as m:
        m.setattr(inrgan.bench.time, "perf_counter", clock)
        m.setattr(inrgan.bench, "matmul_peak_gflops", lambda device, dtype=torch.float32: 50.0)
        m.setattr(Generator, "forward", lambda G, z, **kw: clock.forward(forward)(
            G, z, **{**kw, "height": kw.get("height") or 16, "width": kw.get("width") or 16}))
        r = inrgan.bench.bench_train(spec)
    clock_calls = clock.now / 2.56e-3
    assert r["r1_interval"] == 16 and r["peak_mem_mb"] > 0
    # 2 forwards of G per step (G phase, D phase), 16 steps a round: 81.92 ms of the fake clock per round
    assert clock_calls == pytest.approx(2 * 16)
    assert r["ms_per_batch"] == pytest.approx(2 * 2.56) and r["img_per_s"] == pytest.approx(8 / 5.12e-3)
    assert set(tiles) == {g_tile, None}  # the G phase renders in tiles, the D phase (no grad) whole
    p = inrgan.bench.profile_train(spec, steps=2, row_limit=5)
    assert len(p["top_ops"]) == 5 and sum(p["phases_ms_per_step"].values()) <= p["ms_per_step"] * 1.01
    # the phases are the parts of the loop's own training_step (its phase hook), and the EMA
    assert set(p["phases_ms_per_step"]) == {
        "Gmain: G forward", "Gmain: D forward", "Gmain: backward (D and G)", "Gmain: Adam step",
        "Dmain: G forward (no grad)", "Dmain: D forward (fake + real)", "Dmain: D backward", "Dmain: Adam step",
        "Dreg: R1 (forward, double backward, step)", "G_ema update"}


def test_a_failing_onednn_call_falls_back_to_the_plain_path_with_one_warning(monkeypatch):
    from inrgan.accel import onednn

    monkeypatch.setattr(onednn, "_failed", None)  # restored afterwards: the failure turns the op off

    def broken(*args):
        raise RuntimeError("a build without this post-op")

    monkeypatch.setattr(onednn, "_lookup", lambda: broken)
    G = _generator("inr-gan", 128)
    ws = G.mapping(torch.randn(2, G.z_dim))
    with torch.inference_mode(), pytest.warns(RuntimeWarning, match="oneDNN") as caught:
        out = G.synthesis(ws)
        again = G.synthesis(ws)
    assert len([w for w in caught if "oneDNN" in str(w.message)]) == 1 and onednn.linear_pointwise() is None
    with torch.no_grad():
        ref = _render(G, ws, fast=False)
    _close(out, ref)
    _close(again, ref)


def _in_a_fresh_interpreter(code: str) -> None:
    r = subprocess.run([sys.executable, "-c", code + "; print('ok')"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_the_model_imports_nothing_from_the_fast_paths():
    # The paper's model, rendered, without inrgan.accel.
    _in_a_fresh_interpreter(
        "import sys, torch; from inrgan.models import Generator; from inrgan.config import get_preset; "
        "G = Generator(get_preset('cpu-32', 16).G); G(torch.randn(1, G.z_dim)); "
        "assert not [m for m in sys.modules if m.startswith('inrgan.accel')], 'accel imported'")


def test_importing_the_cli_and_the_bench_loads_neither_torch_nor_an_accelerator():
    # `inrgan` must set OpenMP up before torch loads (inrgan.runtime), and importing the bench must not
    # start CUDA (torch.cuda's own state would be True on a GPU machine only).
    _in_a_fresh_interpreter(
        "import sys, inrgan, inrgan.cli, inrgan.cli.bench, inrgan.cli.train, inrgan.cli.generate; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "import inrgan.bench, torch; assert not torch.cuda.is_initialized()")


@pytest.mark.parametrize("args,message", [
    (["--batch", "0"], "batch must be at least 1, got 0"),
    (["--render-height", "-5"], "render-height must be at least 1, got -5"),
    (["--resolution", "17"], "resolution must be a power of two"),
    (["--amp", "bf16"], "--amp is for CUDA"),
    (["--device", "nope"], "unknown device 'nope'"),
    (["--compare-full"], "give --render-height or --render-width"),
    (["--compare-full", "--render-height", "8", "--mode", "train"], "--compare-full goes with --mode forward"),
    (["--no-sample-parallel", "--mode", "train"], "--no-sample-parallel goes with --mode forward"),
    (["--no-native", "--mode", "train"], "--no-native goes with --mode forward"),
    (["--g-tile", "8"], "--g-tile, --d-checkpoint and --r1-batch go with --mode train"),
    (["--r1-batch", "0", "--mode", "train"], "r1-batch must be at least 1, got 0"),
    (["--g-tile", "0", "--mode", "train"], "g-tile must be at least 1, got 0"),
    (["--preset", "inr-gan-bil", "--g-tile", "8", "--mode", "train"], "needs a pixel-independent generator"),
])
def test_bench_rejects_bad_input_with_one_clear_line(args, message):
    from click.testing import CliRunner

    from inrgan.cli import main

    result = CliRunner().invoke(main, ["bench", "--preset", "cpu-32", *args])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_the_measuring_subprocess_answers_a_bad_spec_with_its_message(capsys):
    import inrgan.bench

    spec = dict(dataclasses.asdict(BenchSpec(preset="cpu-32")), batch=-1)
    assert inrgan.bench._subprocess_main(["forward", json.dumps(spec)]) == inrgan.bench.USAGE_ERROR
    assert capsys.readouterr().err.strip().splitlines()[-1] == "batch must be at least 1, got -1"


def test_compiled_training_takes_the_plain_path(monkeypatch):
    # Under torch.compile with autograd the synthesis network renders with the plain layers (inductor's CPU
    # backward of the fast path corrupted memory); compiled inference keeps the fast path.
    G = _generator("cpu-32", 16)
    ws = G.mapping(torch.randn(2, G.z_dim))
    with torch.no_grad():
        ref = _render(G, ws, fast=False)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    calls = []
    fast_render = render.render_window
    monkeypatch.setattr(render, "render_window", lambda *a, **k: calls.append(1) or fast_render(*a, **k))
    out = G.synthesis(ws)  # autograd on, "compiling"
    assert calls == [] and out.requires_grad
    _close(out.detach(), ref, tol=0)
    with torch.no_grad():
        G.synthesis(ws)
    assert calls == [1]


@pytest.mark.parametrize("preset", ["stylegan2", "cips"])
def test_bench_times_the_training_step_of_every_family(monkeypatch, preset):
    import inrgan.bench
    from inrgan.models.generator import FAMILY_GENERATORS

    cls = FAMILY_GENERATORS[get_preset(preset, 16).G.family]
    clock = {"now": 0.0, "forwards": 0}
    forward = cls.forward

    def counted(G, *args, **kw):  # each forward of G advances the clock by 1 ms
        clock["now"] += 1e-3
        clock["forwards"] += 1
        return forward(G, *args, **kw)

    monkeypatch.setattr(cls, "forward", counted)
    monkeypatch.setattr(inrgan.bench.time, "perf_counter", lambda: clock["now"])
    monkeypatch.setattr(inrgan.bench, "matmul_peak_gflops", lambda device, dtype=torch.float32: 50.0)
    r = inrgan.bench.bench_train(BenchSpec(preset=preset, resolution=16, batch=4, mode="train", repeats=1,
                                           warmup=0))
    # one round of r1_interval = 16 steps, two forwards of G a step (G phase, D phase): 32 ms on this clock
    assert r["r1_interval"] == 16 and clock["forwards"] == 32
    assert r["img_per_s"] == pytest.approx(4 * 16 / 32e-3) and r["ms_per_batch"] == pytest.approx(2.0)
    with pytest.raises(ConfigError, match="forward mode measures the inr-gan family"):
        bench_forward(BenchSpec(preset=preset, resolution=16, batch=4))
