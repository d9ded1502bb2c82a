"""Validation of the local-inertial flood solver against analytical solutions, conservation laws
and the geometry of the Environment Agency 2-D benchmarks (Néelz & Pender 2013). Each test states
its tolerance."""
from __future__ import annotations

import numpy as np
import pytest

from twin import FloodModel, Terrain

G = 9.81


def irregular_bed(n=40, dx=5.0, seed=3):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n, 0:n]
    z = 0.6 * np.sin(xx / 2.7) * np.cos(yy / 3.1) + 0.2 * rng.standard_normal((n, n))
    z[10:14, 20:26] = 1.8  # islands above the lake
    z[30, 5:15] = 1.5
    return Terrain.from_array(z, dx)


def test_lake_at_rest_over_irregular_partly_dry_bed():
    """|eta - eta0| and |q| <= 1e-10 after 1e4 sub-steps (float64), with dry islands and walls."""
    t = irregular_bed()
    z = t.elevation.copy()
    z[0:3, 0:4] = np.nan  # nodata walls
    t = Terrain.from_array(z, t.cell_size)
    eta0 = 0.5
    m = FloodModel(t, manning=0.03)
    h0 = np.nan_to_num(np.clip(eta0 - t.elevation, 0.0, None))
    assert (h0 == 0).sum() > 50 and (h0 > 0).sum() > 500  # partly dry
    m.set_depth(h0)
    while m.n_steps < 10_000:
        m.run_one_step(500.0)
    wet = h0 > 0
    eta = t.elevation + m.depth
    assert np.abs(eta[wet] - eta0).max() <= 1e-10
    assert np.abs(m.depth[~wet]).max() <= 1e-10
    qx, qy = m.face_discharge()
    assert max(np.abs(qx).max(), np.abs(qy).max()) <= 1e-10


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 1e-5)])
def test_closed_basin_with_rain_and_pumps_conserves_mass(dtype, tol):
    """Relative volume error <= 1e-10 (float64) / 1e-5 (float32) in a closed basin."""
    t = irregular_bed(48, 10.0, seed=5)
    m = FloodModel(t, manning=0.04, dtype=dtype)
    m.set_depth(np.clip(0.5 - t.elevation, 0.0, None))
    m.set_rainfall([0.0, 1800.0, 3600.0], [20.0, 120.0, 0.0])
    m.set_loss_rate(np.where(np.arange(48)[:, None] < 24, 5.0, 0.0) * np.ones((48, 48)))
    m.add_pump((40, 40), 1.5)  # out of the domain
    m.add_pump((5, 5), 0.8, to_cell=(45, 2))  # within the basin
    for _ in range(8):
        m.run_one_step(600.0)
    vb = m.volume_balance()
    assert vb["rain_m3"] > 1e4 and vb["outflow_m3"] > 1e3 and vb["lost_m3"] > 1e2
    assert vb["relative_error"] <= tol
    assert m.depth.min() >= 0.0


def hunter_depth(x, t, u=1.0, n=0.03):
    """Hunter et al. (2005): h = [7/3 (C - n^2 u^2 (x - u t))]^(3/7), C = 0 (front at x = u t)."""
    arg = -7.0 / 3.0 * n**2 * u**2 * (x - u * t)
    return np.where(arg > 0, np.abs(arg) ** (3.0 / 7.0), 0.0)


def test_moving_front_on_rough_plane_hunter_2005():
    """Depth RMSE <= 0.06 m and front position within 2 % after 3600 s (dx = 10 m, n = 0.03)."""
    dx, L, ny = 10.0, 5000.0, 3
    nx = int(L / dx)
    t = Terrain.from_array(np.zeros((ny, nx)), dx)
    m = FloodModel(t, manning=0.03)
    # upstream unit flux u*h(0, t) over the channel width, into the first column
    times = np.linspace(0.0, 3600.0, 361)
    q_unit = 1.0 * hunter_depth(0.0, times)
    m.add_inflow([(r, 0) for r in range(ny)], hydrograph=(times, q_unit * ny * dx))
    for _ in range(6):
        m.run_one_step(600.0)
    x = (np.arange(nx) + 0.5) * dx
    h_exact = hunter_depth(x, 3600.0)
    h = m.depth.mean(axis=0)
    sel = (h_exact > 0) | (h > 0.01)
    rmse = float(np.sqrt(np.mean((h[sel] - h_exact[sel]) ** 2)))
    assert rmse <= 0.06, rmse
    front = x[np.nonzero(h > 0.01)[0].max()]
    assert abs(front - 3600.0) <= 0.02 * 3600.0, front
    assert m.volume_balance()["relative_error"] <= 1e-10


