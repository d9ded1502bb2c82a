"""Fixtures for the dashboard tests: run folders and a headless browser (the live server and the
other helpers the tests import are in ``helpers.py``)."""
from __future__ import annotations

from pathlib import Path

import pytest

from .fixture_run import ENGINE_SCENARIO, engine_run, fixture_city_loader, write_run


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

