"""EnKF members on Dask workers (``enkf.dask``): the same analysis as members in this process.

Equality tolerance: 1e-10 m absolute on depths, discharges and report values. Member states and the
windows are bit-identical; only the ensemble-mean sums are added in another order (per worker, then
across workers), which changes the last bits (~1e-16 relative) of the means."""
from __future__ import annotations

import socket

import numpy as np
import pandas as pd
import pytest

from tests.assimilation.helpers import gauge_xy, member, valley
from twin.assimilation import EnsembleKalmanFilter
from twin.assimilation.dask_members import DaskEnsembleKalmanFilter, DaskMembers
from twin.flood import FloodModel
from twin.sensors import Datastream, SensorStore, Station
from twin.sensors.assimilation import Assimilator
from twin.terrain import Terrain

ATOL = 1e-10


@pytest.fixture(scope="module")
def cluster():
    from dask.distributed import Client, LocalCluster

    lc = LocalCluster(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=":0")
    client = Client(lc)
    try:
        yield lc, client
    finally:
        client.close()
        lc.close()


def _reports_equal(a, b):
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        for k in ("rmse_prior_m", "rmse_posterior_m", "spread_prior_m", "spread_posterior_m", "innovation_mean_m"):
            assert getattr(ra, k) == pytest.approx(getattr(rb, k), abs=ATOL), k
        np.testing.assert_allclose(ra.volume_change_m3, rb.volume_change_m3, atol=1e-6)   # m3 on 50 m cells
        np.testing.assert_allclose(ra.posterior_mean_m, rb.posterior_mean_m, atol=ATOL)
        assert (ra.n_cells_updated, ra.cells_dried) == (rb.n_cells_updated, rb.cells_dried)


def test_valley_twin_experiment_dask_members_equal_in_process(cluster):
    """Truth 1.6x the members' mean inflow, 3 stage gauges every 10 min, 1 h: 7 members in process and
    the same 7 members on 2 workers (4 + 3) give the same analyses, mean and spread."""
    _, client = cluster
    t = valley()
    rng = np.random.default_rng(5)
    mult = np.clip(rng.normal(1.0, 0.25, 7), 0.3, None)
    truth, _ = member(t, 1.6)
    local = EnsembleKalmanFilter([member(t, mk)[0] for mk in mult], obs_error_m=0.02, localization_m=600.0,
                                 inflation=1.02, seed=2)
    dm = DaskMembers.from_models(client, [member(t, mk)[0] for mk in mult], workers=2)
    try:
        remote = DaskEnsembleKalmanFilter(dm, obs_error_m=0.02, localization_m=600.0, inflation=1.02, seed=2)
        assert dm.sizes == [4, 3] and remote.n_members == 7
        xy = gauge_xy(t)
        rows, cols = np.full(len(xy), 4), np.array([6, 12, 18])
        for _ in range(6):
            truth.run_one_step(600.0)
            local.advance(600.0)
            remote.advance(600.0)
            assert remote.time == local.time
            obs = t.elevation[rows, cols] + truth.depth[rows, cols] + rng.normal(0.0, 0.02, 3)
            local.assimilate(xy, obs, kind="stage")
            remote.assimilate(xy, obs, kind="stage")
        _reports_equal(local.reports, remote.reports)
        assert local.reports[0].rmse_posterior_m < 0.5 * local.reports[0].rmse_prior_m   # a real analysis
        assert local.reports[0].mean_volume_change_m3 > 0
        np.testing.assert_allclose(remote.mean("depth"), local.mean("depth"), rtol=0, atol=ATOL)
        np.testing.assert_allclose(remote.spread("depth"), local.spread("depth"), rtol=0, atol=ATOL)
        assert float(local.spread("depth").max()) > 0.01
        np.testing.assert_allclose(remote.mean("stage"), local.mean("stage"), rtol=0, atol=ATOL)
        with pytest.raises(AttributeError, match="live on Dask workers"):
            remote.models  # noqa: B018
    finally:
        dm.close()


