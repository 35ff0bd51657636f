"""Augmentation (inrgan.training.augment): every transform against a computation made another way, the
identity at p = 0, gradients through the pipeline, ADA's controller, and exact resume with it on."""

from __future__ import annotations

import math

import pytest
import torch

from inrgan.training import augment as A


def _image(b: int = 2, c: int = 1, h: int = 16, w: int = 16) -> torch.Tensor:
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(0))


def _ramp(a: float, b: float, size: int = 16) -> torch.Tensor:
    """f(x, y) = a x + b y at the pixel centres of the [-1, 1] frame: [1, 1, size, size]."""
    c = (torch.arange(size) + 0.5) / size * 2 - 1
    return (a * c[None, :] + b * c[:, None])[None, None]


def _interior(x: torch.Tensor, m: int = 4) -> torch.Tensor:
    return x[..., m:-m, m:-m]


def test_flip_rot90_and_integer_translation_move_whole_pixels():
    x = _image()
    one = torch.ones(2)
    flip = A.apply_geometry(x, A.scale2d(-one, one))
    torch.testing.assert_close(flip, x.flip(3), rtol=0, atol=1e-5)
    rot = A.apply_geometry(x, A.rotate2d(torch.full((2,), math.pi / 2)))
    # forward map (x, y) -> (-y, x): output pixel [r, c] comes from input pixel [W - 1 - c, r]
    idx = torch.arange(16)
    expected = x[:, :, (15 - idx)[None, :].expand(16, 16), idx[:, None].expand(16, 16)]
    torch.testing.assert_close(rot, expected, rtol=0, atol=1e-5)
    shift = A.apply_geometry(x, A.translate2d(torch.full((2,), 3 * 2 / 16), torch.zeros(2)))  # 3 pixels right
    torch.testing.assert_close(shift[..., 3:], x[..., :-3], rtol=0, atol=1e-5)


def test_scaling_rotation_and_fractional_translation_map_a_linear_image_exactly():
    # bilinear sampling reproduces a linear function exactly, so away from the borders the result is the
    # linear function composed with the inverse map
    f = _ramp(0.7, -0.4)
    s = A.apply_geometry(f, A.scale2d(torch.tensor([2.0]), torch.tensor([0.5])))  # f(x / 2, 2 y)
    torch.testing.assert_close(_interior(s), _interior(_ramp(0.35, -0.8)), rtol=0, atol=1e-5)
    theta = 0.3
    r = A.apply_geometry(f, A.rotate2d(torch.tensor([theta])))  # f(R^-1 p): coefficients rotated by theta
    # R^-1 (x, y) = (c x + s y, -s x + c y), so f(R^-1 p) = (0.7 c + 0.4 s) x + (0.7 s - 0.4 c) y
    c, s = math.cos(theta), math.sin(theta)
    torch.testing.assert_close(_interior(r, 5), _interior(_ramp(0.7 * c + 0.4 * s, 0.7 * s - 0.4 * c), 5),
                               rtol=0, atol=1e-5)
    t = A.apply_geometry(f, A.translate2d(torch.tensor([0.1]), torch.tensor([-0.05])))  # f(x - 0.1, y + 0.05)
    torch.testing.assert_close(_interior(t), _interior(f) - 0.7 * 0.1 - 0.4 * 0.05, rtol=0, atol=1e-5)


def test_colour_maps():
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    eye = torch.eye(4).repeat(3, 1, 1)
    bright = eye.clone()
    bright[:, :3, 3] = 0.25
    torch.testing.assert_close(A.apply_colour(x, bright), x + 0.25)
    sat0 = A._colour_linear(torch.outer(A.LUMA, A.LUMA).repeat(3, 1, 1))  # saturation 0: grey at the luma
    torch.testing.assert_close(A.apply_colour(x, sat0), x.mean(1, keepdim=True).expand_as(x), rtol=0, atol=1e-6)
    hue = A.apply_colour(x, A._colour_linear(A._rotation_about(A.LUMA, torch.full((3,), 1.1))))
    torch.testing.assert_close(hue.mean(1), x.mean(1), rtol=0, atol=1e-6)  # luma kept
    torch.testing.assert_close(hue.norm(dim=1), x.norm(dim=1), rtol=0, atol=1e-5)  # a rotation
    gray = x[:, :1]
    flip = A._colour_linear(torch.eye(1) - 2 * torch.ones(1, 1, 1).repeat(3, 1, 1))
    torch.testing.assert_close(A.apply_colour(gray, flip), -gray)  # a 1-channel luma flip negates


def test_ada_at_p_zero_is_the_identity_and_at_p_one_changes_every_image():
    gen = torch.Generator().manual_seed(0)
    x = _image(8, 3)
    assert A.ada_augment(x, 0.0, gen) is x
    pipe = A.AugmentPipe("ada", p=0.0)
    torch.testing.assert_close(pipe(x), x)
    y = A.ada_augment(x, 1.0, gen)
    assert y.shape == x.shape and ((y - x).abs().flatten(1).amax(1) > 0.1).all()
    g = A.ada_geometry(4000, (16, 16), 0.5, torch.Generator().manual_seed(1))
    moved = (g - torch.eye(3)).abs().flatten(1).amax(1) > 1e-6
    # 9 geometric transforms at p = 0.5 (the two rotations at 1 - sqrt(0.5) each): 1 - 0.5^7 * 0.5, minus the
    # draws that happen to be the identity (no flip, k = 0: 1/2 and 1/4 of their draws)
    assert 0.97 < moved.float().mean().item() <= 1.0


