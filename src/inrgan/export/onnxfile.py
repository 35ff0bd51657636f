"""Writing a generator as an ONNX file, and reading one back: its metadata, inputs and checks.

The file is one graph (:class:`~inrgan.export.graph.RenderGraph`, traced by torch's TorchScript-based
exporter) with the inputs of :func:`graph_inputs` and one output, ``image``. Its ``metadata_props`` say
what it is: ``format`` (``inrgan-onnx``), ``format_version``, ``inrgan_version``, ``opset``, ``config`` (the
generator's config as JSON, the same as an export's config.json), ``inputs`` and ``outputs`` (names, types
and shapes, JSON), ``bbox`` (the training box), ``value_range``, ``latents`` (how a seed becomes z),
``verified`` (the largest difference to the PyTorch render, measured at export) and ``source``.

Before anything is written the graph is checked (``onnx.checker``) and rendered by onnxruntime against
the PyTorch render; the file is then written atomically, so a failure leaves nothing at the target.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

from .graph import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, ExportError, RenderGraph, exportable

FORMAT = "inrgan-onnx"
FORMAT_VERSION = 1
VALUE_RANGE = (-1.0, 1.0)
TOLERANCE = 1e-4  # of the image range: the largest difference to the PyTorch render that an export accepts
LATENTS = "z = numpy.random.RandomState(seed).randn(z_dim) as float32, one seed per row (inrgan generate's)"
INSTALL_HINT = "pip install -e '.[onnx]' (make setup installs it)"


def graph_inputs(cfg) -> list[dict[str, Any]]:
    """The graph's inputs, in order: name, element type, shape (a string is a dynamic axis) and meaning."""
    inputs = [
        {"name": "z", "type": "float32", "shape": ["batch", cfg.z_dim], "doc": "latents, one row per image"},
        {"name": "truncation_psi", "type": "float32", "shape": ["psi_batch"],
         "doc": "truncation towards w_avg: one value for the batch, or one per image (1 = none)"},
        {"name": "bbox", "type": "float64", "shape": [4],
         "doc": "the box rendered, (x0, y0, x1, y1): top-left and bottom-right in the training frame"},
        {"name": "height", "type": "int64", "shape": [], "doc": "output rows"},
        {"name": "width", "type": "int64", "shape": [], "doc": "output columns"},
    ]
    if cfg.c_dim:
        inputs.append({"name": "c", "type": "float32", "shape": ["batch", cfg.c_dim],
                       "doc": f"one-hot class, one of {list(cfg.class_names)}"})
    return inputs


def graph_outputs(cfg) -> list[dict[str, Any]]:
    return [{"name": "image", "type": "float32", "shape": ["batch", cfg.img_channels, "height", "width"],
             "doc": "images in about [-1, 1], channels first"}]


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(f"{module} is not installed: {INSTALL_HINT}") from None


def check_opset(opset) -> int:
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"opset {opset!r}: the exporter writes ONNX opsets {MIN_OPSET} to {MAX_OPSET} "
                          f"(default {DEFAULT_OPSET})")
    return opset


def plain_copy(G):
    """``G``'s weights in the plain model of ``inrgan.models`` (the reference path), on the CPU in float32."""
    from ..models.generator import Generator as ModelGenerator

    plain = ModelGenerator.build(G.cfg)
    plain.load_state_dict({k: v.detach().float().cpu() for k, v in G.state_dict().items()})
    return plain.eval()


def example_inputs(G, seeds=(0, 1), psi=(0.7, 1.0), height=None, width=None, bbox=None) -> dict[str, Any]:
    """Numpy inputs of the graph: the latents of ``seeds``, a psi per image, the grid (default: training)."""
    import numpy as np

    from ..models.coords import default_bbox
    from ..models.generator import seed_latents

    feed = {"z": seed_latents(list(seeds), G.cfg.z_dim).numpy(),
            "truncation_psi": np.asarray(psi, np.float32).reshape(-1),
            "bbox": np.asarray(bbox or default_bbox(G.cfg.grid), np.float64),
            "height": np.asarray(height or G.cfg.resolution, np.int64),
            "width": np.asarray(width or G.cfg.resolution, np.int64)}
    if G.cfg.c_dim:
        feed["c"] = np.eye(G.cfg.c_dim, dtype=np.float32)[np.arange(len(seeds)) % G.cfg.c_dim]
    return feed


