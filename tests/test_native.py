"""The C kernels of inrgan.accel.native against the model's formulas, and how they are built, found and turned off.

The kernels need a C compiler: where none is found, or ``INRGAN_NATIVE=0`` turns them off (as `make
test-matrix` does), the tests of the kernels themselves are skipped with that reason, and the fallback to
torch's kernels is tested by hiding the compiler.
"""

from __future__ import annotations

import math
import os
import shutil

import pytest
import torch

from inrgan import RenderOptions
from inrgan.accel import native, threads
from inrgan.accel.inr import NativeFMMWeight, prepare
from inrgan.models import fmm

NO_COMPILER = (shutil.which(os.environ.get("CC", "cc")) is None and shutil.which("gcc") is None
               and shutil.which("clang") is None)
needs_compiler = pytest.mark.skipif(NO_COMPILER, reason="no C compiler on PATH: the C kernels cannot be built here")


@pytest.fixture(scope="module")
def lib():
    if os.environ.get("INRGAN_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        pytest.skip("the C kernels are turned off by INRGAN_NATIVE")
    if NO_COMPILER:
        pytest.skip("no C compiler on PATH: the C kernels cannot be built here")
    lib = native.library()
    assert lib is not None, native.unavailable_reason()
    return lib


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """native's module state reset (restored afterwards), its cache in a fresh folder, the kernels on."""
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "_error", None)
    monkeypatch.delenv("INRGAN_NATIVE", raising=False)
    monkeypatch.setenv("INRGAN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5, 8, 9])
@pytest.mark.parametrize("k", [512, 37])  # 37: no whole vector, only the scalar tail
def test_heads_equal_torchs_product(lib, batch, k):
    torch.manual_seed(batch)
    n = 300
    weight, w, bias = torch.randn(n, k), torch.randn(batch, k), torch.randn(n)
    out = torch.full((batch, n), float("nan"))
    # three row ranges, as three threads would share them (one of them a partial block of 64 rows)
    for r0, r1 in [(0, 70), (70, 71), (71, n)]:
        native.heads(lib, weight, w, bias, 0.25, out, r0, r1)
    ref = torch.addmm(bias[:, None].double(), weight.double(), w.double().t(), alpha=0.25).t()
    assert (out.double() - ref).abs().max().item() < 1e-5 * math.sqrt(k)
    # no bias, and an empty range writes nothing
    out2 = torch.full((batch, n), 7.0)
    native.heads(lib, weight, w, None, 1.0, out2, 5, 5)
    assert (out2 == 7.0).all()
    native.heads(lib, weight, w, None, 1.0, out2, 0, n)
    assert torch.allclose(out2, w @ weight.t(), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("c_out,c_in,rank,split", [
    (512, 512, 10, 512),  # the release's 512-channel layers
    (512, 688, 10, 176),  # a level's first layer: features of the previous level, then coordinates
    (37, 45, 3, 45),  # rows not a multiple of 4, columns not of 16
    (5, 16, 1, 7),
    (8, 40, 64, 40),  # the largest rank the kernel takes
])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_weights_equal_torchs(lib, c_out, c_in, rank, split, demodulate):
    torch.manual_seed(c_out + rank)
    shared, styles = torch.randn(c_out, c_in), torch.randn(3, (c_out + c_in) * rank)
    a, b = fmm.fmm_factors(styles, c_out, c_in, rank)
    first, second = native.fmm_weight(lib, shared, a, b, 1 / math.sqrt(rank), demodulate, fmm.DEMOD_EPS, split,
                                      (math.sqrt(2), 0.5))
    ref = fmm.fmm_weight(shared, styles, rank, demodulate=demodulate)
    scale = ref.abs().max().item()
    assert (first - ref[:, :, :split] * math.sqrt(2)).abs().max().item() < 2e-6 * scale
    if split == c_in:
        assert second is None
    else:
        assert (second - ref[:, :, split:] * 0.5).abs().max().item() < 2e-6 * scale
    assert first.is_contiguous() and first.shape == (3, c_out, split)


def test_the_inr_takes_the_kernel_only_where_asked_and_where_it_applies(lib, monkeypatch):
    from test_fast_paths import _close, _generator

    seen = []
    real = native.fmm_weight
    monkeypatch.setattr(native, "fmm_weight", lambda *a, **k: seen.append(True) or real(*a, **k))
    G = _generator("inr-gan", 64)
    ws = G.mapping(torch.randn(2, G.z_dim))
    with torch.inference_mode():
        ref = prepare(G.synthesis, ws)
        out = prepare(G.synthesis, ws, lib=lib)
    assert len(seen) == sum(len(b.layers) for b in ref)  # every FMM layer, none of the ToRGBs
    for r, o in zip(ref, out, strict=True):
        for lr, lo in zip([*r.layers, r.torgb], [*o.layers, o.torgb], strict=True):
            for tr, to in ((lr.weight, lo.weight), (lr.emb_weight, lo.emb_weight)):
                assert (tr is None) == (to is None)
                if tr is not None:
                    _close(to, tr, tol=1e-6)
    # autograd or another dtype: torch's kernels
    seen.clear()
    prepare(G.synthesis, ws, lib=lib)  # grad enabled, parameters requiring grad
    with torch.inference_mode():
        prepare(G.synthesis.double(), ws.double(), lib=lib)
    assert not seen


def test_bad_operands_are_named(lib):
    w = torch.randn(4, 8)
    with pytest.raises(ValueError, match="do not match"):
        native.heads(lib, torch.randn(10, 9), w, None, 1.0, torch.empty(4, 10), 0, 10)
    with pytest.raises(ValueError, match="outside"):
        native.heads(lib, torch.randn(10, 8), w, None, 1.0, torch.empty(4, 10), 5, 11)
    with pytest.raises(ValueError, match="bias"):
        native.heads(lib, torch.randn(10, 8), w, torch.randn(9), 1.0, torch.empty(4, 10), 0, 10)
    with pytest.raises(ValueError, match="rank at most"):
        native.fmm_weight(lib, torch.randn(4, 4), torch.randn(1, 4, 65), torch.randn(1, 65, 4), 1.0, True, 1e-8, 4,
                          (1.0, 1.0))
    with pytest.raises(ValueError, match="split"):
        native.fmm_weight(lib, torch.randn(4, 4), torch.randn(1, 4, 2), torch.randn(1, 2, 4), 1.0, True, 1e-8, 0,
                          (1.0, 1.0))
    # dtype, device and layout are checked before a pointer reaches C
    with pytest.raises(ValueError, match="float32"):
        native.heads(lib, torch.randn(10, 8).double(), w, None, 1.0, torch.empty(4, 10), 0, 10)
    with pytest.raises(ValueError, match="float32"):
        native.heads(lib, torch.randn(10, 8), w, None, 1.0, torch.empty(4, 10, dtype=torch.float64), 0, 10)
    with pytest.raises(ValueError, match="not contiguous"):
        native.heads(lib, torch.randn(8, 10).t(), w, None, 1.0, torch.empty(4, 10), 0, 10)
    with pytest.raises(ValueError, match="float32"):
        native.fmm_weight(lib, torch.randn(4, 4).half(), torch.randn(1, 4, 2), torch.randn(1, 2, 4), 1.0, True, 1e-8,
                          4, (1.0, 1.0))
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="CPU"):
            native.heads(lib, torch.randn(10, 8), w.cuda(), None, 1.0, torch.empty(4, 10), 0, 10)


@pytest.mark.parametrize("broken", ["fmm_weight", "heads"])
def test_a_failing_kernel_call_falls_back_to_torch_with_one_warning(lib, broken, monkeypatch):
    from test_fast_paths import _close, _generator, _render

    monkeypatch.setattr(threads, "MIN_MACS_PER_THREAD", 0)
    monkeypatch.setattr(native, "_lib", native._lib)  # restored afterwards: the failure turns the kernels off
    monkeypatch.setattr(native, "_error", native._error)

    def fail(*args, **kwargs):
        raise ValueError("a kernel that refuses its operands")

    monkeypatch.setattr(native, broken, fail)
    G = _generator("inr-gan", 64)
    ws = G.mapping(torch.randn(2, G.z_dim))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # sample-parallel: the heads and the weights through the kernels
        with torch.inference_mode(), pytest.warns(RuntimeWarning, match="a call failed") as caught:
            out = G.synthesis(ws)
            again = G.synthesis(ws)
    finally:
        torch.set_num_threads(before)
    assert len([w for w in caught if "a call failed" in str(w.message)]) == 1
    assert native.library() is None and "refuses its operands" in native.unavailable_reason()
    with torch.no_grad():
        ref = _render(G, ws, fast=False)
    _close(out, ref)
    _close(again, ref)


@needs_compiler
def test_the_library_is_built_once_into_the_cache_and_loaded_from_it(fresh, monkeypatch):
    assert native.library() is not None
    built = list(fresh.glob("native-*.so"))
    assert len(built) == 1 and not list(fresh.glob("*.tmp*")) and len(list(fresh.iterdir())) == 1
    stamp = built[0].stat().st_mtime_ns
    # another process (module state reset) loads the same file without compiling
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setattr(native, "_build", lambda *a: pytest.fail("compiled again"))
    assert native.library() is not None
    assert built[0].stat().st_mtime_ns == stamp


@needs_compiler
def test_an_unwritable_cache_builds_for_the_process(fresh, monkeypatch):
    fresh.parent.joinpath("cache").write_text("a file where the folder should be")
    assert native.library() is not None
    assert fresh.read_text() == "a file where the folder should be"  # nothing overwritten


@needs_compiler
def test_a_failed_build_leaves_no_file_and_falls_back_to_torch(fresh, monkeypatch, tmp_path):
    bad = tmp_path / "bad.c"
    bad.write_text("this is not C\n")
    monkeypatch.setattr(native, "SOURCE", bad)
    with pytest.warns(RuntimeWarning, match="could not build bad.c"):
        assert native.library() is None
    assert "bad.c" in native.unavailable_reason()
    assert not fresh.exists() or not list(fresh.iterdir())  # the temporary file was removed


def test_no_compiler_or_switched_off_falls_back_to_torch(fresh, monkeypatch):
    monkeypatch.setenv("CC", "no-such-compiler")
    monkeypatch.setenv("PATH", "")
    with pytest.warns(RuntimeWarning, match="no C compiler"):
        assert native.library() is None
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setenv("INRGAN_NATIVE", "0")
    assert native.library() is None and native.unavailable_reason() == "turned off by INRGAN_NATIVE"


def test_a_model_renders_the_same_without_the_kernels(lib, monkeypatch):
    from test_fast_paths import _close, _generator

    monkeypatch.setattr(threads, "MIN_MACS_PER_THREAD", 0)
    calls = []
    real = native.heads
    monkeypatch.setattr(native, "heads", lambda *a: calls.append(1) or real(*a))
    G = _generator("inr-gan", 64)
    ws = G.mapping(torch.randn(2, G.z_dim))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with torch.inference_mode():
            on = G.synthesis(ws)
            assert calls, "the kernels did not run"
            n = len(calls)
            off = G.synthesis(ws, options=RenderOptions(native=False))
            assert len(calls) == n
    finally:
        torch.set_num_threads(before)
    _close(on, off)


def test_weights_made_per_sample_equal_the_batchs(lib):
    torch.manual_seed(3)
    shared, styles = torch.randn(24, 40), torch.randn(3, 64 * 5)
    lazy = NativeFMMWeight(lib, shared, styles, 5, True, 1.5)
    ref = fmm.fmm_weight(shared, styles, 5) * 1.5
    assert lazy.shape == (3, 24, 40) and lazy.dtype == torch.float32
    for i in range(3):
        torch.testing.assert_close(lazy[i], ref[i], rtol=0, atol=2e-6)
    torch.testing.assert_close(lazy.materialize(), ref, rtol=0, atol=2e-6)
    assert {id(t) for t in lazy.tensors()} >= {id(lazy.shared)}


@pytest.mark.parametrize("threads_", [1, 2])
def test_renders_with_weights_made_when_used_equal_the_reference(lib, threads_, monkeypatch):
    """One thread: the plain forward makes its weights per sample; two: the sample-parallel workers do.
    The 32-channel inr-gan at 64^2 runs its small levels through batched products and its large ones
    through oneDNN one sample at a time: both take the per-sample weights."""
    from test_fast_paths import _close, _generator, _render

    monkeypatch.setattr(threads, "MIN_MACS_PER_THREAD", 0)
    made = []
    real = NativeFMMWeight.__getitem__
    monkeypatch.setattr(NativeFMMWeight, "__getitem__",
                        lambda self, i: (isinstance(i, int) and made.append(i)) or real(self, i))
    G = _generator("inr-gan", 64)
    torch.manual_seed(4)
    ws = G.mapping(torch.randn(2, G.z_dim))
    ws = ws + 0.3 * torch.randn_like(ws)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads_)
        with torch.no_grad():
            ref = _render(G, ws, fast=False, width=96)
            assert not made
            out = G.synthesis(ws, width=96)
            params = prepare(G.synthesis, ws)  # asked for without the kernels: plain tensors
    finally:
        torch.set_num_threads(before)
    lazy_layers = sum(1 for b in G.synthesis.blocks for k, layer in enumerate(b.layers())
                      if not (k == 0 and b.level is not None))
    # every plain layer's weight made for both samples (oneDNN's levels, and a worker of two threads, select one
    # sample and make its weight as index 0)
    assert len(made) >= 2 * lazy_layers and set(made) <= {0, 1}
    assert all(isinstance(layer.weight, torch.Tensor) for p in params for layer in p.layers if layer.weight is not None)
    _close(out, ref)
