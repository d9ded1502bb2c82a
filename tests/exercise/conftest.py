"""A headless Chromium for the exercise tests (the helpers live in ``helpers.py``)."""
from __future__ import annotations

import pytest

from .helpers import CHROMIUM


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()
