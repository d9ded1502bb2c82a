"""City.place_xy / City.inflow_xy: exact id, name without diacritics, unique part of a name; clear errors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from twin.city import City, load_city
from twin.geo import normalise_name, to_utm
from twin.terrain import Terrain


def _city(places=None, inflows=None) -> City:
    shape = (4, 5)
    t = Terrain.from_array(np.zeros(shape), 10.0, origin=(500_000.0, 1_700_040.0), crs="EPSG:32649")
    if places is None:
        places = pd.DataFrame({
            "place_id": [0, 1, 2, 17],
            "name": ["Bệnh viện Đa khoa tỉnh Quảng Nam", "Bệnh viện Sản – Nhi Quảng Nam", "Trường THPT Phan Bội Châu",
                     "Nhà văn hoá khối phố 5"],
            "kind": ["hospital", "hospital", "school", "shelter"],
            "x": [1.0, 2.0, 3.0, 4.0], "y": [10.0, 20.0, 30.0, 40.0],
        })
    if inflows is None:
        inflows = pd.DataFrame({"name": ["Xả tràn hồ Phú Ninh (sông Tam Kỳ)", "Sông Bàn Thạch (thượng nguồn)",
                                         "Trường Giang (phía bắc)"],
                                "x": [100.0, 200.0, 300.0], "y": [-1.0, -2.0, -3.0]})
    z = np.zeros(shape)
    return City(name="testville", manifest={}, terrain=t, manning=z, landcover=z.astype(int), landcover_classes={},
                building_fraction=z, water_depth0=z, roads=None, places=places, wards=pd.DataFrame(),
                ward_raster=z.astype(int), population=pd.DataFrame(), sea_cells=z.astype(bool), inflows=inflows)


def test_normalise_name_drops_diacritics_case_and_underscores():
    assert normalise_name("Bệnh viện Đa khoa") == "benh vien da khoa"
    assert normalise_name("  ĐÀ_NẴNG ") == "da nang"
    assert normalise_name(17) == "17"


def test_place_by_id_name_and_unique_part():
    c = _city()
    assert c.place_xy(17) == (4.0, 40.0)                                  # exact place_id (any type)
    assert c.place_xy("17") == (4.0, 40.0)
    assert c.place_xy("benh vien da khoa tinh quang nam") == (1.0, 10.0)  # whole name, no diacritics
    assert c.place_xy("BỆNH VIỆN SẢN – NHI QUẢNG NAM") == (2.0, 20.0)
    assert c.place_xy("phan boi chau") == (3.0, 30.0)                    # a unique part of a name
    assert isinstance(c.place_xy(0)[0], float)


def test_place_exact_name_wins_over_parts():
    pl = pd.DataFrame({"place_id": [5, 6], "name": ["Chợ", "Chợ Tam Kỳ"], "x": [1.0, 2.0], "y": [3.0, 4.0]})
    assert _city(places=pl).place_xy("cho") == (1.0, 3.0)   # "cho" is also part of "Chợ Tam Kỳ"


def test_place_errors_name_the_candidates():
    c = _city()
    with pytest.raises(ValueError, match=r"place 'benh vien' matches several places: Bệnh viện Đa khoa tỉnh Quảng "
                                         r"Nam, Bệnh viện Sản – Nhi Quảng Nam"):
        c.place_xy("benh vien")
    with pytest.raises(ValueError, match=r"place 'cho ga' not found in city 'testville' \(by place_id or name\) "
                                         r"\(have: Bệnh viện Đa khoa tỉnh Quảng Nam, .*Nhà văn hoá khối phố 5\)"):
        c.place_xy("cho ga")
    with pytest.raises(ValueError, match="has no places"):
        _city(places=pd.DataFrame(columns=["place_id", "name", "x", "y"])).place_xy("x")
    with pytest.raises(ValueError, match="give a name"):
        c.place_xy("  ")
    many = pd.DataFrame({"place_id": range(30), "name": [f"Nhà {i}" for i in range(30)], "x": 0.0, "y": 0.0})
    with pytest.raises(ValueError, match=r"\(have: Nhà 0, .*Nhà 19 and 10 more\)"):
        _city(places=many).place_xy("truong")


def test_inflow_by_name_and_part_never_by_position():
    c = _city()
    assert c.inflow_xy("Trường Giang (phía bắc)") == (300.0, -3.0)
    assert c.inflow_xy("phu ninh") == (100.0, -1.0)
    assert c.inflow_xy("ban thach") == (200.0, -2.0)
    with pytest.raises(ValueError, match=r"inflow point 'song' matches several inflows: Xả tràn hồ Phú Ninh \(sông "
                                         r"Tam Kỳ\), Sông Bàn Thạch \(thượng nguồn\)"):
        c.inflow_xy("song")
    with pytest.raises(ValueError, match=r"inflow point 'thu bon' not found in city 'testville' \(have: Xả tràn hồ "
                                         r"Phú Ninh \(sông Tam Kỳ\), Sông Bàn Thạch \(thượng nguồn\), Trường Giang"):
        c.inflow_xy("thu bon")
    with pytest.raises(ValueError, match=r"inflow point 0 not found"):   # inflows have no id: 0 is a name
        c.inflow_xy(0)
    with pytest.raises(ValueError, match=r"inflow point 'x': the city bundle 'testville' has no inflows"):
        _city(inflows=pd.DataFrame(columns=["name", "x", "y"])).inflow_xy("x")


def test_lookups_on_the_shipped_tamky_bundle():
    c = load_city("tamky")
    x, y = c.place_xy("benh vien da khoa tinh quang nam")
    row = c.places[c.places["name"] == "Bệnh viện Đa khoa tỉnh Quảng Nam"].iloc[0]
    assert (x, y) == (row["x"], row["y"])
    ix, iy = c.inflow_xy("phu ninh")
    inf = c.inflows[c.inflows["name"].str.contains("Phú Ninh")].iloc[0]
    assert (ix, iy) == (inf["x"], inf["y"])
    # the inflow point sits on a valid grid cell (snapped into the channel at this resolution)
    assert c.terrain.cells_near(ix, iy, 0) == [c.terrain.rowcol(ix, iy)]
    with pytest.raises(ValueError, match="matches several places"):
        c.place_xy("benh vien")


def test_to_utm_passes_utm_through_and_projects_lonlat():
    a = to_utm([[229715.3, 1722324.2], [1.0, 2.0]], "epsg:32649")
    assert a.shape == (2, 2) and a[0, 0] == 229715.3
    # the Quảng Nam general hospital: lon/lat from places.csv to its UTM 49N position (to a metre)
    xy = to_utm((108.479868, 15.564182), "EPSG:4326")
    assert xy.shape == (1, 2)
    assert np.allclose(xy[0], [229715.3, 1722324.2], atol=1.0)
    with pytest.raises(ValueError, match="expected \\(x, y\\)"):
        to_utm([1.0, 2.0, 3.0], "EPSG:4326")
    with pytest.raises(ValueError, match="crs: cannot transform from 'EPSG:999999'"):
        to_utm((1.0, 2.0), "EPSG:999999")
