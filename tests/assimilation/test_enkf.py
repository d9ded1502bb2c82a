"""The localised EnKF (twin.assimilation): twin experiments, lake at rest, discharge consistency, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from tests.assimilation.helpers import rmse, twin_experiment
from twin import FloodModel, Terrain
from twin.assimilation import EnsembleKalmanFilter, gaspari_cohn


@pytest.fixture(scope="module")
def valley_ensrf():
    return twin_experiment(n_members=12, method="ensrf", seed=1)


def test_valley_twin_experiment_ensrf(valley_ensrf):
    """Truth 1.6x the prior inflow, 3 stage gauges every 10 min with 2 cm noise, 2 h."""
    e = valley_ensrf
    assert e.unobserved.sum() > 30
    free = rmse(e.free_mean, e.truth, e.unobserved)
    ana = rmse(e.analysis_mean, e.truth, e.unobserved)
    assert free > 0.05                      # the free ensemble is clearly wrong (too little water)
    assert ana <= 0.5 * free                # the tolerance: half the free ensemble's RMSE or better
    spread = float(np.sqrt(np.mean(e.analysis_spread[e.unobserved] ** 2)))
    assert 0.5 <= spread / ana <= 2.0       # spread-skill ratio
    assert abs(e.multiplier_mean - 1.6) <= 0.15 * 1.6
    assert e.min_depth >= 0.0
    # the first analysis moved the ensemble toward the observations
    r0 = e.reports[0]
    assert r0.rmse_posterior_m < r0.rmse_prior_m
    assert r0.mean_volume_change_m3 > 0     # truth is wetter: the analysis adds water


def test_valley_twin_experiment_stochastic():
    e = twin_experiment(n_members=12, method="stochastic", seed=1)
    free = rmse(e.free_mean, e.truth, e.unobserved)
    ana = rmse(e.analysis_mean, e.truth, e.unobserved)
    assert ana <= 0.5 * free
    assert abs(e.multiplier_mean - 1.6) <= 0.15 * 1.6
    assert e.min_depth >= 0.0


def _lake(level=1.0, n=4, offsets=None):
    """A bowl (walls of high ground around a flat-bottomed basin with an island) holding a lake at rest."""
    z = np.full((12, 14), 0.0)
    z[0, :] = z[-1, :] = z[:, 0] = z[:, -1] = 3.0
    z[5:7, 6:8] = 2.0                       # an island that stays dry
    t = Terrain.from_array(z, cell_size=20.0)
    ms = []
    for k in range(n):
        m = FloodModel(t, manning=0.03)
        lv = level + (0.0 if offsets is None else offsets[k])
        m.set_depth(np.maximum(lv - z, 0.0))
        ms.append(m)
    return t, ms


def test_lake_at_rest_stays_at_rest_identical_members():
    t, ms = _lake()
    f = EnsembleKalmanFilter(ms, obs_error_m=0.02, localization_m=100.0, method="stochastic")
    before = [m.depth.copy() for m in ms]
    x, y = t.cell_centers()
    xy = [(x[3], y[3]), (x[9], y[8]), (x[10], y[2])]
    rep = f.assimilate(xy, [1.0, 1.0, 1.0], kind="stage")    # exact observations of the lake level
    for m, b in zip(ms, before):
        np.testing.assert_array_equal(m.depth, b)
        assert np.abs(m.discharge).max() == 0.0
    assert np.all(rep.volume_change_m3 == 0.0)
    f.advance(300.0)
    for m, b in zip(ms, before):
        assert np.abs(m.depth - b).max() < 1e-9
        assert m.speed.max() < 1e-9
    assert np.all(f.mean("depth")[5:7, 6:8] == 0.0)          # the island stays dry


def test_lake_at_rest_members_with_level_errors_become_flat_lakes_at_the_truth():
    """Members are lakes at rest 0.1 m too high/low; exact level observations with a localisation wider than
    the lake: every member is corrected uniformly (still flat, still at rest) toward the true level."""
    offs = np.array([-0.15, -0.05, 0.05, 0.15]) + 0.1
    t, ms = _lake(offsets=offs)
    f = EnsembleKalmanFilter(ms, obs_error_m=0.01, localization_m=1e6)
    x, y = t.cell_centers()
    f.assimilate([(x[3], y[3]), (x[10], y[9])], [1.0, 1.0], kind="stage")
    wet = np.zeros(t.shape, bool)
    wet[1:-1, 1:-1] = True
    wet[5:7, 6:8] = False
    for m in ms:
        eta = (m.depth + t.elevation)[wet]
        assert eta.max() - eta.min() < 1e-6                  # flat
        assert np.abs(m.discharge).max() == 0.0
    mean_eta = f.mean("stage")[wet]
    assert abs(mean_eta.mean() - 1.0) < 0.01                 # prior mean was 1.1
    assert f.spread("stage")[wet].max() < 0.02               # prior spread 0.13
    f.advance(300.0)
    for m in ms:
        assert m.speed.max() < 1e-6


def test_volume_change_is_reported_and_booked():
    offs = np.array([-0.2, 0.0, 0.2])
    t, ms = _lake(offsets=offs, n=3)
    v0 = [m.volume_balance()["volume_m3"] for m in ms]
    f = EnsembleKalmanFilter(ms, obs_error_m=0.05, localization_m=60.0)
    x, y = t.cell_centers()
    rep = f.assimilate([(x[3], y[3])], [1.4], kind="stage")
    for k, m in enumerate(ms):
        vb = m.volume_balance()
        assert rep.volume_change_m3[k] == pytest.approx(vb["volume_m3"] - v0[k], rel=1e-9, abs=1e-6)
        assert abs(vb["error_m3"]) < 1e-6                    # the balance books the analysis as an edit
    assert rep.mean_volume_change_m3 > 0
    # localised: cells beyond 2 x 60 m of the gauge are untouched
    far = ms[0].depth[8:11, 9:13]
    np.testing.assert_allclose(far + t.elevation[8:11, 9:13], 1.0 - 0.2, atol=1e-12)


def test_discharge_scaled_with_depth_and_zeroed_where_a_cell_dries():
    z = np.zeros((5, 12))
    t = Terrain.from_array(z, cell_size=10.0)
    ms = []
    for k in range(2):
        m = FloodModel(t, manning=0.03)
        m.set_depth(0.2 + 0.1 * k)
        st = m.get_state()
        st["solver_state"]["qx"][...] = 0.05
        m.set_state(st)
        ms.append(m)
    f = EnsembleKalmanFilter(ms, obs_error_m=0.01, localization_m=1e5)
    x, y = t.cell_centers()
    # observed depth 0 with a tiny error: the analysis goes below 0 in one member (clipped: dry)
    rep = f.assimilate([(x[5], y[2])], [0.0], kind="depth")
    assert rep.cells_dried > 0 and rep.clipped_m3.max() > 0
    assert min(m.depth.max() for m in ms) <= 1e-3
    for m in ms:
        qx, qy = m.face_discharge()
        dry = m.depth <= 1e-3
        faces = np.zeros(qx.shape, bool)
        faces[:, :-1] |= dry
        faces[:, 1:] |= dry
        assert np.all(qx[faces] == 0.0)
    # velocity kept: depth x2 -> discharge x2
    ms2 = []
    for k in range(2):
        m = FloodModel(t, manning=0.03)
        m.set_depth(0.2 + 0.2 * k)
        st = m.get_state()
        st["solver_state"]["qx"][...] = 0.04 * (1 + k)       # the same velocity 0.2 m/s in both
        m.set_state(st)
        ms2.append(m)
    f = EnsembleKalmanFilter(ms2, obs_error_m=1e-4, localization_m=1e5)
    f.assimilate([(x[5], y[2])], [0.3], kind="depth")
    for m in ms2:
        v = m.face_discharge()[0][2, 6] / m.depth[2, 6]
        assert v == pytest.approx(0.2, rel=1e-3)


def test_gaspari_cohn():
    r = np.array([0.0, 0.5, 1.0 - 1e-9, 1.0 + 1e-9, 1.5, 2.0, 3.0])
    g = gaspari_cohn(r)
    assert g[0] == 1.0 and g[-2] == pytest.approx(0.0, abs=1e-12) and g[-1] == 0.0
    assert g[2] == pytest.approx(g[3], abs=1e-6)            # continuous at 1
    assert g[1] == pytest.approx(-0.25 * 0.5**5 + 0.5 * 0.5**4 + 0.625 * 0.5**3 - 5 / 3 * 0.25 + 1)
    assert np.all(np.diff(gaspari_cohn(np.linspace(0, 2, 201))) <= 1e-15)


def test_bad_input_is_refused_naming_it():
    t, ms = _lake(n=3)
    x, y = t.cell_centers()
    with pytest.raises(ValueError, match="at least 2 members"):
        EnsembleKalmanFilter(ms[:1])
    other = FloodModel(Terrain.from_array(np.zeros((12, 14)), cell_size=20.0))
    with pytest.raises(ValueError, match=r"models\[3\]: its terrain differs.*elevations"):
        EnsembleKalmanFilter(ms + [other])
    other = FloodModel(Terrain.from_array(np.zeros((10, 14)), cell_size=20.0))
    with pytest.raises(ValueError, match=r"models\[3\].*shape"):
        EnsembleKalmanFilter(ms + [other])
    with pytest.raises(ValueError, match="obs_error_m"):
        EnsembleKalmanFilter(ms, obs_error_m=0.0)
    with pytest.raises(ValueError, match="localization_m"):
        EnsembleKalmanFilter(ms, localization_m=float("nan"))
    with pytest.raises(ValueError, match=r"params\['q'\]: expected one value per member"):
        EnsembleKalmanFilter(ms, params={"q": [1.0, 2.0]})
    f = EnsembleKalmanFilter(ms)
    with pytest.raises(ValueError, match=r"xy\[1\] = \(9999.0, .*outside the model domain"):
        f.assimilate([(x[3], y[3]), (9999.0, y[3])], [1.0, 1.0], kind="stage")
    with pytest.raises(ValueError, match=r"values_m\[0\]: observation value must be finite, got nan"):
        f.assimilate([(x[3], y[3])], [float("nan")], kind="stage")
    with pytest.raises(ValueError, match=r"xy\[0\]: observation coordinates must be finite"):
        f.assimilate([(float("nan"), y[3])], [1.0], kind="stage")
    with pytest.raises(ValueError, match="kind"):
        f.assimilate([(x[3], y[3])], [1.0], kind="velocity")
    with pytest.raises(ValueError, match=r"values_m: 2 values for 1"):
        f.assimilate([(x[3], y[3])], [1.0, 2.0], kind="stage")
    with pytest.raises(ValueError, match=r"values_m\[0\]: an observed depth must be >= 0"):
        f.assimilate([(x[3], y[3])], [-0.5], kind="depth")
    with pytest.raises(ValueError, match="field"):
        f.mean("speed")


def test_flood_model_depth_window_edit_is_booked_and_checked():
    t = Terrain.from_array(np.zeros((6, 8)), cell_size=10.0)
    m = FloodModel(t)
    m.set_depth(0.5)
    m.run_one_step(1.0)
    win = (slice(1, 3), slice(2, 5))
    np.testing.assert_allclose(m.depth_window(win), 0.5)
    dv = m.set_depth_window(win, np.full((2, 3), 0.7))
    assert dv == pytest.approx(6 * 0.2 * 100.0)
    assert abs(m.volume_balance()["error_m3"]) < 1e-9
    assert m.max_depth[1, 2] == pytest.approx(0.7)
    with pytest.raises(ValueError, match=r"depth: value -1.0 at \(row 2, col 3\) must be finite and >= 0"):
        m.set_depth_window(win, np.array([[0.1, 0.1, 0.1], [0.1, -1.0, 0.1]]))
    with pytest.raises(ValueError, match=r"depth: value nan at \(row 1, col 4\)"):
        m.set_depth_window(win, np.array([[0.1, 0.1, np.nan], [0.1, 0.1, 0.1]]))
    np.testing.assert_allclose(m.depth_window(win), 0.7)    # a refused edit changes nothing
    with pytest.raises(ValueError, match=r"expected shape \(2, 3\)"):
        m.set_depth_window(win, np.zeros((3, 3)))


def test_face_discharge_takes_the_mean_depth_ratio_of_its_cells_and_stays_outside_the_window():
    t = Terrain.from_array(np.zeros((20, 30)), cell_size=10.0)
    ms = []
    for k in range(3):
        m = FloodModel(t, manning=0.03)
        m.set_depth(0.5 + 0.1 * k)
        st = m.get_state()
        st["solver_state"]["qx"][...] = 0.1
        st["solver_state"]["qy"][...] = -0.05
        m.set_state(st)
        ms.append(m)
    before = [m.depth for m in ms]
    f = EnsembleKalmanFilter(ms, obs_error_m=0.02, localization_m=30.0)     # touches cells within 60 m
    x, y = t.cell_centers()
    f.assimilate([(x[15], y[10])], [0.3], kind="depth")
    for m, h0 in zip(ms, before):
        r = m.depth / h0
        qx, qy = m.face_discharge()
        np.testing.assert_allclose(qx[:, 1:-1], 0.1 * 0.5 * (r[:, :-1] + r[:, 1:]), rtol=1e-12)
        np.testing.assert_allclose(qy[1:-1, :], -0.05 * 0.5 * (r[:-1, :] + r[1:, :]), rtol=1e-12)
        assert np.all(qx[:, :5] == 0.1) and np.all(qy[:3, :] == -0.05)           # far from the gauge
        assert r[10, 15] < 1.0 and np.all(r[:, :5] == 1.0)


def test_finite_volume_members_keep_velocity_and_balance():
    t = Terrain.from_array(np.zeros((10, 12)), cell_size=20.0)
    ms = []
    for k in range(3):
        m = FloodModel(t, solver="fv", threads=1)
        m.set_depth(0.5 + 0.1 * k)
        m.add_inflow([(5, 0)], hydrograph=(np.array([0.0]), np.array([2.0])))
        m.run_one_step(60.0)
        ms.append(m)
    q0 = [m.discharge for m in ms]
    h0 = [m.depth for m in ms]
    f = EnsembleKalmanFilter(ms, localization_m=1e4)
    rep = f.assimilate([(100.0, -100.0)], [0.55], kind="depth")
    assert rep.rmse_posterior_m < 0.5 * rep.rmse_prior_m
    for m, q, h in zip(ms, q0, h0):
        np.testing.assert_allclose(m.discharge, q * (m.depth / h), rtol=1e-9)   # cell-centred: velocity kept
        assert abs(m.volume_balance()["error_m3"]) < 1e-6
