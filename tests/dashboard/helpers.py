"""Helpers the dashboard tests import: a free port, a live server for an app, the engine runner."""
from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ENGINE_RUNNER = [sys.executable, str(Path(__file__).parent / "engine_runner.py")]


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
