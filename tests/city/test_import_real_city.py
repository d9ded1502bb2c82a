"""One command to the real city: `twin city import` of a user's DEM and OSM extract, merged with the
shipped real layers (2025 wards, census population, places, the Phú Ninh release point), runs a coupled
scenario end to end; and the real Đà Nẵng SRTM with an OSM fixture does too.

The OSM files here are HAND-MADE fixtures in OSM XML format (tests/city/helpers.py), not OSM data; the
Tam Kỳ "user DEM" is a window of the bundle's own (partly synthetic) 30 m terrain standing in for a
Copernicus GLO-30 crop, which cannot be shipped or downloaded here.
"""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
import yaml

from twin.city import load_city

from .helpers import crop_geotiff, write_osm_grid

REPO = Path(__file__).resolve().parents[2]
TAMKY_DEM = REPO / "twin" / "data" / "tamky" / "terrain_30m.tif"
SRTM = REPO / "twin" / "data" / "danang" / "sources" / "srtm_gl1_danang_108.08-108.32E_15.87-16.12N.tif"


def _twin(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "twin", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout)


def _scenario(path: Path, city: Path, *, reservoir: bool, people: bool) -> Path:
    sc = {"name": f"imported_{city.name}", "city": str(city), "resolution_m": 100, "start": "2021-11-30T06:00",
          "duration": "1h", "coupling_step": "2min", "seed": 7,
          "flood": {"rain": {"kind": "design_storm", "peak_mm_per_h": 80, "duration": "1h"},
                    "sea": {"sea_cells": "city"}},
          "traffic": {"background_trips_per_day": 4000}, "services": {},
          "people": {"sample_fraction": 0.05} if people else None,
          "outputs": {"fields": ["depth"], "fields_every": "30min", "tables_every": "30min", "kpis_every": "30min"}}
    if reservoir:
        sc["flood"]["reservoir"] = {"name": "Phu Ninh", "operation": "rule", "initial_level_m": 31.0,
                                    "base_inflow_m3_per_s": 900}
    path.write_text(yaml.safe_dump(sc, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.slow
def test_import_tamky_merges_the_real_layers_and_runs_coupled(tmp_path):
    dem = crop_geotiff(TAMKY_DEM, tmp_path / "glo30_crop.tif", rows=slice(300, 650), cols=slice(230, 600))
    osm = write_osm_grid(tmp_path / "tamky.osm", 108.46, 15.55, n=8, step_deg=0.006)
    r = _twin("city", "import", "--name", "tk", "--dem", str(dem), "--osm", str(osm), "--resolution", "100",
              "--out", str(tmp_path / "cities"))
    assert r.returncode == 0, r.stderr
    city = tmp_path / "cities" / "tk"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        c = load_city(city)
    m = c.manifest["layers"]
    # the real layers came with it: 2025 wards, census population, places, the Phú Ninh release point
    assert set(c.population["ward_name"]) <= {"Tam Kỳ", "Bàn Thạch", "Hương Trà", "Quảng Phú"}
    assert "Tam Kỳ" in set(c.population["ward_name"])
    assert c.population["source"].str.contains("2009 census").all()
    assert m["wards"]["synthetic"] is False and "merged from the shipped bundle 'tamky'" in m["wards"]["source"]
    assert (c.ward_raster > 0).sum() > 1000
    assert "Bệnh viện Đa khoa tỉnh Quảng Nam" in set(c.places["name"])
    assert (c.inflows["kind"] == "reservoir_release").any()
    assert m["terrain"]["synthetic"] is False and m["roads"]["synthetic"] is False
    info = _twin("city", "info", str(city))
    assert info.returncode == 0 and "REAL (GENERALISED)" in info.stdout

    sc = _scenario(tmp_path / "sc.yaml", city, reservoir=True, people=True)
    run = _twin("run", str(sc), "--out", str(tmp_path / "run"), "--no-progress")
    assert run.returncode == 0, run.stderr[-3000:]
    k = json.loads((tmp_path / "run" / "kpis.json").read_text())
    assert k["reservoir"]["peak_release_m3_s"] > 0                       # Phú Ninh operated by its rule
    assert k["people_model"] is not None and k["travel_time_index"] is not None
    people = pd.read_parquet(tmp_path / "run" / "people.parquet")
    assert len(people) > 0


@pytest.mark.slow
def test_import_real_danang_srtm_with_osm_fixture_runs_coupled(tmp_path):
    dem = crop_geotiff(SRTM, tmp_path / "srtm.tif", rows=slice(300, 600), cols=slice(300, 600))
    osm = write_osm_grid(tmp_path / "danang.osm", 108.205, 16.030, n=6, step_deg=0.005)
    places = tmp_path / "places.csv"
    pd.DataFrame([{"name": "Bệnh viện Đà Nẵng", "kind": "hospital", "lon": 108.2140, "lat": 16.0400, "capacity": 1500},
                  {"name": "Cung Thể thao Tiên Sơn", "kind": "shelter", "lon": 108.2230, "lat": 16.0330,
                   "capacity": 3000}]).to_csv(places, index=False)
    r = _twin("city", "import", "--name", "dn", "--dem", str(dem), "--osm", str(osm), "--places", str(places),
              "--resolution", "100", "--out", str(tmp_path / "cities"))
    assert r.returncode == 0, r.stderr
    city = tmp_path / "cities" / "dn"
    m = json.loads((city / "manifest.json").read_text())
    assert "merged" not in m["layers"]["wards"]["source"]                  # nothing of Tam Kỳ lies on this DEM
    sc = _scenario(tmp_path / "sc.yaml", city, reservoir=False, people=False)
    run = _twin("run", str(sc), "--out", str(tmp_path / "run"), "--no-progress")
    assert run.returncode == 0, run.stderr[-3000:]
    k = json.loads((tmp_path / "run" / "kpis.json").read_text())
    assert k["flooded_area_max_m2"] >= 0 and k["travel_time_index"] is not None
    assert k["ambulance_response_s"] is not None
