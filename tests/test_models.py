"""Networks: FMM against an explicit computation, preset sizes, shapes, truncation, coordinates."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inrgan import Discriminator, Generator, GeneratorConfig, get_preset
from inrgan.config import ConfigError
from inrgan.models.coords import RenderGrid, log_basis, sample_const
from inrgan.models.fmm import FMMLayer, fmm_weight


def _explicit_fmm(x, weight, styles, bias, rank, modulation, demodulate):
    """Per-sample, per-pixel reference in float64 numpy, written from the paper's formula."""
    x, weight, styles = (t.detach().double().numpy() for t in (x, weight, styles))
    bsz, c_in, h, w = x.shape
    c_out = weight.shape[0]
    out = np.zeros((bsz, c_out, h, w))
    for b in range(bsz):
        a_mat = styles[b, : c_out * rank].reshape(c_out, rank)
        b_mat = styles[b, c_out * rank :].reshape(rank, c_in)
        m = np.zeros((c_out, c_in))
        for k in range(rank):  # A B as a sum of rank-1 outer products
            m += np.outer(a_mat[:, k], b_mat[k, :])
        m /= math.sqrt(rank)
        scale = {"linear": 1 + m, "sigmoid": 2 / (1 + np.exp(-m)), "tanh": 1 + np.tanh(m)}[modulation]
        wb = weight * scale
        if demodulate:
            wb = wb / (np.sqrt((wb**2).sum(axis=1, keepdims=True)) + 1e-8)
        for i in range(h):
            for j in range(w):
                y = wb @ x[b, :, i, j] + bias[b]
                out[b, :, i, j] = np.where(y > 0, y, 0.2 * y) * math.sqrt(2)
    return out


@pytest.mark.parametrize("modulation", ["linear", "sigmoid", "tanh"])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("predict_bias", [False, True])
def test_fmm_matches_explicit_per_sample_dense_computation(modulation, demodulate, predict_bias):
    torch.manual_seed(0)
    layer = FMMLayer(6, 5, w_dim=8, rank=3, modulation=modulation, demodulate=demodulate,
                     predict_bias=predict_bias)
    if not predict_bias:
        torch.nn.init.normal_(layer.bias)
    torch.nn.init.normal_(layer.affine.bias)
    x, w = torch.randn(2, 6, 3, 4), torch.randn(2, 8)
    out = layer(x, w)
    styles = layer.affine(w)
    n_mod = (6 + 5) * 3
    bias = styles[:, n_mod:] if predict_bias else layer.bias.expand(2, -1)
    ref = _explicit_fmm(x, layer.weight * layer.weight_gain, styles[:, :n_mod], bias.detach().double().numpy(), 3,
                        modulation, demodulate)
    np.testing.assert_allclose(out.detach().double().numpy(), ref, rtol=1e-5, atol=1e-5)


def test_fmm_rank_one_is_stylegan_like_modulation():
    # With rank 1 and B = s, A = 1 (constant), W = W_s * (1 + s_in / 1): a per-input-channel scale.
    weight = torch.randn(4, 3)
    s = torch.randn(1, 3)
    styles = torch.cat([torch.ones(1, 4), s], dim=1)
    w = fmm_weight(weight, styles, rank=1, demodulate=False)
    torch.testing.assert_close(w[0], weight * (1 + s))


def test_release_presets_have_the_released_parameter_counts():
    counts = {}
    for name in ("inr-gan", "inr-gan-noextra", "inr-gan-bil"):
        p = get_preset(name, 256)
        counts[name] = (sum(x.numel() for x in Generator(p.G).parameters()),
                        sum(x.numel() for x in Discriminator(p.D).parameters()))
    assert counts["inr-gan"] == (72_436_573, 28_864_129)
    assert counts["inr-gan-noextra"][0] == 68_414_429
    assert counts["inr-gan-bil"][0] == 72_436_573


