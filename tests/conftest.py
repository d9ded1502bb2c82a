"""Shared test fixtures, and the markers of tests that need a service.

A test that uses the ``broker`` fixture is marked ``mosquitto``, one that uses ``page`` or ``browser``
is marked ``browser`` (``pytest -m "not mosquitto and not browser"`` runs without them); tests that
start the service themselves carry the mark explicitly.
"""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


#: Debian's chromium (make services installs it)
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser():
    """ONE headless Chromium for the whole session: Playwright's sync API cannot be started twice in
    one process while the first is running (a module-scoped second instance fails with "using
    Playwright Sync API inside the asyncio loop")."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


# fixture -> marker of the service it needs
SERVICE_FIXTURES = {"broker": "mosquitto", "page": "browser", "browser": "browser"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture in SERVICE_FIXTURES.keys() & set(item.fixturenames):
            item.add_marker(SERVICE_FIXTURES[fixture])
