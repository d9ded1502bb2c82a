"""Boundaries and structures: stage and free edges, interior stage cells, levees and pumps."""
from __future__ import annotations

import numpy as np

from twin import FloodModel, Terrain


def test_stage_edge_fills_a_basin_to_the_stage_level():
    """A dry flat basin behind a 1.0 m stage on its west edge fills to the stage: the filling wave
    then sloshes (the stage edge reflects), so the depth averaged over the 4th hour is 1 m within
    5 mm everywhere; the water that came in is booked as boundary inflow (balance <= 1e-10)."""
    z = np.zeros((12, 30))
    m = FloodModel(Terrain.from_array(z, 10.0), manning=0.05)
    m.set_boundary("west", "stage", stage_m=1.0)
    for _ in range(18):
        m.run_one_step(600.0)
    mean = np.zeros_like(z)
    for _ in range(60):
        m.run_one_step(60.0)
        mean += m.depth / 60
    assert np.abs(mean - 1.0).max() <= 5e-3
    vb = m.volume_balance()
    assert abs(vb["inflow_m3"] - vb["outflow_m3"] - vb["volume_m3"]) <= 1e-10 * vb["volume_m3"]
    assert vb["relative_error"] <= 1e-10


def test_stage_series_drains_the_basin_when_the_tide_falls():
    z = np.zeros((8, 20))
    m = FloodModel(Terrain.from_array(z, 10.0))
    m.set_depth(1.0)
    m.set_boundary("east", "stage", times_s=[0.0, 600.0, 7200.0], stage_m=[1.0, 0.3, 0.3])
    for _ in range(12):
        m.run_one_step(600.0)
    assert np.abs(m.depth - 0.3).max() <= 2e-3  # follows the low tide
    assert m.volume_balance()["outflow_m3"] > 0.6 * 8 * 20 * 100 * 0.99
    assert m.volume_balance()["relative_error"] <= 1e-10


def test_free_outflow_reaches_steady_state_on_a_tilted_plane():
    """Steady inflow at the top of a 1 % plane with a free lower edge: after 3 h the outflow rate
    equals the inflow rate within 1 %, and the balance closes to 1e-10."""
    ny, nx, dx = 6, 60, 10.0
    x = (np.arange(nx) + 0.5) * dx
    z = np.tile(-0.01 * x, (ny, 1))
    m = FloodModel(Terrain.from_array(z, dx), manning=0.03)
    m.add_inflow([(r, 0) for r in range(ny)], hydrograph=([0.0], [3.0]))  # constant 3 m3/s
    m.set_boundary("east", "free")
    for _ in range(18):
        m.run_one_step(600.0)
    out0 = m.volume_balance()["outflow_m3"]
    m.run_one_step(600.0)
    rate = (m.volume_balance()["outflow_m3"] - out0) / 600.0
    assert abs(rate - 3.0) <= 0.03, rate
    assert m.volume_balance()["relative_error"] <= 1e-10
    # normal depth from Manning: q = h^(5/3) sqrt(S) / n with q = 3 / 60 m2/s
    q = 3.0 / (ny * dx)
    h_normal = (q * 0.03 / np.sqrt(0.01)) ** 0.6
    assert abs(m.depth[:, nx // 2].mean() - h_normal) <= 0.1 * h_normal


def test_interior_stage_cells_hold_the_sea_level():
    z = np.full((10, 10), 1.0)
    z[:, 7:] = -2.0  # a sea strip on the east
    t = Terrain.from_array(z, 20.0)
    m = FloodModel(t)
    sea = [(r, c) for r in range(10) for c in range(7, 10)]
    m.set_boundary(None, "stage", times_s=[0.0, 3600.0], stage_m=[0.0, 1.5], cells=sea)
    for _ in range(6):
        m.run_one_step(600.0)
    eta = z + m.depth
    # the level is set at each sub-step's mid-time: within half a sub-step of rise (1.5 m/h) of 1.5 m
    np.testing.assert_allclose(eta[:, 7:], 1.5, atol=1e-3)
    assert m.depth[:, :7].max() > 0.3  # the tide overtops the 1 m land
    assert m.volume_balance()["relative_error"] <= 1e-10


def test_levee_blocks_until_overtopped():
    """A levee (crest 1.5 m) across a channel holds a 1.0 m pool, and passes water once the pool
    rises above its crest."""
    ny, nx, dx = 6, 40, 10.0
    t = Terrain.from_array(np.zeros((ny, nx)), dx, origin=(0.0, ny * dx))
    m = FloodModel(t, manning=0.03)
    h = np.zeros((ny, nx))
    h[:, :20] = 1.0
    m.set_depth(h)
    n = m.add_levee([(200.0, -5.0), (200.0, ny * dx + 5.0)], crest_m=1.5)
    assert n == ny  # one x face per row crossed
    m.run_one_step(1800.0)
    assert m.depth[:, 20:].max() == 0.0
    m.set_depth(np.where(np.arange(nx) < 20, 2.0, 0.0) * np.ones((ny, 1)))
    m.run_one_step(1800.0)
    assert m.depth[:, 20:].mean() > 0.05
    assert m.volume_balance()["relative_error"] <= 1e-10


def test_diagonal_levee_is_watertight():
    n, dx = 30, 10.0
    t = Terrain.from_array(np.zeros((n, n)), dx, origin=(0.0, n * dx))
    m = FloodModel(t)
    m.add_levee([(-1.0, n * dx + 1.0), (n * dx + 1.0, -1.0)], crest_m=5.0)  # NW -> SE diagonal
    rows, cols = np.mgrid[0:n, 0:n]
    above = cols < rows - 1  # strictly below-left of the diagonal band
    h = np.where(above, 1.0, 0.0)
    m.set_depth(h)
    m.run_one_step(3600.0)
    other = cols > rows + 1
    assert m.depth[other].max() == 0.0


def test_pumps_move_water_at_capacity_and_stop_when_dry():
    t = Terrain.from_array(np.zeros((5, 5)), 10.0)
    m = FloodModel(t)
    h = np.zeros((5, 5))
    h[0, 0] = 2.0  # 200 m3 in one cell, walls around the basin
    m.set_depth(h)
    m.add_pump((0, 0), 0.05)  # out of the domain
    m.run_one_step(600.0)
    vb = m.volume_balance()
    assert 0 < vb["pumped_m3"] <= 0.05 * 600 + 1e-9
    assert vb["relative_error"] <= 1e-12
    m.add_pump((4, 4), 10.0, to_cell=(0, 4))
    for _ in range(20):
        m.run_one_step(600.0)
    assert m.depth.min() >= 0.0
    assert m.volume_balance()["relative_error"] <= 1e-12
