"""Fixtures for the people/services tests (the helpers themselves live in ``helpers.py``)."""
from __future__ import annotations

import pytest

from .helpers import synthetic_city


@pytest.fixture
def city():
    return synthetic_city()