def test_release_layer_shapes_and_embedding_widths():
    G = Generator(get_preset("inr-gan", 256).G)
    shapes = [[(lay.out_channels, lay.in_channels) for lay in b.layers()] for b in G.synthesis.blocks]
    assert shapes == [
        [(512, 168)], [(512, 512)] * 2, [(512, 512)] * 2, [(512, 512)] * 2,
        [(512, 688), (512, 512)],
        [(256, 668), (256, 256), (256, 256)],
        [(128, 416), (128, 128), (128, 128)],
    ]
    assert [e.num_channels for e in G.synthesis.embeddings] == [168, 176, 156, 160]
    assert G.num_ws == 16
    assert Generator(get_preset("inr-gan-noextra", 256).G).num_ws == 14


@pytest.mark.parametrize("preset,res,channels", [("cpu-32", 16, 1), ("cpu-32", 32, 3), ("cpu-64", 64, 1)])
def test_output_shapes(preset, res, channels):
    p = get_preset(preset, res, channels)
    G, D = Generator(p.G), Discriminator(p.D)
    z = torch.randn(3, G.z_dim)
    img = G(z)
    assert img.shape == (3, channels, res, res)
    assert torch.isfinite(img).all()
    assert D(img).shape == (3, 1)
    assert G(z, height=res + 5, width=2 * res - 3).shape == (3, channels, res + 5, 2 * res - 3)


def test_truncation_psi_zero_gives_w_avg():
    G = Generator(get_preset("cpu-32", 16).G)
    G.mapping.w_avg.normal_()
    ws = G.mapping(torch.randn(4, G.z_dim), truncation_psi=0.0)
    torch.testing.assert_close(ws, G.mapping.w_avg.expand(4, G.num_ws, -1))
    cut = G.mapping(torch.randn(2, G.z_dim), truncation_psi=0.0, truncation_cutoff=3)
    torch.testing.assert_close(cut[:, :3], G.mapping.w_avg.expand(2, 3, -1))
    assert not torch.allclose(cut[:, 3:], G.mapping.w_avg.expand(2, G.num_ws - 3, -1))


def test_w_avg_tracks_the_mean_in_training_mode_only():
    G = Generator(get_preset("cpu-32", 16).G)
    z = torch.randn(8, G.z_dim)
    G.eval()
    G.mapping(z)
    assert torch.count_nonzero(G.mapping.w_avg) == 0
    G.train()
    w = G.mapping(z)[:, 0]
    torch.testing.assert_close(G.mapping.w_avg, w.mean(0) * (1 - G.cfg.w_avg_beta))


def test_log_basis_frequencies_and_counts():
    for res, diag, n in [(32, True, 20), (64, True, 24), (128, False, 14), (256, False, 16)]:
        assert log_basis(res, diag).shape == (n, 2)
    b = log_basis(32, True)
    # y wavefront first: (0, pi/2 * 2^k); then x; diagonals with period 4 sqrt(2).
    torch.testing.assert_close(b[:5, 1], (math.pi / 2) * 2.0 ** torch.arange(5.0))
    torch.testing.assert_close(b[5:10, 0], (math.pi / 2) * 2.0 ** torch.arange(5.0))
    torch.testing.assert_close(b[10].norm(), torch.tensor(2 * math.pi / (4 * math.sqrt(2))))


def test_release_grid_matches_the_reference_convention():
    # x = arange(n)/n*2-1 left to right; y flipped so the top row is 1 - 2/n.
    g = RenderGrid(8, 8, (-1.0, 1.0, 1.0, -1.0), "release")
    torch.testing.assert_close(g.cell_coords(1, "x"), torch.arange(8, dtype=torch.float64) / 8 * 2 - 1)
    torch.testing.assert_close(g.cell_coords(1, "y"), (torch.arange(8, dtype=torch.float64) / 8 * 2 - 1).flip(0))
    # A coarser level (2 pixels per cell) sits on the 4-point release grid.
    torch.testing.assert_close(g.cell_coords(2, "x"), torch.arange(4, dtype=torch.float64) / 4 * 2 - 1)
    c = RenderGrid(4, 4, (-1.0, -1.0, 1.0, 1.0), "center")
    torch.testing.assert_close(c.cell_coords(1, "x"), torch.tensor([-0.75, -0.25, 0.25, 0.75], dtype=torch.float64))


