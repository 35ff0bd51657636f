"""The measurements of docs/deploy.md and docs/performance.md ("ONNX Runtime beside PyTorch"), in one run.

    OMP_NUM_THREADS=1 python benchmarks/deploy.py [--rounds 9] [--zoom-steps 10] [--json FILE]

1. match: the shipped model exported to ONNX and rendered by onnxruntime at the training size (32^2), at
   24x40 over the box (-2.5, -1, 2.5, 1) and at x4 (128^2), seeds 0-7 at psi 1 and 0.7: the largest
   difference to PyTorch's fast path (``inrgan.Generator``, what ``inrgan generate`` renders with) and to the
   reference path (``inrgan.models.Generator``, which the graph is traced from).
2. speed: onnxruntime, the fast path and the reference path on one thread each, in one process, rounds
   interleaved (a round times every path once, in turn): the median ms per call.
3. web: the web export's size, and in headless chromium (selenium, chromium-driver) the time to the first
   frame, the median frame of the 256-pixel canvas at full density over zoom steps (latent, graph, drawing),
   and the graph's run at 128^2, 256^2 and 512^2 through the page's hook.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from inrgan import Generator
from inrgan.export import OnnxGenerator, export_onnx
from inrgan.export.web import ORT_WEB_VERSION, serve_static
from inrgan.models import Generator as ReferenceGenerator
from inrgan.models.generator import seed_latents

MATCH_GRIDS = {"32x32": dict(height=32, width=32), "24x40 over (-2.5, -1, 2.5, 1)":
               dict(height=24, width=40, bbox=(-2.5, -1.0, 2.5, 1.0)), "128x128 (x4)": dict(height=128, width=128)}
SPEED_CASES = [(8, 32), (1, 128), (8, 128)]  # (batch, side)


def match(fast, reference, onnx_model) -> dict:
    z = seed_latents(list(range(8)), fast.z_dim)
    out = {}
    with torch.inference_mode():
        for name, grid in MATCH_GRIDS.items():
            worst = {"fast": 0.0, "reference": 0.0}
            for psi in (1.0, 0.7):
                img = onnx_model(z, truncation_psi=psi, **grid)
                for key, G in (("fast", fast), ("reference", reference)):
                    worst[key] = max(worst[key], float((img - G(z, truncation_psi=psi, **grid)).abs().max()))
            out[name] = worst
    return out


def speed(fast, reference, onnx_model, rounds: int) -> list[dict]:
    rows = []
    paths = {"onnxruntime": onnx_model, "PyTorch fast path": fast, "PyTorch reference path": reference}
    for batch, side in SPEED_CASES:
        z = seed_latents(list(range(batch)), fast.z_dim)
        times = {k: [] for k in paths}
        with torch.inference_mode():
            for G in paths.values():  # warm-up
                G(z, height=side, width=side)
            for _ in range(rounds):
                for name, G in paths.items():
                    t0 = time.perf_counter()
                    G(z, height=side, width=side)
                    times[name].append((time.perf_counter() - t0) * 1000)
        rows.append({"batch": batch, "size": side, **{k: statistics.median(v) for k, v in times.items()}})
    return rows


def web(onnx_path: Path, steps: int) -> dict:
    from click.testing import CliRunner
    from selenium.webdriver.support.ui import WebDriverWait

    from inrgan.cli import main
    from inrgan.serve.browser import chromium_driver

    out = Path(tempfile.mkdtemp()) / "page"
    r = CliRunner().invoke(main, ["export", "--checkpoint", str(onnx_path), "--format", "web", "--out", str(out)])
    if r.exit_code != 0:
        raise SystemExit(r.output)
    files = {str(p.relative_to(out)): p.stat().st_size for p in out.rglob("*") if p.is_file()}
    result = {"bytes": sum(files.values()), "files": files, "onnxruntime_web": ORT_WEB_VERSION}
    driver = chromium_driver(tempfile.mkdtemp(), 1000, 700)
    driver.set_script_timeout(120)
    wait = WebDriverWait(driver, 120, poll_frequency=0.02)
    try:
        with serve_static(out) as url:
            t0 = time.perf_counter()
            driver.get(url)
            wait.until(lambda d: d.execute_script("return window.inrgan && window.inrgan.frames.length > 0"))
            result["first_frame_s"] = time.perf_counter() - t0
            wait.until(lambda d: d.execute_script("return !window.inrgan.busy"))
            for k in range(steps):  # zoom in, and back out halfway, so each frame is a new box
                driver.execute_script(f"window.inrgan.zoomAt({2 if k % 3 != 2 else 0.5}, 150, 110)")
                wait.until(lambda d: d.execute_script("return !window.inrgan.busy"))
            frames = driver.execute_script("return window.inrgan.frames")
            full = [f for f in frames[1:] if not f["preview"]]
            result["frame"] = {"size": f"{full[0]['width']}x{full[0]['height']}", "frames": len(full),
                               "median_ms": statistics.median(f["ms"] for f in full),
                               "median_run_ms": statistics.median(f["run_ms"] for f in full)}
            hook = {}
            z = seed_latents([3], 128).numpy()[0].tolist()
            for side in (128, 256, 512):
                ms = []
                for _ in range(3):
                    r = driver.execute_async_script(
                        "const done = arguments[arguments.length - 1];"
                        "window.inrgan.render(arguments[0]).then(r => done(r.ms), e => done(String(e)))",
                        {"z": z, "bbox": [-1, -1, 1, 1], "height": side, "width": side})
                    ms.append(r)
                hook[f"{side}x{side}"] = statistics.median(ms)
            result["run_ms"] = hook
            result["user_agent"] = driver.execute_script("return navigator.userAgent")
    finally:
        driver.quit()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--zoom-steps", type=int, default=10)
    parser.add_argument("--json", default=None)
    parser.add_argument("--no-web", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    fast = Generator.from_pretrained("fashion-mnist-32")
    reference = ReferenceGenerator.from_pretrained("fashion-mnist-32")
    onnx_path = Path(tempfile.mkdtemp()) / "fashion-mnist-32.onnx"
    export_onnx(fast, onnx_path, source="fashion-mnist-32")
    onnx_model = OnnxGenerator(onnx_path, threads=1)
    results = {"torch": torch.__version__, "threads": 1, "match": match(fast, reference, onnx_model),
               "speed": speed(fast, reference, onnx_model, args.rounds), "onnx_bytes": onnx_path.stat().st_size}
    import onnxruntime

    results["onnxruntime"] = onnxruntime.__version__
    if not args.no_web:
        results["web"] = web(onnx_path, args.zoom_steps)
    print(json.dumps(results, indent=2))
    for name, worst in results["match"].items():
        print(f"match {name}: {worst['fast']:.2e} (fast path), {worst['reference']:.2e} (reference)")
    for row in results["speed"]:
        print(f"batch {row['batch']} at {row['size']}^2: " + ", ".join(
            f"{k} {row[k]:.1f} ms" for k in ("onnxruntime", "PyTorch fast path", "PyTorch reference path")))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
