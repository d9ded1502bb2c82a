"""Assimilation on the real FloodModel: nudging against a reference ("truth") run, held inflow."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from twin.flood import FloodModel
from twin.sensors import Datastream, SensorStore, Station
from twin.sensors.assimilation import Assimilator
from twin.terrain import Terrain

NY, NX, DX = 20, 60, 50.0
X0, Y0 = 600_000.0, 1_730_000.0
START_LOCAL = "2020-10-28 07:00"           # = 00:00 UTC
START_UTC = pd.Timestamp("2020-10-28 00:00")


def _terrain():
    # a valley sloping east (1:1000) with banks rising 2 m to the north and south edges
    x = (np.arange(NX) + 0.5) * DX
    r = np.abs(np.arange(NY) - (NY - 1) / 2) / ((NY - 1) / 2)
    z = 5.0 - x[None, :] / 1000.0 + 2.0 * r[:, None] ** 2
    return Terrain.from_array(z, DX, origin=(X0, Y0), crs="EPSG:32649")


def _model(terr, q):
    m = FloodModel(terr, manning=0.04)
    rows = np.arange(NY // 2 - 3, NY // 2 + 3)
    m.add_inflow(np.column_stack([rows, np.zeros_like(rows)]), hydrograph=(np.array([0.0]), np.array([q])))
    m.set_boundary("east", "free")
    return m


GAUGE_RC = (NY // 2, 40)


def test_nudging_reduces_error_against_reference_run(tmp_path):
    terr = _terrain()
    xs, ys = terr.cell_centers()
    gx, gy = float(xs[GAUGE_RC[1]]), float(ys[GAUGE_RC[0]])
    dt_c, n_steps = 60.0, 120
    # reference run: the true inflow (40 m3/s); its water level at the gauge is the observation
    truth = _model(terr, 40.0)
    obs_t, obs_wl = [], []
    for k in range(1, n_steps + 1):
        truth.run_one_step(dt_c)
        if k % 5 == 0:
            obs_t.append(START_UTC + pd.Timedelta(seconds=k * dt_c))
            obs_wl.append(terr.elevation[GAUGE_RC] + truth.depth[GAUGE_RC])
    path = tmp_path / "wl.duckdb"
    with SensorStore(path) as st:
        st.register([Station("G1", x=gx, y=gy)], [Datastream("g1-wl", "G1", "water_level", "m")])
        st.insert("g1-wl", np.array(obs_t, dtype="datetime64[us]"), np.array(obs_wl))

    def run(assimilate: bool):
        m = _model(terr, 10.0)              # the model's inflow is wrong by a factor of 4
        a = Assimilator(path, {"nudging": {"relaxation_time_s": 300.0, "radius_m": 400.0, "max_age_s": 600}},
                        terr, START_LOCAL) if assimilate else None
        err = []
        for k in range(1, n_steps + 1):
            m.run_one_step(dt_c)
            if a is not None:
                a.apply(m, k * dt_c)
            if k % 5 == 0:
                err.append(terr.elevation[GAUGE_RC] + m.depth[GAUGE_RC] - obs_wl[k // 5 - 1])
        return np.array(err), a

    e_free, _ = run(False)
    e_nudged, a = run(True)
    rmse_free = float(np.sqrt(np.mean(e_free[6:] ** 2)))
    rmse_nudged = float(np.sqrt(np.mean(e_nudged[6:] ** 2)))
    assert rmse_free > 0.05                       # the wrong inflow really is wrong
    assert rmse_nudged < 0.5 * rmse_free, (rmse_free, rmse_nudged)
    stats = a.statistics().set_index("datastream_id").loc["g1-wl"]
    assert stats["n"] > 50
    assert stats["rmse_after_m"] < stats["rmse_before_m"]
    assert abs(stats["bias_after_m"]) < abs(stats["bias_before_m"])
    a.close()


def test_held_inflow_on_real_model_matches_rating_curve_volume(tmp_path):
    terr = _terrain()
    xs, ys = terr.cell_centers()
    path = tmp_path / "up.duckdb"
    with SensorStore(path) as st:
        st.register([Station("UP", x=float(xs[0]), y=float(ys[NY // 2]))], [Datastream("up", "UP", "river_stage")])
        st.insert("up", ["2020-10-28T00:00Z", "2020-10-28T00:10Z"], [3.0, 2.0])
    rc = {"a": 5.0, "h0": 1.0, "b": 2.0}           # Q = 5 (h - 1)^2: 20 then 5 m3/s
    a = Assimilator(path, {"inflow": [{"datastream": "up", "cells": [[NY // 2, 0]], "rating": rc}]}, terr, START_LOCAL)
    m = FloodModel(terr, manning=0.04)
    for k in range(20):                            # 20 minutes, one apply per minute
        a.apply(m, k * 60.0)
        m.run_one_step(60.0)
    vb = m.volume_balance()
    assert vb["inflow_m3"] == pytest.approx(20.0 * 600 + 5.0 * 600, rel=1e-9)
    # state round trip keeps the held value
    st = a.get_state()
    assert st["held"]["inflow0"] == pytest.approx(5.0)
    a.close()
