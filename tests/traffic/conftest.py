"""Fixtures for the traffic tests (the helpers themselves live in ``helpers.py``)."""
from __future__ import annotations

import pytest

from twin.roads import RoadNetwork


@pytest.fixture
def grid5():
    return RoadNetwork.grid(5, signal_phases_s=(45.0, 45.0))
