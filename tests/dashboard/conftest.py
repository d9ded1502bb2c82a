"""Fixtures for the dashboard tests: run folders, a live server on a free port, a headless browser."""
from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

import pytest

from .fixture_run import ENGINE_SCENARIO, engine_run, fixture_city_loader, write_run

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    write_run(root / "fixture-a", scale=1.0, seed=0, name="Mưa thiết kế 10 năm", city="fixture")
    write_run(root / "fixture-b", scale=1.5, seed=1, name="Bão Molave — đê tạm", city="fixture")
    # two runs written by the real engine (twin.scenario -> twin.build -> twin.simulation)
    engine_run(root / "engine-rp10", name="rp10", description="Mưa thiết kế 10 năm (động cơ thật)", rp=10)
    engine_run(root / "engine-rp100", name="rp100", description="Mưa thiết kế 100 năm (động cơ thật)", rp=100)
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
    ctx.set_default_timeout(30000)
    pg = ctx.new_page()
    pg.console_errors = []
    pg.on("console", lambda m: pg.console_errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.console_errors.append(f"pageerror: {e}"))
    yield pg
    ctx.close()


@pytest.fixture
def city_loader():
    return fixture_city_loader


@pytest.fixture(scope="session")
def scenarios_dir(tmp_path_factory) -> Path:
    """Base scenarios for the builder: one on the fixture city."""
    d = tmp_path_factory.mktemp("scenarios")
    (d / "fixture_base.yaml").write_text(ENGINE_SCENARIO.format(
        name="fixture_base", description="Kịch bản gốc trên lưới thử", rp=10, duration="1h", seed=1), encoding="utf-8")
    return d


ENGINE_RUNNER = [sys.executable, str(Path(__file__).parent / "engine_runner.py")]
