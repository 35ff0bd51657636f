"""Native CPU kernels for inference: ``native.c``, compiled on first use by the machine's C compiler.

Two parts of a forward cost the same at any render size and dominate a small one (docs/performance.md,
"The C kernels and weights made when used"): the affine heads, a stream over 238 MB of weights at 256^2 with a few multiply-adds per
weight, which torch's matrix product runs at about half the memory's speed; and the modulated weights
W_s (1 + A B / sqrt r), which torch makes in four passes over [B, c_out, c_in] (product, multiply, norm,
scale). The C kernels do each in one pass. They are single-threaded: the synthesis network takes them where
torch would run on one thread as well (the sample-parallel path, or torch set to one thread), fp32, without
autograd; everything else takes torch's path, and so does every call when the kernels are off or could not
be built.

The library is compiled with ``$CC`` (default ``cc``) and ``-O3 -march=native`` into
``$INRGAN_CACHE_DIR`` (default ``$XDG_CACHE_HOME/inrgan`` or ``~/.cache/inrgan``), named by a hash of the
source, the compiler, its flags and the CPU, and written atomically; a second process loads it in a
millisecond. ``INRGAN_NATIVE=0`` turns the kernels off; so does ``RenderOptions(native=False)`` per call.
Nothing is compiled at import. The wrappers check every operand's shape, dtype, device and layout before
a pointer reaches C; a call that fails turns the kernels off for the process (:func:`disable`, one
warning), and the caller takes torch's path.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("native.c")
MAX_RANK = 64  # native.c's bound on the FMM rank
MOD_ROWS = 4  # native.c's rows per block of the modulated weights
FLAGS = ("-O3", "-march=native", "-fPIC", "-shared", "-std=gnu11")

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
_error: str | None = None

_i64, _f32, _ptr = ctypes.c_int64, ctypes.c_float, ctypes.c_void_p


def cache_dir() -> Path:
    """Where compiled libraries are kept."""
    if os.environ.get("INRGAN_CACHE_DIR"):
        return Path(os.environ["INRGAN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "inrgan"


def _cpu_signature() -> str:
    """The CPU's model and feature flags (``-march=native`` code is specific to them)."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags", "Features", "CPU part"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor()


