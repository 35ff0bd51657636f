"""The geometric probe and the interpolation measures (inrgan.metrics.probe) against known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inrgan import Generator, get_preset
from inrgan.metrics import probe


def _mask_image(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.where(mask, 1.0, -1.0))[None, None].float()


def test_the_attributes_of_a_rectangle_and_a_tilted_bar():
    m = np.zeros((16, 16), bool)
    m[4:8, 2:14] = True  # rows 4..7, columns 2..13: a wide bar in the upper half
    a = dict(zip(probe.ATTRIBUTES, probe.silhouette_attributes(_mask_image(m))[0], strict=True))
    # pixel edges at i / 8 - 1: columns 2..13 -> x from -0.75 to 0.75, rows 4..7 -> y from -0.5 to 0
    assert a["centroid_x"] == pytest.approx(0.0) and a["centroid_y"] == pytest.approx(-0.25)
    assert a["extent_x"] == pytest.approx(1.5) and a["extent_y"] == pytest.approx(0.5)
    assert a["log_aspect"] == pytest.approx(math.log(3.0))
    assert (a["orientation_cos"], a["orientation_sin"]) == pytest.approx((1.0, 0.0))  # along x
    tall = probe.silhouette_attributes(_mask_image(m.T))[0]
    assert tall[5] == pytest.approx(-1.0) and tall[6] == pytest.approx(0.0, abs=1e-12)  # along y: 2a = pi
    diag = probe.silhouette_attributes(_mask_image(np.eye(16, dtype=bool)))[0]  # x = y, y pointing down
    assert diag[5] == pytest.approx(0.0, abs=1e-9) and diag[6] == pytest.approx(1.0)  # 2a = pi/2
    assert not probe.silhouette_attributes(_mask_image(np.zeros((16, 16), bool))).any()  # empty: zeros
    row = np.zeros((16, 16), bool)
    row[3, :] = True  # one full row: width 2, height one pixel (2/16), not a division by zero
    assert probe.silhouette_attributes(_mask_image(row))[0][4] == pytest.approx(math.log(16.0))


def test_held_out_r2_is_one_for_a_linear_relation_and_about_zero_for_noise():
    rng = np.random.RandomState(0)
    x = rng.randn(400, 5)
    y = np.stack([x @ rng.randn(5) + 3.0, rng.randn(400)], axis=1)
    r2 = probe.held_out_r2(x, y, 200)
    assert r2[0] == pytest.approx(1.0, abs=1e-6) and abs(r2[1]) < 0.1


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    return Generator(get_preset("cpu-32", 16, 1).G).eval().requires_grad_(False)


@pytest.mark.parametrize("space", ["z", "w", "inr"])
def test_paths_start_and_end_at_the_endpoints(G, space):
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ends = G(z)
        for t, i in ((0.0, 0), (1.0, 1)):
            img = probe.render_path(G, z[:1], z[1:], torch.full((1, 1), t), space)
            torch.testing.assert_close(img, ends[i:i + 1], rtol=1e-5, atol=1e-5)


def _mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A distance [B] standing in for the perceptual one."""
    return ((a - b) ** 2).flatten(1).mean(1)


def test_path_length_is_the_scaled_distance_of_nearby_renders(G):
    mse = _mse
    got = probe.path_lengths(G, mse, num=4, eps=0.01, seed=3, batch=2, spaces=("w",))["w"]
    gen = torch.Generator().manual_seed(3)
    z0, z1 = torch.randn(4, G.z_dim, generator=gen), torch.randn(4, G.z_dim, generator=gen)
    t = torch.rand(4, 1, generator=gen) * 0.99
    with torch.no_grad():
        w0, w1 = G.mapping(z0), G.mapping(z1)
        by_hand = [mse(G.synthesis(w0[i:i + 1].lerp(w1[i:i + 1], t[i].item())),
                       G.synthesis(w0[i:i + 1].lerp(w1[i:i + 1], t[i].item() + 0.01))).item() / 1e-4 for i in range(4)]
    assert got == pytest.approx(float(np.mean(by_hand)), rel=1e-4) and math.isfinite(got) and got > 0


def test_midpoints_accepted_by_their_own_manifold_and_not_by_a_far_one(G):
    class Flat(torch.nn.Module):
        feature_dim = 256

        def forward(self, images):
            return images.float().flatten(1)  # uint8 [B, 1, 16, 16] -> [B, 256]

    flat = Flat()
    z0, z1, _ = probe._latent_pairs(G, 40, 1)
    own = torch.cat([flat(b) for b in probe._midpoints(G, z0, z1, "w", 20)]).numpy()
    assert probe.midpoint_acceptance(G, flat, own, num=40, spaces=("w",))["w"] == 1.0
    assert probe.midpoint_acceptance(G, flat, own + 1e4, num=40, spaces=("w",))["w"] == 0.0


def test_the_probe_command(G, tmp_path):
    import json

    from click.testing import CliRunner

    from inrgan.cli import main

    G.save_pretrained(tmp_path / "export")
    r = CliRunner().invoke(main, ["probe", "--checkpoint", str(tmp_path / "export"), "--num", "40", "--paths", "0",
                                  "--json", "--threads", "1"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)["geometric_prior_r2"]
    assert set(out) == {"z", "w"} and set(out["z"]) == set(probe.ATTRIBUTES)
