"""Fixtures of the forecast tests (helpers they import are in helpers.py)."""
from __future__ import annotations

import pytest

from .helpers import base_run, forecast_city


@pytest.fixture(scope="session")
def forecast_base(tmp_path_factory):
    """(base run folder with checkpoints at 10/20/30 min, the city): built once for the forecast tests."""
    city = forecast_city()
    return base_run(tmp_path_factory.mktemp("forecast-base"), city), city
