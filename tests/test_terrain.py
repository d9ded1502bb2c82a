"""Terrain: grid geometry, GeoTIFF round trip, reprojection and nodata handling."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

from twin import Terrain


def test_from_array_geometry_follows_the_contract():
    z = np.arange(12, dtype=float).reshape(3, 4)
    t = Terrain.from_array(z, cell_size=10.0, origin=(500000.0, 1700000.0), crs="EPSG:32649")
    assert t.shape == (3, 4)
    assert t.crs.to_epsg() == 32649
    assert t.transform == Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 1700000.0)
    # cell (r, c) centre: x = x0 + (c + 0.5) dx, y = y0 - (r + 0.5) dx
    assert t.xy(2, 3) == (500035.0, 1699975.0)
    x, y = t.cell_centers()
    np.testing.assert_array_equal(x, 500000.0 + 10.0 * (np.arange(4) + 0.5))
    np.testing.assert_array_equal(y, 1700000.0 - 10.0 * (np.arange(3) + 0.5))
    rows, cols = t.rowcol(x[[0, 3, 1]], y[[2, 0, 1]])
    np.testing.assert_array_equal(rows, [2, 0, 1])
    np.testing.assert_array_equal(cols, [0, 3, 1])
    assert tuple(t.bounds) == (500000.0, 1699970.0, 500040.0, 1700000.0)
    # the transform agrees with rasterio's own conventions
    assert rasterio.transform.xy(t.transform, 2, 3) == t.xy(2, 3)
    assert t.valid.all()


def test_nan_and_nodata_cells_are_invalid():
    z = np.ones((4, 4))
    z[0, 0] = np.nan
    z[1, 1] = -9999.0
    t = Terrain.from_array(z, 5.0, nodata=-9999.0)
    assert not t.valid[0, 0] and not t.valid[1, 1] and t.valid.sum() == 14
    assert np.isnan(t.elevation[1, 1])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"cell_size": 0.0}, "cell_size"),
        ({"cell_size": -1.0}, "cell_size"),
        ({"cell_size": float("nan")}, "cell_size"),
        ({"cell_size": 1.0, "origin": (0.0,)}, "origin"),
        ({"cell_size": 1.0, "crs": "EPSG:99999999"}, "crs"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Terrain.from_array(np.zeros((2, 2)), **kwargs)
    with pytest.raises(ValueError, match="elevation"):
        Terrain.from_array(np.zeros(4), 1.0)


def test_geotiff_round_trip_keeps_values_grid_and_nodata(tmp_path):
    rng = np.random.default_rng(1)
    z = rng.normal(5.0, 2.0, (7, 9))
    z[3, 4] = np.nan
    t = Terrain.from_array(z, 30.0, origin=(520000.0, 1760000.0), crs="EPSG:32649")
    path = t.to_geotiff(tmp_path / "dem.tif")
    with rasterio.open(path) as src:
        assert src.nodata == -9999.0 and src.crs.to_epsg() == 32649
    u = Terrain.from_geotiff(path)
    assert u.shape == t.shape and u.cell_size == 30.0 and u.transform == t.transform
    assert u.crs.to_epsg() == 32649
    np.testing.assert_array_equal(u.valid, t.valid)
    np.testing.assert_array_equal(u.elevation[t.valid], t.elevation[t.valid])
    # any (ny, nx) array on the same grid
    p2 = t.to_geotiff(tmp_path / "mask.tif", array=t.valid)
    with rasterio.open(p2) as src:
        assert src.read(1).sum() == t.valid.sum()


def test_geographic_geotiff_is_reprojected_to_utm(tmp_path):
    # a plane z = 100 * (lon - 108) on a WGS84 grid near Tam Ky reprojects to UTM 49N with z kept
    lon0, lat0, d = 108.40, 15.60, 0.001
    ny, nx = 60, 80
    lon = lon0 + (np.arange(nx) + 0.5) * d
    z = np.tile(100.0 * (lon - 108.0), (ny, 1))
    z[:5, :5] = -32768
    path = tmp_path / "wgs84.tif"
    with rasterio.open(
        path, "w", driver="GTiff", height=ny, width=nx, count=1, dtype="float64", crs="EPSG:4326",
        transform=Affine(d, 0, lon0, 0, -d, lat0 + ny * d), nodata=-32768,
    ) as dst:  # fmt: skip
        dst.write(z, 1)
    t = Terrain.from_geotiff(path)
    assert t.crs.to_epsg() == 32649
    assert 95.0 < t.cell_size < 115.0  # ~0.001 degree
    assert abs(t.transform.a - t.cell_size) < 1e-9 and abs(t.transform.e + t.cell_size) < 1e-9
    from pyproj import Transformer

    tr = Transformer.from_crs(32649, 4326, always_xy=True)
    rows, cols = np.nonzero(t.valid)
    x, y = t.xy(rows, cols)
    lon_back, _ = tr.transform(x, y)
    inner = (lon_back > lon0 + 3 * d) & (lon_back < lon0 + (nx - 3) * d)
    # bilinear resampling of a plane is exact up to the pixel-centre offsets: within 0.1 m (= 0.001 deg)
    np.testing.assert_allclose(t.elevation[rows, cols][inner], 100.0 * (lon_back[inner] - 108.0), atol=0.1)
    # the nodata corner stays invalid
    assert not t.valid[0, 0]
    # explicit target CRS and resolution
    t2 = Terrain.from_geotiff(path, dst_crs="EPSG:32649", resolution=200.0)
    assert t2.cell_size == 200.0 and t2.crs.to_epsg() == 32649


def test_real_srtm_dem_of_da_nang_loads_when_present():
    from pathlib import Path

    p = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "srtm30m_danang"
    tifs = sorted(p.glob("*.tif")) if p.exists() else []
    if not tifs:
        tifs = sorted(Path("/work/shared/data/srtm30m_danang").glob("*.tif"))
    if not tifs:
        pytest.skip("shared SRTM tile not available in this checkout")
    t = Terrain.from_geotiff(tifs[0], resolution=90.0)
    assert t.crs.to_epsg() == 32649 and t.cell_size == 90.0
    assert np.nanmax(t.elevation) > 500.0  # the Son Tra / Ba Na hills
    assert t.valid.mean() > 0.9


def test_missing_or_bad_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tif"):
        Terrain.from_geotiff(tmp_path / "nope.tif")
    bad = tmp_path / "bad.tif"
    bad.write_text("not a tiff")
    with pytest.raises(ValueError, match="bad.tif"):
        Terrain.from_geotiff(bad)


def test_cells_near_square_clipped_and_without_nodata():
    z = np.zeros((6, 7))
    z[2, 4] = np.nan
    t = Terrain.from_array(z, 10.0, origin=(500000.0, 1700060.0), crs="EPSG:32649")
    x, y = t.xy(2, 3)
    assert t.cells_near(x, y, 0) == [(2, 3)]
    assert t.cells_near(x + 4.9, y - 4.9, 0) == [(2, 3)]          # any point in the cell picks the cell
    ring = t.cells_near(x, y, 20.0)                                 # round(20 / 2 / 10) = 1 cell each side
    assert ring == [(1, 2), (1, 3), (1, 4), (2, 2), (2, 3), (3, 2), (3, 3), (3, 4)]   # (2, 4) is nodata
    assert len(t.cells_near(x, y, 40.0)) == 5 * 5 - 1
    # at the corner the square is clipped to the grid
    assert t.cells_near(*t.xy(0, 0), 20.0) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_cells_near_refuses_points_off_the_grid_or_on_nodata():
    z = np.zeros((3, 3))
    z[1, 1] = np.nan
    t = Terrain.from_array(z, 10.0, origin=(0.0, 30.0))
    with pytest.raises(ValueError, match=r"point \(35.0, 15.0\) lies outside the terrain"):
        t.cells_near(35.0, 15.0, 0)
    with pytest.raises(ValueError, match=r"point \(15.0, 15.0\) lies on an invalid \(nodata\) cell"):
        t.cells_near(15.0, 15.0, 0)
    assert len(t.cells_near(15.0, 15.0, 20.0)) == 8                 # the neighbours are valid
    with pytest.raises(ValueError, match="width_m: must be finite and >= 0"):
        t.cells_near(5.0, 5.0, -10.0)
    with pytest.raises(ValueError, match="must be finite"):
        t.cells_near(float("nan"), 5.0, 0)
