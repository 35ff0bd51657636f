"""Multi-process training on gloo, 2 CPU ranks: the same weights as one process, resume in one process,
and a prompt, clear stop when a rank dies.

Ranks are started by torchrun (as users start them) or directly with torchrun's environment variables.
This file is also the rank program of the step test: ``python tests/test_distributed.py OUT DATA``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from conftest import write_noise_images
from inrgan import Discriminator, Generator, get_preset
from inrgan.config import ConfigError
from inrgan.metrics.evaluate import generated_features
from inrgan.metrics.extractors import FeatureExtractor
from inrgan.training.checkpoint import load_training_state
from inrgan.training.distributed import init_distributed
from inrgan.training.loop import RunOptions, StreamBatchSampler, make_optimizers, train, training_step

TINY = dict(batch=8, tick_kimg=0.008, snapshot_ticks=1, seed=7)
# The whole-loop runs train recipe v1 (lr 2.5e-3): the tolerances of _assert_mostly_same_nets are set by its
# rounding (see LOOP_ATOL). v2's doubled lr and its D of a quarter the weights are not the mechanism under test.
LOOP_PRESET = "cpu-32-v1"
TINY_ARGS = ["--preset", LOOP_PRESET, "--resolution", "16", "--batch", "8", "--tick", "0.008", "--snap", "1",
             "--seed", "7", "--device", "cpu", "--no-progress"]
WAIT_S = 120  # no rank program here needs more than a few seconds; this only stops a hang


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_noise_images(tmp_path_factory.mktemp("imgs"), 24, 20)


@pytest.fixture
def one_thread():
    """This process computes the one-process reference beside 2 ranks on a small machine: 1 thread each."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_ranks(args: list[str], world: int = 2, **env: str) -> list[subprocess.Popen]:
    """``python ARGS`` once per rank, with the environment torchrun would give it."""
    port = str(_free_port())
    procs = []
    for rank in range(world):
        rank_env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK=str(rank),
                        WORLD_SIZE=str(world), LOCAL_RANK=str(rank), OMP_NUM_THREADS="1", **env)
        procs.append(subprocess.Popen([sys.executable, *args], env=rank_env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    return procs


def _finish(procs: list[subprocess.Popen]) -> list[str]:
    outputs = []
    for p in procs:
        try:
            outputs.append(p.communicate(timeout=WAIT_S)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out
    return outputs


def _assert_same_nets(a: dict, b: dict, atol: float, nets=("G", "D", "G_ema")) -> None:
    """Every weight and buffer within ``atol``, or 8 ulps of its dtype where larger (the mapping network
    stores its weights divided by its lr multiplier 0.01, so they reach a few hundred)."""
    for net in nets:
        assert a[net].keys() == b[net].keys()
        for k in a[net]:
            rtol = 8 * torch.finfo(b[net][k].dtype).eps if atol else 0.0
            torch.testing.assert_close(a[net][k], b[net][k], rtol=rtol, atol=atol, msg=f"{net}.{k}")


# ----------------------------------------------------------------------------------------------
# Sharding: each rank's images form the minibatch-std groups of one process.


def test_strided_shards_form_the_minibatch_std_groups_of_one_process():
    full = next(iter(StreamBatchSampler(24, seed=7, start_nimg=16, batch=8)))
    shards = [next(iter(StreamBatchSampler(24, 7, 16, 8, rank=r, world=2))) for r in range(2)]
    assert shards == [full[0::2], full[1::2]]

    # One process groups images {0, 2, 4, 6} and {1, 3, 5, 7} of a batch of 8 (group size 4), so D
    # gives every image the same logit on its rank as in the whole batch.
    torch.manual_seed(0)
    D = Discriminator(get_preset("cpu-32", 16, 1).D)
    x = torch.randn(8, 1, 16, 16)
    with torch.no_grad():
        whole = D(x)  # [8, 1]
        per_rank = torch.stack([D(x[0::2]), D(x[1::2])], dim=1).reshape(8, 1)  # interleave the ranks
        halves = torch.cat([D(x[:4]), D(x[4:])])
    torch.testing.assert_close(per_rank, whole, rtol=0, atol=1e-6)
    assert not torch.allclose(halves, whole, atol=1e-4)  # contiguous shards would form other groups


# ----------------------------------------------------------------------------------------------
# One training step on 2 ranks = one step of one process on the same images; both replicas agree.


def _step_inputs():
    """A cpu-32 model at 16^2, the recipe's Adam, 8 reals and latents: in float64, because the claim is "the
    same maths" and Adam's first step, lr * g / (|g| + eps), turns a float32 rounding difference of a
    near-zero gradient (the sums over 2 x 4 images are ordered otherwise than over 8, and other CPUs round
    otherwise again) into a move of up to lr. In float64 that move is below lr * 1e-16 / eps = 3e-11."""
    p = get_preset("cpu-32", 16, 1)
    torch.manual_seed(0)
    G, D = Generator(p.G).train().double(), Discriminator(p.D).train().double()
    t = replace(p.training, batch=8, r1_interval=2)
    G_opt, D_opt = make_optimizers(G, D, t)
    gen = torch.Generator().manual_seed(1)
    real = (torch.rand(8, 1, 16, 16, generator=gen) * 2 - 1).double()  # [8, 1, 16, 16]
    z = torch.randn(2, 8, p.G.z_dim, generator=gen).double()  # [2, 8, z_dim]
    return G, D, G_opt, D_opt, real, z, t


class _TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)

    def features(self, x):
        return self.conv(x).mean(dim=(2, 3))  # [B, 8]


def _generated_features(dist=None):
    """Features of 7 generated images (uneven over 2 ranks), with a small seeded generator and extractor."""
    torch.manual_seed(3)
    G = Generator(get_preset("cpu-32", 16, 1).G).eval()
    extractor = FeatureExtractor(_TinyNet(), "tiny", 8, 16, mean=127.5, std=127.5, antialias=True,
                                 weights_sha256=None)
    return generated_features(G, extractor, 7, 16, 1.0, seed=5, batch_size=3, progress=False, dist=dist)


def _grads(G, D) -> dict[str, torch.Tensor]:
    """What the step leaves in .grad: G's from Gmain, D's from Dreg (R1), both averaged over ranks."""
    return {f"{net}.{k}": p.grad for net, m in (("G", G), ("D", D)) for k, p in m.named_parameters()
            if p.grad is not None}


def _rank_program(out: Path, data: str) -> None:
    """One rank of test_training_step_on_two_ranks_matches_one_process."""
    torch.set_num_threads(1)
    dist = init_distributed(torch.device("cpu"))
    G, D, G_opt, D_opt, real, z, t = _step_inputs()
    shard = slice(dist.rank, None, dist.world_size)
    stats = training_step(G, D, G_opt, D_opt, real[shard], (z[0, shard], z[1, shard]), True, t, dist=dist)
    features = dist.all_gather(torch.full((dist.rank + 1, 3), float(dist.rank)))  # 1 row on rank 0, 2 on rank 1
    gen_features = torch.from_numpy(_generated_features(dist))
    try:  # train() joins the caller's process group and checks the batch against it
        train(out / "odd", RunOptions(data=data, preset="cpu-32", resolution=16, device="cpu", progress=False),
              overrides=dict(TINY, batch=7, kimg=0.008), log=lambda *_: None)
        batch_error = ""
    except ConfigError as e:
        batch_error = str(e)
    torch.save({"G": G.state_dict(), "D": D.state_dict(), "grads": _grads(G, D), "stats": stats,
                "features": features, "gen_features": gen_features, "batch_error": batch_error}, out / f"rank{dist.rank}.pt")
    dist.shutdown()


def test_training_step_on_two_ranks_matches_one_process(tmp_path, tiny_data, one_thread):
    procs = _start_ranks([__file__, str(tmp_path), tiny_data])
    G, D, G_opt, D_opt, real, z, t = _step_inputs()
    stats = training_step(G, D, G_opt, D_opt, real, (z[0], z[1]), True, t)  # all phases, R1 included
    _finish(procs)
    one = {"G": G.state_dict(), "D": D.state_dict()}
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert one["G"]["mapping.w_avg"].dtype == torch.float64
    _assert_same_nets(ranks[0], one, atol=1e-9, nets=("G", "D"))  # a wrong shard or average moves ~lr
    _assert_same_nets(ranks[1], ranks[0], atol=0, nets=("G", "D"))  # identical replicas, w_avg included
    grads = _grads(G, D)
    assert grads.keys() == ranks[0]["grads"].keys() and any(k.startswith("D.") for k in grads)
    for k, g in grads.items():  # sums over 2 x 4 images against 8, in float64: 1e-9 of the tensor's largest
        torch.testing.assert_close(ranks[0]["grads"][k], g, rtol=0, atol=1e-9 * g.abs().max().item(), msg=k)
    assert (ranks[0]["G"]["mapping.w_avg"] != 0).any()
    for k, v in stats.items():
        assert ranks[0]["stats"][k] == ranks[1]["stats"][k] == pytest.approx(v, rel=1e-10, abs=1e-14), k
    torch.testing.assert_close(ranks[0]["features"], torch.tensor([[0.0] * 3, [1.0] * 3, [1.0] * 3]))
    # Metrics: each rank embeds every other generated image; both get all 7, in latent order, as one process.
    one_process = torch.from_numpy(_generated_features())
    assert one_process.shape == (7, 8) and one_process.std(dim=0).min() > 0
    for r in ranks:
        torch.testing.assert_close(r["gen_features"], one_process, rtol=1e-5, atol=1e-6)
    assert all("batch 7 cannot be split over 2 ranks" in r["batch_error"] for r in ranks)


# ----------------------------------------------------------------------------------------------
# The whole loop under torchrun: the same run as one process, and it resumes in one process.
# These runs train in float32 with the recipe's Adam (eps 1e-8): where a gradient is within rounding of
# zero, the data-parallel sums round otherwise and Adam's first step lr * g / (|g| + eps) moves that weight
# by up to lr (see _step_inputs), on some weights and some CPUs. A wrong shard, latent, flip, optimizer
# state or counter moves most weights by ~lr = 2.5e-3, so the claim checked is that almost every weight
# agrees to LOOP_ATOL and the typical one to float32 rounding.
LOOP_ATOL = 1e-4


def _assert_mostly_same_nets(a: dict, b: dict, max_share: float) -> None:
    for net in ("G", "D", "G_ema"):
        assert a[net].keys() == b[net].keys()
        diffs = torch.cat([(a[net][k].double() - b[net][k].double()).abs().flatten() for k in a[net]])
        share = (diffs > LOOP_ATOL).double().mean().item()
        print(f"{net}: {share:.2e} of the weights differ by more than {LOOP_ATOL}, the largest by {diffs.max():.1e}")
        assert share < max_share, net
        assert diffs.median() < 1e-6, net


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory, tiny_data):
    out = tmp_path_factory.mktemp("ddp") / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "inrgan", "train", "--data", tiny_data, "--out", str(out), "--kimg", "0.008", *TINY_ARGS]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=WAIT_S, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stdout + r.stderr
    return out, r.stdout


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory, tiny_data):
    out = tmp_path_factory.mktemp("single") / "run"
    train(out, RunOptions(data=tiny_data, preset=LOOP_PRESET, resolution=16, device="cpu", progress=False),
          overrides=dict(TINY, kimg=0.008), log=lambda *_: None)
    return out


