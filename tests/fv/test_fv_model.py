"""FloodModel(solver="fv"/"fv2"): the same inputs, forcing, boundaries, structures, outputs and API
as the inertial solver; breaches (linear and Froehlich 2008) for both solvers."""
from __future__ import annotations

import numpy as np
import pytest

from twin import FloodModel, Terrain
from twin.flood.breach import froehlich_2008

from .analytic import G

X0, Y0 = 500000.0, 1700000.0
FV_SOLVERS = ["fv", "fv2"]


def bowl(n=40, dx=5.0, nodata_corner=False):
    yy, xx = np.mgrid[0:n, 0:n]
    z = 0.002 * ((xx - n / 2) ** 2 + (yy - n / 2) ** 2) * dx / 5 + 0.3 * np.sin(xx / 3.0) * np.cos(yy / 4.0)
    if nodata_corner:
        z[:5, :5] = np.nan
    return Terrain.from_array(z, cell_size=dx, origin=(X0, Y0), crs="EPSG:32649")


def busy_model(solver, threads=None, dtype="float64"):
    """Every kind of forcing and structure at once (as the flood room's own busy model)."""
    m = FloodModel(bowl(60, nodata_corner=True), dtype=dtype, threads=threads, solver=solver)
    m.set_depth(np.where(m.terrain.valid, np.clip(0.4 - m.terrain.elevation, 0, None), 0))
    m.set_rainfall([0.0, 600.0, 1200.0], [0.0, 80.0, 10.0])
    m.set_loss_rate(2.0)
    m.add_inflow([(30, 2), (31, 2)], hydrograph=([0.0, 900.0], [2.0, 0.5]))
    m.add_pump((20, 40), 0.3, to_cell=(50, 50))
    m.add_pump((45, 10), 0.05)
    m.set_boundary("east", "free")
    m.set_boundary("south", "stage", times_s=[0.0, 1200.0], stage_m=[0.2, 0.6])
    m.set_boundary(None, "stage", times_s=[0.0], stage_m=[0.5], cells=[(10, 20), (10, 21)])
    m.add_levee([(X0 + 100.0, Y0 - 20.0), (X0 + 150.0, Y0 - 250.0)], crest_m=1.5)
    return m


@pytest.mark.parametrize("solver", FV_SOLVERS)
def test_uniform_rain_on_closed_flat_box_gives_exact_depth(solver):
    m = FloodModel(Terrain.from_array(np.zeros((20, 30)), cell_size=10.0), manning=0.03, solver=solver)
    m.set_rainfall([0.0, 3600.0], [36.0, 36.0])  # 36 mm/h = 1e-5 m/s
    m.run_one_step(1000.0)
    assert m.time == 1000.0
    np.testing.assert_allclose(m.depth, 0.01, rtol=0, atol=1e-12)
    assert np.all(m.discharge == 0)
    assert m.volume_balance()["relative_error"] <= 1e-12


@pytest.mark.parametrize("solver", FV_SOLVERS)
def test_busy_model_balances_volume(solver):
    """Rain, losses, inflows, pumps, free and stage edges, stage cells, a levee: volume balance
    closes to 1e-10 (float64 round-off)."""
    m = busy_model(solver)
    for _ in range(4):
        m.run_one_step(300.0)
    vb = m.volume_balance()
    assert vb["outflow_m3"] > 0 and vb["inflow_m3"] > 0 and vb["rain_m3"] > 0 and vb["lost_m3"] > 0
    assert vb["relative_error"] <= 1e-10
    assert np.all(np.isfinite(m.depth)) and m.depth.min() >= 0
    assert np.all(m.max_depth >= m.depth)
    ny, nx = m.shape
    assert m.discharge.shape == (2, ny, nx) and m.velocity.shape == (2, ny, nx)
    assert np.nanmax(m.arrival_time) <= m.time


