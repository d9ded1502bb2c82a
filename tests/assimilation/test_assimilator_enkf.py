"""``method: enkf`` in the live twin's Assimilator: members in this process, the model follows their mean."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from twin.flood import FloodModel
from twin.sensors import Datastream, SensorStore, Station
from twin.sensors.assimilation import Assimilator
from twin.terrain import Terrain

NY, NX, DX = 12, 40, 50.0
X0, Y0 = 600_000.0, 1_730_000.0
START_LOCAL = "2020-10-28 07:00"           # = 00:00 UTC
START_UTC = pd.Timestamp("2020-10-28 00:00")
GAUGES = ((NY // 2, 12), (NY // 2, 28))


def _terrain():
    x = (np.arange(NX) + 0.5) * DX
    r = np.abs(np.arange(NY) - (NY - 1) / 2) / ((NY - 1) / 2)
    z = 5.0 - x[None, :] / 1000.0 + 2.0 * r[:, None] ** 2
    return Terrain.from_array(z, DX, origin=(X0, Y0), crs="EPSG:32649")


def _model(terr, q):
    m = FloodModel(terr, manning=0.04, threads=1)
    rows = np.arange(NY // 2 - 2, NY // 2 + 2)
    m.add_inflow(np.column_stack([rows, np.zeros_like(rows)]), hydrograph=(np.array([0.0]), np.array([q])))
    m.set_boundary("east", "free")
    return m


def test_assimilator_enkf_follows_the_observed_water_levels(tmp_path):
    terr = _terrain()
    xs, ys = terr.cell_centers()
    dt_c, n_steps = 120.0, 40
    truth = _model(terr, 30.0)
    obs_t, obs = [], []
    for k in range(1, n_steps + 1):
        truth.run_one_step(dt_c)
        obs_t.append(START_UTC + pd.Timedelta(seconds=k * dt_c))
        obs.append([terr.elevation[rc] + truth.depth[rc] for rc in GAUGES])
    obs = np.array(obs)
    path = tmp_path / "wl.duckdb"
    with SensorStore(path) as st:
        st.register([Station(f"G{i}", x=float(xs[c]), y=float(ys[r])) for i, (r, c) in enumerate(GAUGES)],
                    [Datastream(f"g{i}-wl", f"G{i}", "water_level", "m") for i in range(len(GAUGES))])
        for i in range(len(GAUGES)):
            st.insert(f"g{i}-wl", np.array(obs_t, dtype="datetime64[us]"), obs[:, i])
    cfg = {"method": "enkf", "enkf": {"members": 6, "obs_error_m": 0.03, "localization_m": 600.0,
                                      "model_error": 0.1, "max_age_s": 200.0, "seed": 3}}

    def run(assimilate: bool):
        m = _model(terr, 10.0)              # the model's inflow is 3x too small
        a = Assimilator(path, cfg, terr, START_LOCAL) if assimilate else None
        err = []
        for k in range(1, n_steps + 1):
            m.run_one_step(dt_c)
            if a is not None:
                a.apply(m, k * dt_c)
            err.append([terr.elevation[rc] + m.depth[rc] - obs[k - 1, i] for i, rc in enumerate(GAUGES)])
        return np.array(err), a, m

    e_free, _, _ = run(False)
    e_enkf, a, m = run(True)
    try:
        rmse_free = float(np.sqrt(np.mean(e_free[10:] ** 2)))
        rmse_enkf = float(np.sqrt(np.mean(e_enkf[10:] ** 2)))
        assert rmse_free > 0.05
        assert rmse_enkf < 0.5 * rmse_free, (rmse_free, rmse_enkf)
        assert a.ensemble is not None and a.ensemble.n_members == 6
        assert len(a.ensemble.reports) == n_steps
        # the model holds the ensemble mean after each analysis
        np.testing.assert_allclose(m.depth, a.ensemble.mean("depth"), atol=1e-12)
        assert a.last_applied["enkf"]["after"]["rmse_m"] < a.last_applied["enkf"]["before"]["rmse_m"] + 1e-9
        stats = a.statistics()
        assert set(stats["datastream_id"]) == {"g0-wl", "g1-wl"}
        assert min(float(mm.depth.min()) for mm in a.ensemble.models) >= 0.0
    finally:
        a.close()


def test_assimilator_enkf_config_errors(tmp_path):
    terr = _terrain()
    path = tmp_path / "s.duckdb"
    with SensorStore(path):
        pass
    with pytest.raises(ValueError, match="assimilation.method: expected 'nudging' or 'enkf', got 'kalman'"):
        Assimilator(path, {"method": "kalman"}, terr, START_LOCAL)
    with pytest.raises(ValueError, match=r"assimilation.enkf.members: an ensemble needs at least 2 members, got 1"):
        Assimilator(path, {"method": "enkf", "enkf": {"members": 1}}, terr, START_LOCAL)
    with pytest.raises(ValueError, match=r"assimilation.enkf: unknown key\(s\) \['memebrs'\]"):
        Assimilator(path, {"method": "enkf", "enkf": {"memebrs": 4}}, terr, START_LOCAL)
    with pytest.raises(ValueError, match="method 'enkf' replaces nudging"):
        Assimilator(path, {"method": "enkf", "nudging": {"radius_m": 100}}, terr, START_LOCAL)
    with pytest.raises(ValueError, match="an enkf section needs method: enkf"):
        Assimilator(path, {"enkf": {"members": 4}}, terr, START_LOCAL)
