"""TrafficModel basics: API, conservation, trips table, restart, validation errors."""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from twin.traffic import TrafficModel

from .helpers import corridor


def random_trips(net, n, seed, t1=1800.0, classes=("car",)):
    rng = np.random.default_rng(seed)
    ids = net.node_ids
    o = ids[rng.integers(0, len(ids), n)]
    d = ids[rng.integers(0, len(ids), n)]
    keep = o != d
    return pd.DataFrame({"origin": o[keep], "destination": d[keep],
                         "depart_s": np.sort(rng.uniform(0, t1, keep.sum())),
                         "vehicle_class": rng.choice(classes, keep.sum())})


def test_public_api_and_conservation_every_step(grid5):
    tm = TrafficModel(grid5, dt=1.0, seed=0)
    ids = tm.add_trips(random_trips(grid5, 600, 1, classes=("motorbike", "car", "bus", "truck")))
    assert np.array_equal(ids, np.arange(len(ids)))
    for _ in range(2400):
        tm.run_one_step(1.0)
        c = tm.counts()
        # departed = on network + arrived + waiting to enter (+ trips that ended otherwise: none here)
        assert c["departed"] == c["on_network"] + c["arrived"] + c["waiting"] + c["stalled"] + c["stranded"]
        assert c["stalled"] == 0 and c["stranded"] == 0
        assert tm.link_vehicles.sum() == c["on_network"]
        if c["arrived"] == len(ids):
            break
    tr = tm.trips
    assert (tr.state == "arrived").all()
    assert np.allclose(tr.travel_time_s, tr.arrive_s - tr.depart_s)
    # each route is connected and goes from origin to destination
    links = grid5.links
    for row in tr.head(50).itertuples():
        r = row.route
        assert links["from"].iloc[r[0]] == row.origin and links["to"].iloc[r[-1]] == row.destination
        assert all(links["to"].iloc[a] == links["from"].iloc[b] for a, b in zip(r[:-1], r[1:]))
    # every travel time is at least the free-flow time of its route
    ff = (links["length_m"] / links["free_speed_mps"]).to_numpy()
    assert all(row.travel_time_s >= ff[row.route].sum() - 1e-9 for row in tr.itertuples())
    for arr in (tm.link_flow, tm.link_density, tm.link_speed, tm.link_queue):
        assert arr.shape == (grid5.n_links,)


def test_unfinished_trips_have_nan_travel_time(grid5):
    tm = TrafficModel(grid5)
    tm.add_trips(pd.DataFrame({"origin": [0], "destination": [24], "depart_s": [10.0]}))
    tm.run_one_step(20)
    tr = tm.trips
    assert np.isnan(tr.travel_time_s.iloc[0]) and np.isnan(tr.arrive_s.iloc[0])
    st = tm.trip_status([0])
    assert st.state[0] == "on_link" and st.current_link[0] >= 0


def test_restart_is_bit_identical(grid5):
    trips = random_trips(grid5, 400, 3)
    a = TrafficModel(grid5, seed=1, informed_share=0.5, reroute_interval_s=120)
    a.add_trips(trips)
    a.run_one_step(600)
    state = pickle.loads(pickle.dumps(a.get_state()))
    a.set_link_depth(np.where(np.arange(grid5.n_links) % 7 == 0, 0.12, 0.0))
    a.run_one_step(1800)
    b = TrafficModel(grid5, seed=99, informed_share=0.5, reroute_interval_s=120)
    b.set_state(state)
    b.set_link_depth(np.where(np.arange(grid5.n_links) % 7 == 0, 0.12, 0.0))
    b.run_one_step(1800)
    ta, tb = a.trips, b.trips
    assert ta[["arrive_s", "depart_s"]].equals(tb[["arrive_s", "depart_s"]])
    assert list(ta.route) == list(tb.route)
    assert np.array_equal(a.link_flow, b.link_flow)


@pytest.mark.parametrize("df, match", [
    (pd.DataFrame({"origin": [0], "depart_s": [0.0]}), "destination"),
    (pd.DataFrame({"origin": [0], "destination": [999], "depart_s": [0.0]}), "999"),
    (pd.DataFrame({"origin": [0], "destination": [3], "depart_s": [np.nan]}), "depart_s"),
    (pd.DataFrame({"origin": [0], "destination": [3], "depart_s": [0.0], "vehicle_class": ["tank"]}), "tank"),
])
def test_add_trips_errors_name_the_input(grid5, df, match):
    tm = TrafficModel(grid5)
    with pytest.raises(ValueError, match=match):
        tm.add_trips(df)


def test_bad_inputs_raise(grid5):
    tm = TrafficModel(grid5)
    with pytest.raises(ValueError, match="multiple"):
        tm.run_one_step(0.5)
    with pytest.raises(ValueError, match="depth_m"):
        tm.set_link_depth(np.zeros(3))
    with pytest.raises(ValueError, match=r"depth_m\[2\]"):
        d = np.zeros(grid5.n_links)
        d[2] = np.nan
        tm.set_link_depth(d)
    with pytest.raises(ValueError, match="link id"):
        tm.close_links([grid5.n_links])
    from twin import _core
    eng = tm._engine
    with pytest.raises(TypeError):  # noconvert: wrong dtype is rejected, never copied
        eng.set_link_speeds(np.ones(grid5.n_links, dtype=np.float32))
    with pytest.raises(ValueError, match=r"speeds_mps: value 0 at link 3 must be in \(0, free speed"):
        f = np.ones(grid5.n_links)
        f[3] = 0.0
        eng.set_link_speeds(f)
    with pytest.raises(ValueError, match=r"speeds_mps: value 100 at link 0"):
        eng.set_link_speeds(np.full(grid5.n_links, 100.0))
    with pytest.raises(ValueError, match="closed mask: expected a bool"):
        eng.set_closed(np.zeros((grid5.n_links, 4), dtype=bool))
    with pytest.raises(ValueError, match="trips.origin"):
        eng.add_trips(np.array([-1], np.int32), np.array([1], np.int32), np.zeros(1), np.ones(1, np.uint8),
                      np.zeros(1, np.uint8))
    assert _core.TrafficEngine is type(eng)


