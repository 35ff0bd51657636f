"""Training maths and state: R1, EMA half-life, optimiser correction, data order, checkpoints, resume."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from autograd_memory import saved_bytes
from inrgan import Discriminator, Generator, get_preset
from inrgan.config import ConfigError, DiscriminatorConfig, TrainingConfig
from inrgan.training.checkpoint import load_training_state, save_training_state
from inrgan.training.ema import ema_beta, update_ema
from inrgan.training.loop import (
    RunOptions,
    TrainingDivergedError,
    batch_indices,
    make_optimizers,
    plan_run,
    train,
)
from inrgan.training.loss import d_logistic_loss, d_r1_loss, g_nonsaturating_loss, r1_penalty
from inrgan.training.runlock import RunLockedError, run_lock


def test_r1_penalty_matches_finite_differences():
    torch.manual_seed(0)
    D = Discriminator(DiscriminatorConfig(resolution=16, img_channels=1, channel_base=64, channel_max=8)).double()
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    xr = x.clone().requires_grad_(True)
    pen = r1_penalty(D(xr), xr)  # [B]

    # Independent: the full gradient of sum(D(x)) by central differences, element by element.
    h = 1e-5
    grad = torch.zeros_like(x)
    flat = x.view(-1)
    with torch.no_grad():
        for i in range(flat.numel()):
            e = torch.zeros_like(flat)
            e[i] = h
            grad.view(-1)[i] = (D((flat + e).view_as(x)).sum() - D((flat - e).view_as(x)).sum()) / (2 * h)
    ref = grad.square().sum(dim=(1, 2, 3))
    torch.testing.assert_close(pen.detach(), ref, rtol=1e-5, atol=1e-8)
    assert d_r1_loss(D(xr), xr, gamma=10.0, interval=16).item() == pytest.approx(ref.mean().item() * 5 * 16, rel=1e-5)


def test_logistic_losses_closed_form():
    real, fake = torch.tensor([[2.0], [-1.0]]), torch.tensor([[0.5], [-3.0]])
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    assert d_logistic_loss(real, fake).item() == pytest.approx((sp(0.5) + sp(-3)) / 2 + (sp(-2) + sp(1)) / 2)
    assert g_nonsaturating_loss(fake).item() == pytest.approx((sp(-0.5) + sp(3)) / 2)


def test_ema_half_life_arithmetic():
    batch, ema_kimg = 32, 10.0
    beta = ema_beta(batch, cur_nimg=10**9, ema_kimg=ema_kimg, rampup=0.05)
    # After ema_kimg thousand images the old weights count half.
    assert beta ** (ema_kimg * 1000 / batch) == pytest.approx(0.5, rel=1e-9)
    # Ramp-up: early on the half-life is 5% of the images seen so far.
    assert ema_beta(batch, 20_000, ema_kimg, 0.05) ** (1000 / batch) == pytest.approx(0.5)
    assert ema_beta(batch, 20_000, ema_kimg, None) == pytest.approx(beta)

    G = Generator(get_preset("cpu-32", 16).G)
    G_ema = Generator(get_preset("cpu-32", 16).G)
    p0 = next(G_ema.parameters()).detach().clone()
    update_ema(G_ema, G, 0.25)
    torch.testing.assert_close(next(G_ema.parameters()), 0.25 * p0 + 0.75 * next(G.parameters()))


def test_lazy_regularisation_correction_of_adam():
    p = get_preset("inr-gan", 256)
    G, D = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    G_opt, D_opt = make_optimizers(G, D, p.training)
    assert G_opt.param_groups[0]["lr"] == pytest.approx(0.002)
    assert D_opt.param_groups[0]["lr"] == pytest.approx(0.0025 * 16 / 17)
    assert D_opt.param_groups[0]["betas"][1] == pytest.approx(0.99 ** (16 / 17))


def test_batch_indices_are_a_resumable_stream_of_permutations():
    a = batch_indices(10, seed=3, start=0, batch=25)
    b = batch_indices(10, 3, 0, 12) + batch_indices(10, 3, 12, 13)
    assert a == b
    assert sorted(a[:10]) == list(range(10)) and sorted(a[10:20]) == list(range(10))
    assert a[:10] != a[10:20]


def test_export_round_trip_gives_identical_outputs(tmp_path):
    G = Generator(get_preset("cpu-32", 16, 1).G).eval().requires_grad_(False)  # the path a loaded export takes
    G.mapping.w_avg.normal_()
    G.save_pretrained(tmp_path / "export")
    G2 = Generator.from_pretrained(tmp_path / "export")
    z = torch.randn(3, G.z_dim)
    torch.testing.assert_close(G2(z, truncation_psi=0.7), G(z, truncation_psi=0.7), rtol=0, atol=0)
    meta = json.loads((tmp_path / "export" / "config.json").read_text())
    assert meta["format"] == "inrgan-generator" and meta["config"]["resolution"] == 16


def test_training_state_is_plain_data_and_weights_only(tmp_path):
    from inrgan.io import CheckpointError
    from inrgan.training.checkpoint import STATE_KEYS

    state = {**{k: {} for k in STATE_KEYS}, "G": {"w": torch.randn(3)}, "cur_nimg": 128,
             "rng_state": {"rng": torch.Generator().get_state()}}
    save_training_state(tmp_path / "state.pt", state)
    back = load_training_state(tmp_path)
    torch.testing.assert_close(back["G"]["w"], state["G"]["w"])
    assert back["cur_nimg"] == 128
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_training_state(tmp_path / "bad.pt")
    del state["G_opt"]
    save_training_state(tmp_path / "part.pt", state)
    with pytest.raises(CheckpointError, match=r"part.pt: an incomplete training state, missing \['G_opt'\]"):
        load_training_state(tmp_path / "part.pt")


# ----------------------------------------------------------------------------------------------
# Whole-loop tests on a tiny image folder.


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.RandomState(0)
    for i in range(24):
        arr = (rng.rand(20, 20) * 255).astype(np.uint8)
        Image.fromarray(arr, "L").save(d / f"{i:03d}.png")
    return str(d)


def _opts(data):
    return RunOptions(data=data, preset="cpu-32", resolution=16, device="cpu", progress=False)


TINY = dict(batch=4, tick_kimg=0.008, snapshot_ticks=1, seed=7, r1_interval=2, ema_kimg=0.01)


def test_resume_is_exact(tmp_path, tiny_data):
    # 4 steps straight vs 2 steps + resume + 2 steps: identical G, D and G_ema. The state alone resumes: it
    # holds the TrainingConfig and the options (run.json, a description, is removed first).
    train(tmp_path / "straight", _opts(tiny_data), overrides=dict(TINY, kimg=0.016), log=lambda *_: None)
    train(tmp_path / "split", _opts(tiny_data), overrides=dict(TINY, kimg=0.008), log=lambda *_: None)
    (tmp_path / "split" / "run.json").unlink()
    train(tmp_path / "split", RunOptions(data=None, preset=None, device="cpu", progress=False),
          resume=tmp_path / "split", overrides={"kimg": 0.016}, log=lambda *_: None)
    a = load_training_state(tmp_path / "straight")
    b = load_training_state(tmp_path / "split")
    assert a["cur_nimg"] == b["cur_nimg"] == 16
    assert b["training"] == dict(a["training"], kimg=0.016) and b["training"]["seed"] == TINY["seed"]
    assert b["options"]["data"] == tiny_data and b["options"]["resolution"] == 16
    for net in ("G", "D", "G_ema"):
        for k in a[net]:
            torch.testing.assert_close(a[net][k], b[net][k], rtol=0, atol=0, msg=f"{net}.{k}")
    for k in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(a["D_opt"]["state"][0][k], b["D_opt"]["state"][0][k], rtol=0, atol=0)
    stats = [json.loads(line) for line in (tmp_path / "split" / "stats.jsonl").read_text().splitlines()]
    assert [s["kimg"] for s in stats] == [0.008, 0.016]


def test_nan_loss_stops_with_the_step_and_keeps_the_checkpoint(tmp_path, tiny_data):
    run = tmp_path / "run"
    train(run, _opts(tiny_data), overrides=dict(TINY, kimg=0.008), log=lambda *_: None)
    before = (run / "state.pt").read_bytes()
    with pytest.raises(TrainingDivergedError, match=r"at step \d+ images"):
        train(run, RunOptions(data=None, preset=None, device="cpu", progress=False), resume=run,
              overrides={"kimg": 0.016, "lr": float("inf")}, log=lambda *_: None)
    assert (run / "state.pt").read_bytes() == before


def _resume_opts(**kw):
    return RunOptions(data=None, preset=None, device="cpu", progress=False, **kw)


def test_a_resume_keeps_the_runs_metrics_unless_given(tmp_path, tiny_data):
    run = tmp_path / "run"
    train(run, _opts(tiny_data), overrides=dict(TINY, kimg=0.008), log=lambda *_: None)
    state = load_training_state(run)
    assert state["options"]["metrics"] == [] and state["options"]["features"] == "effnet-lite0"
    state["options"].update(metrics=["fid2k"], metrics_every=40.0, features="effnet-lite1")
    save_training_state(run / "state.pt", state)
    kept = plan_run(_resume_opts(), resume=run).options
    assert (kept.metrics, kept.metrics_every, kept.features) == (["fid2k"], 40.0, "effnet-lite1")
    given = plan_run(_resume_opts(metrics=[], metrics_every=5.0), resume=run).options  # --metrics none
    assert (given.metrics, given.metrics_every, given.features) == ([], 5.0, "effnet-lite1")


def test_one_trainer_per_run_directory(tmp_path, tiny_data):
    run = tmp_path / "run"
    train(run, _opts(tiny_data), overrides=dict(TINY, kimg=0.008), log=lambda *_: None)
    before = (run / "state.pt").read_bytes()
    with run_lock(run):  # another trainer's leg, still running
        with pytest.raises(RunLockedError, match=rf"run is being trained by process {os.getpid()} on "):
            train(run, _resume_opts(), resume=run, overrides={"kimg": 0.016}, log=lambda *_: None)
    assert (run / "state.pt").read_bytes() == before
    with pytest.raises(ConfigError, match=r"already holds a run \(state.pt\): continue it with --resume"):
        train(run, _opts(tiny_data), overrides=dict(TINY, kimg=0.008), log=lambda *_: None)
    assert (run / "state.pt").read_bytes() == before
    train(run, _resume_opts(), resume=run, overrides={"kimg": 0.016}, log=lambda *_: None)  # the lock was let go
    assert load_training_state(run)["cur_nimg"] == 16


def test_training_config_rejects_nonsense():
    with pytest.raises(ValueError, match="batch"):
        TrainingConfig(batch=0)


def _one_step(g_tile: int | None = None, d_checkpoint: bool = False, r1_batch: int | None = None
              ) -> tuple[dict[str, float], list[torch.Tensor], list[torch.Tensor]]:
    """One training step (Gmain, Dmain, R1) of a cpu-32 model at 32^2, batch 8 (two minibatch-std groups),
    from a fixed start, with plain SGD (lr 1) so that each weight moves by exactly its gradient: the step's
    stats and G's and D's moves. In float64: the claim is "the same maths", and float32 rounding, which
    differs between CPUs, is amplified here (R1 is a squared gradient after two lr-1 steps; measured 2.7e-5
    relative on a Xeon for a reordered sum)."""
    from inrgan.training.loop import training_step

    p = get_preset("cpu-32", 32)
    torch.manual_seed(0)
    G, D = Generator(p.G).train().double(), Discriminator(p.D).train().double()
    with torch.no_grad():  # non-zero biases and constants, so every term of the forward matters
        for name, w in G.named_parameters():
            if w.ndim == 1 or name.endswith("const"):
                w.copy_(torch.randn(w.shape) * 0.5)
    G0 = [w.detach().clone() for w in G.parameters()]
    D0 = [w.detach().clone() for w in D.parameters()]
    G_opt, D_opt = torch.optim.SGD(G.parameters(), lr=1.0), torch.optim.SGD(D.parameters(), lr=1.0)
    gen = torch.Generator().manual_seed(1)
    real = (torch.rand(8, 3, 32, 32, generator=gen) * 2 - 1).double()
    z = torch.randn(2, 8, G.z_dim, generator=gen).double()
    t = TrainingConfig(batch=8, g_tile=g_tile, d_checkpoint=d_checkpoint, r1_batch=r1_batch)
    stats = training_step(G, D, G_opt, D_opt, real, (z[0], z[1]), True, t)
    return (stats, [w.detach() - w0 for w, w0 in zip(G.parameters(), G0, strict=True)],
            [w.detach() - w0 for w, w0 in zip(D.parameters(), D0, strict=True)])


@pytest.mark.parametrize("g_tile,d_checkpoint,r1_batch", [
    (12, False, None),  # 3 x 3 tiles of 12, 12 and 8 pixels
    (None, True, None),
    (None, False, 4),  # R1 on the two minibatch-std groups one at a time
    (12, True, 4),
])
def test_memory_options_take_the_same_step(g_tile, d_checkpoint, r1_batch):
    # --g-tile (G's images in tiles recomputed in the backward pass), --d-checkpoint (D's blocks recomputed,
    # R1's double backward included) and --r1-batch (R1 in micro-batches of whole minibatch-std groups)
    # change what the graph keeps, not the gradients: one step from the same start moves every weight the
    # same way.
    stats_whole, dG_whole, dD_whole = _one_step()
    stats_tiled, dG_tiled, dD_tiled = _one_step(g_tile, d_checkpoint, r1_batch)
    assert "loss_r1" in stats_whole
    # The same terms summed in another order: float64 rounding (eps 2.2e-16) amplified as in float32 (where
    # 2.7e-5 was measured, ~200 eps) stays below 1e-13; a wrong tile, checkpoint or micro-batch is O(1).
    for key, value in stats_whole.items():
        assert stats_tiled[key] == pytest.approx(value, rel=1e-10, abs=1e-14), key
    assert sum(d.abs().sum().item() for d in dG_whole) > 0
    for a, b in zip(dG_whole + dD_whole, dG_tiled + dD_tiled, strict=True):
        assert a.dtype == torch.float64
        assert (a - b).abs().max().item() <= 1e-10 * a.abs().max().item() + 1e-300


def test_r1_micro_batches_keep_the_minibatch_std_groups():
    from inrgan.models.discriminator import mbstd_groups, mbstd_micro_batches

    # 16 reals in groups of 4: group j holds samples j, j + 4, j + 8, j + 12
    parts = mbstd_micro_batches(16, 4, 8)
    assert [p.tolist() for p in parts] == [[0, 1, 4, 5, 8, 9, 12, 13], [2, 3, 6, 7, 10, 11, 14, 15]]
    for p in parts:  # D on a micro-batch alone groups it as the whole batch did
        k = len(p) // mbstd_groups(len(p), 4)
        assert {tuple(sorted(p.view(-1, k)[:, j].tolist())) for j in range(k)} <= {
            tuple(range(j, 16, 4)) for j in range(4)}
    assert [p.tolist() for p in mbstd_micro_batches(6, 4, 3)] == [[0, 2, 4], [1, 3, 5]]  # groups of 3
    assert [p.tolist() for p in mbstd_micro_batches(12, 4, 100)] == [list(range(12))]
    assert sorted(torch.cat(mbstd_micro_batches(24, 4, 5)).tolist()) == list(range(24))  # 6 parts of 4


def test_d_checkpoint_keeps_only_the_blocks_inputs():
    # With checkpointed blocks the graph keeps each block's input, not its activations; the logits match.
    torch.manual_seed(0)
    D = Discriminator(get_preset("cpu-32", 32).D)
    img = torch.randn(4, 3, 32, 32).requires_grad_(True)
    plain, saved_plain = saved_bytes(lambda: D(img))
    ck, saved_ck = saved_bytes(lambda: D(img, checkpoint_blocks=True))
    torch.testing.assert_close(ck, plain, rtol=0, atol=0)
    assert saved_ck < saved_plain / 4, (saved_ck, saved_plain)
    with torch.no_grad():  # nothing to recompute without autograd
        torch.testing.assert_close(D(img, checkpoint_blocks=True), plain.detach(), rtol=0, atol=0)


def test_g_tile_needs_a_pixel_independent_generator(tmp_path):
    from inrgan.config import ConfigError
    from inrgan.training.loop import plan_run

    with pytest.raises(ConfigError, match=r"g_tile \(--g-tile\) must be >= 1"):
        TrainingConfig(g_tile=0)
    with pytest.raises(ConfigError, match=r"r1_batch \(--r1-batch\) must be >= 1"):
        TrainingConfig(r1_batch=0)
    with pytest.raises(ConfigError, match="pixel-independent generator"):
        plan_run(RunOptions(data=str(tmp_path), preset="inr-gan-bil"), overrides={"g_tile": 64})
    assert plan_run(RunOptions(data=str(tmp_path), preset="inr-gan"), overrides={"g_tile": 64}).t.g_tile == 64


def test_a_resume_drops_the_ticks_logged_after_the_last_snapshot(tmp_path):
    from conftest import write_noise_images

    (tmp_path / "data").mkdir()
    data = write_noise_images(tmp_path / "data", 8, 16)
    run = tmp_path / "run"
    opts = RunOptions(data=data, preset="cpu-32", resolution=16, device="cpu", progress=False)
    overrides = dict(batch=4, tick_kimg=0.004, snapshot_ticks=1, seed=0)
    train(run, opts, overrides=dict(overrides, kimg=0.008), log=lambda *_: None)
    with open(run / "stats.jsonl", "a") as f:  # a tick that a killed process logged but never snapshotted
        f.write(json.dumps({"tick": 2, "kimg": 0.012, "loss_G": 9.9}) + "\n")
    train(run, RunOptions(data=None, preset=None, device="cpu", progress=False), resume=run,
          overrides={"kimg": 0.016}, log=lambda *_: None)
    kimg = [json.loads(line)["kimg"] for line in (run / "stats.jsonl").read_text().splitlines()]
    assert kimg == [0.004, 0.008, 0.012, 0.016]
    assert all(json.loads(line)["loss_G"] != 9.9 for line in (run / "stats.jsonl").read_text().splitlines())
