"""Sensors: stations, datastreams and observations (OGC SensorThings-shaped), adapters (CSV,
SensorThings JSON/MQTT, vendor MQTT JSON), quality control, the DuckDB store, assimilation into
the flood model and the typhoon replay. See ``docs/architecture.md`` (Sensors)."""
from __future__ import annotations

from twin.sensors.model import BAD_MASK, FLAG_BITS, PROPERTIES, Datastream, Station, flag_text
from twin.sensors.store import InsertResult, SensorStore

__all__ = ["SensorStore", "InsertResult", "Station", "Datastream", "PROPERTIES", "FLAG_BITS", "BAD_MASK",
           "flag_text", "Assimilator"]


def __getattr__(name):
    if name == "Assimilator":
        from twin.sensors.assimilation import Assimilator

        return Assimilator
    raise AttributeError(name)
