"""Deploying a generator where PyTorch is not: one ONNX graph of the render grid, and a static web page.

- :func:`export_onnx` writes ``G`` as an ONNX file whose inputs are the latents (and class), the truncation
  and the render grid (box, height, width): one file renders any batch, size, box and truncation
  (``inrgan export --format onnx``). :mod:`.graph` says why the grid, not a list of points, is the input.
- :class:`OnnxGenerator` renders such a file through onnxruntime with the calls of a ``Generator``, so
  ``inrgan generate``, ``video`` and ``interpolate`` (in z) take it as ``--checkpoint``.
- :func:`export_web` writes a folder with a page that renders the file in the browser with
  onnxruntime-web (``inrgan export --format web``).

docs/deploy.md has the inputs, outputs, opsets, tolerances and measurements.
"""

from __future__ import annotations

from .graph import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, ExportError, RenderGraph, TracedGrid
from .onnxfile import FORMAT, TOLERANCE, export_onnx, graph_inputs, graph_outputs, onnx_bytes, read
from .session import OnnxGenerator, is_onnx_path
from .web import ORT_WEB_VERSION, export_web

__all__ = ["DEFAULT_OPSET", "FORMAT", "MAX_OPSET", "MIN_OPSET", "ORT_WEB_VERSION", "TOLERANCE", "ExportError",
           "OnnxGenerator", "RenderGraph", "TracedGrid", "export_onnx", "export_web", "graph_inputs",
           "graph_outputs", "is_onnx_path", "onnx_bytes", "read"]