def test_const_sampling_is_exact_on_the_grid_and_bilinear_between():
    const = torch.randn(2, 4, 4)
    idx = torch.arange(4, dtype=torch.float64)
    torch.testing.assert_close(sample_const(const, idx, idx), const, rtol=0, atol=0)
    mid = sample_const(const, torch.tensor([1.5], dtype=torch.float64), torch.tensor([2.25], dtype=torch.float64))
    expect = 0.5 * (0.75 * const[:, 1, 2] + 0.25 * const[:, 1, 3]) + 0.5 * (0.75 * const[:, 2, 2] + 0.25 * const[:, 2, 3])
    torch.testing.assert_close(mid[:, 0, 0], expect)
    # Outside the box: border clamps, reflection mirrors about the edge cells.
    out = torch.tensor([-1.0, 5.0], dtype=torch.float64)
    torch.testing.assert_close(sample_const(const, out, idx)[:, :, 0], const[:, [0, 3], 0])
    torch.testing.assert_close(sample_const(const, out, idx, "reflection")[:, :, 0], const[:, [1, 1], 0])


def test_pixels_are_independent_with_nearest_upsampling():
    # Changing the render box elsewhere never changes a pixel whose coordinates are the same.
    G = Generator(get_preset("cpu-32", 16).G).eval()
    ws = G.mapping(torch.randn(1, G.z_dim))
    full = G.synthesis(ws)
    right_half = G.synthesis(ws, height=16, width=8, bbox=(0.0, -1.0, 1.0, 1.0))
    torch.testing.assert_close(right_half, full[:, :, :, 8:], rtol=0, atol=1e-5)


def test_unknown_config_keys_and_bad_values_are_errors():
    d = get_preset("cpu-32").G.to_dict()
    with pytest.raises(ConfigError, match="unknown key"):
        GeneratorConfig.from_dict({**d, "colour": 1})
    with pytest.raises(ConfigError, match="resolution"):
        get_preset("cpu-32", 48)
    with pytest.raises(ConfigError, match="unknown preset"):
        get_preset("stylegan9")
    assert GeneratorConfig.from_dict(d) == get_preset("cpu-32").G


@pytest.mark.parametrize("pad,stride,size", [(2, 1, 8), (1, 2, 8), (1, 2, 7), (2, 1, 5)])
def test_the_adjoint_blur_has_the_grouped_convolutions_derivatives(pad, stride, size):
    from inrgan.models import discriminator as dm

    torch.manual_seed(0)
    kernel = dm.blur_kernel().double()
    x = torch.randn(2, 3, size, size, dtype=torch.double, requires_grad=True)
    weight = kernel[None, None].expand(3, 1, -1, -1)

    def adjoint(t):
        return dm._Blur.apply(t, weight, stride, pad)

    def grouped(t):
        return torch.nn.functional.conv2d(t, weight, stride=stride, padding=pad, groups=3)

    assert torch.equal(adjoint(x), grouped(x))
    assert torch.autograd.gradcheck(adjoint, (x,)) and torch.autograd.gradgradcheck(adjoint, (x,))


def test_r1_through_the_adjoint_blur_equals_r1_through_grouped_convolutions(monkeypatch):
    """The blur that GPUs use (cheap second derivatives) against the CPU's, through a whole R1 step."""
    from inrgan.models import discriminator as dm

    torch.manual_seed(1)
    D = Discriminator(get_preset("cpu-32", 32).D).double()
    real = torch.randn(4, D.cfg.img_channels, 32, 32, dtype=torch.double)

    def r1_grads():
        D.zero_grad()
        x = real.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
        penalty = g.square().sum()
        penalty.backward()
        return penalty.detach(), [torch.zeros(()) if p.grad is None else p.grad.clone() for p in D.parameters()]

    calls = []
    real_apply = dm._Blur.apply
    monkeypatch.setattr(dm._Blur, "apply", lambda *a: calls.append(1) or real_apply(*a))
    grouped = r1_grads()
    assert not calls  # the CPU takes the grouped convolution
    monkeypatch.setattr(dm, "ADJOINT_BLUR_DEVICES", frozenset({"cpu", "cuda"}))
    adjoint = r1_grads()
    assert calls
    torch.testing.assert_close(adjoint[0], grouped[0], rtol=1e-12, atol=0)
    for a, b in zip(adjoint[1], grouped[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-15)
