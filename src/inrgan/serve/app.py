"""The viewer's web server (Flask): the page, the model's description, tiles and exports.

    GET /                      the viewer (static/index.html)
    GET /static/<file>         its script, style and the vendored Leaflet (Flask serves them, no traversal)
    GET /api/info              resolution, channels, classes, the training box, the limits
    GET /api/tile              z, x, y, size, and the view: seed, psi, class, seed2, t, space -> PNG
    GET /api/gallery           first, count, size, psi, class -> one PNG strip of seeds, rendered in one batch
    GET /api/export            x0, y0, x1, y1, width, height and the view -> PNG, rendered in tiles

Every bad parameter is a 400 with a JSON ``{"error": ...}`` that says which and why; too many requests
from one client a 429. Flask's server is threaded, so a slow render holds up only its own request.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

from flask import Flask, Response, jsonify, request, send_from_directory

from ..models.coords import default_bbox
from .tiles import BadRequest, Limits, Renderer, View, check_box, png_bytes, tile_box

STATIC = Path(__file__).with_name("static")
SPACES = ("z", "w", "inr")


def _number(args, name: str, kind: type, default, lo, hi):
    """Query parameter ``name`` as ``kind`` (int or float) within [lo, hi], ``default`` when absent."""
    raw = args.get(name)
    if raw is None:
        if default is None:
            raise BadRequest(f"missing parameter {name!r}")
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise BadRequest(f"{name}={raw!r} is not {'an integer' if kind is int else 'a number'}") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise BadRequest(f"{name}={raw} must be a finite number in [{lo:g}, {hi:g}]" if kind is float
                         else f"{name}={value} is outside [{lo}, {hi}]")
    return value


def _int(args, name: str, default: int | None = None, lo: int = -(2**31), hi: int = 2**31 - 1) -> int:
    return _number(args, name, int, default, lo, hi)


def _float(args, name: str, default: float | None = None, lo: float = -math.inf, hi: float = math.inf) -> float:
    return _number(args, name, float, default, lo, hi)


def parse_view(args, G) -> View:
    """The view a request names, or BadRequest."""
    class_index = None
    if G.c_dim:
        raw = args.get("class", "0")
        if raw in G.class_names:
            class_index = G.class_names.index(raw)
        else:
            class_index = _int(args, "class", 0, 0, G.c_dim - 1)
    elif args.get("class") is not None:
        raise BadRequest("this model is unconditional: it takes no class")
    seed2 = _int(args, "seed2", lo=0) if args.get("seed2") not in (None, "") else None
    space = args.get("space", "w")
    if space not in SPACES:
        raise BadRequest(f"space={space!r}: choose one of {', '.join(SPACES)}")
    return View(seed=_int(args, "seed", 0, 0), psi=_float(args, "psi", 1.0, -2.0, 2.0), class_index=class_index,
                seed2=seed2, t=_float(args, "t", 0.0, 0.0, 1.0), space=space)


class RateLimiter:
    """A token bucket per client address."""

    def __init__(self, per_s: float):
        self.per_s, self._buckets, self._lock = per_s, {}, threading.Lock()

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client, (self.per_s, now))
            tokens = min(self.per_s, tokens + (now - last) * self.per_s)
            if tokens < 1:
                self._buckets[client] = (tokens, now)
                return False
            self._buckets[client] = (tokens - 1, now)
            return True


def create_app(G, limits: Limits | None = None) -> Flask:
    """The viewer's app for generator ``G``."""
    limits = limits or Limits()
    renderer = Renderer(G, limits)
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.config["renderer"] = renderer
    rate = RateLimiter(limits.requests_per_s)

    @app.errorhandler(BadRequest)
    def bad_request(e: BadRequest):
        return jsonify(error=str(e)), 400

    @app.before_request
    def limit_rate():
        if request.path.startswith("/api/") and not rate.allow(request.remote_addr or "?"):
            return jsonify(error=f"more than {limits.requests_per_s:g} requests per second"), 429
        return None

    @app.get("/")
    def index():
        return send_from_directory(STATIC, "index.html")

    @app.get("/api/info")
    def info():
        return jsonify(resolution=G.resolution, channels=G.img_channels, classes=list(G.class_names),
                       bbox=default_bbox(G.cfg.grid), tile_sizes=limits.tile_sizes, max_zoom=limits.max_zoom,
                       max_export_pixels=limits.max_export_pixels)

    _image_routes(app, G, renderer, limits)
    return app


def _image_routes(app: Flask, G, renderer: Renderer, limits: Limits) -> None:
    """The routes that render: map tiles, the seed gallery and the export of a view."""

    @app.get("/api/tile")
    def tile():
        args = request.args
        z = _int(args, "z", lo=0, hi=limits.max_zoom)
        x, y = _int(args, "x"), _int(args, "y")
        size = _int(args, "size", 256)
        if size not in limits.tile_sizes:
            raise BadRequest(f"size={size}: tiles are {', '.join(map(str, limits.tile_sizes))} pixels")
        check_box(G.cfg.grid, tile_box(G.cfg.grid, z, x, y), limits)
        png = renderer.tile_png(parse_view(args, G), z, x, y, size)
        return Response(png, mimetype="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/gallery")
    def gallery():
        args = request.args
        first, count = _int(args, "first", 0, 0), _int(args, "count", 24, 1, 64)
        size = _int(args, "size", 64)
        if size not in limits.tile_sizes:
            raise BadRequest(f"size={size}: gallery images are {', '.join(map(str, limits.tile_sizes))} pixels")
        base = parse_view(args, G)
        views = [View(seed=first + k, psi=base.psi, class_index=base.class_index) for k in range(count)]
        return Response(renderer.gallery_png(views, size), mimetype="image/png",
                        headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/export")
    def export():
        args = request.args
        box = tuple(_float(args, k) for k in ("x0", "y0", "x1", "y1"))
        check_box(G.cfg.grid, box, limits)
        width, height = _int(args, "width", lo=1, hi=limits.max_export_pixels), _int(args, "height", lo=1,
                                                                                     hi=limits.max_export_pixels)
        if width * height > limits.max_export_pixels:
            raise BadRequest(f"{width}x{height} is more than the {limits.max_export_pixels:,} pixels an export may have")
        tile = limits.export_tile if G.cfg.pixel_independent else None
        image = renderer.render(parse_view(args, G), box, height, width, tile=tile)
        return Response(png_bytes(image), mimetype="image/png",
                        headers={"Content-Disposition": 'attachment; filename="inrgan-view.png"'})
