"""Fixtures for the dashboard tests: run folders, a live server on a free port, a headless browser."""
from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fixture_run import fixture_city_loader, write_run  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    write_run(root / "fixture-a", scale=1.0, seed=0, name="Mưa thiết kế 10 năm", city="fixture")
    write_run(root / "fixture-b", scale=1.5, seed=1, name="Bão Molave — đê tạm", city="fixture")
    bad = root / "corrupt-run"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    (bad / "fields.nc").write_bytes(b"this is not a netcdf file")
    (bad / "incidents.parquet").write_bytes(b"PAR1garbage")
    return root


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


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1366, "height": 768})
    pg = ctx.new_page()
    pg.console_errors = []
    pg.on("console", lambda m: pg.console_errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.console_errors.append(f"pageerror: {e}"))
    yield pg
    ctx.close()


@pytest.fixture
def city_loader():
    return fixture_city_loader
