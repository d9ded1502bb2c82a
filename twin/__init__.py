"""Tam Kỳ Twin: a digital-twin simulation engine for the coastal city of Tam Kỳ.

The public API is re-exported here and imported lazily, so ``import twin`` stays cheap and a
component's heavy dependencies load only when it is used.
"""
from __future__ import annotations

import importlib
import os

# Spinning OpenMP barriers collapse throughput when the machine is shared (2-thread runs 5-10x
# slower under load). Waiting threads sleep unless the user asked otherwise; must be set before the
# OpenMP runtime starts, i.e. before twin._core is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# The one version source: pyproject.toml reads it ([tool.setuptools.dynamic]); keep it a plain literal.
__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Terrain": "twin.terrain",
    "FloodModel": "twin.flood",
    "RoadNetwork": "twin.roads",
    "TrafficModel": "twin.traffic",
    "City": "twin.city",
    "load_city": "twin.city",
    "Scenario": "twin.scenario",
    "load_scenario": "twin.scenario",
    "build_twin": "twin.build",
    "Simulation": "twin.simulation",
    "run_scenario": "twin.simulation",
    "PeopleModel": "twin.agents",
    "EmergencyServices": "twin.agents",
    "SensorStore": "twin.sensors",
    "EnsembleKalmanFilter": "twin.assimilation",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'twin' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