def torch_render(G, feed: dict[str, Any]):
    """The PyTorch render of a graph's inputs (one psi per image, as the graph takes it): numpy [B, C, H, W]."""
    import numpy as np
    import torch

    z = torch.from_numpy(feed["z"])
    psi = np.broadcast_to(feed["truncation_psi"], (z.shape[0],))
    c = torch.from_numpy(feed["c"]) if "c" in feed else None
    grid = dict(height=int(feed["height"]), width=int(feed["width"]), bbox=tuple(float(v) for v in feed["bbox"]))
    with torch.inference_mode():
        rows = [G(z[i:i + 1], None if c is None else c[i:i + 1], truncation_psi=float(psi[i]), **grid)
                for i in range(z.shape[0])]
    return torch.cat(rows).float().numpy()


def _trace(plain, opset: int) -> bytes:
    """The traced graph as ONNX bytes, without metadata."""
    import torch

    feed = example_inputs(plain)
    names = [i["name"] for i in graph_inputs(plain.cfg)]
    args = tuple(torch.from_numpy(feed[n]) for n in names)
    dynamic = {"z": {0: "batch"}, "truncation_psi": {0: "psi_batch"}, "image": {0: "batch", 2: "height", 3: "width"}}
    if plain.cfg.c_dim:
        dynamic["c"] = {0: "batch"}
    buf = io.BytesIO()
    # With autograd on, fmm_weight takes its out-of-place branch (its in-place one has no ONNX form).
    plain.requires_grad_(True)
    try:
        with warnings.catch_warnings(), torch.enable_grad():
            warnings.simplefilter("ignore")  # the tracer's notes on shape checks and the legacy exporter's notice
            torch.onnx.export(RenderGraph(plain), args, buf, dynamo=False, input_names=names,
                              output_names=["image"], dynamic_axes=dynamic, opset_version=opset,
                              do_constant_folding=True)
    except ExportError:
        raise
    except Exception as e:  # the exporter's own errors: an operator without an ONNX form at this opset
        raise ExportError(f"torch.onnx could not export this model at opset {opset}: "
                          f"{str(e).strip().splitlines()[0][:300]}") from e
    finally:
        plain.requires_grad_(False)
    return buf.getvalue()


def _type_name(elem_type: int) -> str:
    onnx = _require("onnx")
    return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name


def _described(value_info) -> dict[str, Any]:
    """A graph input or output as {name, type, shape} (dynamic axes by name)."""
    t = value_info.type.tensor_type
    shape = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim]
    return {"name": value_info.name, "type": _type_name(t.elem_type), "shape": shape}


def _declare_shape(value_info, shape: list) -> None:
    dims = value_info.type.tensor_type.shape.dim
    if len(dims) != len(shape):
        raise ExportError(f"the traced output {value_info.name!r} has {len(dims)} dimensions, not {len(shape)}")
    for dim, want in zip(dims, shape, strict=True):
        if isinstance(want, str):
            dim.dim_param = want
        else:
            dim.dim_value = want


def _strip(spec: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v[k] for k in ("name", "type", "shape")} for v in spec]


