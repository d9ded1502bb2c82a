"""People and services coupled to the real TrafficModel (C++ link transmission model)."""
from __future__ import annotations

import numpy as np
import pytest

from twin.agents import EmergencyServices, PeopleModel
from twin.agents.people import DRIVE, RELATIVES, SHELTER, WALK
from twin.traffic import TrafficModel

from .helpers import synthetic_city


def test_evacuation_by_vehicle_runs_through_traffic():
    city = synthetic_city()
    tm = TrafficModel(city.roads, dt=1.0, seed=0)
    pm = PeopleModel(city, {"n_tourists": 0, "w_upper": 0.0}, np.random.default_rng(1), traffic=tm)
    pm.issue_warning(0.0, "door_to_door")
    pm.issue_warning(0.0, "cell_broadcast")
    seen_drive = 0
    for _ in range(36):                     # 3 h in 5-min steps, dry
        pm.run_one_step(300.0, None, None)
        tm.run_one_step(300.0)
        seen_drive = max(seen_drive, int((pm.state == DRIVE).sum()))
    trips = tm.trips
    drivers = pm.trip_id >= 0
    assert len(trips) > 200 and seen_drive > 50
    # one trip per household that left by vehicle, with the household's vehicle class
    left_by_vehicle = (pm.vehicle > 0) & np.isin(pm.state, (SHELTER, RELATIVES)) & (pm.action >= 2)
    assert len(trips) >= left_by_vehicle.sum() * 0.95
    share_moto = (trips.vehicle_class == "motorbike").mean()
    assert 0.75 < share_moto < 0.95          # city shares: 70 % motorbike, 10 % car among all households
    # trips that arrived delivered their households; nobody is left "driving" with an arrived trip
    arrived = trips[trips.arrive_s.notna()]
    assert len(arrived) > 0.9 * len(trips)
    assert not drivers.any() or np.all(pm.state[drivers] == DRIVE)


def test_flooded_roads_stall_motorbikes_and_riders_walk_on():
    city = synthetic_city()
    tm = TrafficModel(city.roads, dt=1.0, seed=0)
    pm = PeopleModel(city, {"n_tourists": 0, "w_upper": 0.0, "w_shelter": 0.0},
                     np.random.default_rng(2), traffic=tm)
    pm.act_s[:] = 0.0                      # everybody leaves now
    pm.run_one_step(300.0, None, None)
    n_trips = tm.n_trips
    assert n_trips > 100
    # 0.2 m on every road: above the motorbike stall depth (0.15 m), below the car's (0.30 m)
    tm.set_link_depth(np.full(city.roads.n_links, 0.2))
    stalled_events = 0
    for _ in range(12):
        tm.run_one_step(300.0)
        pm.run_one_step(300.0, np.full(pm.shape, 0.2), np.zeros(pm.shape))
        stalled_events = int((pm.event_table().event == "vehicle_stalled").sum())
    st = tm.trip_status(np.arange(tm.n_trips))
    moto = (tm.trips.vehicle_class == "motorbike").to_numpy()
    assert np.all(np.isin(st.state[moto], ("arrived", "stalled", "stranded")))
    assert stalled_events > 50
    # riders of stalled motorbikes walk on (or have arrived on foot); cars still arrive by road
    assert (pm.state == WALK).sum() + (pm.state == RELATIVES).sum() > stalled_events * 0.9
    car = (tm.trips.vehicle_class == "car").to_numpy()
    assert np.mean(st.state[car] == "arrived") > 0.8


def test_ambulance_routes_use_traffic_closures_and_flood():
    city = synthetic_city()
    tm = TrafficModel(city.roads, dt=1.0, seed=0)
    es = EmergencyServices(city, {}, np.random.default_rng(0), traffic=tm)
    a, b = 0, 11
    links, t0, length0 = es.route("ambulance", a, b)
    assert length0 == pytest.approx(11 * 150.0)
    # the traffic model's closure is respected
    tm.close_links([links[3]])
    es.set_flood(None)                  # new step: refresh cached link times
    links1, t1, length1 = es.route("ambulance", a, b)
    assert links[3] not in links1 and length1 == pytest.approx(13 * 150.0) and t1 > t0
    tm.open_links([links[3]])
    # a flooded link (0.5 m >= the emergency class stall depth 0.45 m) lengthens the route
    depth = np.zeros(city.roads.n_links)
    depth[links[7]] = 0.5
    tm.set_link_depth(depth)
    es.set_flood(None)
    links2, t2, length2 = es.route("ambulance", a, b)
    assert links[7] not in links2 and length2 > length0 and t2 > t0
    # dispatch uses it: an incident beyond the flooded link is reached by the detour
    nx = es.graph.node_x[b]; ny = es.graph.node_y[b]
    es.report_incident(0.0, "medical", nx, ny, priority=1, transport=False)
    es.run_one_step(600.0)
    inc = es.incident_table().iloc[0]
    assert inc.unit_kind == "ambulance"
    assert np.isfinite(inc.travel_time_s)


