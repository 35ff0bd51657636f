"""``inrgan export --format web``: a static page that renders the generator in the browser.

The folder holds the page (``index.html``, ``inrgan-web.js``, ``style.css``), the model (``model.onnx``, the
same file as ``--format onnx`` writes, and ``model.json``, what the page needs to know of it) and
onnxruntime-web's WebAssembly build in ``ort/``: its bundled module and its one ``.wasm`` file, copied from the
pinned npm package that ``make setup`` fetches once (:func:`fetch_runtime`). Nothing is downloaded when the
page runs, and any static file server serves it (``python -m http.server``); browsers do not run
WebAssembly modules from ``file://`` pages.

The folder is built beside the target and moved into place whole: an error leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from pathlib import Path

from .graph import ExportError

ORT_WEB_VERSION = "1.31.1"  # the npm package onnxruntime-web the page runs on (MIT license, Microsoft)
# The plain WebAssembly build only (no WebGPU, WebGL or JSEP): the module with its glue bundled in, and its
# .wasm; their sha256 in that version, checked when they are fetched and when they are copied.
ORT_WEB_FILES = {
    "ort.wasm.bundle.min.mjs": "51bd7168175767324ab0acfcfc4ca94a096a3826e3ebac9ccc4f195eb865f8dd",
    "ort-wasm-simd-threaded.wasm": "4b884c203b0fa48d057be3332c65513ff85aa3c5bddd6946acc0fab7ecda001d",
}
PAGE_FILES = ("index.html", "inrgan-web.js", "style.css")
PAGE = Path(__file__).with_name("page")
WEB_FORMAT = "inrgan-web"
FETCH_COMMAND = "make setup (or: python -m inrgan.export fetch, which runs npm pack)"


def runtime_dir() -> Path:
    """Where the vendored onnxruntime-web lies: ``$INRGAN_ORT_WEB_DIR``, or inside the environment
    (``<sys.prefix>/share/inrgan/onnxruntime-web-<version>``, git-ignored in a project's ``.venv``)."""
    env = os.environ.get("INRGAN_ORT_WEB_DIR")
    return Path(env) if env else Path(sys.prefix) / "share" / "inrgan" / f"onnxruntime-web-{ORT_WEB_VERSION}"


def runtime_files() -> list[Path]:
    """The vendored files, or an ExportError naming the command that fetches them."""
    from ..io import sha256_file

    folder = runtime_dir()
    files = [folder / name for name in ORT_WEB_FILES]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise ExportError(f"onnxruntime-web {ORT_WEB_VERSION} is not vendored in {folder} (missing "
                          f"{', '.join(missing)}): run {FETCH_COMMAND}")
    wrong = [f.name for f in files if sha256_file(f) != ORT_WEB_FILES[f.name]]
    if wrong:
        raise ExportError(f"{folder}: {', '.join(wrong)} are not onnxruntime-web {ORT_WEB_VERSION}'s (sha256): "
                          f"run {FETCH_COMMAND} again")
    return files


def fetch_runtime(dest: Path | None = None) -> Path:
    """Fetch the pinned onnxruntime-web with ``npm pack`` (checked against the registry's integrity) and keep
    the files the page needs, its package.json (the license) and a notice; the folder appears whole."""
    from ..io import sha256_file

    dest = dest or runtime_dir()
    npm = shutil.which("npm")
    if npm is None:
        raise ExportError("npm is not installed: it fetches onnxruntime-web for the web export")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        done = subprocess.run([npm, "pack", "--silent", f"onnxruntime-web@{ORT_WEB_VERSION}", "--pack-destination", tmp],
                              capture_output=True, text=True)
        tgz = Path(tmp) / f"onnxruntime-web-{ORT_WEB_VERSION}.tgz"
        if done.returncode != 0 or not tgz.is_file():
            raise ExportError(f"npm pack onnxruntime-web@{ORT_WEB_VERSION} failed: {done.stderr.strip()[:300]}")
        staged = Path(tmp) / "files"
        staged.mkdir()
        with tarfile.open(tgz) as tar:
            for name in (*[f"dist/{f}" for f in ORT_WEB_FILES], "package.json"):
                try:
                    member = tar.extractfile(f"package/{name}")
                except KeyError:
                    raise ExportError(f"npm's onnxruntime-web@{ORT_WEB_VERSION} has no {name}") from None
                (staged / Path(name).name).write_bytes(member.read())
        wrong = [f for f in ORT_WEB_FILES if sha256_file(staged / f) != ORT_WEB_FILES[f]]
        if wrong:
            raise ExportError(f"npm's onnxruntime-web@{ORT_WEB_VERSION} has other {', '.join(wrong)} than the "
                              "pinned ones (sha256): not vendored")
        (staged / "NOTICE").write_text(
            f"onnxruntime-web {ORT_WEB_VERSION}, from the npm registry (npm pack onnxruntime-web@{ORT_WEB_VERSION}).\n"
            "Copyright (c) Microsoft Corporation. MIT License (see package.json).\n")
        old = dest.with_name(dest.name + ".old")
        shutil.rmtree(old, ignore_errors=True)  # left by an interrupted fetch
        if dest.exists():
            dest.rename(old)
        staged.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    return dest


def _page_meta(cfg, meta: dict) -> dict:
    return {"format": WEB_FORMAT, "family": cfg.family, "resolution": cfg.resolution, "img_channels": cfg.img_channels,
            "z_dim": cfg.z_dim, "c_dim": cfg.c_dim, "class_names": list(cfg.class_names), "frame": cfg.grid,
            "bbox": json.loads(meta["bbox"]), "opset": int(meta["opset"]), "inputs": json.loads(meta["inputs"]),
            "outputs": json.loads(meta["outputs"]), "inrgan_version": meta["inrgan_version"],
            "onnxruntime_web": ORT_WEB_VERSION, "latents": meta["latents"], "interpolation": "z, spherical (slerp)"}


def check_target(out: str | os.PathLike) -> list[Path]:
    """Before any work: the folder can take a web export, and onnxruntime-web is vendored (its files)."""
    _check_target(Path(out))
    return runtime_files()


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file: give a folder for the web export")
    if out.is_dir() and any(out.iterdir()) and not _is_web_export(out):
        raise ExportError(f"{out} is a folder with other files in it: give a new or empty folder, or an earlier "
                          "web export to replace")


def _is_web_export(folder: Path) -> bool:
    try:
        return json.loads((folder / "model.json").read_text()).get("format") == WEB_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def export_web(model: bytes, cfg, meta: dict, out: str | os.PathLike) -> dict:
    """Write the page for the ONNX ``model`` (its bytes, config and metadata) into the folder ``out``.
    Returns {"bytes": the folder's size, "files": {name: bytes}}."""
    out = Path(out)
    ort_files = check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        for name in PAGE_FILES:
            shutil.copyfile(PAGE / name, tmp / name)
        (tmp / "model.onnx").write_bytes(model)
        (tmp / "model.json").write_text(json.dumps(_page_meta(cfg, meta), indent=2))
        (tmp / "ort").mkdir()
        for f in [*ort_files, runtime_dir() / "NOTICE"]:
            if f.is_file():
                shutil.copyfile(f, tmp / "ort" / f.name)
        os.chmod(tmp, 0o755)
        files = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
            out.rename(old / "previous")
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"bytes": sum(files.values()), "files": files}


@contextlib.contextmanager
def serve_static(folder: str | os.PathLike):
    """Serve ``folder`` as static files on a free local port from a thread, quietly; yields its URL (for the
    browser test and the benchmark: a page needs nothing more)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        worker = threading.Thread(target=server.serve_forever, name="inrgan-static")
        worker.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}/"
        finally:
            server.shutdown()
            worker.join()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["fetch"]:
        print("usage: python -m inrgan.export fetch   (vendors onnxruntime-web for inrgan export --format web)")
        return 2
    try:
        runtime_files()
        print(f"onnxruntime-web {ORT_WEB_VERSION} is already in {runtime_dir()}")
        return 0
    except ExportError:
        pass
    try:
        print(f"onnxruntime-web {ORT_WEB_VERSION} in {fetch_runtime()}")
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
