"""A small synthetic city with the bundle's interface, and a coastal flood over it.

Used where a test needs full control of geometry (a coast strip that floods, shelters of known
capacity); imported by the tests, by ``conftest.city`` and by benchmarks/people_step.py.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
from affine import Affine

from twin.roads import RoadNetwork

X0, Y0, DX = 600_000.0, 1_720_000.0, 30.0
NY = NX = 60


def synthetic_city(shelter_capacity=(400, 400, 400), households=250, persons=800, scale=1):
    """``scale`` > 1 enlarges the grid, the road grid and the place coordinates by that factor."""
    NY = NX = 60 * scale
    col = np.arange(NX)[None, :].repeat(NY, 0)
    row = np.arange(NY)[:, None].repeat(NX, 1)
    elevation = 1.0 + 10.0 * (1.0 - col / (NX - 1))          # high in the west, coast in the east
    terrain = SimpleNamespace(elevation=elevation, valid=np.ones((NY, NX), bool),
                              transform=Affine(DX, 0, X0, 0, -DX, Y0), shape=(NY, NX), cell_size=DX,
                              crs=None)
    # road grid: a node every 150 m (5 cells), both directions
    k = 12 * scale
    xs = X0 + 75.0 + 150.0 * np.arange(k)
    ys = Y0 - 75.0 - 150.0 * np.arange(k)
    nid = np.arange(k * k).reshape(k, k)
    nodes = pd.DataFrame({"id": nid.ravel(), "x": np.tile(xs, k), "y": np.repeat(ys, k)})
    f, t = [], []
    for r in range(k):
        for c in range(k):
            if c + 1 < k:
                f += [nid[r, c], nid[r, c + 1]]; t += [nid[r, c + 1], nid[r, c]]
            if r + 1 < k:
                f += [nid[r, c], nid[r + 1, c]]; t += [nid[r + 1, c], nid[r, c]]
    links = pd.DataFrame({"from": f, "to": t, "length_m": 150.0, "lanes": 1, "free_speed_mps": 11.0})
    roads = RoadNetwork.from_frames(nodes, links)
    wr = 1 + (row >= NY // 2) * 2 + (col >= NX // 2)
    S = scale
    places = pd.DataFrame([
        ("h0", "West hospital", "hospital", X0 + 200 * S, Y0 - 900 * S, 50, 1),
        ("h1", "Centre hospital", "hospital", X0 + 900 * S, Y0 - 300 * S, 50, 2),
        ("s0", "School A", "shelter", X0 + 300 * S, Y0 - 300 * S, shelter_capacity[0], 1),
        ("s1", "School B", "shelter", X0 + 450 * S, Y0 - 1500 * S, shelter_capacity[1], 3),
        ("s2", "Ward hall", "shelter", X0 + 1000 * S, Y0 - 1000 * S, shelter_capacity[2], 4),
        ("f0", "Fire station", "fire_station", X0 + 600 * S, Y0 - 800 * S, np.nan, 3),
        ("t0", "Beach hotel", "hotel", X0 + 1700 * S, Y0 - 400 * S, 150, 2),
        ("t1", "River hotel", "hotel", X0 + 1650 * S, Y0 - 1400 * S, 100, 4),
    ], columns=["place_id", "name", "kind", "x", "y", "capacity", "ward"])
    places["source"] = "synthetic"
    population = pd.DataFrame({
        "ward": [1, 2, 3, 4], "households": households, "persons": persons,
        "share_elderly": 0.12, "share_children": 0.25, "share_motorbike": 0.7, "share_car": 0.1,
        "share_no_vehicle": 0.2, "mean_storeys": [2.0, 1.5, 2.0, 1.3]})
    return SimpleNamespace(name="synthetic", terrain=terrain, roads=roads, places=places, population=population,
                           ward_raster=wr, building_fraction=np.ones((NY, NX)), water_depth0=np.zeros((NY, NX)))


def coastal_flood(city, t_s, peak_s=6 * 3600.0, peak_stage_m=4.0):
    """Water level rising linearly to ``peak_stage_m`` at ``peak_s`` over the sloping coast."""
    stage = peak_stage_m * min(t_s / peak_s, 1.0)
    depth = np.maximum(stage - city.terrain.elevation, 0.0)
    speed = np.where(depth > 0, 0.5, 0.0)
    return depth, speed