def test_models_use_the_network_traffic_runs_on():
    # traffic on the largest strongly connected part of a network with a one-way dead end
    import pandas as pd

    from twin.roads import RoadNetwork

    city = synthetic_city()
    nodes = pd.concat([city.roads.nodes[["id", "x", "y"]],
                       pd.DataFrame({"id": [10_000], "x": [600_010.0], "y": [1_719_990.0]})])
    links = pd.concat([city.roads.links[["from", "to", "length_m", "lanes", "free_speed_mps"]],
                       pd.DataFrame({"from": [0], "to": [10_000], "length_m": [90.0], "lanes": [1],
                                     "free_speed_mps": [11.0]})], ignore_index=True)
    city.roads = RoadNetwork.from_frames(nodes, links)
    with pytest.warns(UserWarning, match="kept the largest: 144 of 145 nodes"):
        net = city.roads.largest_strongly_connected()
    assert net.n_nodes == city.roads.n_nodes - 1
    tm = TrafficModel(net, dt=1.0, seed=0)
    pm = PeopleModel(city, {"n_tourists": 0}, np.random.default_rng(1), traffic=tm)
    es = EmergencyServices(city, {}, np.random.default_rng(1), traffic=tm, people=pm)
    assert pm.graph.n_nodes == es.graph.n_nodes == net.n_nodes
    assert len(es.link_times("ambulance")) == net.n_links
    pm.act_s[:] = 0.0
    pm.run_one_step(300.0, None, None)          # trips on the traffic network's node ids
    assert tm.n_trips > 0


def test_stuck_vehicle_trips_are_abandoned_after_the_patience_time():
    # traffic never advances (gridlock): after abandon_vehicle_after_s the occupants walk on
    city = synthetic_city()
    tm = TrafficModel(city.roads, dt=1.0, seed=0)
    pm = PeopleModel(city, {"n_tourists": 0, "w_upper": 0.0, "abandon_vehicle_after_s": 3600.0},
                     np.random.default_rng(3), traffic=tm)
    pm.act_s[:] = 0.0
    pm.run_one_step(300.0, None, None)
    drivers = np.flatnonzero(pm.state == DRIVE)
    assert drivers.size > 100 and tm.n_trips == drivers.size
    for _ in range(12):                      # departed at t = 300 s; now t = 3900 s, 3600 s later: not yet
        pm.run_one_step(300.0, None, None)
    assert np.all(pm.state[drivers] == DRIVE)
    pm.run_one_step(300.0, None, None)       # 3900 s > 3600 s
    assert not np.any(pm.state[drivers] == DRIVE)
    ev = pm.event_table()
    assert set(ev[ev.event == "vehicle_stalled"].agent_id) == set(drivers.tolist())
    for _ in range(24):
        pm.run_one_step(300.0, None, None)
    assert np.isin(pm.state[drivers], (SHELTER, RELATIVES)).mean() > 0.9


def test_restart_with_traffic_is_bit_identical():
    from .helpers import coastal_flood

    city = synthetic_city()

    def build():
        tm = TrafficModel(city.roads, dt=1.0, seed=0)
        pm = PeopleModel(city, {"n_tourists": 200}, np.random.default_rng(5), traffic=tm)
        es = EmergencyServices(city, {"medical_rate_per_1000_per_day": 30.0}, np.random.default_rng(6),
                               traffic=tm, people=pm)
        return tm, pm, es

    def advance(tm, pm, es, n):
        for _ in range(n):
            d, v = coastal_flood(city, pm.time_s + 300.0)
            tm.run_one_step(300.0)
            pm.run_one_step(300.0, d, v)
            es.run_one_step(300.0)

    tm, pm, es = build()
    pm.issue_warning(1800.0, "cell_broadcast")
    advance(tm, pm, es, 24)
    snap = (tm.get_state(), pm.get_state(), es.get_state())
    advance(tm, pm, es, 24)
    tm2, pm2, es2 = build()
    tm2.set_state(snap[0]); pm2.set_state(snap[1]); es2.set_state(snap[2])
    advance(tm2, pm2, es2, 24)
    assert tm.n_trips > 100 and len(es.incidents) > 10
    assert pm.state_table().equals(pm2.state_table())
    assert es.incident_table().equals(es2.incident_table())
    assert tm.trips.drop(columns=["route"]).equals(tm2.trips.drop(columns=["route"]))
def test_trip_stranded_at_its_origin_walks_on_from_the_origin():
    # every road closed before the trips leave: they are stranded at their origin (current link -1);
    # the occupants must walk on from their own origin node, not from link 0's upstream node
    city = synthetic_city()
    tm = TrafficModel(city.roads, dt=1.0, seed=0)
    pm = PeopleModel(city, {"n_tourists": 0, "w_upper": 0.0}, np.random.default_rng(4), traffic=tm)
    pm.act_s[:] = 0.0
    pm.run_one_step(300.0, None, None)            # trips added, departing at t = 300 s
    drivers = np.flatnonzero(pm.state == DRIVE)
    assert drivers.size > 100
    origin = pm.mv_node[drivers].copy()
    tm.close_links(np.arange(city.roads.n_links))
    tm.run_one_step(600.0)
    st = tm.trip_status(pm.trip_id[drivers])
    stranded = st.state == "stranded"             # (the rest start at their destination: arrived)
    assert stranded.sum() > 100 and np.all(np.isin(st.state, ("stranded", "arrived")))
    assert np.all(st.current_link[stranded] == -1)
    drivers, origin = drivers[stranded], origin[stranded]
    pm.run_one_step(300.0, None, None)            # polls the trips (after this step's movement)
    assert np.all(pm.state[drivers] == WALK)
    np.testing.assert_array_equal(pm.mv_node[drivers], origin)
    link0_from = pm.graph.link_from[0]
    assert np.any(origin != link0_from)           # the old rule would have moved these to link 0's node
