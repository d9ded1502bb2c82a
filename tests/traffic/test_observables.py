"""Observables that cost what they should (issue 14, item 11a): ``TrafficModel.trips``,
``PeopleModel.state_table`` and ``EmergencyServices.incident_table`` are cached, right after
every kind of change, and safe from callers; the traffic counters need no table."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from twin.roads import RoadNetwork
from twin.traffic import TrafficModel


def _model(record=True, n_trips=400, seed=3):
    net = RoadNetwork.grid(6, spacing_m=300.0, lanes=1)
    rng = np.random.default_rng(seed)
    ids = net.node_ids
    o = ids[rng.integers(0, len(ids), n_trips)]
    d = ids[(rng.integers(1, len(ids), n_trips) + rng.integers(0, len(ids), 1)) % len(ids)]
    keep = o != d
    trips = pd.DataFrame({"origin": o[keep], "destination": d[keep],
                          "depart_s": np.sort(rng.uniform(0, 900.0, int(keep.sum())))})
    tm = TrafficModel(net, dt=2.0, seed=0, record_links=record, informed_share=0.5, reroute_interval_s=60.0)
    tm.add_trips(trips)
    return tm, trips


def _reference(tm):
    """The table built from scratch, as every access built it before the cache."""
    e = tm._engine
    st = e.get("state")
    ref = tm._trips_frame().drop(columns=["route", "n_links"])
    routes = tm._routes_full(st)
    return ref, routes


def _check(tm):
    got = tm.trips
    ref, routes = _reference(tm)
    pd.testing.assert_frame_equal(got.drop(columns=["route", "n_links"]), ref)
    assert [list(r) for r in got["route"]] == routes
    assert got["n_links"].tolist() == [len(r) for r in routes]
    st = got["state"].astype(str)
    assert tm.n_departed == int((st != "scheduled").sum())
    assert tm.n_arrived == int((st == "arrived").sum())
    assert tm.n_en_route == int(st.isin(["waiting", "on_link"]).sum())
    return got


@pytest.mark.parametrize("record", [True, False])
def test_trips_equal_a_fresh_build_after_every_kind_of_change(record):
    tm, trips = _model(record)
    busiest = None
    for k in range(30):
        tm.run_one_step(60.0)
        got = _check(tm)
        if k == 3:
            busiest = int(np.bincount(np.concatenate([r for r in got["route"] if len(r)] + [[0]])).argmax())
            tm.close_links([busiest])
            _check(tm)
        if k == 6:
            tm.set_link_depth(np.where(np.arange(tm.network.n_links) % 7 == 0, 0.4, 0.0))
            _check(tm)
        if k == 8:
            tm.open_links([busiest])
            tm.set_lanes([0, 1], 2.0)
            _check(tm)
        if k == 10:
            tm.reroute(np.flatnonzero(got["state"].astype(str) != "arrived")[:50])
            _check(tm)
        if k == 12:
            tm.add_trips(trips.assign(depart_s=trips["depart_s"] + tm.time))
            _check(tm)
        if k == 14:
            saved = tm.get_state()
            before = tm.trips
        if k == 20:
            tm.set_state(saved)
            pd.testing.assert_frame_equal(_check(tm), before)
    assert tm.n_arrived > 0 and tm.n_en_route >= 0


def test_trips_built_once_per_state(monkeypatch):
    tm, trips = _model()
    builds = []
    real = TrafficModel._trips_frame
    monkeypatch.setattr(TrafficModel, "_trips_frame", lambda self: builds.append(1) or real(self))
    tm.run_one_step(120.0)
    tm.trips, tm.trips, tm.trips["arrive_s"].notna().sum()
    assert len(builds) == 1
    tm.n_arrived, tm.n_departed, tm.n_en_route, tm.counts()   # counters build no table
    assert len(builds) == 1
    changes = [lambda: tm.run_one_step(60.0), lambda: tm.add_trips(trips.head(3)), lambda: tm.close_links([0]),
               lambda: tm.open_links([0]), lambda: tm.set_link_depth(np.zeros(tm.network.n_links)),
               lambda: tm.set_lanes([1], 2.0), lambda: tm.set_contraflow([2]), lambda: tm.reroute([0]),
               lambda: tm.set_state(tm.get_state())]
    for k, change in enumerate(changes):
        change()
        _ = (tm.trips, tm.trips)
        assert len(builds) == k + 2, k


def test_a_caller_cannot_change_the_cached_trips():
    tm, _ = _model()
    tm.run_one_step(600.0)
    first = tm.trips
    keep = first.copy()
    first.loc[0, "arrive_s"] = -1.0
    first["state"] = "arrived"
    first["extra"] = 1
    r = first["route"].iloc[int(np.argmax(first["n_links"]))]
    for change in (lambda: r.append(1), lambda: r.__setitem__(0, 99), lambda: r.sort(), lambda: r.clear()):
        with pytest.raises(TypeError, match="read-only"):
            change()
    with pytest.raises(TypeError, match="read-only"):
        r += [5]
    copy = list(r)
    copy.append(1)   # a copy is an ordinary list
    pd.testing.assert_frame_equal(tm.trips, keep)
    import pickle

    again = pickle.loads(pickle.dumps(tm.trips))
    assert again["route"].map(list).tolist() == keep["route"].map(list).tolist()


# ------------------------------------------------------------------------------ people and services
@pytest.fixture
def agents():
    from tests.agents.helpers import coastal_flood, synthetic_city
    from twin.agents import EmergencyServices, PeopleModel

    city = synthetic_city()
    pm = PeopleModel(city, {"n_tourists": 100}, np.random.default_rng(1))
    es = EmergencyServices(city, {}, np.random.default_rng(2), people=pm)
    pm.issue_warning(0.0, "cell_broadcast")
    for k in range(8):
        pm.run_one_step(900.0, *coastal_flood(city, (k + 1) * 900.0, peak_s=2 * 3600.0))
        es.run_one_step(900.0)
    return pm, es


def test_people_state_table_cached_and_right_after_any_change(agents, monkeypatch):
    from twin.agents import PeopleModel

    pm, es = agents
    builds = []
    real = PeopleModel._state_frame
    monkeypatch.setattr(PeopleModel, "_state_frame", lambda self: builds.append(1) or real(self))
    a = pm.state_table()
    b = pm.state_table()
    assert len(builds) <= 1 and a.equals(b) and a.equals(real(pm))
    n = len(builds)
    a.loc[0, "x"] = -5.0            # a caller's copy: the next table is unchanged
    assert pm.state_table().equals(b) and len(builds) == n
    pm.x[3] += 10.0                 # any change of the model's arrays is seen, however it was made
    c = pm.state_table()
    assert len(builds) == n + 1 and c.loc[3, "x"] == b.loc[3, "x"] + 10.0 and c.equals(real(pm))
    pm.warned_s[5] = np.nan if np.isfinite(pm.warned_s[5]) else 123.0
    assert pm.state_table().equals(real(pm)) and len(builds) == n + 2


def test_incident_table_cached_and_right_after_any_change(agents, monkeypatch):
    from twin.agents import EmergencyServices

    pm, es = agents
    es.report_incident(es.time_s, "medical", float(pm.x[0]), float(pm.y[0]))
    es.run_one_step(300.0)
    assert len(es.incidents) > 0
    builds = []
    real = EmergencyServices._incident_frame
    monkeypatch.setattr(EmergencyServices, "_incident_frame", lambda self, rows: builds.append(1) or real(self, rows))
    a = es.incident_table()
    b = es.incident_table()
    assert len(builds) == 1 and a.equals(b)
    a.loc[0, "outcome"] = "changed"
    assert es.incident_table().equals(b) and len(builds) == 1
    es.incidents[0]["depth_m"] = 7.5
    c = es.incident_table()
    assert len(builds) == 2 and c.loc[0, "depth_m"] == 7.5
    es.report_incident(es.time_s, "medical", float(pm.x[1]), float(pm.y[1]))
    es.run_one_step(300.0)
    assert len(es.incident_table()) == len(es.incidents) and len(builds) == 3
