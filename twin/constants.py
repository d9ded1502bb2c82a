"""Shared physical constants and defaults: the one place for numbers more than one module uses.

Modules import these names instead of writing the literal again (the C++ core has its own copies
where it needs them at compile time: ``kGravity`` in core_cpp/flood_inertial.hpp and the ``g``
default of the FV bindings are 9.81 too).

Sources are given next to each value; the tables behind them are documented where they are used:
road classes in ``twin.roads_io``, stall depths in ``twin.traffic.flood``, flood hazard to people in
``twin.hazard``.
"""
from __future__ import annotations

__all__ = ["GRAVITY", "VEHICLE_CLASSES", "PCU", "STALL_DEPTH_M", "JAM_DENSITY_PCU_PER_M",
           "DEFAULT_JAM_DENSITY_VPM_PER_LANE", "ROAD_CLASS_DEFAULTS"]

# gravitational acceleration [m/s²] used by every solver (flood, breach, surge, FV)
GRAVITY = 9.81

# traffic vehicle classes, in the order of the C++ engine's class codes
VEHICLE_CLASSES: tuple[str, ...] = ("motorbike", "car", "bus", "truck", "emergency")

# passenger-car units (Vietnamese practice: motorbike 0.25-0.3, car 1, bus/truck 2-3)
PCU: dict[str, float] = {"motorbike": 0.25, "car": 1.0, "bus": 2.5, "truck": 2.5, "emergency": 1.0}

# depth [m] at and beyond which a vehicle class stalls (table and sources: twin.traffic.flood)
STALL_DEPTH_M: dict[str, float] = {"motorbike": 0.15, "car": 0.30, "bus": 0.50, "truck": 0.60, "emergency": 0.45}

# jam density of the road-class defaults for imported (OSM) roads [PCU/m/lane], ≈ 6.7 m per car
JAM_DENSITY_PCU_PER_M = 0.15
# jam density a RoadNetwork assumes when its links table has no jam_density column [veh/m/lane]:
# one vehicle per 7.5 m of lane. NOTE: differs from JAM_DENSITY_PCU_PER_M; kept as is (changing it
# changes every result of a network without the column).
DEFAULT_JAM_DENSITY_VPM_PER_LANE = 1.0 / 7.5

# OSM highway class → (lanes per direction, free speed km/h, capacity PCU/h/lane); table in twin.roads_io
ROAD_CLASS_DEFAULTS: dict[str, tuple[int, float, float]] = {
    "motorway": (2, 90.0, 2000.0),
    "trunk": (2, 60.0, 1800.0),
    "primary": (2, 50.0, 1700.0),
    "secondary": (1, 45.0, 1500.0),
    "tertiary": (1, 40.0, 1300.0),
    "unclassified": (1, 30.0, 900.0),
    "residential": (1, 25.0, 800.0),
    "living_street": (1, 15.0, 600.0),
    "service": (1, 15.0, 500.0),
    "track": (1, 15.0, 400.0),
    "road": (1, 30.0, 900.0),
}
