"""Closures, flood depth (Pregnolato 2017), stall depths, rerouting and bit-identical results."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from twin.roads import RoadNetwork
from twin.traffic import TrafficModel, flooded_speed_mps, pregnolato_speed_kmh

from .helpers import VF, corridor


def grid_trips(net, n, seed, t1=900.0, classes=("car",)):
    rng = np.random.default_rng(seed)
    ids = net.node_ids
    o = ids[rng.integers(0, len(ids), 3 * n)]
    d = ids[rng.integers(0, len(ids), 3 * n)]
    keep = np.flatnonzero(o != d)[:n]
    return pd.DataFrame({"origin": o[keep], "destination": d[keep], "depart_s": np.sort(rng.uniform(0, t1, n)),
                         "vehicle_class": rng.choice(classes, n)})


def conservation(tm):
    c = tm.counts()
    return c["departed"] == c["on_network"] + c["arrived"] + c["waiting"] + c["stalled"] + c["stranded"]


def test_pregnolato_curve_as_specified():
    w_mm = np.array([1.0, 50.0, 100.0, 200.0, 300.0])
    expected = 0.0009 * w_mm**2 - 0.5529 * w_mm + 86.9448
    assert np.allclose(pregnolato_speed_kmh(w_mm / 1000), expected, rtol=0, atol=1e-12)
    assert pregnolato_speed_kmh(0.0) == np.inf
    assert pregnolato_speed_kmh(0.5) == pytest.approx(pregnolato_speed_kmh(0.3072), abs=1e-3)  # held at the minimum
    # capped by the speed limit: 50 mm of water does not slow a 50 km/h street (curve gives 61 km/h)
    assert flooded_speed_mps(0.05, VF) == VF
    net = corridor([300.0] * 5, 1)
    tm = TrafficModel(net)
    depth = np.array([0.0, 0.05, 0.10, 0.20, 0.25])
    tm.set_link_depth(depth)
    v_expected = np.minimum(VF, (0.0009 * (depth * 1000) ** 2 - 0.5529 * depth * 1000 + 86.9448) / 3.6)
    assert np.allclose(tm.link_speed_factor * VF, v_expected, rtol=1e-12)
    assert np.allclose(tm.link_travel_time_s("car"), 300.0 / v_expected, rtol=1e-12)
    # a lone truck (stall depth 0.6 m) drives through at the flooded speeds
    tm.add_trips(pd.DataFrame({"origin": [0], "destination": [5], "depart_s": [0.0], "vehicle_class": ["truck"]}))
    tm.run_one_step(600)
    assert tm.trips.travel_time_s.iloc[0] == pytest.approx((300.0 / v_expected).sum(), abs=1e-9)


def test_stall_depth_by_class_never_entered():
    net = RoadNetwork.grid(4)
    trips = grid_trips(net, 400, 5, classes=("motorbike", "car", "truck"))
    tm = TrafficModel(net)
    depth = np.zeros(net.n_links)
    rng = np.random.default_rng(0)
    flooded = rng.choice(net.n_links, 8, replace=False)
    depth[flooded[:4]] = 0.20   # closed to motorbikes only
    depth[flooded[4:]] = 0.35   # closed to motorbikes and cars, trucks crawl
    tm.set_link_depth(depth)
    tm.add_trips(trips)
    tm.run_until_done(7200)
    assert conservation(tm)
    log = tm.link_log.merge(tm.trips[["vehicle_class"]], left_on="trip_id", right_index=True)
    stall = {"motorbike": 0.15, "car": 0.30, "truck": 0.60}
    for cls, d in stall.items():
        used = log[log.vehicle_class == cls].link_id.to_numpy()
        assert (depth[used] < d).all(), cls
    assert tm.link_closed_to("motorbike")[flooded].all()
    assert not tm.link_closed_to("truck")[flooded].any()
    assert np.array_equal(tm.link_closed, depth >= 0.30)


def test_vehicles_on_a_flooding_link_stall_others_crawl_out():
    net = corridor([600.0, 300.0], 1)
    tm = TrafficModel(net)
    tm.add_trips(pd.DataFrame({"origin": 0, "destination": 2, "depart_s": [0.0, 2.0, 4.0],
                               "vehicle_class": ["motorbike", "car", "truck"]}))
    tm.run_one_step(20)
    depth = np.array([0.32, 0.0])
    tm.set_link_depth(depth)
    st = tm.trip_status([0, 1, 2])
    assert list(st.state) == ["stalled", "stalled", "on_link"]
    assert list(st.current_link[:2]) == [0, 0]   # the incident's location
    assert conservation(tm)
    tm.run_one_step(3000)
    assert tm.trip_status([2]).state[0] == "arrived"
    assert tm.counts()["stalled"] == 2 and conservation(tm)


def test_closure_no_entry_reroute_and_conservation():
    net = RoadNetwork.grid(5, signal_phases_s=(45.0, 45.0))
    trips = grid_trips(net, 1500, 11, t1=1800.0)
    tm = TrafficModel(net)
    tm.add_trips(trips)
    tm.run_one_step(600)
    log = tm.link_log
    busiest = log.link_id.value_counts().index[:6].to_numpy()
    before = tm.trips
    # trips not yet departed: their route is their whole plan
    users = [k for k, r in before.route.items() if before.state.iloc[k] == "scheduled"
             and any(l in busiest for l in r)]
    reroutes_before = tm.counts()["reroutes"]
    t_close = tm.time
    tm.close_links(busiest)
    assert tm.link_closed[busiest].all()
    while tm.time < 7200:
        tm.run_one_step(10)
        assert conservation(tm)
        if tm.counts()["arrived"] + tm.counts()["stranded"] == len(trips):
            break
    log = tm.link_log
    assert not ((log.link_id.isin(busiest)) & (log.enter_s >= t_close)).any()  # no entry after closure
    tr = tm.trips
    assert (tr.state == "arrived").all()          # the grid stays connected: everyone reroutes
    assert len(users) > 50
    for k in users:
        assert tr.route.iloc[k] != before.route.iloc[k] and not set(tr.route.iloc[k]) & set(busiest)
    assert tm.counts()["reroutes"] - reroutes_before >= len(users)


def test_closing_an_unused_link_is_bit_identical():
    net = RoadNetwork.grid(6, signal_phases_s=(45.0, 45.0))
    trips = grid_trips(net, 800, 21, t1=1200.0)
    west = net.nodes.loc[net.nodes.x <= 600.0, "id"].to_numpy()   # trips among the western half only
    trips = trips[trips.origin.isin(west) & trips.destination.isin(west)]

    def run(close=None):
        tm = TrafficModel(net, seed=3, informed_share=0.3, reroute_interval_s=300)
        tm.add_trips(trips)
        tm.run_one_step(300)
        if close is not None:
            tm.close_links(close)
        tm.run_until_done(7200)
        return tm

    base = run()
    used = set(base.link_log.link_id)
    unused = [l for l in range(net.n_links) if l not in used]
    assert unused
    other = run(close=unused[:3])
    a, b = base.trips, other.trips
    assert np.array_equal(a.arrive_s.to_numpy(), b.arrive_s.to_numpy())
    assert list(a.route) == list(b.route)
    assert base.link_log.equals(other.link_log)


def test_reopen_and_stranded_when_no_route():
    net = corridor([300.0, 300.0], 1)
    tm = TrafficModel(net)
    tm.close_links([1])
    tm.add_trips(pd.DataFrame({"origin": [0, 0], "destination": [2, 2], "depart_s": [0.0, 100.0]}))
    tm.run_one_step(50)
    st = tm.trip_status([0])
    assert st.state[0] == "stranded" and st.current_link[0] == -1   # no open route when it left
    tm.open_links([1])
    tm.run_one_step(200)
    assert tm.trip_status([1]).state[0] == "arrived"
    assert conservation(tm)


def test_informed_rerouting_avoids_congestion_deterministically():
    net = RoadNetwork.grid(5, signal_phases_s=(45.0, 45.0))
    trips = grid_trips(net, 3000, 8, t1=1200.0)

    def run(share, seed):
        tm = TrafficModel(net, seed=seed, informed_share=share, reroute_interval_s=60)
        tm.add_trips(trips)
        tm.run_until_done(3 * 3600)
        return tm

    a, b = run(0.5, 1), run(0.5, 1)
    assert list(a.trips.route) == list(b.trips.route)  # same seed, same result
    assert a.counts()["reroutes"] > 1.5 * len(trips)  # periodic reroutes on top of the first routes
    assert a.counts()["arrived"] == len(trips)


def test_receding_water_reopens_routes():
    net = corridor([300.0, 300.0], 1)
    tm = TrafficModel(net)
    tm.set_link_depth(np.array([0.0, 0.4]))   # link 1 closed to cars
    tm.add_trips(pd.DataFrame({"origin": [0], "destination": [2], "depart_s": [100.0]}))
    nodes, links, t = tm.shortest_path(0, 2)
    assert np.isinf(t) and np.isinf(tm.trip_eta_s([0])[0])
    tm.set_link_depth(np.array([0.0, 0.0]))   # the water recedes before the trip leaves
    tm.run_one_step(200)
    assert tm.trip_status([0]).state[0] == "arrived"
    assert tm.trips.travel_time_s.iloc[0] == pytest.approx(600 / VF)


def test_contraflow_adds_the_reverse_lanes_and_closes_them():
    from .helpers import QCAP, uniform_trips

    nodes = pd.DataFrame({"id": [0, 1], "x": [0.0, 600.0], "y": 0.0})
    links = pd.DataFrame({"from": [0, 1], "to": [1, 0], "length_m": 600.0, "lanes": 1.0, "free_speed_mps": VF})
    net = RoadNetwork.from_frames(nodes, links)
    tm = TrafficModel(net)
    tm.add_trips(uniform_trips(0, 1, 1.0, 0, 3000))        # 3,600 veh/h outbound on one lane
    tm.add_trips(uniform_trips(1, 0, 0.1, 0, 3000))        # some inbound traffic
    tm.run_one_step(300)
    tm.run_one_step(600)
    assert tm.link_flow[0] == pytest.approx(QCAP, rel=0.05)
    state = tm.get_state()
    tm.set_contraflow([0])
    assert tm.link_lanes.tolist() == [2.0, 1.0] and tm.link_closed[1]
    t_on = tm.time
    tm.run_one_step(300)
    tm.run_one_step(600)
    assert tm.link_flow[0] == pytest.approx(2 * QCAP, rel=0.05)  # the queue drains at two lanes' capacity
    log = tm.link_log
    assert not ((log.link_id == 1) & (log.enter_s >= t_on)).any()
    tm.set_contraflow([0], active=False)
    assert tm.link_lanes.tolist() == [1.0, 1.0] and not tm.link_closed[1]
    # the restart restores lanes and closures too
    tm.set_state(state)
    assert tm.link_lanes.tolist() == [1.0, 1.0] and not tm.link_closed.any()
    with pytest.raises(ValueError, match="lanes"):
        tm.set_lanes([0], 0.0)


def test_vehicle_stranded_on_the_way_parks_at_the_end_of_its_link():
    net = corridor([300.0, 300.0, 300.0], 1)
    tm = TrafficModel(net)
    tm.add_trips(pd.DataFrame({"origin": [0], "destination": [3], "depart_s": [0.0]}))
    tm.run_one_step(10)
    tm.close_links([2])                          # the only way on: closed while it drives on link 0
    tm.run_one_step(100)
    st = tm.trip_status([0])
    assert st.state[0] == "stranded" and st.current_link[0] == 0 and np.isnan(st.arrive_s[0])
    assert conservation(tm)


def test_route_on_departure_avoids_a_queue_that_formed_after_adding():
    # two parallel paths 0 -> 3: via node 1 (the short one) and via node 2 (40 % longer), then 3 -> 4.
    # Trips end at node 4 beyond the signal at node 3: a trip ending at node 3 itself would leave at
    # the end of its last link without waiting for the red (UXsim/SUMO convention)
    nodes = pd.DataFrame({"id": [0, 1, 2, 3, 4], "x": [0.0, 300.0, 300.0, 600.0, 900.0],
                          "y": [0.0, 100.0, -100.0, 0.0, 0.0],
                          "signal_phases_s": [None, None, None, (1e7, 1.0), None]})
    links = pd.DataFrame({"from": [0, 1, 0, 2, 3], "to": [1, 3, 2, 3, 4], "length_m": [300.0, 300.0, 420.0, 420.0, 300.0],
                          "lanes": 1.0, "free_speed_mps": VF, "signal_group": [-1, 1, -1, 0, -1]})
    net = RoadNetwork.from_frames(nodes, links)   # link 1 ends at a red light that never turns green
    late = pd.DataFrame({"origin": [0], "destination": [4], "depart_s": [400.0]})
    jam = pd.DataFrame({"origin": 1, "destination": 4, "depart_s": np.arange(60) * 2.0})
    routes = {}
    for flag in (False, True):
        tm = TrafficModel(net, route_on_departure=flag)
        tm.add_trips(jam)
        tid = tm.add_trips(late)[0]
        tm.run_one_step(600)
        routes[flag] = tm.trips.route.iloc[tid]
    assert routes[False] == [0, 1, 4]     # planned at t = 0 on the empty network
    assert routes[True] == [2, 3, 4]      # at t = 400 s link 1 holds a standing queue


def test_depth_rule_is_python_and_the_engine_takes_arrays():
    """twin.traffic.flood computes flooded speeds and per-class closures; the engine only consumes
    them (no set_depth, no stall depths inside it)."""
    from twin.constants import STALL_DEPTH_M, VEHICLE_CLASSES
    from twin.traffic.flood import closure_mask, link_flood_arrays, link_speed_factors

    depth = np.array([0.0, 0.05, 0.15, 0.30, 0.45, 0.60])
    f = link_speed_factors(depth, np.full(depth.size, VF))
    w = np.minimum(depth * 1000, 0.5529 / (2 * 0.0009))  # the curve is held at its minimum (307 mm)
    v = np.minimum(VF, (0.0009 * w**2 - 0.5529 * w + 86.9448) / 3.6)
    np.testing.assert_allclose(f, v / VF, rtol=1e-15)
    assert f[0] == 1.0 and f[1] == 1.0 and np.all((f > 0) & (f <= 1))
    m = closure_mask(depth)
    assert m.shape == (depth.size, len(VEHICLE_CLASSES)) and m.dtype == bool
    # closed at and beyond the class stall depth (motorbike 0.15, car 0.30, emergency 0.45, bus 0.5, truck 0.6)
    for k, c in enumerate(VEHICLE_CLASSES):
        np.testing.assert_array_equal(m[:, k], depth >= STALL_DEPTH_M[c])
    net = corridor([300.0] * 6, 1)
    a, b = TrafficModel(net), TrafficModel(net)
    assert not hasattr(a._engine, "set_depth")
    a.set_link_depth(depth)
    vb, mb = link_flood_arrays(depth, np.full(depth.size, VF), b.stall_depth_m)
    np.testing.assert_allclose(vb, v, rtol=1e-15)
    b._engine.set_link_speeds(vb)
    b._engine.set_closed(mb)
    np.testing.assert_array_equal(a.link_speed_factor, b.link_speed_factor)
    for c in VEHICLE_CLASSES:
        np.testing.assert_array_equal(a.link_closed_to(c), b.link_closed_to(c))
    np.testing.assert_array_equal(a.link_closed_to("car"), depth >= 0.30)
    # stall depths given to the model change the closures, computed in Python
    c = TrafficModel(net, stall_depth_m={"car": 0.5})
    c.set_link_depth(depth)
    np.testing.assert_array_equal(c.link_closed_to("car"), depth >= 0.5)


def test_trips_not_yet_departed_without_a_route_are_routed_when_they_leave_not_at_every_reopening():
    """A future trip whose destination is cut off is not rerouted each time some link reopens (in the
    48-h Tam Kỳ run ~18,000 such trips were rerouted at ~0.5 s a coupling step); it is routed when it
    leaves, by the closures then: it drives if its road is open again by then, is stranded if not."""
    net = corridor([300.0, 300.0], 1)             # 0 -> 1 -> 2
    tm = TrafficModel(net)
    tm.set_link_depth(np.array([0.0, 0.5]))       # 1 -> 2 closed to cars
    tm.add_trips(pd.DataFrame({"origin": [0, 0], "destination": [2, 2], "depart_s": [1800.0, 3600.0],
                               "vehicle_class": ["car", "car"]}))
    r0 = tm.counts()["reroutes"]
    for _ in range(5):                            # the water falls and rises on another link: reopenings
        tm.set_link_depth(np.array([0.5, 0.5]))
        tm.set_link_depth(np.array([0.0, 0.5]))
    assert tm.counts()["reroutes"] == r0          # before: both trips were rerouted at each of the 5 reopenings
    tm.run_one_step(1200)
    tm.set_link_depth(np.array([0.0, 0.0]))       # their road reopens before the first leaves
    tm.run_one_step(1200)
    tm.set_link_depth(np.array([0.0, 0.5]))       # and closes again before the second leaves
    tm.run_until_done(7200)
    trips = tm.trips
    assert np.isfinite(trips.travel_time_s.iloc[0])   # left on the open road
    c = tm.counts()
    assert c["stranded"] == 1 and c["arrived"] == 1 and conservation(tm)
