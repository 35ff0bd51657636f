"""inrgan serve: tiles equal direct renders and join seamlessly, the cache keeps its bound, bad requests
get a 400 that says why, and the page works in a real headless browser."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("flask", reason="flask (the serve extra) is not installed")

from inrgan import Generator, get_preset  # noqa: E402
from inrgan.rendering.images import to_uint8  # noqa: E402
from inrgan.serve.app import create_app  # noqa: E402
from inrgan.serve.tiles import Limits, tile_box  # noqa: E402


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    G = Generator(get_preset("cpu-32", 16, 1).G).eval().requires_grad_(False)
    with torch.no_grad():  # non-zero biases and constants: images with structure at every scale
        for name, p in G.named_parameters():
            if p.ndim == 1 or name.endswith("const"):
                p.copy_(torch.randn(p.shape) * 0.5)
    return G


@pytest.fixture
def client(G):
    return create_app(G).test_client()


def _png(response) -> np.ndarray:
    assert response.status_code == 200, response.get_data(as_text=True)
    return np.asarray(Image.open(io.BytesIO(response.data)))


def _direct(G, seed: int, box, height: int, width: int, psi: float = 1.0) -> np.ndarray:
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    with torch.inference_mode():
        return to_uint8(G(z, truncation_psi=psi, height=height, width=width, bbox=box))[0, ..., 0]


def test_a_tile_is_the_render_of_its_box(G, client):
    for z, x, y in ((0, 0, 0), (2, 1, 3), (3, -2, 9)):  # the box, a zoomed tile, a tile past the border
        tile = _png(client.get(f"/api/tile?z={z}&x={x}&y={y}&size=64&seed=3&psi=0.7"))
        direct = _direct(G, 3, tile_box(G.cfg.grid, z, x, y), 64, 64, psi=0.7)
        assert np.abs(tile.astype(int) - direct).max() <= 1, (z, x, y)


def test_neighbouring_tiles_join_into_the_render_of_their_union(G, client):
    left = _png(client.get("/api/tile?z=1&x=0&y=0&size=64&seed=5"))
    right = _png(client.get("/api/tile?z=1&x=1&y=0&size=64&seed=5"))
    whole = _direct(G, 5, (-1.0, -1.0, 1.0, 0.0), 64, 128)  # the top half of the training box
    assert np.abs(np.concatenate([left, right], axis=1).astype(int) - whole).max() <= 1
    assert np.abs(left[:, -1].astype(int) - right[:, 0]).mean() < np.abs(left[:, 0].astype(int) - right[:, 0]).mean()


def test_an_export_and_an_interpolation(G, client):
    img = _png(client.get("/api/export?x0=-2&y0=-1&x1=2&y1=1&width=96&height=48&seed=2"))
    assert img.shape == (48, 96)
    assert np.abs(img.astype(int) - _direct(G, 2, (-2, -1, 2, 1), 48, 96)).max() <= 1
    for space in ("z", "w", "inr"):
        start = _png(client.get(f"/api/tile?z=0&x=0&y=0&size=64&seed=2&seed2=7&t=0&space={space}"))
        end = _png(client.get(f"/api/tile?z=0&x=0&y=0&size=64&seed=2&seed2=7&t=1&space={space}"))
        assert np.abs(start.astype(int) - _direct(G, 2, None, 64, 64)).max() <= 1, space
        assert np.abs(end.astype(int) - _direct(G, 7, None, 64, 64)).max() <= 1, space


def test_the_gallery_is_one_batch_of_the_seeds_tiles(G, monkeypatch):
    app = create_app(G)
    calls = []
    real = G.synthesis.forward
    monkeypatch.setattr(G.synthesis, "forward", lambda ws, **kw: calls.append(ws.shape[0]) or real(ws, **kw))
    strip = _png(app.test_client().get("/api/gallery?first=3&count=5&size=64&psi=0.8"))
    assert strip.shape == (64, 5 * 64) and calls == [5]
    for k in range(5):
        direct = _direct(G, 3 + k, None, 64, 64, psi=0.8)
        assert np.abs(strip[:, 64 * k:64 * (k + 1)].astype(int) - direct).max() <= 1, k


def test_the_tile_cache_stays_within_its_bound_and_serves_repeats(G, client, monkeypatch):
    urls = [f"/api/tile?z=4&x={x}&y=3&size=64&seed=1" for x in range(12)]
    bound = sum(len(client.get(u).data) for u in urls) // 3  # room for about a third of them
    app = create_app(G, Limits(cache_bytes=bound))
    renderer, client = app.config["renderer"], app.test_client()
    renders = []
    real = renderer.render
    monkeypatch.setattr(renderer, "render", lambda *a, **k: renders.append(1) or real(*a, **k))
    for u in urls:
        _png(client.get(u))
        assert renderer.tiles.bytes <= bound
    assert 2 <= len(renderer.tiles) < 12 and len(renders) == 12
    _png(client.get("/api/tile?z=4&x=11&y=3&size=64&seed=1"))  # the latest tile is still there
    assert len(renders) == 12


@pytest.mark.parametrize("query,message", [
    ("/api/tile?z=0&x=0&y=0&seed=abc", "seed='abc' is not an integer"),
    ("/api/tile?z=0&x=0&y=0&psi=nan", "psi=nan must be a finite number"),
    ("/api/tile?z=99&x=0&y=0", "z=99 is outside"),
    ("/api/tile?x=0&y=0", "missing parameter 'z'"),
    ("/api/tile?z=0&x=0&y=0&size=100", "size=100"),
    ("/api/tile?z=0&x=500&y=0", "more than 16 training boxes"),
    ("/api/tile?z=0&x=0&y=0&space=q&seed2=1&t=0.5", "space='q'"),
    ("/api/tile?z=0&x=0&y=0&class=2", "unconditional"),
    ("/api/export?x0=nan&y0=0&x1=1&y1=1&width=8&height=8", "x0=nan"),
    ("/api/export?x0=0&y0=0&x1=1&y1=1&width=5000&height=5000", "outside|more than"),
    ("/api/export?x0=0&y0=0&x1=0&y1=1&width=8&height=8", "is empty"),
    ("/api/gallery?count=1000", "count=1000 is outside"),
])
def test_bad_requests_get_a_400_that_says_why(client, query, message):
    import re

    r = client.get(query)
    assert r.status_code == 400 and re.search(message, r.get_json()["error"]), r.get_data(as_text=True)
    assert "Traceback" not in r.get_data(as_text=True)


def test_static_files_without_traversal_and_the_rate_limit(G):
    app = create_app(G, Limits(requests_per_s=3))
    client = app.test_client()
    assert client.get("/").status_code == 200 and b"leaflet.js" in client.get("/").data
    assert client.get("/static/vendor/leaflet-1.9.4/LICENSE").status_code == 200
    for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py"):
        assert client.get(path).status_code == 404, path
    codes = [client.get("/api/info").status_code for _ in range(6)]
    assert codes[:3] == [200] * 3 and 429 in codes[3:]


# ----------------------------------------------------------------------------------------------
# The page in a real browser.


@pytest.fixture(scope="module")
def live_server(G):
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, create_app(G), threaded=True)
    server.daemon_threads = False  # server_close() below waits for the requests still being rendered
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join()


def _browser(tmp_path):
    from inrgan.serve import browser

    if not browser.available():
        pytest.skip("chromium and chromium-driver are not installed (make setup installs them where apt-get is)")
    return browser.chromium_driver(tmp_path / "profile")


TILE_PIXELS = """
// once every tile of this zoom has loaded: the one with the most variation, its URL and its pixels
// (red channel) as drawn
const tiles = [...document.querySelectorAll('img.leaflet-tile')].filter(i => i.src.includes('z=' + arguments[0] + '&'));
if (!tiles.length || tiles.some(i => !i.classList.contains('leaflet-tile-loaded'))) return null;
let best = null;
for (const img of tiles) {
  const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  const px = Array.from(g.getImageData(0, 0, c.width, c.height).data.filter((_, k) => k % 4 === 0));
  const mean = px.reduce((a, b) => a + b, 0) / px.length;
  const variance = px.reduce((a, b) => a + (b - mean) ** 2, 0) / px.length;
  if (!best || variance > best[2]) best = [img.src, px, variance];
}
return best;
"""


def _wait(driver, script, *args, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: d.execute_script(script, *args))


def test_the_page_zooms_pans_and_slides_in_a_headless_browser(G, live_server, tmp_path):
    from urllib.parse import parse_qs, urlparse

    driver = _browser(tmp_path)
    try:
        driver.get(live_server + "/")
        _wait(driver, "return window.inrganViewer && document.querySelectorAll('img.leaflet-tile-loaded').length > 0")
        driver.save_screenshot(str(tmp_path / "start.png"))
        for _ in range(3):  # three levels of zoom
            driver.execute_script("window.inrganViewer.map.zoomIn(1, {animate: false})")
        zoom = driver.execute_script("return window.inrganViewer.map.getZoom()")
        assert zoom == 4
        src, pixels, _ = _wait(driver, TILE_PIXELS, zoom)
        q = {k: v[0] for k, v in parse_qs(urlparse(src).query).items()}
        z, x, y, size = (int(q[k]) for k in ("z", "x", "y", "size"))
        expected = _direct(G, int(q["seed"]), tile_box(G.cfg.grid, z, x, y), size, size, float(q["psi"]))
        shown = np.array(pixels).reshape(size, size)
        assert shown.std() > 1 and np.abs(shown - expected).max() <= 1  # the tile the browser shows
        driver.execute_script("window.inrganViewer.map.setZoom(1, {animate: false});"
                              "window.inrganViewer.map.panBy([700, 0], {animate: false})")  # past the right border
        _wait(driver, "return [...document.querySelectorAll('img.leaflet-tile-loaded')]"
                      ".some(i => /[?&]x=[2-9]/.test(i.src))")
        driver.execute_script("const s = document.getElementById('psi'); s.value = 0.5;"
                              "s.dispatchEvent(new Event('input'))")
        _wait(driver, "return [...document.querySelectorAll('img.leaflet-tile-loaded')]"
                      ".some(i => i.src.includes('psi=0.5'))")
        driver.save_screenshot(str(tmp_path / "panned.png"))
    finally:
        driver.quit()
    assert (tmp_path / "start.png").stat().st_size > 1000