def ea_test4_model(dx=5.0, threads=None):
    """EA Test 4: 1000 m x 2000 m flat plane, n = 0.05, trapezoidal inflow (peak 20 m3/s, time base
    ~6 h) on a 20 m line in the middle of the western side; dry bed, closed boundaries."""
    ny, nx = int(2000 / dx), int(1000 / dx)
    t = Terrain.from_array(np.zeros((ny, nx)), dx, origin=(0.0, 2000.0))
    m = FloodModel(t, manning=0.05, threads=threads)
    mid = ny // 2
    k = int(round(20.0 / dx))
    cells = [(r, 0) for r in range(mid - k // 2, mid + k // 2)]
    m.add_inflow(cells, hydrograph=([0.0, 3600.0, 10800.0, 19800.0], [0.0, 20.0, 20.0, 0.0]))
    return m


@pytest.mark.slow
def test_ea_test4_front_arrival_monotone_balanced_and_symmetric():
    """Arrival (> 0.1 m) at the six EA output points increases with distance from the inflow;
    volume balance <= 1e-8; depth symmetric about the inflow axis to 1e-9 m."""
    m = ea_test4_model()
    for _ in range(10):
        m.run_one_step(1800.0)  # 5 h
    pts = [(50, 1000), (100, 1000), (200, 1000), (300, 1000), (400, 1000), (300, 1300)]
    t = m.terrain
    arr = []
    for x, y in pts:
        r, c = t.rowcol(x, y)
        arr.append(m.arrival_time[r, c])
    dist = [np.hypot(x, y - 1000.0) for x, y in pts]
    order = np.argsort(dist)
    arr = np.array(arr)[order]
    assert np.isfinite(arr).all(), arr
    assert np.all(np.diff(arr) > 0), arr
    assert m.volume_balance()["relative_error"] <= 1e-8
    d = m.depth
    assert np.abs(d - d[::-1, :]).max() <= 1e-9
    assert m.max_depth.max() > 0.3


def test_ea_test2_depressions_fill_to_level_pools_and_keep_volume():
    """EA Test 2 geometry: 4 x 4 sinusoidal depressions (2000 m square, 20 m cells) filled from
    the north-west corner. After the inflow stops and the water settles, the ponded level is flat
    within each depression (spread <= 5 mm over cells deeper than 5 cm) and the total volume equals
    the inflow volume (relative error <= 1e-10)."""
    dx, L = 20.0, 2000.0
    n = int(L / dx)
    xc = (np.arange(n) + 0.5) * dx
    X, Y = np.meshgrid(xc, xc)  # Y measured southward from the north edge
    # ridges at multiples of 500 m, 1 m deep depressions, and a gentle fall to the south-east
    z = -np.sin(np.pi * X / 500.0) ** 2 * np.sin(np.pi * Y / 500.0) ** 2 + 1e-4 * (L - X) + 1e-4 * (L - Y)
    t = Terrain.from_array(z, dx)
    m = FloodModel(t, manning=0.03)
    m.add_inflow([(0, 0), (0, 1), (1, 0), (1, 1)], hydrograph=([0.0, 600.0, 6600.0, 7200.0], [0.0, 20.0, 20.0, 0.0]))
    for _ in range(12):
        m.run_one_step(3600.0)
    vb = m.volume_balance()
    assert abs(vb["inflow_m3"] - 20.0 * 6600.0) < 1e-6 * 20.0 * 6600.0
    assert abs(vb["volume_m3"] - vb["inflow_m3"]) <= 1e-10 * vb["inflow_m3"]
    h = m.depth
    eta = z + h
    filled = 0
    for i in range(4):
        for j in range(4):
            blk = (slice(i * 25, (i + 1) * 25), slice(j * 25, (j + 1) * 25))
            wet = h[blk] > 0.05
            if wet.sum() < 5:
                continue
            filled += 1
            spread = eta[blk][wet].max() - eta[blk][wet].min()
            assert spread <= 5e-3, (i, j, spread)
    assert filled >= 3  # water reached several depressions
    # the upstream (north-west) depression holds water; the far corner received less
    assert h[:25, :25].sum() > h[75:, 75:].sum()
