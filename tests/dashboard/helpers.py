"""Helpers the dashboard tests import: a free port, a live server for an app, the engine runner."""
from __future__ import annotations

import re
import socket
import sys
import threading
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ENGINE_RUNNER = [sys.executable, str(Path(__file__).parent / "engine_runner.py")]


def remote_refs(html: str) -> list[str]:
    """The ``src``/``href`` addresses of a page that are not served by the app itself (absolute or
    protocol-relative, or naming a CDN). The page also carries random tokens, so "cdn" is looked for
    in the addresses, not anywhere in the text (a token once held the letters c-d-n)."""
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", html, flags=re.IGNORECASE)
    return [r for r in refs if re.match(r"(?i)([a-z][a-z0-9+.-]*:|//)", r) or "cdn" in r.lower()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, app):
        from werkzeug.serving import make_server

        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._srv = make_server("127.0.0.1", self.port, app.server, threaded=True)
        self._thread = threading.Thread(target=self._srv.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._srv.shutdown()
        self._thread.join(timeout=10)
        self.app._twin_ctx.jobs.shutdown()


def png_pixels(url: str):
    """RGBA pixels (numpy, rows north to south) of a PNG data URL, as the map's image layers carry."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    assert url.startswith("data:image/png;base64,"), url[:40]
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as im:
        return np.asarray(im.convert("RGBA"))


def hex_rgb(colour: str) -> tuple[int, ...]:
    """``#rrggbb`` -> (r, g, b)."""
    return tuple(int(colour[k:k + 2], 16) for k in (1, 3, 5))


STEP_JS = """() => new Promise((resolve) => {
    const label = document.querySelector('#map-time-label');
    const before = label.innerText;
    let t0 = null;
    document.addEventListener('keydown', () => { t0 = performance.now(); }, {capture: true, once: true});
    const painted = () => requestAnimationFrame(() => resolve(performance.now() - t0));
    const obs = new MutationObserver(() => {
        if (t0 === null || label.innerText === before) return;
        obs.disconnect();
        setTimeout(() => {   // after the same render's effects (the image overlays' setUrl)
            const imgs = [...document.querySelectorAll('img.leaflet-image-layer')].filter(i => !i.complete);
            if (!imgs.length) return painted();
            Promise.all(imgs.map(i => new Promise(r => i.addEventListener('load', r, {once: true})))).then(painted);
        }, 0);
    });
    obs.observe(label, {childList: true, subtree: true, characterData: true});
})"""


def measure_slider_steps(page, n: int = 4) -> list[float]:
    """Milliseconds from an ArrowRight on the slider to the new frame's image and clock label on
    screen (the next animation frame after both), measured in the page."""
    out = []
    page.focus("#map-time [role=slider]")
    for _ in range(n):
        page.evaluate("() => { window.__step = (" + STEP_JS + ")(); }")
        page.keyboard.press("ArrowRight")
        out.append(float(page.evaluate("() => window.__step")))
    return out