def test_shortest_path_and_tree(grid5):
    tm = TrafficModel(grid5)
    nodes, links, t = tm.shortest_path(0, 24)
    assert nodes[0] == 0 and nodes[-1] == 24 and len(links) == 8
    assert t == pytest.approx(8 * 300 / (50 / 3.6))
    dist = tm.travel_time_tree([0, 24])
    # grid distance to the nearest corner
    ii, jj = np.arange(25) % 5, np.arange(25) // 5
    hops = np.minimum(ii + jj, 8 - ii - jj)
    assert np.allclose(dist, hops * 300 / (50 / 3.6))
    dist, nxt, near = tm.travel_time_tree([24], return_next=True)
    assert nxt[24] == -1 and near[0] == 24
    # closing the links into node 24 makes it unreachable for everyone
    into = np.flatnonzero(grid5.links["to"].to_numpy() == 24)
    tm.close_links(into)
    assert np.isinf(tm.travel_time_tree([24])[:24]).all()
    n2, l2, t2 = tm.shortest_path(0, 24)
    assert n2 == [] and np.isinf(t2)
    assert np.isinf(tm.link_travel_time_s("car")[into]).all()


def test_same_origin_destination_and_late_trips():
    net = corridor([300.0, 300.0], 1)
    tm = TrafficModel(net)
    tm.run_one_step(100)
    ids = tm.add_trips(pd.DataFrame({"origin": [0, 1], "destination": [0, 2], "depart_s": [50.0, 150.0]}))
    tm.run_one_step(200)
    tr = tm.trips.loc[ids]
    assert tr.travel_time_s.iloc[0] == 0.0
    assert tr.travel_time_s.iloc[1] == pytest.approx(300 / (50 / 3.6))


def test_link_state_table_and_parquet_roundtrip(grid5, tmp_path):
    tm = TrafficModel(grid5)
    tm.add_trips(random_trips(grid5, 200, 2))
    tm.run_one_step(300)
    ls = tm.link_state()
    assert len(ls) == grid5.n_links and ls.vehicles.sum() == tm.counts()["on_network"]
    tr = tm.trips
    tr.to_parquet(tmp_path / "trips.parquet")
    back = pd.read_parquet(tmp_path / "trips.parquet")
    assert [list(r) for r in back.route] == list(tr.route)


def test_trip_eta():
    net = corridor([300.0, 300.0, 300.0], 1)
    tm = TrafficModel(net)
    ids = tm.add_trips(pd.DataFrame({"origin": [0, 0], "destination": [3, 1], "depart_s": [0.0, 500.0]}))
    vf = 50 / 3.6
    assert tm.trip_eta_s(ids) == pytest.approx([900 / vf, 500 + 300 / vf])
    tm.run_one_step(30)
    assert tm.trip_eta_s(ids[:1])[0] == pytest.approx(900 / vf)   # on its second link, on time
    tm.run_one_step(600)
    assert tm.trip_eta_s(ids)[0] == tm.trips.arrive_s.iloc[0]


def test_damaged_state_is_an_error_not_a_crash(grid5):
    tm = TrafficModel(grid5)
    tm.add_trips(random_trips(grid5, 50, 4))
    tm.run_one_step(120)
    good = tm.get_state()
    for key, bad in [("pool", lambda a: a + 10_000), ("head", lambda a: a[:-1]), ("vnext", lambda a: a + 99_999)]:
        st = pickle.loads(pickle.dumps(good))
        st["engine"][key] = bad(st["engine"][key])
        with pytest.raises(ValueError, match="traffic state"):
            tm.set_state(st)
    st = pickle.loads(pickle.dumps(good))
    st["engine"]["veff"] = st["engine"]["veff"].astype(np.float32)  # (was "depth": the engine holds no depth now)
    with pytest.raises(ValueError, match="dtype"):
        tm.set_state(st)
    # a rejected state changed nothing
    assert tm.time == 120.0 and np.array_equal(tm.get_state()["engine"]["pool"], good["engine"]["pool"])
    tm.run_one_step(60)


def test_without_the_link_log_results_are_the_same(grid5):
    trips = random_trips(grid5, 300, 9)
    runs = []
    for record in (True, False):
        tm = TrafficModel(grid5, record_links=record)
        tm.add_trips(trips)
        tm.run_one_step(3600)
        runs.append(tm)
    a, b = runs
    assert np.array_equal(a.trips.arrive_s.to_numpy(), b.trips.arrive_s.to_numpy())
    assert list(a.trips.route) == list(b.trips.route)
    assert len(b.link_log) == 0 and len(a.link_log) > 0
    assert b._engine.memory_bytes()["log"] == 0