@pytest.mark.parametrize("solver,dtype", [("fv", "float64"), ("fv2", "float64"), ("fv", "float32")])
def test_one_and_two_threads_bit_identical(solver, dtype):
    a, b = busy_model(solver, 1, dtype), busy_model(solver, 2, dtype)
    for _ in range(2):
        a.run_one_step(200.0)
        b.run_one_step(200.0)
    assert a.n_steps == b.n_steps
    for name in ("depth", "discharge", "max_depth", "max_speed", "arrival_time"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.volume_balance() == b.volume_balance()


def test_state_round_trip_is_bit_identical():
    a = busy_model("fv", 1)
    a.run_one_step(300.0)
    snap = a.get_state()
    a.run_one_step(300.0)
    b = busy_model("fv", 1)
    b.set_state(snap)
    b.run_one_step(300.0)
    assert a.n_steps == b.n_steps and a.time == b.time
    for name in ("depth", "discharge", "max_depth", "max_speed", "arrival_time"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.volume_balance() == b.volume_balance()


def test_float32_runs_and_balances():
    m = busy_model("fv", dtype="float32")
    m.run_one_step(600.0)
    assert m.depth.dtype == np.float32
    assert m.volume_balance()["relative_error"] <= 1e-5


@pytest.mark.parametrize("solver", FV_SOLVERS)
def test_levee_holds_a_lake_at_rest(solver):
    """A levee (face crests) with a 2 m lake on one side and dry land on the other: nothing moves."""
    z = np.zeros((10, 30))
    m = FloodModel(Terrain.from_array(z, 10.0, origin=(X0, Y0)), solver=solver)
    h = np.zeros((10, 30))
    h[:, :15] = 2.0
    m.set_depth(h)
    m.add_levee([(X0 + 150.0, Y0 + 10.0), (X0 + 150.0, Y0 - 110.0)], crest_m=3.0)
    m.run_one_step(120.0)
    np.testing.assert_array_equal(m.depth, h)
    assert np.abs(m.discharge).max() == 0


def test_nodata_cells_are_walls():
    z = np.zeros((10, 10))
    z[:, 5] = np.nan
    m = FloodModel(Terrain.from_array(z, 10.0), solver="fv")
    h = np.zeros((10, 10))
    h[:, :5] = 1.0
    m.set_depth(h)
    m.run_one_step(300.0)
    assert m.depth[:, 5:].max() == 0.0
    assert m.volume_balance()["relative_error"] < 1e-13


def test_unknown_solver_is_named():
    with pytest.raises(ValueError, match="solver"):
        FloodModel(Terrain.from_array(np.zeros((4, 4)), 10.0), solver="fv3")


# ------------------------------------------------------------------ breaches
def dam_strip(solver, nx=200, dx=2.0, h0=10.0, dam_col=100):
    """A 1-D strip: a 10 m reservoir behind a 12 m dam (one cell) at column 100, dry flat bed below."""
    z = np.zeros((1, nx))
    z[0, dam_col] = 12.0
    t = Terrain.from_array(z, dx, origin=(X0, Y0))
    m = FloodModel(t, manning=0.0, solver=solver)
    h = np.zeros((1, nx))
    h[0, :dam_col] = h0
    m.set_depth(h)
    x_dam = X0 + (dam_col + 0.5) * dx
    return m, [(x_dam, Y0 - 0.5 * dx), (x_dam, Y0 - 0.6 * dx)]


def test_instant_breach_reproduces_ritter_at_the_dam():
    """A dam breached to the bed at once behaves as Ritter's dam break: depth at the dam site
    = 4/9 h0 and unit discharge (8/27) sqrt(g) h0^1.5, within 3 % (first order, 2 m cells)."""
    m, line = dam_strip("fv")
    m.add_breach(line, crest_start_m=12.0, crest_end_m=0.0, t_start_s=5.0, duration_s=0.0)
    m.run_one_step(5.0)
    assert m.depth[0, 101:].max() == 0.0  # nothing passes before the breach
    m.run_one_step(10.0)
    assert m._z[0, 100] == 0.0
    h_dam = m.depth[0, 100]
    q_dam = m.discharge[0, 0, 100]
    assert abs(h_dam - 4 / 9 * 10.0) <= 0.03 * 4 / 9 * 10.0
    q_exact = 8 / 27 * np.sqrt(G) * 10.0**1.5
    assert abs(q_dam - q_exact) <= 0.03 * q_exact
    assert m.volume_balance()["relative_error"] <= 1e-12


@pytest.mark.parametrize("solver", ["inertial", "fv"])
def test_linear_breach_lowers_the_crest_in_time_for_both_solvers(solver):
    """Linear lowering from 12 m to 4 m over 100 s from t = 20 s: no flow before, crest at 8 m at
    t = 70 s (the bed follows at each sub-step's middle: within 0.05 m), 4 m from 120 s; water
    passes once the crest is below the lake; volume conserved."""
    m, line = dam_strip(solver)
    br = m.add_breach(line, 12.0, 4.0, 20.0, 100.0)
    m.run_one_step(20.0)
    assert m.depth[0, 101:].max() == 0.0
    m.run_one_step(50.0)
    assert br.crest_at(70.0) == 8.0
    assert m._z[0, 100] == pytest.approx(8.0, abs=0.05)
    assert m.depth[0, 101:].max() > 0.1  # 10 m lake over an 8 m crest
    m.run_one_step(100.0)
    assert m._z[0, 100] == pytest.approx(4.0, abs=1e-12)
    assert br.crest_at(1e9) == 4.0
    assert m.volume_balance()["relative_error"] <= 1e-10


def test_breach_lowers_a_levee_too():
    """A levee (face crest 3 m) holding a 2 m lake is breached down to the ground (0 m)."""
    m = FloodModel(Terrain.from_array(np.zeros((10, 30)), 10.0, origin=(X0, Y0)), solver="fv")
    h = np.zeros((10, 30))
    h[:, :15] = 2.0
    m.set_depth(h)
    levee = [(X0 + 150.0, Y0 + 10.0), (X0 + 150.0, Y0 - 110.0)]
    m.add_levee(levee, crest_m=3.0)
    m.add_breach(levee, crest_start_m=3.0, crest_end_m=0.0, t_start_s=60.0, duration_s=60.0,
                 width_m=40.0, thickness_m=10.0)
    m.run_one_step(60.0)
    assert m.depth[:, 15:].max() == 0.0
    m.run_one_step(240.0)
    assert m.depth[:, 15:].sum() > 10.0
    # the opening is 40 m wide around the middle: the corners' faces keep the levee
    assert m._levee_x[0 * 31 + 15] == 3.0 and m._levee_x[5 * 31 + 15] == 0.0
    assert m.volume_balance()["relative_error"] <= 1e-12


def test_froehlich_2008_parameters_and_breach():
    """Froehlich (2008): V_w = 1e8 m3, h_b = 20 m, overtopping: B_avg = 0.27*1.3*V^0.32*h^0.04
    = 143.7 m, t_f = 63.2 sqrt(V/(g h^2)) = 10 088 s (hand-computed); piping: k_o = 1, slope 0.7."""
    p = froehlich_2008(1e8, 20.0, "overtopping")
    assert p["width_avg_m"] == pytest.approx(143.7, rel=2e-3)
    assert p["time_s"] == pytest.approx(10088.0, rel=2e-3)
    assert p["side_slope"] == 1.0 and p["bottom_width_m"] == pytest.approx(143.7 - 20.0, rel=3e-3)
    q = froehlich_2008(1e8, 20.0, "piping")
    assert q["width_avg_m"] == pytest.approx(143.7 / 1.3, rel=2e-3) and q["side_slope"] == 0.7
    m, line = dam_strip("fv")
    br = m.add_breach(line, 12.0, 0.0, 0.0, method="froehlich2008", reservoir_volume_m3=2000.0)
    assert br.duration_s == pytest.approx(63.2 * np.sqrt(2000.0 / (G * 144.0)))
    assert br.progress(br.duration_s / 2) == 0.5


def test_breach_arguments_are_validated():
    m, line = dam_strip("fv")
    with pytest.raises(ValueError, match="crest_end_m"):
        m.add_breach(line, 5.0, 6.0, 0.0, 10.0)
    with pytest.raises(ValueError, match="outside"):
        m.add_breach([(0.0, 0.0), (1.0, 1.0)], 12.0, 0.0, 0.0, 10.0)
    with pytest.raises(ValueError, match="reservoir_volume_m3"):
        m.add_breach(line, 12.0, 0.0, 0.0, method="froehlich2008")
    with pytest.raises(ValueError, match="method"):
        m.add_breach(line, 12.0, 0.0, 0.0, 10.0, method="instant")
    with pytest.raises(ValueError, match="duration_s"):
        m.add_breach(line, 12.0, 0.0, 0.0)
