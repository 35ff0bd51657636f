"""Sample-parallel CPU inference against the intra-op fast path and the reference path.

Tolerance: as tests/test_fast_paths.py, 2e-5 of the reference's largest magnitude.
"""

from __future__ import annotations

import threading

import pytest
import torch

from inrgan import RenderOptions
from inrgan.accel import native, render, threads
from inrgan.accel.inr import prepare
from inrgan.models.cost import hyper_macs, inr_costs, macs_per_sample
from test_fast_paths import _close, _generator, _render

MIN_MACS = threads.MIN_MACS_PER_THREAD


@pytest.fixture(autouse=True)
def _two_threads(monkeypatch):
    # Two threads, and the split taken whatever the work: these models are far smaller than the minimum.
    monkeypatch.setattr(threads, "MIN_MACS_PER_THREAD", 0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def calls(monkeypatch):
    """Counts the renders that took the sample-parallel path."""
    seen = []
    real = render.render_sample_parallel

    def spy(synthesis, ws, grid, tile, n_threads, *args):
        seen.append((ws.shape[0], n_threads))
        return real(synthesis, ws, grid, tile, n_threads, *args)

    monkeypatch.setattr(render, "render_sample_parallel", spy)
    return seen


def _intra_op(G, ws, **kw):
    return G.synthesis(ws, options=RenderOptions(sample_parallel=False), **kw)


def _heads(G, ws):
    """Every affine head with the w [B, w_dim] it reads, in inr_layers order."""
    return [(spec.module.affine, ws[:, spec.w_index].contiguous()) for spec in G.synthesis.inr_layers()]


@pytest.mark.parametrize("name,res,batch,kw", [
    ("cpu-32", 16, 4, {}),
    ("cpu-32", 16, 5, dict(height=21, width=13)),  # uneven groups (3 + 2), partial cells
    ("inr-gan", 128, 2, dict(height=32, width=32)),
    ("inr-gan", 128, 4, dict(height=40, width=56, tile=24)),  # tiles inside every thread
    ("inr-gan-bil", 128, 2, {}),  # per-sample spatial normalisation, bilinear upsampling
    ("every-option", 16, 4, dict(height=32, width=32)),  # predicted basis and biases, sigmoid FMM
])
def test_sample_parallel_equals_the_intra_op_path_and_the_reference(name, res, batch, kw, calls, monkeypatch):
    kernel_calls = []
    real = native.heads
    monkeypatch.setattr(native, "heads", lambda *a: kernel_calls.append(1) or real(*a))
    G = _generator(name, res)
    torch.manual_seed(2)
    ws = G.mapping(torch.randn(batch, G.z_dim))
    ws = ws + 0.3 * torch.randn_like(ws)  # a different w for every layer, as style mixing gives
    with torch.no_grad():
        ref = _render(G, ws, fast=False, **kw)
    with torch.inference_mode():
        intra = _intra_op(G, ws, **kw)
        split = G.synthesis(ws, **kw)  # with the C kernels where a compiler is found
        assert bool(kernel_calls) == (native.library() is not None)
        split_torch = G.synthesis(ws, options=RenderOptions(native=False), **kw)
    assert calls == [(batch, 2)] * 2
    _close(split, ref)
    _close(split, intra)
    _close(split_torch, ref)


def test_the_heads_shared_out_by_rows_equal_the_whole_heads():
    G = _generator("inr-gan", 128)
    ws = G.mapping(torch.randn(3, G.z_dim))
    heads = _heads(G, ws)
    assert len(heads) == sum(len(b.layers()) + 1 for b in G.synthesis.blocks)
    with torch.inference_mode():
        shared = threads.shared_styles(heads, 3)
        for (head, w), out in zip(heads, shared, strict=True):
            _close(out, head(w))


def test_the_callers_thread_count_is_kept_for_it_and_for_threads_started_later(calls):
    G = _generator("cpu-32", 16)
    torch.set_num_threads(3)  # a new pool of three
    with torch.inference_mode():
        G(torch.randn(3, G.z_dim))
    assert calls == [(3, 3)]
    assert torch.get_num_threads() == 3
    seen = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert seen == [3]


def test_the_output_follows_the_callers_grad_mode(calls):
    G = _generator("cpu-32", 16)
    z = torch.randn(2, G.z_dim)
    with torch.inference_mode():
        assert G(z).is_inference()
    with torch.no_grad():
        out = G(z)
    assert not out.is_inference() and not out.requires_grad
    assert len(calls) == 2


@pytest.mark.parametrize("case", ["grad", "one sample", "switched off", "autocast", "uneven small batch",
                                  "little work"])
def test_paths_that_keep_intra_op_parallelism(case, calls, monkeypatch):
    G = _generator("cpu-32", 16)
    batch = {"one sample": 1, "uneven small batch": 3}.get(case, 4)
    z = torch.randn(batch, G.z_dim)
    options = RenderOptions(sample_parallel=case != "switched off")
    if case == "little work":
        monkeypatch.setattr(threads, "MIN_MACS_PER_THREAD", 2 * macs_per_sample(G.synthesis, G.synthesis.make_grid()) + 1)
    if case == "grad":
        out = G(z, options=options)
        assert out.requires_grad
    elif case == "autocast":
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            G(z, options=options)
    else:
        with torch.inference_mode():
            G(z, options=options)
    assert calls == []


def test_sample_groups_and_when_a_batch_is_split():
    assert threads.sample_groups(4, 2) == [(0, 2), (2, 4)]
    assert threads.sample_groups(5, 2) == [(0, 2), (2, 5)]
    assert threads.sample_groups(7, 3) == [(0, 2), (2, 4), (4, 7)]
    assert sum(b1 - b0 for b0, b1 in threads.sample_groups(33, 16)) == 33
    assert threads.use_sample_parallel(4, 2) and threads.use_sample_parallel(5, 2)
    assert not threads.use_sample_parallel(3, 2)  # 2 + 1: one thread does twice the other's work
    assert not threads.use_sample_parallel(1, 2) and not threads.use_sample_parallel(8, 1)


@pytest.mark.parametrize("on", [True, False])
def test_the_bench_reports_and_switches_the_split(on, calls, monkeypatch):
    import inrgan.bench
    from inrgan.bench import BenchSpec, bench_forward

    peak = inrgan.bench.matmul_peak_gflops
    monkeypatch.setattr(inrgan.bench, "matmul_peak_gflops", lambda device, dtype: peak(device, dtype, n=256, repeats=1))
    r = bench_forward(BenchSpec(preset="cpu-32", resolution=16, batch=2, repeats=2, warmup=1, sample_parallel=on))
    assert r["sample_parallel"] is on
    assert r["native_kernels"] is (on and native.library() is not None)
    assert calls == ([(2, 2)] * 3 if on else [])


def test_the_work_estimate_is_the_benchs_layer_shape_count():
    G = _generator("inr-gan", 128)
    for h, w in [(128, 128), (32, 48), (200, 200)]:
        grid = G.synthesis.make_grid(h, w)
        count = sum(c.macs for c in inr_costs(G.synthesis, grid)) + hyper_macs(G.synthesis)
        assert macs_per_sample(G.synthesis, grid) == count


def test_the_release_model_splits_a_batch_of_4_on_two_threads_down_to_small_renders():
    from inrgan import Generator, get_preset
    from inrgan.accel.render import sample_parallel_threads

    S = Generator(get_preset("inr-gan", 256).G).synthesis
    cpu = torch.device("cpu")
    threads.MIN_MACS_PER_THREAD = MIN_MACS  # the module's own value; the fixture's monkeypatch restores it
    assert sample_parallel_threads(S, 4, cpu, S.make_grid(16, 16)) == 2
    assert sample_parallel_threads(S, 4, cpu, S.make_grid(256, 256)) == 2
    assert sample_parallel_threads(S, 4, cpu, S.make_grid(8, 8)) == 2  # 209M per thread, most in the heads
    C = Generator(get_preset("cpu-32").G).synthesis
    assert sample_parallel_threads(C, 8, cpu, C.make_grid(32, 32)) == 2
    assert sample_parallel_threads(C, 4, cpu, C.make_grid(32, 32)) == 0  # 63M per thread: slower split, measured


def test_the_pool_is_one_per_process_and_per_thread_count(monkeypatch):
    import os

    first = threads.pool(2)
    assert threads.pool(2) is first
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as in a forked child: the parent's threads are not there
    child = threads.pool(2)
    assert child is not first and threads.pool(2) is child
    assert threads.pool(3) is not child  # another thread count, another pool
    assert threads.run_on_pool(3, lambda t: (t, torch.get_num_threads(), threads.in_worker())) == [
        (0, 1, True), (1, 1, True), (2, 1, True)]
    for executor in (child, threads.pool(3)):  # made under the fake pid: the module would not reclaim them
        executor.shutdown()


@pytest.mark.parametrize("use_native", [True, False])
def test_a_failing_head_raises_in_the_caller_instead_of_hanging(use_native, calls, monkeypatch):
    G = _generator("inr-gan", 64)
    ws = G.mapping(torch.randn(2, G.z_dim))
    heads = _heads(G, ws)

    def broken(*args, **kwargs):
        raise RuntimeError("a worker failed")

    working = native.heads, threads.equal_linear
    monkeypatch.setattr(native, "heads", broken)
    monkeypatch.setattr(threads, "equal_linear", broken)
    with torch.inference_mode():
        state = threads.start_shared_styles(heads, 2, use_native)
        with pytest.raises(RuntimeError, match="a worker failed"):
            state.wait(len(heads))
        with pytest.raises(RuntimeError, match="a worker failed"):
            G.synthesis(ws)  # the render fails the same way; the pool still works afterwards
    monkeypatch.setattr(native, "heads", working[0])
    monkeypatch.setattr(threads, "equal_linear", working[1])
    with torch.inference_mode():
        assert G.synthesis(ws).shape == (2, 3, 64, 64)
    assert calls == [(2, 2), (2, 2)]  # both renders split over the pool


def test_the_parameters_of_a_sample_group_are_those_samples():
    G = _generator("inr-gan", 64)
    ws = G.mapping(torch.randn(3, G.z_dim))
    with torch.inference_mode():
        params = prepare(G.synthesis, ws, lib=native.library(), lazy=True)
        for block in params:
            part = block.select(1, 3)
            for whole, mine in zip([*block.layers, block.torgb], [*part.layers, part.torgb], strict=True):
                for name in ("weight", "emb_weight"):
                    w, m = getattr(whole, name), getattr(mine, name)
                    if w is None:
                        assert m is None
                        continue
                    if not isinstance(w, torch.Tensor):  # made when used
                        assert m.shape == (2, *w.shape[1:])
                        w, m = w.materialize(), m.materialize()
                    assert torch.equal(m, w[1:3])
                assert torch.equal(mine.bias, whole.bias if whole.bias.shape[0] == 1 else whole.bias[1:3])


def test_the_split_render_sees_every_change_of_the_coordinate_constants(calls):
    # The workers share the feature cache, compared with the embeddings once per call on the calling thread.
    G = _generator("inr-gan", 64)
    ws = G.mapping(torch.randn(2, G.z_dim))
    with torch.inference_mode():
        G.synthesis(ws)
    with torch.no_grad():
        G.synthesis.embeddings[1].const.mul_(-1.5)  # in place, as an optimizer step or the EMA
        ref = _render(G, ws, fast=False)
    with torch.inference_mode():
        _close(G.synthesis(ws), ref)
    assert calls == [(2, 2), (2, 2)]