def _build(compiler: str, out: Path) -> None:
    """Compile native.c into ``out`` atomically (a temporary file in the same folder, then renamed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        subprocess.run([compiler, *FLAGS, "-o", tmp, str(SOURCE), "-lm"], check=True, capture_output=True,
                       text=True, timeout=120)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load() -> ctypes.CDLL:
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        raise RuntimeError("no C compiler found (set CC)")
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    key = hashlib.sha256("\0".join([SOURCE.read_text(), compiler, version, " ".join(FLAGS), platform.machine(),
                                    _cpu_signature()]).encode()).hexdigest()[:16]
    path = cache_dir() / f"native-{key}.so"
    if not path.exists():
        try:
            _build(compiler, path)
        except OSError:  # a cache folder we cannot write: build for this process only
            path = Path(tempfile.mkdtemp(prefix="inrgan-native-")) / path.name
            _build(compiler, path)
    lib = ctypes.CDLL(str(path))
    lib.inrgan_heads.argtypes = [_ptr, _ptr, _ptr, _f32, _ptr, _i64, _i64, _i64, _i64, _i64]
    lib.inrgan_heads.restype = None
    lib.inrgan_fmm_weight.argtypes = [_ptr, _ptr, _ptr, _ptr, _ptr, _i64, _i64, _i64, _i64, _f32, ctypes.c_int,
                                      _f32, _f32, _f32, _ptr]
    lib.inrgan_fmm_weight.restype = None
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded kernels, compiled on the first call; None where they are off (``INRGAN_NATIVE=0``) or
    could not be built (a warning, once, says why)."""
    global _lib, _tried, _error
    if _tried:
        return _lib
    with _lock:
        if not _tried:
            if os.environ.get("INRGAN_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
                _error = "turned off by INRGAN_NATIVE"
            else:
                try:
                    _lib = _load()
                except (OSError, RuntimeError, subprocess.SubprocessError) as err:
                    detail = getattr(err, "stderr", None) or str(err)
                    _error = f"could not build {SOURCE.name}: {detail.strip()[:500]}"
                    warnings.warn(f"inrgan: {_error}; using torch's kernels", RuntimeWarning, stacklevel=2)
            _tried = True
    return _lib


def disable(err: BaseException) -> None:
    """Turn the kernels off for this process after a failed call; the first failure warns, naming the error."""
    global _lib, _error
    with _lock:
        if _lib is not None:
            _lib, _error = None, f"a call failed ({type(err).__name__}: {str(err).strip()[:300]})"
            warnings.warn(f"inrgan: {_error}; using torch's kernels", RuntimeWarning, stacklevel=3)


# What a failed call raises: a wrapper's check, or ctypes refusing the arguments.
CALL_ERRORS = (ValueError, TypeError, OSError, ctypes.ArgumentError)


def _check(name: str, **tensors: Tensor | None) -> None:
    """Every operand an fp32 CPU tensor that is contiguous (the kernels read raw row-major memory)."""
    for key, t in tensors.items():
        if t is not None and not (t.dtype is torch.float32 and t.is_cpu and t.is_contiguous()):
            raise ValueError(f"{name}: {key} must be a contiguous float32 CPU tensor, got {t.dtype} on {t.device}"
                             + ("" if t.is_contiguous() else ", not contiguous"))


def unavailable_reason() -> str | None:
    """Why :func:`library` returned None (after it was called), or None."""
    return _error


def applies(*tensors: Tensor) -> bool:
    """Whether the kernels can take these operands: fp32 CPU tensors, without autograd. The kernels are
    single-threaded: callers take them where torch would run on one thread too (a sample-parallel worker)."""
    grad = torch.is_grad_enabled()
    return all(t.device.type == "cpu" and t.dtype == torch.float32 and not (grad and t.requires_grad)
               for t in tensors)


def heads(lib: ctypes.CDLL, weight: Tensor, w: Tensor, bias: Tensor | None, gain: float, out: Tensor,
          r0: int, r1: int) -> None:
    """``out[:, r0:r1] = gain * w weight[r0:r1]^T + bias[r0:r1]`` in place.

    weight [n, K], w [B, K], bias [n] (its gain applied) or None, out [B, n]; contiguous fp32 (w is copied
    if it is not).
    """
    n, k = weight.shape
    w = w.contiguous()
    _check("heads", weight=weight, w=w, bias=bias, out=out)
    if not (weight.is_contiguous() and out.is_contiguous() and out.shape == (w.shape[0], n) and w.shape[1] == k):
        raise ValueError(f"heads: weight {list(weight.shape)}, w {list(w.shape)}, out {list(out.shape)} "
                         f"(all contiguous) do not match")
    if bias is not None and not (bias.is_contiguous() and bias.shape == (n,)):
        raise ValueError(f"heads: bias must be contiguous [{n}], got {list(bias.shape)}")
    if not 0 <= r0 <= r1 <= n:
        raise ValueError(f"heads: rows {r0}:{r1} are outside 0:{n}")
    lib.inrgan_heads(weight.data_ptr(), w.data_ptr(), None if bias is None else bias.data_ptr(), gain,
                     out.data_ptr(), n, k, w.shape[0], r0, r1)


def fmm_weight(lib: ctypes.CDLL, shared: Tensor, a: Tensor, b: Tensor, scale: float, demodulate: bool,
               eps: float, split: int, gains: tuple[float, float]) -> tuple[Tensor, Tensor | None]:
    """The FMM weights of a batch, made in one pass per sample (native.c, ``inrgan_fmm_weight``).

    Args:
        shared: W_s [c_out, c_in]; a: [B, c_out, r]; b: [B, r, c_in] (made contiguous if not).
        scale: the product's factor, 1 / sqrt(r).
        demodulate: divide every output row by its L2 norm plus ``eps``.
        split: input channels of the first part (``c_in`` for one part).
        gains: factors of the two parts.

    Returns:
        ([B, c_out, split] * gains[0], [B, c_out, c_in - split] * gains[1], or None when split == c_in).
    """
    c_out, c_in = shared.shape
    batch, rank = a.shape[0], a.shape[2]
    if a.shape != (batch, c_out, rank) or b.shape != (batch, rank, c_in) or not 1 <= rank <= MAX_RANK:
        raise ValueError(f"fmm_weight: shared {list(shared.shape)}, a {list(a.shape)}, b {list(b.shape)} do not "
                         f"match (rank at most {MAX_RANK})")
    if not 0 < split <= c_in:
        raise ValueError(f"fmm_weight: split {split} is outside 1..{c_in}")
    shared, a, b = shared.contiguous(), a.contiguous(), b.contiguous()
    _check("fmm_weight", shared=shared, a=a, b=b)
    first = shared.new_empty(batch, c_out, split)
    second = shared.new_empty(batch, c_out, c_in - split) if split < c_in else None
    scratch = shared.new_empty(MOD_ROWS * c_in)
    for i in range(batch):
        lib.inrgan_fmm_weight(shared.data_ptr(), a[i].data_ptr(), b[i].data_ptr(), first[i].data_ptr(),
                              None if second is None else second[i].data_ptr(), c_out, c_in, rank, split, scale,
                              int(demodulate), eps, gains[0], gains[1], scratch.data_ptr())
    return first, second