def test_torchrun_trains_like_one_process(two_rank_run, one_process_run):
    out, stdout = two_rank_run
    assert "distributed: 2 ranks (gloo on cpu), 4 images per rank of the global batch of 8" in stdout
    assert stdout.count("done: 0.008 kimg") == 1  # rank 0 alone reports
    a, b = load_training_state(out), load_training_state(one_process_run)
    _assert_mostly_same_nets(a, b, max_share=0.002)  # measured on a Xeon: 7e-5 of G's weights, 8e-5 of D's
    assert (a["cur_nimg"], a["cur_tick"], a["batch_idx"]) == (b["cur_nimg"], b["cur_tick"], b["batch_idx"]) == (8, 1, 1)
    assert torch.equal(a["rng_state"]["rng"], b["rng_state"]["rng"])  # latents and flips of the whole batch
    ta, tb = (json.loads((d / "stats.jsonl").read_text()) for d in (out, one_process_run))
    # loss_G comes before any update: float32 rounding of sums over 2 x 4 against 8 images. The others
    # come after G's Adam step, which the few weights above may take apart (3.6e-5 relative measured in
    # D_fake on a Xeon); the float64 step test checks each phase tightly.
    assert ta["loss_G"] == pytest.approx(tb["loss_G"], rel=1e-5), "loss_G"
    for k in ("loss_D", "D_real", "D_fake", "loss_r1"):
        assert ta[k] == pytest.approx(tb[k], rel=1e-3), k
    assert json.loads((out / "run.json").read_text())["ranks"] == 2