def test_gradients_flow_through_both_pipelines():
    for pipe in (A.AugmentPipe("ada", p=1.0), A.AugmentPipe("diffaugment")):
        x = _image(4, 3).requires_grad_(True)
        pipe(x).square().sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()


def test_diffaugment_translation_and_cutout_against_indexing():
    x = _image(3, 2, 8, 8)
    dy, dx = torch.tensor([1, 0, -2]), torch.tensor([0, -1, 2])
    out = A.translate_pixels(x, dy, dx)
    for i in range(3):
        ref = torch.zeros_like(x[i])
        ys, xs = slice(max(0, dy[i]), 8 + min(0, dy[i])), slice(max(0, dx[i]), 8 + min(0, dx[i]))
        ys0, xs0 = slice(max(0, -dy[i]), 8 + min(0, -dy[i])), slice(max(0, -dx[i]), 8 + min(0, -dx[i]))
        ref[:, ys, xs] = x[i][:, ys0, xs0]
        torch.testing.assert_close(out[i], ref)
    mask = A.cutout_mask(2, 8, 8, torch.tensor([4, 0]), torch.tensor([4, 0]), 4, 4)
    assert mask[0].sum() == 64 - 16 and mask[0, 0, 2:6, 2:6].sum() == 0  # a whole 4 x 4 square inside
    assert mask[1].sum() == 64 - 4 and mask[1, 0, :2, :2].sum() == 0  # clipped at the corner


def test_the_ada_controller_moves_p_by_batch_over_ada_kimg():
    assert A.ada_update(0.5, 0.8, 0.6, 16, 500) == pytest.approx(0.5 + 16 / 500_000)
    assert A.ada_update(0.5, 0.2, 0.6, 16, 500) == pytest.approx(0.5 - 16 / 500_000)
    assert A.ada_update(0.5, 0.6, 0.6, 16, 500) == 0.5
    assert A.ada_update(0.0, -1.0, 0.6, 16, 500) == 0.0 and A.ada_update(1.0, 1.0, 0.6, 16, 0.001) == 1.0
    # from 0 to 1 in ada_kimg thousand images of overfitting
    p = 0.0
    for _ in range(500_000 // 16 + 1):
        p = A.ada_update(p, 1.0, 0.6, 16, 500)
    assert p == 1.0


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from conftest import write_noise_images

    return write_noise_images(tmp_path_factory.mktemp("imgs"), 16, 16)


@pytest.mark.parametrize("aug", ["ada", "diffaugment"])
def test_a_resumed_run_with_augmentation_is_the_uninterrupted_run(tmp_path, tiny_data, aug):
    import json

    from inrgan.training.checkpoint import load_training_state
    from inrgan.training.loop import RunOptions, train

    opts = dict(batch=4, tick_kimg=0.008, snapshot_ticks=1, seed=3, aug=aug, ada_kimg=0.05, aug_target=0.1)

    def run(out, resume, kimg):
        options = RunOptions(data=tiny_data, preset="cpu-32", resolution=16, device="cpu", progress=False)
        train(out, options, resume=resume, overrides=dict(opts, kimg=kimg), log=lambda *_: None)

    run(tmp_path / "whole", None, 0.016)
    run(tmp_path / "split", None, 0.008)
    run(tmp_path / "split", tmp_path / "split", 0.016)
    a, b = load_training_state(tmp_path / "whole"), load_training_state(tmp_path / "split")
    for net in ("G", "D", "G_ema"):
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), (net, k)
    assert a["augment"]["p"] == b["augment"]["p"] and torch.equal(a["augment"]["rng"], b["augment"]["rng"])
    stats = [json.loads(line) for line in (tmp_path / "whole" / "stats.jsonl").read_text().splitlines()]
    assert all("aug_p" in s for s in stats)
    if aug == "ada":  # a D that overfits 16 images: p rose from 0, by 4 / 50 per step at most
        assert 0 < stats[-1]["aug_p"] <= 4 * 4 / 50 + 1e-12


def test_the_cli_takes_the_augmentation_options(tmp_path, tiny_data):
    import json

    from click.testing import CliRunner

    from inrgan.cli import main

    common = ["train", "--data", tiny_data, "--preset", "cpu-32", "--resolution", "16", "--batch", "4", "--tick",
              "0.008", "--kimg", "0.008", "--device", "cpu", "--no-progress", "--threads", "1"]
    r = CliRunner().invoke(main, [*common, "--out", str(tmp_path / "fixed"), "--aug", "ada", "--aug-p", "0.3"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    stats = json.loads((tmp_path / "fixed" / "stats.jsonl").read_text().splitlines()[-1])
    assert stats["aug_p"] == 0.3  # a fixed p does not move
    r = CliRunner().invoke(main, [*common, "--out", str(tmp_path / "bad"), "--aug", "ada", "--aug-p", "2"])
    assert r.exit_code == 1 and "aug_p (--aug-p) must lie in [0, 1]" in r.output
