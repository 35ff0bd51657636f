"""The viewer of a model: a screenshot in headless chromium and the tile latency over HTTP.

    python benchmarks/viewer.py --checkpoint fashion-mnist-32 --screenshot docs/results/viewer.png

Starts `inrgan serve`'s app on a free local port in this process, opens it in chromium (selenium and
chromium-driver), zooms one level in, and saves the page. Then it times uncached tile requests over
HTTP, one at a time: 256-pixel tiles at zoom 0 (the training box, at 8x a 32^2 model's density) and at
zoom 4 (16x further in), each a new seed so that nothing comes from the cache, median of ``--rounds``;
and the seed gallery rendered as one batch against the same seeds as single tiles.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import urllib.request


def screenshot(url: str, path: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    from inrgan.serve.browser import chromium_driver

    driver = chromium_driver(tempfile.mkdtemp(), 1100, 640)
    try:
        driver.get(url)
        WebDriverWait(driver, 120).until(lambda d: d.execute_script(
            "return window.inrganViewer && document.querySelectorAll('img.leaflet-tile-loaded').length >= 4"
            " && performance.getEntriesByType('resource').some(e => e.name.includes('/api/gallery')"
            " && e.responseEnd > 0)"))
        time.sleep(1.0)
        driver.save_screenshot(path)
    finally:
        driver.quit()


def tile_ms(url: str, z: int, rounds: int, first_seed: int) -> float:
    times = []
    for k in range(rounds):
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"{url}api/tile?z={z}&x={2**z // 2}&y={2**z // 2}&size=256&seed={first_seed + k}") as r:
            r.read()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def gallery_ratio(url: str, count: int = 24) -> str:
    """The gallery of ``count`` seeds as one batch against ``count`` single 64^2 tiles, uncached (new psi)."""
    def get(path: str) -> float:
        t0 = time.perf_counter()
        with urllib.request.urlopen(url + path) as r:
            r.read()
        return time.perf_counter() - t0

    rounds = []
    for k in range(3):
        psi = 0.5 + 0.01 * k
        batch = get(f"api/gallery?first=0&count={count}&size=64&psi={psi}")
        single = sum(get(f"api/tile?z=0&x=0&y=0&size=64&seed={s}&psi={psi + 0.005}") for s in range(count))
        rounds.append((batch, single))
    batch, single = min(r[0] for r in rounds), min(r[1] for r in rounds)
    return (f"gallery of {count} seeds at 64^2: {batch * 1000:.0f} ms in one batch, {single * 1000:.0f} ms as "
            f"{count} tiles ({single / batch:.1f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="fashion-mnist-32")
    ap.add_argument("--screenshot", default=None)
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()

    from werkzeug.serving import make_server

    from inrgan import Generator
    from inrgan.runtime import set_threads
    from inrgan.serve.app import create_app

    print(f"threads: {set_threads(None)}")
    server = make_server("127.0.0.1", 0, create_app(Generator.from_pretrained(args.checkpoint)), threaded=True)
    server.daemon_threads = False  # server_close() waits for the requests still being rendered
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/"
    if args.screenshot:
        screenshot(url, args.screenshot)
        print(f"wrote {args.screenshot}")
    tile_ms(url, 0, 2, 10_000)  # warm-up
    for z in (0, 4):
        print(f"zoom {z}: {tile_ms(url, z, args.rounds, 1000 * (z + 1)):.1f} ms per uncached 256x256 tile")
    print(gallery_ratio(url))
    server.shutdown()
    server.server_close()
    thread.join()


if __name__ == "__main__":
    main()
