"""A base install (no extras: no geopandas, no dash) loads every shipped city and says which extra a feature needs."""
from __future__ import annotations

import sys

import pytest

from twin.city import load_city, read_wards


@pytest.fixture
def no_geopandas(monkeypatch):
    monkeypatch.setitem(sys.modules, "geopandas", None)     # `import geopandas` now raises ImportError


def test_wards_without_geopandas_match_geopandas(tmp_path, monkeypatch):
    path = load_city("tamky").path / "wards.geojson"
    with_gpd = read_wards(path, "EPSG:32649")
    monkeypatch.setitem(sys.modules, "geopandas", None)
    plain = read_wards(path, "EPSG:32649")
    assert type(plain).__name__ == "DataFrame" and type(with_gpd).__name__ == "GeoDataFrame"
    assert list(plain["ward"]) == list(with_gpd["ward"]) and list(plain["ward_name"]) == list(with_gpd["ward_name"])
    for a, b in zip(plain.geometry, with_gpd.geometry):   # the same polygons, reprojected from CRS84 to UTM 49N
        assert a.symmetric_difference(b).area < 1e-3 * b.area and abs(a.area - b.area) < 1.0


def test_load_city_without_geopandas(no_geopandas):
    city = load_city("tamky")
    assert len(city.wards) == 4
    assert all(city.wards.geometry.map(lambda g: g.is_valid and g.area > 1e6))   # m², in the bundle's CRS


def test_other_formats_name_the_extra(no_geopandas, tmp_path):
    shp = tmp_path / "wards.shp"
    shp.write_bytes(b"")
    with pytest.raises(ImportError, match=r"tamky-twin\[osm\]"):
        read_wards(shp, "EPSG:32649")


def test_serve_without_dash_names_the_extra(monkeypatch, tmp_path, capsys):
    from twin.cli import main

    for name in [m for m in sys.modules if m == "twin.dashboard.app" or m.startswith("twin.dashboard.pages")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "dash", None)
    assert main(["serve", "--runs", str(tmp_path)]) == 2
    assert "tamky-twin[dashboard]" in capsys.readouterr().err
