"""`twin city import` with real files and the documented error paths (no CRS, holes, wrong CRS, no overlap)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio

from twin.city import load_city
from twin.city.importer import CityImportError, fill_dem_holes, import_city

REPO = Path(__file__).resolve().parents[2]
SRTM = REPO / "twin" / "data" / "danang" / "sources" / "srtm_gl1_danang_108.08-108.32E_15.87-16.12N.tif"
NATIONAL = REPO / "twin" / "data" / "tamky" / "sources" / "vn_national_roads_rail_quangnam_region.geojson"


def _crop(dst: Path, *, hole=None, drop_crs=False, rows=slice(300, 600), cols=slice(300, 600)) -> Path:
    """A real SRTM window (Đà Nẵng centre), optionally with a nodata hole or without CRS."""
    with rasterio.open(SRTM) as src:
        a = src.read(1)[rows, cols].copy()
        t = src.transform @ rasterio.Affine.translation(cols.start, rows.start)
        prof = src.profile | {"width": a.shape[1], "height": a.shape[0], "transform": t}
    if hole is not None:
        r0, c0, n = hole
        a[r0:r0 + n, c0:c0 + n] = src.nodata
    if drop_crs:
        prof["crs"] = None
    with rasterio.open(dst, "w", **prof) as out:
        out.write(a, 1)
    return dst


def _roads_geojson(dst: Path) -> Path:
    """The real national road layer, clipped to the window around Đà Nẵng (roads only)."""
    fc = json.loads(NATIONAL.read_text())
    fc["features"] = [f for f in fc["features"] if f["properties"]["loai_duong"] != "Đường sắt"]
    dst.write_text(json.dumps(fc, ensure_ascii=False))
    return dst


def test_import_real_dem_and_roads_then_load_and_info(tmp_path):
    dem = _crop(tmp_path / "dem.tif")
    roads = _roads_geojson(tmp_path / "roads.geojson")
    places = tmp_path / "places.csv"
    pd.DataFrame([{"name": "Bệnh viện Đà Nẵng", "kind": "hospital", "lon": 108.2140, "lat": 16.0720, "capacity": 1500},
                  {"name": "Cung Thể thao Tiên Sơn", "kind": "shelter", "lon": 108.2230, "lat": 16.0330}]).to_csv(places, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # the national skeleton is cut to its largest component
        out = import_city("dn_test", dem, roads, places=places, out_dir=tmp_path / "cities")
    c = load_city(out)
    assert c.manifest["layers"]["terrain"]["synthetic"] is False
    assert c.terrain.cell_size == 30.0 and c.terrain.crs.to_epsg() == 32649
    with rasterio.open(dem) as s:
        raw = s.read(1)
    assert np.nanmax(c.terrain.elevation) == pytest.approx(raw.max(), abs=15)
    assert c.roads.n_links > 10 and len(c.places) == 2 and c.places["kind"].tolist() == ["hospital", "shelter"]
    assert np.isfinite(c.manning).all() and c.manning.min() > 0
    r = subprocess.run([sys.executable, "-m", "twin", "city", "info", str(out)], capture_output=True, text=True,
                       cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "terrain" in r.stdout and "REAL" in r.stdout and "dem.tif" in r.stdout


def test_import_cli_errors_are_clear(tmp_path):
    dem = _crop(tmp_path / "nocrs.tif", drop_crs=True)
    roads = _roads_geojson(tmp_path / "roads.geojson")
    r = subprocess.run([sys.executable, "-m", "twin", "city", "import", "--name", "x", "--dem", str(dem), "--osm",
                        str(roads), "--out", str(tmp_path / "c")], capture_output=True, text=True, cwd=REPO,
                       env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert r.returncode == 2 and "nocrs.tif" in r.stderr and "no CRS" in r.stderr


def test_dem_holes_filled_or_rejected(tmp_path):
    roads = _roads_geojson(tmp_path / "roads.geojson")
    small = _crop(tmp_path / "small_hole.tif", hole=(100, 100, 6))
    with pytest.warns(UserWarning) as caught:     # also: few roads on this crop, graph pruned to its largest part
        out = import_city("holes", small, roads, out_dir=tmp_path / "c")
    assert any(re.search(r"filled \d+ nodata cells", str(w.message)) for w in caught)
    c = load_city(out)
    assert np.isfinite(c.terrain.elevation[5:-5, 5:-5]).all()
    big = _crop(tmp_path / "big_hole.tif", hole=(50, 50, 120))
    with pytest.raises(CityImportError, match=r"big_hole.tif: nodata hole of \d+ cells"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            import_city("holes2", big, roads, out_dir=tmp_path / "c", resolution_m=30, max_hole_cells=2000)


def test_fill_dem_holes_interpolates_and_keeps_edges():
    z = np.add.outer(np.arange(50.0), np.arange(60.0))          # a plane
    z[20:24, 30:33] = np.nan                                      # interior hole
    z[:, :2] = np.nan                                             # outside the survey
    f, n = fill_dem_holes(z)
    assert n == 12
    truth = np.add.outer(np.arange(50.0), np.arange(60.0))
    assert np.allclose(f[20:24, 30:33], truth[20:24, 30:33], atol=1e-9)   # harmonic fill is exact on a plane
    assert np.isnan(f[:, :2]).all()


def test_import_rejects_roads_elsewhere_and_bad_places(tmp_path):
    dem = _crop(tmp_path / "dem.tif")
    far = tmp_path / "far.geojson"
    far.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"highway": "primary"},
         "geometry": {"type": "LineString", "coordinates": [[105.80, 21.02], [105.81, 21.02]]}}]}))
    with pytest.raises(CityImportError, match="no road node lies inside the DEM"):
        import_city("far", dem, far, out_dir=tmp_path / "c")
    roads = _roads_geojson(tmp_path / "roads.geojson")
    bad = tmp_path / "bad_places.csv"
    pd.DataFrame([{"name": "X", "kind": "castle", "lon": 108.2, "lat": 16.0}]).to_csv(bad, index=False)
    with pytest.raises(CityImportError, match=r"row 2: field 'kind' has value 'castle'"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            import_city("badplaces", dem, roads, places=bad, out_dir=tmp_path / "c2")


def test_landcover_from_polygons(tmp_path):
    dem = _crop(tmp_path / "dem.tif")
    roads = _roads_geojson(tmp_path / "roads.geojson")
    poly = tmp_path / "lc.geojson"
    poly.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"class": "forest", "manning_n": 0.12},
         "geometry": {"type": "Polygon", "coordinates": [[[108.18, 16.02], [108.20, 16.02], [108.20, 16.04],
                                                          [108.18, 16.04], [108.18, 16.02]]]}}]}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = import_city("lc", dem, roads, landcover=poly, out_dir=tmp_path / "c")
    c = load_city(out)
    forest = c.landcover == 6
    assert 0 < forest.sum() < forest.size
    assert np.allclose(c.manning[forest], 0.12)
    assert np.allclose(c.manning[c.landcover == 4], 0.05)
    poly.write_text(poly.read_text().replace('"forest"', '"jungle"'))
    with pytest.raises(CityImportError, match="field 'class' has value 'jungle'"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            import_city("lc2", dem, roads, landcover=poly, out_dir=tmp_path / "c3")
