"""A small synthetic valley city for the simulation tests (real FloodModel and TrafficModel on it).

The terrain: a 1.2 km x 1.2 km valley (20 m cells) sloping to a sea strip in the east; a 5 x 5 road
grid (300 m spacing) across it; a few places. Small enough for sub-second coupling steps.
"""
from __future__ import annotations

import textwrap
import types
from pathlib import Path

import numpy as np
import pandas as pd

X0, Y0 = 600_000.0, 1_750_000.0   # NW corner, EPSG:32649


def small_city(n: int = 60, cell: float = 20.0):
    from twin.roads import RoadNetwork
    from twin.terrain import Terrain

    y, x = np.mgrid[0:n, 0:n]
    # slope east towards the sea, a valley along the middle row, a ridge at the west
    z = 8.0 * (1 - x / (n - 1)) + 0.6 * np.abs(y - n / 2) / (n / 2) * 4.0 - 0.5
    z[:, -4:] = -1.0                      # the sea: 4 columns below MSL
    z[:3, :3] = np.nan                     # a nodata corner
    terrain = Terrain.from_array(z, cell, origin=(X0, Y0), crs="EPSG:32649")
    roads = RoadNetwork.grid(5, 5, spacing_m=250.0, origin=(X0 + 100.0, Y0 - 1100.0))
    places = pd.DataFrame({
        "place_id": ["H1", "S1", "S2"], "name": ["Valley Hospital", "Hill School Shelter", "Low Shelter"],
        "kind": ["hospital", "shelter", "shelter"], "x": [X0 + 300, X0 + 150, X0 + 900],
        "y": [Y0 - 600, Y0 - 200, Y0 - 600], "capacity": [100, 500, 300], "ward": ["A", "A", "B"],
        "source": "synthetic"})
    inflows = pd.DataFrame({"name": ["West Creek", "Reservoir Outlet"], "x": [X0 + 30, X0 + 30],
                            "y": [Y0 - 600, Y0 - 900], "kind": ["river", "reservoir"]})
    sea = np.zeros((n, n), bool)
    sea[:, -4:] = True
    return types.SimpleNamespace(
        name="valley", manifest={}, terrain=terrain, manning=None, landcover=None, landcover_classes=None,
        building_fraction=None, water_depth0=None, roads=roads, places=places, wards=None, ward_raster=None,
        population=None, sea_cells=sea, inflows=inflows)


SCENARIO = """
name: valley
description: test valley
city: valley
resolution_m: 20
start: 2020-10-28T06:00
duration: 30min
coupling_step: 60
seed: 1
flood:
  dtype: float64
  rain: {kind: design_storm, peak_mm_per_h: 150, duration: 30min, peak_fraction: 0.3}
  inflows:
    - {name: creek, at: West Creek, hydrograph: {times: [0, 10min, 30min], discharge_m3_per_s: [0, 30, 5]}}
  sea:
    constituents: [{name: K1, amplitude_m: 0.3}]
traffic:
  dt: 2
  background_trips_per_day: 30000
outputs:
  fields_every: 5min
  kpis_every: 5min
  tables_every: 5min
  chunk_records: 2
"""


def write_scenario(tmp_path: Path, text: str = SCENARIO, name: str = "valley.yaml") -> Path:
    p = Path(tmp_path) / name
    p.write_text(textwrap.dedent(text))
    return p