def test_a_two_rank_run_resumes_in_one_process(tmp_path, two_rank_run, one_process_run):
    # Both runs go on from 8 to 16 images in one process and stay the same run.
    for name, src in (("ddp", two_rank_run[0]), ("single", one_process_run)):
        shutil.copytree(src, tmp_path / name)
        train(tmp_path / name, RunOptions(data=None, preset=None, device="cpu", progress=False),
              resume=tmp_path / name, overrides={"kimg": 0.016}, log=lambda *_: None)
    a, b = load_training_state(tmp_path / "ddp"), load_training_state(tmp_path / "single")
    assert a["cur_nimg"] == b["cur_nimg"] == 16
    # The runs may start this leg a few weights apart (see LOOP_ATOL). Training is chaotic at that scale: a leaky-ReLU
    # input within rounding of zero takes the other branch, and Adam's eps 1e-8 turns the tiny gradient
    # change into a full lr-sized step for those weights (measured: ~0.1% of G's weights, ~0.5% of D's move
    # by more than 1e-4, the largest by 7e-3). A resume that lost the optimizer state, the RNG or the
    # counters would move most weights by ~lr (dropping the Adam moments from the checkpoint moved 96% of
    # G's weights by more than 1e-4), so most weights still agreeing to 1e-4 is the test.
    _assert_mostly_same_nets(a, b, max_share=0.02)
    stats = [json.loads(line) for line in (tmp_path / "ddp" / "stats.jsonl").read_text().splitlines()]
    assert [s["kimg"] for s in stats] == [0.008, 0.016]
    assert json.loads((tmp_path / "ddp" / "run.json").read_text())["ranks"] == 1


# ----------------------------------------------------------------------------------------------
# A rank that dies stops the other with an error, promptly.


@pytest.mark.timeout(180)
def test_killing_a_rank_stops_the_other_with_a_clear_error(tmp_path, tiny_data):
    out = tmp_path / "run"
    procs = _start_ranks(["-m", "inrgan", "train", "--data", tiny_data, "--out", str(out), "--kimg", "100",
                          *TINY_ARGS], INRGAN_DIST_TIMEOUT="3600")
    try:
        deadline = time.time() + WAIT_S
        while not (out / "stats.jsonl").is_file():  # training is under way: the first tick is written
            assert time.time() < deadline and procs[0].poll() is None, "the run did not start"
            time.sleep(0.1)
        procs[1].send_signal(signal.SIGKILL)
        # The collective timeout is an hour: a rank that stops before the hang guard below learned of the
        # death from the closed connection, not from the timeout.
        output = procs[0].communicate(timeout=WAIT_S)[0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
    assert procs[0].returncode == 1, output
    assert "Error: rank 0 of 2:" in output and "another rank exited or stopped answering" in output, output
    assert "Traceback" not in output


if __name__ == "__main__":
    _rank_program(Path(sys.argv[1]), sys.argv[2])