def verify(data: bytes, G, threads: int = 1) -> float:
    """The largest difference between onnxruntime's render of the graph ``data`` and ``G``'s, over the
    training grid and an odd grid over an off-centre box, with a psi per image."""
    import numpy as np

    session = new_session(data, threads)
    worst = 0.0
    R = G.cfg.resolution
    for grid in ({}, {"height": R // 2 + 3, "width": R + 5, "bbox": _off_centre(G.cfg.grid)}):
        feed = example_inputs(G, **grid)
        out = session.run(None, feed)[0]
        worst = max(worst, float(np.abs(out - torch_render(G, feed)).max()))
    return worst


def _off_centre(frame: str) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (-1.0, -1.0, 1.0, 1.0) if frame == "center" else (-1.0, 1.0, 1.0, -1.0)
    return (x0 * 1.7 + 0.3, y0 * 0.6 - 0.1, x1 * 1.7 + 0.3, y1 * 0.6 - 0.1)


def new_session(data: bytes | str | os.PathLike, threads: int = 1):
    """An onnxruntime CPU session of a model's bytes or file, on ``threads`` intra-op threads."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    source = data if isinstance(data, bytes) else str(data)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def onnx_bytes(G, opset: int = DEFAULT_OPSET, source: str | None = None, threads: int = 1) -> tuple[bytes, dict]:
    """``G`` as the bytes of a checked and verified inrgan ONNX file, and its metadata."""
    check_opset(opset)
    exportable(G)
    onnx = _require("onnx")
    _require("onnxruntime")
    from .. import __version__
    from ..models.coords import default_bbox

    plain = plain_copy(G)
    model = onnx.load_from_string(_trace(plain, opset))
    cfg = plain.cfg
    inputs, outputs = graph_inputs(cfg), graph_outputs(cfg)
    _declare_shape(model.graph.output[0], outputs[0]["shape"])  # the tracer leaves the channels unnamed
    found = [_described(v) for v in model.graph.input], [_described(v) for v in model.graph.output]
    if found != (_strip(inputs), _strip(outputs)):
        raise ExportError(f"the traced graph's inputs and outputs {found} are not {_strip(inputs)}, {_strip(outputs)}")
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "inrgan_version": __version__,
            "opset": str(opset), "config": json.dumps(cfg.to_dict()), "inputs": json.dumps(inputs),
            "outputs": json.dumps(outputs), "bbox": json.dumps(default_bbox(cfg.grid)),
            "value_range": json.dumps(VALUE_RANGE), "latents": LATENTS, "source": str(source or "")}
    model.producer_name, model.producer_version = "inrgan", __version__
    model.doc_string = (f"inrgan {cfg.family} generator, {cfg.resolution}^2 training grid, {cfg.img_channels} "
                        "channel(s): z (+ c) and a render grid (bbox, height, width) -> image")
    _set_metadata(model, meta)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"the exported graph is not valid ONNX: {str(e).strip().splitlines()[0][:300]}") from e
    diff = verify(model.SerializeToString(), plain, threads)
    limit = TOLERANCE * (VALUE_RANGE[1] - VALUE_RANGE[0])
    if not diff <= limit:
        raise ExportError(f"the exported graph renders {diff:.3g} away from the PyTorch model (allowed {limit:g}): "
                          "not written")
    meta["verified"] = json.dumps({"max_abs_diff": diff, "tolerance": limit})
    _set_metadata(model, meta)
    return model.SerializeToString(), meta


def _set_metadata(model, meta: dict[str, str]) -> None:
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def export_onnx(G, out: str | os.PathLike, opset: int = DEFAULT_OPSET, source: str | None = None,
                threads: int = 1) -> dict[str, str]:
    """Write ``G`` to ``out`` (a ``.onnx`` file) as one graph of any batch, grid and truncation; returns the
    file's metadata. Nothing is written unless the graph is valid and renders as ``G`` does."""
    from ..io import atomic_write_bytes

    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise ExportError(f"{out}: name the ONNX file *.onnx (that is how --checkpoint recognises one)")
    if out.is_dir():
        raise ExportError(f"{out} is a folder: give a file name for the ONNX graph")
    data, meta = onnx_bytes(G, opset, source, threads)
    atomic_write_bytes(out, data)
    return meta


# ----------------------------------------------------------------------------------------------
# Reading one back.


def read(path: str | os.PathLike, threads: int = 1):
    """(onnxruntime session, metadata) of an inrgan ONNX file, or an :class:`ExportError` that says what the
    file is instead."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such ONNX file")
    try:
        session = new_session(path, threads)
    except ExportError:
        raise
    except Exception as e:  # onnxruntime's errors for a file that is not a model
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"{path}: not a readable ONNX model ({detail[:200]})") from None
    meta = dict(session.get_modelmeta().custom_metadata_map)
    if meta.get("format") != FORMAT:
        raise ExportError(f"{path}: an ONNX model, but not an inrgan generator (its metadata has no "
                          f"format={FORMAT!r}); write one with `inrgan export --format onnx`")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise ExportError(f"{path}: inrgan ONNX format version {meta.get('format_version')!r}; this inrgan "
                          f"reads version {FORMAT_VERSION}")
    try:
        from ..config import generator_config_from_dict

        cfg = generator_config_from_dict(json.loads(meta["config"]))
        declared = json.loads(meta["inputs"])
    except (KeyError, TypeError, ValueError) as e:
        raise ExportError(f"{path}: its inrgan metadata is damaged ({e})") from None
    names = [i.name for i in session.get_inputs()]
    if names != [i["name"] for i in declared] or _strip(declared) != _strip(graph_inputs(cfg)):
        raise ExportError(f"{path}: its graph inputs {names} do not match its metadata's")
    return session, cfg, meta
