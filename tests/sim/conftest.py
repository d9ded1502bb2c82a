"""Fixtures shared by the simulation tests: the small valley city and its scenario."""
from __future__ import annotations

import pytest

from twin.scenario import load_scenario

from .helpers import small_city, write_scenario


@pytest.fixture(scope="module")
def city():
    return small_city()


@pytest.fixture
def scenario(tmp_path):
    return load_scenario(write_scenario(tmp_path))