# ------------------------------------------------------------------ the live twin's Assimilator
NY, NX, DX = 12, 40, 50.0
X0, Y0 = 600_000.0, 1_730_000.0
START_LOCAL = "2020-10-28 07:00"           # = 00:00 UTC
START_UTC = pd.Timestamp("2020-10-28 00:00")
GAUGES = ((NY // 2, 12), (NY // 2, 28))
INFLOW_ROWS = [[NY // 2 + d, 0] for d in (-2, -1, 0, 1)]


def _terrain():
    x = (np.arange(NX) + 0.5) * DX
    r = np.abs(np.arange(NY) - (NY - 1) / 2) / ((NY - 1) / 2)
    z = 5.0 - x[None, :] / 1000.0 + 2.0 * r[:, None] ** 2
    return Terrain.from_array(z, DX, origin=(X0, Y0), crs="EPSG:32649")


def _store(tmp_path, terr, n_steps, dt_c):
    """Water levels of a truth with 30 m3/s; the upstream stage says 10 m3/s (rating a=10, b=1); rain 20 mm/h."""
    xs, ys = terr.cell_centers()
    truth = FloodModel(terr, manning=0.04, threads=1)
    truth.add_inflow(np.array(INFLOW_ROWS), hydrograph=(np.array([0.0]), np.array([30.0])))
    truth.set_boundary("east", "free")
    ts, wl = [], []
    for k in range(1, n_steps + 1):
        truth.run_one_step(dt_c)
        ts.append(START_UTC + pd.Timedelta(seconds=k * dt_c))
        wl.append([terr.elevation[rc] + truth.depth[rc] for rc in GAUGES])
    wl = np.array(wl)
    t64 = np.array(ts, dtype="datetime64[us]")
    path = tmp_path / "wl.duckdb"
    with SensorStore(path) as st:
        st.register([Station(f"G{i}", x=float(xs[c]), y=float(ys[r])) for i, (r, c) in enumerate(GAUGES)]
                    + [Station("UP", x=float(xs[0]), y=float(ys[NY // 2])), Station("R", x=float(xs[20]), y=float(ys[2]))],
                    [Datastream(f"g{i}-wl", f"G{i}", "water_level", "m") for i in range(len(GAUGES))]
                    + [Datastream("up-stage", "UP", "stage", "m"), Datastream("r-rain", "R", "rain_rate", "mm/h")])
        for i in range(len(GAUGES)):
            st.insert(f"g{i}-wl", t64, wl[:, i])
        st.insert("up-stage", t64, np.ones(n_steps))
        st.insert("r-rain", t64, np.full(n_steps, 20.0))
    return path


def _run(path, terr, cfg, n_steps, dt_c):
    m = FloodModel(terr, manning=0.04, threads=1)
    m.set_boundary("east", "free")
    a = Assimilator(path, cfg, terr, START_LOCAL)
    try:
        depths, qx = [], []
        for k in range(1, n_steps + 1):
            m.run_one_step(dt_c)
            a.apply(m, k * dt_c)
            depths.append(np.array(m.depth, np.float64))
            qx.append(np.array(m.get_state()["solver_state"]["qx"], np.float64))
        return np.array(depths), np.array(qx), list(a.ensemble.reports), a.history
    finally:
        a.close()


def test_assimilator_enkf_on_dask_equals_in_process(tmp_path, cluster):
    """Same seed and members: rain, a rated inflow and two water-level gauges; the model (the ensemble mean)
    and the analyses with members on 2 Dask workers equal those with members in this process."""
    lc, _ = cluster
    terr = _terrain()
    n_steps, dt_c = 12, 120.0
    path = _store(tmp_path, terr, n_steps, dt_c)
    enkf = {"members": 5, "obs_error_m": 0.03, "localization_m": 600.0, "model_error": 0.1, "max_age_s": 200.0,
            "seed": 3, "datastreams": ["g0-wl", "g1-wl"], "rain_sigma": 0.3}
    base = {"method": "enkf", "rain": {"method": "idw", "max_age_s": 200.0},
            "inflow": [{"datastream": "up-stage", "cells": INFLOW_ROWS, "mode": "discharge",
                        "rating": {"a": 10.0, "h0": 0.0, "b": 1.0}, "max_age_s": 200.0}]}
    d_loc, q_loc, r_loc, h_loc = _run(path, terr, {**base, "enkf": enkf}, n_steps, dt_c)
    d_dsk, q_dsk, r_dsk, h_dsk = _run(path, terr, {**base, "enkf": {**enkf, "dask": {
        "scheduler": lc.scheduler_address, "workers": 2}}}, n_steps, dt_c)
    assert float(d_loc[-1].max()) > 0.2 and float(np.abs(q_loc[-1]).max()) > 0.05    # water flows
    np.testing.assert_allclose(d_dsk, d_loc, rtol=0, atol=ATOL)
    np.testing.assert_allclose(q_dsk, q_loc, rtol=0, atol=ATOL)
    _reports_equal(r_loc, r_dsk)
    assert len(r_loc) == n_steps and r_loc[-1].rmse_posterior_m < r_loc[-1].rmse_prior_m
    for a, b in zip(h_loc, h_dsk):
        np.testing.assert_allclose(b["model_after_m"], a["model_after_m"], rtol=0, atol=ATOL)


def test_dask_scheduler_unreachable_and_bad_config(tmp_path):
    terr = _terrain()
    path = tmp_path / "s.duckdb"
    with SensorStore(path):
        pass
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    addr = f"tcp://127.0.0.1:{port}"            # nothing listens there
    with pytest.raises(ValueError, match=rf"assimilation.enkf.dask.scheduler: cannot reach the Dask scheduler at '{addr}'"):
        Assimilator(path, {"method": "enkf", "enkf": {"dask": {"scheduler": addr, "connect_timeout_s": 0.5}}},
                    terr, START_LOCAL)
    for dcfg, msg in (({"workers": 0}, r"assimilation.enkf.dask.workers: expected an integer >= 1, got 0"),
                      ({"schedular": "local"}, r"assimilation.enkf.dask: unknown key\(s\) \['schedular'\]"),
                      ({"scheduler": 5}, r"assimilation.enkf.dask.scheduler: expected 'local' or a scheduler address"),
                      ({"scheduler": "nonsense"}, r"assimilation.enkf.dask.scheduler: 'nonsense' is not 'local' nor a "),
                      ("local", r"assimilation.enkf.dask: expected a mapping")):
        with pytest.raises(ValueError, match=msg):
            Assimilator(path, {"method": "enkf", "enkf": {"dask": dcfg}}, terr, START_LOCAL)



def test_enkf_members_get_the_rain_the_model_gets(tmp_path):
    """Regression: members were advanced over (t_prev, t] after the rain series set at t had replaced the
    one of t_prev, and a one-point series is zero before its time: members got no rain at all. Now they
    catch up before the new forcing is set (rain_sigma 0: the model's rain exactly)."""
    terr = _terrain()
    xs, ys = terr.cell_centers()
    path = tmp_path / "rain.duckdb"
    t64 = np.array([START_UTC + pd.Timedelta(seconds=k * 120.0) for k in range(1, 7)], dtype="datetime64[us]")
    with SensorStore(path) as st:
        st.register([Station("R", x=float(xs[20]), y=float(ys[2]))], [Datastream("r-rain", "R", "rain_rate", "mm/h")])
        st.insert("r-rain", t64, np.full(6, 20.0))
    m = FloodModel(terr, manning=0.04, threads=1)
    a = Assimilator(path, {"method": "enkf", "rain": {"max_age_s": 200.0},
                           "enkf": {"members": 3, "rain_sigma": 0.0, "model_error": 0.0}}, terr, START_LOCAL)
    try:
        for k in range(1, 7):
            m.run_one_step(120.0)
            a.apply(m, k * 120.0)
        m.run_one_step(120.0)
        a._advance_members(7 * 120.0)
        want = m.volume_balance()["rain_m3"]
        assert want == pytest.approx(12 * 40 * 2500.0 * 0.020 * 6 * 120.0 / 3600.0)   # rain from t = 120 s on
        for mm in a.ensemble.models:
            assert mm.volume_balance()["rain_m3"] == pytest.approx(want, rel=1e-12)
    finally:
        a.close()


def test_scheduler_local_starts_and_closes_its_cluster(tmp_path):
    """``scheduler: local``: the Assimilator starts a LocalCluster (worker processes), the members live
    there, and close() shuts it down."""
    terr = _terrain()
    path = _store(tmp_path, terr, 3, 120.0)
    m = FloodModel(terr, manning=0.04, threads=1)
    m.set_boundary("east", "free")
    a = Assimilator(path, {"method": "enkf", "enkf": {"members": 2, "max_age_s": 200.0, "datastreams": ["g0-wl"],
                                                      "dask": {"scheduler": "local", "workers": 1}}}, terr, START_LOCAL)
    try:
        cluster = a._dask_cluster
        assert cluster is not None and len(cluster.workers) == 1
        for k in (1, 2):
            m.run_one_step(120.0)
            a.apply(m, k * 120.0)
        assert a.ensemble.n_members == 2 and len(a.ensemble.reports) == 2
        assert a.ensemble.time == pytest.approx(240.0)
    finally:
        a.close()
    assert cluster.status.name == "closed" and a._dask_client is None


def test_latest_observations_come_in_a_fixed_order(tmp_path):
    """Regression: ``latest`` returned DuckDB's GROUP BY order, which varies from run to run; the serial
    EnKF depends on the order of the observations, so the same run could give different analyses (seen as
    a rare mismatch of the in-process and Dask runs above). Now ordered by datastream id."""
    names = [f"s{i:02d}" for i in np.random.default_rng(1).permutation(12)]
    path = tmp_path / "o.duckdb"
    t64 = np.array([START_UTC + pd.Timedelta(seconds=100)], dtype="datetime64[us]")
    with SensorStore(path) as st:
        st.register([Station(n.upper(), x=X0 + 10.0 * i, y=Y0 - 100.0) for i, n in enumerate(names)],
                    [Datastream(n, n.upper(), "water_level", "m") for n in names])
        for n in names:
            st.insert(n, t64, np.array([1.0]))
    a = Assimilator(path, {}, _terrain(), START_LOCAL)
    try:
        assert a.latest(names, 120.0, 600.0)["datastream_id"].tolist() == sorted(names)
    finally:
        a.close()


def test_member_payload_refuses_anything_but_twin_models():
    """A member payload is unpickled with an allow-list: the classes members are made of load; a payload
    naming anything else (here os.system through __reduce__) is refused by name and nothing runs."""
    import os
    import pickle

    from twin.assimilation.dask_members import load_payload

    m = FloodModel(_terrain(), manning=0.04, threads=1)
    m.set_boundary("east", "free")
    models, held = load_payload(pickle.dumps(([m, m], [{}, {}]), protocol=5))
    assert models[0] is models[1] and np.array_equal(models[0].depth, m.depth) and held == [{}, {}]

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > /dev/null",))

    with pytest.raises(pickle.UnpicklingError, match=r"refusing posix\.system"):
        load_payload(pickle.dumps(([Evil()], [{}])))
    with pytest.raises(pickle.UnpicklingError, match=r"refusing builtins\.eval"):
        load_payload(pickle.dumps((eval, [])))
