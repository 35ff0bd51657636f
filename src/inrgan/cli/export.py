"""inrgan export: a generator as one ONNX graph of any grid, or as a static page that renders it in the browser."""

from __future__ import annotations

import click

from ..runtime import set_threads
from . import threads_option


@click.command()
@click.option("--checkpoint", required=True,
              help="Run directory, export, a shipped model's name (fashion-mnist-32), or (for --format web) an "
                   "ONNX file written by --format onnx.")
@click.option("--format", "fmt", type=click.Choice(["onnx", "web"]), default="onnx", show_default=True,
              help="onnx: one .onnx file; web: a folder with a page that renders it in the browser.")
@click.option("--out", required=True, type=click.Path(), help="The .onnx file, or the folder of the page.")
@click.option("--opset", type=int, default=None, help="ONNX opset, 13 to 20 (default 17).")
@threads_option
def command(checkpoint, fmt, out, opset, threads) -> None:
    """Export a generator: latents, class, truncation and render grid in, pixels out (docs/deploy.md)."""
    set_threads(threads)
    import torch

    from ..export import DEFAULT_OPSET, ExportError, is_onnx_path
    from ..export.onnxfile import export_onnx, onnx_bytes, read
    from ..export.web import check_target, export_web
    from .generate import load_generator

    opset = DEFAULT_OPSET if opset is None else opset
    try:
        if fmt == "web":
            check_target(out)  # before the export's work
        if is_onnx_path(checkpoint):
            if fmt == "onnx":
                raise ExportError(f"{checkpoint} is already an ONNX file: export from the PyTorch checkpoint it came "
                                  "from, or use --format web")
            _, cfg, meta = read(checkpoint)
            if opset != int(meta["opset"]):
                raise ExportError(f"{checkpoint} has opset {meta['opset']}: --opset does not convert an ONNX file")
            data = open(checkpoint, "rb").read()
        else:
            G = load_generator(checkpoint)
            if fmt == "onnx":
                meta = export_onnx(G, out, opset, source=str(checkpoint), threads=torch.get_num_threads())
                click.echo(_summary(out, meta))
                return
            data, meta = onnx_bytes(G, opset, source=str(checkpoint), threads=torch.get_num_threads())
            cfg = G.cfg
        result = export_web(data, cfg, meta, out)
    except ExportError as e:
        raise click.ClickException(str(e)) from None
    ort_bytes = sum(v for k, v in result["files"].items() if k.startswith("ort"))
    click.echo(f"wrote {out}: {len(result['files'])} files, {result['bytes'] / 1e6:.1f} MB (onnxruntime-web "
               f"{ort_bytes / 1e6:.1f} MB, model.onnx {result['files']['model.onnx'] / 1e6:.1f} MB). Serve it as "
               f"static files, e.g. python -m http.server -d {out}, and open http://127.0.0.1:8000/")


def _summary(out, meta: dict) -> str:
    import json
    from pathlib import Path

    inputs = ", ".join(f"{i['name']} {i['type']}{i['shape']}" for i in json.loads(meta["inputs"]))
    verified = json.loads(meta["verified"])
    return (f"wrote {out} ({Path(out).stat().st_size / 1e6:.1f} MB, opset {meta['opset']}): inputs {inputs}; "
            f"onnxruntime renders it within {verified['max_abs_diff']:.2g} of PyTorch")
