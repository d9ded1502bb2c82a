"""Assimilation functions (IDW/Thiessen, rating curve, nudging) and the Assimilator hook."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from affine import Affine

from twin.sensors import Datastream, SensorStore, Station
from twin.sensors.assimilation import (
    Assimilator,
    RatingCurve,
    idw_field,
    misfit_stats,
    nudge_depth,
    thiessen_field,
)


def test_idw_exact_at_gauges_bounded_and_symmetric():
    gx, gy, v = [0.0, 1000.0], [0.0, 0.0], [10.0, 20.0]
    x = np.array([0.0, 1000.0, 500.0, 250.0, 5e3])
    f = idw_field(gx, gy, v, x, np.zeros_like(x), power=2)
    assert f[0] == 10.0 and f[1] == 20.0
    assert f[2] == pytest.approx(15.0, abs=1e-12)          # midpoint: equal weights
    # at 250 m: weights 1/250^2 and 1/750^2 -> (10*9 + 20*1)/10 = 11
    assert f[3] == pytest.approx(11.0, rel=1e-12)
    assert np.all((f >= 10) & (f <= 20))
    g = idw_field(gx, gy, v, x, np.zeros_like(x), max_distance_m=600, background=-1.0)
    assert g[4] == -1.0 and g[2] == pytest.approx(15.0)


def test_thiessen_nearest_gauge():
    f = thiessen_field([0, 1000], [0, 0], [1.0, 2.0], np.array([100.0, 499.0, 501.0, 900.0]), 0.0)
    np.testing.assert_array_equal(f, [1, 1, 2, 2])


def test_rating_curve_round_trip_and_zero_below_datum():
    rc = RatingCurve(a=35.0, h0=1.2, b=1.6)
    h = np.array([0.5, 1.2, 2.0, 4.5])
    q = rc.discharge(h)
    assert q[0] == 0 and q[1] == 0
    assert q[3] == pytest.approx(35.0 * 3.3 ** 1.6)
    np.testing.assert_allclose(rc.stage(q[2:]), h[2:], rtol=1e-12)
    with pytest.raises(ValueError, match="a > 0"):
        RatingCurve(a=-1, h0=0, b=1.5)


def test_nudge_depth_relaxes_toward_observed_level():
    z = np.zeros((5, 5))
    h = np.full((5, 5), 1.0)
    x = np.arange(5) * 10.0 + 5
    y = np.arange(5)[::-1] * 10.0 + 5
    gauges = [(25.0, 25.0, 2.0)]       # observed level 2 m at the centre cell
    # dt = tau: the centre cell (weight 1) jumps to the observation, far cells unchanged
    h1 = nudge_depth(h, z, gauges, dt_s=600, relaxation_time_s=600, radius_m=15, cell_x=x, cell_y=y)
    assert h1[2, 2] == pytest.approx(2.0)
    assert h1[0, 0] == 1.0
    # dt = tau/4: a quarter of the way
    h2 = nudge_depth(h, z, gauges, dt_s=150, relaxation_time_s=600, radius_m=15, cell_x=x, cell_y=y)
    assert h2[2, 2] == pytest.approx(1.25)
    # dry high ground above the observed level stays dry
    z2 = z.copy()
    z2[2, 3] = 5.0
    h3 = nudge_depth(np.zeros((5, 5)), z2, gauges, dt_s=600, relaxation_time_s=600, radius_m=15, cell_x=x, cell_y=y)
    assert h3[2, 3] == 0.0 and h3[2, 2] == pytest.approx(2.0)
    assert misfit_stats([1.0, 3.0], [2.0, 2.0]) == {"n": 2, "bias_m": 0.0, "mae_m": 1.0, "rmse_m": 1.0}


class RecordingModel:
    """Records what the Assimilator sets (the real FloodModel is exercised in test_nudging_real)."""

    def __init__(self, shape):
        self.depth = np.zeros(shape)
        self.calls = []

    def set_rainfall(self, times_s, rate_mm_per_h):
        self.calls.append(("rain", np.asarray(times_s), np.asarray(rate_mm_per_h)))

    def set_boundary(self, edge, kind, times_s=None, stage_m=None, cells=None):
        self.calls.append(("boundary", edge, kind, np.asarray(times_s), np.asarray(stage_m), cells))

    def add_inflow(self, cells, hydrograph):
        self.calls.append(("inflow", cells, hydrograph))

    def set_depth(self, h):
        self.depth = np.array(h)


def _terrain(ny=20, nx=30, dx=100.0, x0=600_000.0, y0=1_730_000.0):
    return SimpleNamespace(elevation=np.zeros((ny, nx)), shape=(ny, nx), cell_size=dx,
                           transform=Affine(dx, 0, x0, 0, -dx, y0))


def test_assimilator_sets_rain_tide_inflow_from_store(tmp_path):
    terr = _terrain()
    path = tmp_path / "s.duckdb"
    with SensorStore(path) as st:
        st.register([Station("RG1", x=600_050.0, y=1_729_950.0), Station("RG2", x=602_950.0, y=1_728_050.0),
                     Station("TIDE", x=603_000.0, y=1_729_000.0), Station("UP", x=600_050.0, y=1_729_050.0)],
                    [Datastream("rg1", "RG1", "rain_rate"), Datastream("rg2", "RG2", "rain_rate"),
                     Datastream("tide", "TIDE", "tide_level"), Datastream("up", "UP", "river_stage")])
        # start 2020-10-28 07:00 local = 00:00 UTC
        st.insert(["rg1", "rg2", "rg1"], ["2020-10-28T00:00Z", "2020-10-28T00:05Z", "2020-10-28T00:20Z"], [10.0, 30.0, 99.0])
        st.insert("rg2", "2020-10-28T00:06Z", 400.0)          # out of range: flagged, not used
        st.insert("tide", "2020-10-28T00:00Z", 0.8)
        st.insert("up", "2020-10-28T00:00Z", 3.2)
    cfg = {"rain": {"method": "idw", "max_age_s": 1800},
           "tide": {"datastream": "tide", "edge": "east", "offset_m": 0.1},
           "inflow": [{"datastream": "up", "x": 600_050.0, "y": 1_729_050.0, "rating": {"a": 20.0, "h0": 1.2, "b": 1.5}}]}
    a = Assimilator(path, cfg, terr, "2020-10-28 07:00")
    m = RecordingModel(terr.shape)
    done = a.apply(m, 600.0)       # 00:10 UTC: rg1=10 (00:00), rg2=30 (00:05); 99 at 00:20 is the future
    rain = [c for c in m.calls if c[0] == "rain"][0]
    f = rain[2]
    assert f.shape == terr.shape
    assert f[0, 0] == pytest.approx(10.0) and f[-1, -1] == pytest.approx(30.0)
    assert 10.0 <= f.min() and f.max() <= 30.0
    b = [c for c in m.calls if c[0] == "boundary"][0]
    assert b[1] == "east" and b[2] == "stage" and b[4][0] == pytest.approx(0.9) and b[3][0] == 600.0
    inflow = [c for c in m.calls if c[0] == "inflow"][0]
    assert inflow[2][1][0] == pytest.approx(20.0 * 2.0 ** 1.5)
    np.testing.assert_array_equal(inflow[1], [[9, 0]])
    assert done["tide_stage_m"] == pytest.approx(0.9)
    a.close()
    # a later step holds the new discharge in the same hydrograph (no second inflow)
    with SensorStore(path) as st:
        st.insert("up", "2020-10-28T00:15Z", 2.2)
    a2 = Assimilator(path, cfg, terr, "2020-10-28 07:00")
    m2 = RecordingModel(terr.shape)
    a2.apply(m2, 600.0)
    a2.apply(m2, 1200.0)
    inflows = [c for c in m2.calls if c[0] == "inflow"]
    assert len(inflows) == 1 and inflows[0][2][1][0] == pytest.approx(20.0 * 1.0 ** 1.5)
    a2.close()
    with pytest.raises(ValueError, match="unknown key"):
        Assimilator(path, {"rainn": {}}, terr, "2020-10-28 07:00")


def test_config_from_city_gauges_feeds_the_assimilator(tmp_path):
    from twin.sensors.adapters import config_entities, load_config
    from twin.sensors.stations import config_from_city

    places = pd.DataFrame({"place_id": [1, 2, 3, 4], "name": ["rain A", "rain B", "river", "school"],
                           "kind": ["gauge_rain", "gauge_rain", "gauge_stage", "school"],
                           "x": [600_050.0, 602_950.0, 601_000.0, 601_500.0],
                           "y": [1_729_950.0, 1_728_050.0, 1_729_000.0, 1_729_000.0], "source": "synthetic"})
    cfg = config_from_city(SimpleNamespace(name="t", places=places))
    stations, streams = config_entities(load_config(cfg))
    assert [d.datastream_id for d in streams] == ["rain-1", "rain-2", "stage-3"]
    assert [d.observed_property for d in streams] == ["rain_rate", "rain_rate", "river_stage"]
    assert cfg["assimilation"]["rain"]["datastreams"] == ["rain-1", "rain-2"]
    path = tmp_path / "c.duckdb"
    with SensorStore(path) as st:
        st.register(stations, streams)
        st.insert(["rain-1", "rain-2"], ["2020-10-28T00:00Z", "2020-10-28T00:00Z"], [5.0, 25.0])
    terr = _terrain()
    a = Assimilator(path, cfg["assimilation"], terr, "2020-10-28 07:00")
    m = RecordingModel(terr.shape)
    a.apply(m, 60.0)
    f = [c for c in m.calls if c[0] == "rain"][0][2]
    assert f[0, 0] == pytest.approx(5.0) and f[-1, -1] == pytest.approx(25.0)
    a.close()
    with pytest.raises(ValueError, match="no gauge places"):
        config_from_city(SimpleNamespace(name="t", places=places[places.kind == "school"]))
