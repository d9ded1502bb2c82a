"""A small run folder in the run-folder schema (twin/output/schema.py), written with the real
libraries: NetCDF (xarray, CF units, CRS grid mapping), GeoTIFF (rasterio), Parquet (pyarrow), JSON.
Every table is checked against the schema before it is written.

Used by the browser and unit tests so that they do not depend on a long simulation; the tests also
open a run produced by the real engine (``twin run``) when it is importable.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

X0, Y0 = 224000.0, 1727000.0  # NW corner, EPSG:32649 (Tam Kỳ)
DX = 30.0
NY, NX = 60, 80


def grid():
    x = X0 + (np.arange(NX) + 0.5) * DX
    y = Y0 - (np.arange(NY) + 0.5) * DX
    return x, y


def elevation() -> np.ndarray:
    x, y = grid()
    xx, yy = np.meshgrid(x - X0, Y0 - y)
    z = 2.0 + 0.004 * (NX * DX - xx) + 1.5 * np.sin(yy / 300.0)   # rises to the west
    river = np.abs(yy - 900.0 - 120 * np.sin(xx / 400.0)) < 45      # a river running east
    z[river] -= 3.0
    return z


def places() -> pd.DataFrame:
    x, y = grid()
    return pd.DataFrame({
        "place_id": ["H1", "S1", "G1", "S2"],
        "name": ["Bệnh viện Đa khoa Quảng Nam", "Trường THCS Lý Tự Trọng", "Trạm thủy văn Tam Kỳ", "Nhà văn hóa Hòa Thuận"],
        "kind": ["hospital", "shelter", "gauge_stage", "shelter"],
        "x": [x[20], x[50], x[60], x[70]],
        "y": [y[10], y[40], y[30], y[50]],
        "capacity": [300, 500, 0, 200],
        "ward": ["Tam Kỳ"] * 4,
        "source": ["synthetic"] * 4,
    })


def links() -> pd.DataFrame:
    """A small road grid: links with from/to and straight-line geometry (shapely)."""
    from shapely.geometry import LineString

    x, y = grid()
    nodes = [(x[c], y[r]) for r in (5, 30, 55) for c in (5, 40, 75)]
    pairs = [(0, 1), (1, 2), (3, 4), (4, 5), (6, 7), (7, 8), (0, 3), (3, 6), (1, 4), (4, 7), (2, 5), (5, 8)]
    rows = []
    for a, b in pairs:
        rows.append({"from": a, "to": b, "length_m": float(np.hypot(nodes[a][0] - nodes[b][0], nodes[a][1] - nodes[b][1])),
                     "lanes": 2, "free_speed_mps": 13.9, "geometry": LineString([nodes[a], nodes[b]])})
    return pd.DataFrame(rows)


def write_run(folder: str | Path, *, scale: float = 1.0, seed: int = 0, n_times: int = 13, name: str | None = None,
              city: str | None = None) -> Path:
    """Write a run folder; ``scale`` multiplies the flood depths (so two runs differ)."""
    import rasterio
    import xarray as xr
    from pyproj import CRS
    from rasterio.transform import from_origin

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    x, y = grid()
    z = elevation()
    t = np.arange(n_times, dtype=float) * 1800.0
    stage = 1.0 + scale * 2.5 * np.sin(np.pi * t / t[-1])       # river stage rises and falls
    depth = np.clip(stage[:, None, None] - z[None, :, :] + 1.0, 0.0, None)
    depth[depth < 0.02] = 0.0
    crs = CRS.from_epsg(32649)
    ds = xr.Dataset(
        {"depth": (("time", "y", "x"), depth.astype(np.float32), {"units": "m", "long_name": "surface water depth",
                                                                  "grid_mapping": "spatial_ref"}),
         "elevation": (("y", "x"), z, {"units": "m", "long_name": "ground elevation", "grid_mapping": "spatial_ref"}),
         "spatial_ref": ((), 0, {"crs_wkt": crs.to_wkt(), "spatial_ref": crs.to_wkt()})},
        coords={"time": ("time", t, {"units": "seconds since 2020-10-28 00:00:00", "calendar": "standard"}),
                "x": ("x", x, {"units": "m", "standard_name": "projection_x_coordinate"}),
                "y": ("y", y, {"units": "m", "standard_name": "projection_y_coordinate"})},
        attrs={"Conventions": "CF-1.8"})
    ds.to_netcdf(folder / "fields.nc")
    with rasterio.open(folder / "max_depth.tif", "w", driver="GTiff", height=NY, width=NX, count=1, dtype="float32",
                       crs="EPSG:32649", transform=from_origin(X0, Y0, DX, DX), nodata=-9999.0) as dst:
        dst.write(depth.max(axis=0).astype(np.float32), 1)
    # links: closed when the link's midpoint is under > 0.3 m of water
    L = links()
    rows = []
    for k, tk in enumerate(t):
        for lid, g in zip(L.index, L["geometry"]):
            mx, my = g.interpolate(0.5, normalized=True).coords[0]
            c = int(np.argmin(np.abs(x - mx))); r = int(np.argmin(np.abs(y - my)))
            d = float(depth[k, r, c])
            rows.append({"t_s": tk, "link_id": int(lid), "depth_m": d, "speed_factor": max(0.0, 1 - d / 0.3),
                         "closed": d > 0.3, "closed_by_water": d > 0.3, "flow_veh_per_s": 0.1,
                         "density_veh_per_m": float(rng.integers(0, 40)) / L.loc[lid, "length_m"],
                         "speed_mps": 13.9 * max(0.0, 1 - d / 0.3), "queue_veh": 0.0})
    _parquet(folder, "links", pd.DataFrame(rows))
    # people snapshots
    n_people = 400
    px = rng.uniform(x[0], x[-1], n_people); py = rng.uniform(y[-1], y[0], n_people)
    prow = []
    for k, tk in enumerate(t):
        c = np.clip(((px - X0) / DX).astype(int), 0, NX - 1); r = np.clip(((Y0 - py) / DX).astype(int), 0, NY - 1)
        d = depth[k, r, c]
        hr = d * (0.5 + 0.5) + np.where(d > 0.25, 0.5, 0.0)
        sheltered = (k > 3) & (rng.random(n_people) < 0.2 * scale)
        prow.append(pd.DataFrame({
            "t_s": tk, "agent_id": np.arange(n_people, dtype=np.int64), "kind": "household",
            "state": np.where(sheltered, "sheltered", "home"), "x": px, "y": py, "persons": 1.0,
            "members": np.int64(1), "warned": sheltered, "warned_s": np.where(sheltered, tk, np.nan),
            "action": np.where(sheltered, "shelter", "none"),
            "shelter": np.where(sheltered, np.where(px > x[60], 1, 0), -1).astype(np.int64),
            "hazard_rating": hr, "max_hazard_rating": hr, "depth_m": d,
            "hazard_class": np.where(hr > 1.25, "significant", np.where(hr > 0, "low", "none"))}))
    _parquet(folder, "people", pd.concat(prow, ignore_index=True))
    # incidents
    n_inc = 12
    call = np.sort(rng.uniform(0, t[-1] * 0.8, n_inc))
    disp = call + rng.uniform(60, 900, n_inc) * scale
    arr = disp + rng.uniform(300, 1500, n_inc) * scale
    arr[-1] = np.nan  # one incident never reached
    done = arr + 1200
    hosp = np.where(np.arange(n_inc) % 2 == 0, 0, -1).astype(np.int64)
    _parquet(folder, "incidents", pd.DataFrame({
        "incident_id": np.arange(n_inc, dtype=np.int64), "kind": np.where(np.arange(n_inc) % 3 == 0, "rescue", "medical"),
        "priority": (np.arange(n_inc, dtype=np.int64) % 3) + 1, "call_s": call, "x": rng.uniform(x[0], x[-1], n_inc),
        "y": rng.uniform(y[-1], y[0], n_inc), "agent_id": np.full(n_inc, -1, np.int64), "persons": np.ones(n_inc, np.int64),
        "depth_m": np.zeros(n_inc), "unit_id": np.arange(n_inc, dtype=np.int64) % 4, "unit_kind": "ambulance",
        "dispatch_s": disp, "arrive_scene_s": arr, "depart_scene_s": done, "at_hospital_s": np.where(hosp >= 0, arr + 900, np.nan),
        "hospital": hosp, "shelter": np.full(n_inc, -1, np.int64), "clear_s": done,
        "outcome": np.where(np.isfinite(arr), "hospital", "waiting"), "response_time_s": arr - call,
        "route_length_m": np.full(n_inc, 2000.0), "travel_time_s": arr - disp}))
    _parquet(folder, "trips", pd.DataFrame({
        "trip_id": np.arange(5, dtype=np.int64), "origin": np.int64(0), "destination": np.int64(8),
        "vehicle_class": "motorbike", "depart_s": np.arange(5) * 60.0, "arrive_s": np.arange(5) * 60.0 + 600,
        "travel_time_s": 600.0, "state": "arrived", "current_link": np.int64(-1), "route": [[0, 1, 11]] * 5,
        "n_links": np.int64(3), "free_flow_time_s": 500.0}))
    kpis = {
        "flooded_area_km2": {"value": float((depth.max(0) > 0.1).sum() * DX * DX / 1e6), "units": "km²"},
        "max_depth_m": float(depth.max()),
        "people": {"person_hours_high_hazard": float(12.0 * scale), "evacuation_clearance_90_s": 5400.0 * scale},
        "ambulance": {"response_median_s": float(np.nanmedian(arr - call)), "unreached_incidents": 1},
        "roads": {"closed_share_max": float(scale * 0.25)},
        "damage_usd": 1.0e6 * scale,
    }
    (folder / "kpis.json").write_text(json.dumps(kpis, indent=2))
    scen_name = name or f"fixture x{scale:g}"
    scen = {"name": scen_name, "duration_s": float(t[-1]), "seed": seed}
    if city:
        scen["city"] = city
    import yaml

    (folder / "scenario.yaml").write_text(yaml.safe_dump(scen, allow_unicode=True))
    (folder / "manifest.json").write_text(json.dumps({"name": scen_name, "version": "test", "status": "complete"}))
    return folder


def _parquet(folder: Path, name: str, df: pd.DataFrame) -> None:
    from twin.output.schema import validate_frame

    validate_frame(name, df).to_parquet(folder / f"{name}.parquet", index=False)


class _Terrain:
    def __init__(self):
        self.elevation = elevation()
        self.cell_size = DX
        self.shape = self.elevation.shape
        self.bounds = (X0, Y0 - NY * DX, X0 + NX * DX, Y0)  # west, south, east, north

    def cell_centers(self):
        return grid()


class _Roads:
    def __init__(self):
        self.links = links()
        self.nodes = None


class FixtureCity:
    """The shape of ``twin.city.City`` that the dashboard reads, on the fixture grid (for tests that
    run without the city bundle)."""

    name = "fixture"

    def __init__(self):
        self.terrain = _Terrain()
        z = self.terrain.elevation
        self.landcover = np.where(z < 0.5, 1, 2)
        self.landcover_classes = {1: "water", 2: "urban_dense"}
        self.roads = _Roads()
        self.places = places()


def fixture_city_loader(name, resolution_m=None):
    if name != "fixture":
        raise ValueError(f"unknown city {name!r}")
    return FixtureCity()


# ---------------------------------------------------------------------------------------------
# runs by the real engine (twin.scenario / twin.build / twin.simulation) on the fixture city
# ---------------------------------------------------------------------------------------------
def engine_city():
    """The fixture grid as a city for ``build_twin(scenario, city=...)``: a real ``Terrain`` and a
    real ``RoadNetwork``; places with Vietnamese names. Used until the Tam Kỳ bundle is available."""
    from types import SimpleNamespace

    from twin.roads import RoadNetwork
    from twin.terrain import Terrain

    z = elevation()
    ter = Terrain.from_array(z, DX, origin=(X0, Y0), crs="EPSG:32649")
    x, y = grid()
    nodes = pd.DataFrame({"id": range(9), "x": [x[c] for r in (5, 30, 55) for c in (5, 40, 75)],
                          "y": [y[r] for r in (5, 30, 55) for c in (5, 40, 75)]})
    L = links()
    both = pd.concat([L, L.rename(columns={"from": "to", "to": "from"})], ignore_index=True)
    net = RoadNetwork.from_frames(nodes, both[["from", "to", "length_m", "lanes", "free_speed_mps"]])
    lc = np.where(z < 0.5, 1, 2)
    return SimpleNamespace(name="fixture", terrain=ter, roads=net, places=places(), landcover=lc,
                           landcover_classes={1: "water", 2: "urban_dense"}, manning=None, water_depth0=None,
                           sea_cells=None, inflows=None, manifest={})


ENGINE_SCENARIO = """\
name: {name}
description: {description}
city: fixture
resolution_m: 30
start: 2020-10-28T00:00
duration: {duration}
coupling_step: 60
seed: {seed}
flood:
  loss_rate_mm_per_h: 2
  rain: {{kind: design_storm, return_period_years: {rp}, duration: 1h}}
  sea: {{enabled: false}}
traffic: {{background_trips_per_day: 9600}}
outputs: {{fields_every: 10min, tables_every: 10min, kpis_every: 10min, png: false}}
"""


def engine_run(folder: str | Path, *, name: str, description: str, rp: float, duration: str = "2h", seed: int = 1) -> Path:
    """A run folder written by the real engine on the fixture city."""
    from twin.build import build_twin
    from twin.scenario import load_scenario
    from twin.simulation import Simulation

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    scen = folder.parent / f"{folder.name}.yaml.in"
    scen.write_text(ENGINE_SCENARIO.format(name=name, description=description, rp=rp, duration=duration, seed=seed),
                    encoding="utf-8")
    sc = load_scenario(scen)
    scen.unlink()
    Simulation(build_twin(sc, city=engine_city()), stop_time=sc.duration, out_dir=folder).run(progress=False)
    return folder


def fixture_city_loader(name, resolution_m=None):  # noqa: F811  (the engine's city when twin.roads exists)
    if name != "fixture":
        raise ValueError(f"unknown city {name!r}")
    try:
        return engine_city()
    except ImportError:
        return FixtureCity()
