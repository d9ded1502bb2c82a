"""Validation of the link transmission model against LWR theory (issue 3).

v_f = 50 km/h, k_j = 1/7.5 veh/m/lane, tau = 1 s, hence w = 7.5 m/s and a capacity of
2,338 veh/h/lane. Tolerances are written next to each assertion.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from twin.roads import RoadNetwork
from twin.traffic import TrafficModel

from .helpers import KJ, QCAP, VF, W, corridor, uniform_trips

RED_FOREVER = (1e7, 1.0)  # phase 0 lasts 1e7 s: a link with signal_group 1 waits at red


def test_free_flow_travel_time_is_exact():
    lengths = [300.0, 137.0, 512.5]
    net = corridor(lengths, 1)
    tm = TrafficModel(net, dt=1.0)
    tm.add_trips(pd.DataFrame({"origin": [0, 0], "destination": [3, 1], "depart_s": [3.3, 400.7]}))
    tm.run_one_step(600)
    tt = tm.trips.travel_time_s.to_numpy()
    assert tt[0] == pytest.approx(sum(lengths) / VF, abs=1e-9)   # exact up to round-off
    assert tt[1] == pytest.approx(300.0 / VF, abs=1e-9)
    log = tm.link_log
    first = log[log.trip_id == 0]
    assert np.allclose(first.exit_s - first.enter_s, np.asarray(lengths) / VF, atol=1e-9)


def test_capacity_outflow_under_oversaturated_demand():
    net = corridor([600.0, 600.0], 1)
    tm = TrafficModel(net)
    tm.add_trips(uniform_trips(0, 2, 1.0, 0, 2400))  # 3,600 veh/h on a 2,338 veh/h lane
    tm.run_one_step(600)
    e0 = tm.link_log.query("link_id == 1").exit_s.notna().sum()
    tm.run_one_step(1200)
    e1 = tm.link_log.query("link_id == 1").exit_s.notna().sum()
    assert QCAP * 3600 == pytest.approx(2338, abs=1)
    assert (e1 - e0) / 1200 == pytest.approx(QCAP, rel=0.05)  # within 5 %
    assert tm.link_flow[1] == pytest.approx(QCAP, rel=0.05)


def red_corridor(length=300.0, lanes=1):
    nodes = pd.DataFrame({"id": [0, 1, 2], "x": [0.0, length, 2 * length], "y": 0.0,
                          "signal_phases_s": [None, RED_FOREVER, None]})
    links = pd.DataFrame({"from": [0, 1], "to": [1, 2], "length_m": length, "lanes": float(lanes),
                          "free_speed_mps": VF, "signal_group": [1, -1]})
    return RoadNetwork.from_frames(nodes, links)


def test_standing_queue_at_jam_density():
    net = red_corridor(300.0, 2)
    tm = TrafficModel(net)
    tm.add_trips(uniform_trips(0, 2, 1.0, 0, 300))
    tm.run_one_step(900)
    jam = KJ * 300.0 * 2  # 80 vehicles
    assert tm.link_vehicles[0] == pytest.approx(jam, rel=0.02)   # within 2 %
    assert tm.link_density[0] == pytest.approx(2 * KJ, rel=0.02)
    assert tm.link_speed[0] == pytest.approx(0.0, abs=1e-9)
    assert tm.link_queue[0] == tm.link_vehicles[0]
    assert tm.counts()["waiting"] == 300 - tm.link_vehicles[0]


def test_bottleneck_queue_tail_speed_and_spillback_bound():
    n = 40
    lengths = np.array([100.0] * n + [1000.0, 500.0])
    lanes = np.array([2] * n + [1, 1])
    net = corridor(lengths, lanes)
    tm = TrafficModel(net)
    q_in = 3000 / 3600
    tm.add_trips(uniform_trips(0, n + 2, q_in, 0, 3000))
    bound = KJ * lengths * lanes
    occ = []
    for _ in range(2400):
        tm.run_one_step(1.0)
        pcu = tm.link_pcu_density * lengths
        assert (pcu <= bound + 1e-9).all()  # spill-back: never more than k_j L lanes
        occ.append(pcu)
    occ = np.array(occ)
    k_up = q_in / VF                       # uncongested upstream state
    k_q = 2 * KJ - QCAP / W                # congested state discharging the 1-lane capacity
    expected = (QCAP - q_in) / (k_q - k_up)
    assert expected == pytest.approx(-1.53, abs=0.01)
    # time at which the queue tail passes each 100 m link (occupancy half-way between the states)
    mid = 0.5 * (k_up + k_q) * 100.0
    xs, ts = [], []
    for i in range(n):
        hit = np.flatnonzero(occ[:, i] > mid)
        if len(hit) and hit[0] > 0:
            xs.append(100.0 * i + 50.0)
            ts.append(hit[0] + 1.0)
    assert len(xs) > 20
    slope = np.polyfit(ts, xs, 1)[0]
    assert slope == pytest.approx(expected, rel=0.10)  # -1.53 m/s within 10 % (the tolerance)
    # with exact capacities the engine gets -1.533 m/s; the old whole-vehicle counts gave -1.601 m/s
    # (4.5 % off), so hold it to 1 %
    assert slope == pytest.approx(expected, rel=0.01)


def diverge_net():
    # 0 -> 1, then 1 -> 2 (ends at a red signal at node 2) and 1 -> 3 (free)
    nodes = pd.DataFrame({"id": [0, 1, 2, 3, 4], "x": [0.0, 300.0, 600.0, 600.0, 900.0],
                          "y": [0.0, 0.0, 100.0, -100.0, 100.0],
                          "signal_phases_s": [None, None, RED_FOREVER, None, None]})
    links = pd.DataFrame({"from": [0, 1, 1, 2], "to": [1, 2, 3, 4], "length_m": 300.0, "lanes": 1.0,
                          "free_speed_mps": VF, "signal_group": [-1, 1, -1, -1]})
    return RoadNetwork.from_frames(nodes, links)


def test_blocked_diverge_holds_all_movements_fifo():
    net = diverge_net()
    tm = TrafficModel(net)
    n = 200
    dep = np.arange(n) * 3.0
    dest = np.where(np.arange(n) % 2 == 0, 4, 3)
    tm.add_trips(pd.DataFrame({"origin": 0, "destination": dest, "depart_s": dep}))
    tm.run_one_step(1500)
    log = tm.link_log
    on0 = log[log.link_id == 0].sort_values("enter_s")
    exited = on0.exit_s.notna().to_numpy()
    # FIFO: exits happen in entry order, and nobody passes a vehicle that cannot leave
    assert np.all(np.diff(on0.exit_s[exited].to_numpy()) >= 0)
    assert exited[:exited.sum()].all() and not exited[exited.sum():].any()
    # link 1 (to the red light) is full, link 2 (free) got nothing after the blockage
    assert tm.link_vehicles[1] == pytest.approx(KJ * 300, rel=0.02)
    # the free exit gets only the vehicles ahead of the first blocked one, then nothing
    first_blocked = on0.trip_id.to_numpy()[exited.sum()]
    assert tm.trips.destination.iloc[first_blocked] == 4
    assert (log[log.link_id == 2].trip_id < first_blocked).all()
    assert (log[log.link_id == 2].enter_s < 400.0).all() and tm.link_vehicles[2] == 0
    assert tm.link_vehicles[0] > 30  # the queue spills back on the approach
    assert tm.trips.query("destination == 3").arrive_s.notna().sum() < n // 2


def merge_net():
    # two approaches (A: 2 lanes, B: 1 lane) merge into a 1-lane link M: priorities 2/3 and 1/3
    nodes = pd.DataFrame({"id": [0, 1, 2, 3], "x": [0.0, 0.0, 600.0, 1200.0], "y": [300.0, -300.0, 0.0, 0.0]})
    links = pd.DataFrame({"from": [0, 1, 2], "to": [2, 2, 3], "length_m": [600.0, 600.0, 600.0],
                          "lanes": [2.0, 1.0, 1.0], "free_speed_mps": VF})
    return RoadNetwork.from_frames(nodes, links)


def daganzo(dA, dB, cA, cB, R):
    """Daganzo (1995) merge with priorities p = c / (cA + cB)."""
    if dA + dB <= R:
        return dA, dB
    pA, pB = cA / (cA + cB), cB / (cA + cB)
    if dA >= pA * R and dB >= pB * R:
        return pA * R, pB * R
    if dA < pA * R:
        return dA, R - dA
    return R - dB, dB


@pytest.mark.parametrize("dA, dB, regime", [
    (0.30, 0.25, "free"),               # total demand below the merge's capacity
    (1.20, 0.60, "both congested"),     # both above their capacity share: 2/3 and 1/3 of R
    (0.25, 0.60, "one congested"),      # A below its share: A gets its demand, B the rest
])
def test_merge_matches_daganzo(dA, dB, regime):
    net = merge_net()
    tm = TrafficModel(net)
    rate_a, rate_b = dA * QCAP, dB * QCAP
    trips = pd.concat([uniform_trips(0, 3, rate_a, 0, 3000), uniform_trips(1, 3, rate_b, 0, 3000)])
    tm.add_trips(trips)
    tm.run_one_step(900)
    log0 = tm.link_log
    tm.run_one_step(1500)
    log1 = tm.link_log
    flows = []
    for link in (0, 1):   # (the lint pass renamed this to _link while the query still said @link)
        n0 = log0.loc[log0["link_id"] == link, "exit_s"].notna().sum()
        n1 = log1.loc[log1["link_id"] == link, "exit_s"].notna().sum()
        flows.append((n1 - n0) / 1500)
    qa, qb = daganzo(rate_a, rate_b, 2 * QCAP, QCAP, QCAP)
    assert flows[0] == pytest.approx(qa, rel=0.05), regime  # within 5 %
    assert flows[1] == pytest.approx(qb, rel=0.05), regime


def test_signal_holds_vehicle_until_green():
    nodes = pd.DataFrame({"id": [0, 1, 2], "x": [0.0, 300.0, 600.0], "y": 0.0,
                          "signal_phases_s": [None, (30.0, 30.0), None]})
    links = pd.DataFrame({"from": [0, 1], "to": [1, 2], "length_m": 300.0, "lanes": 1.0, "free_speed_mps": VF,
                          "signal_group": [1, -1]})
    tm = TrafficModel(RoadNetwork.from_frames(nodes, links))
    tm.add_trips(pd.DataFrame({"origin": [0, 0], "destination": [2, 2], "depart_s": [0.0, 35.0]}))
    tm.run_one_step(200)
    tt = tm.trips.travel_time_s.to_numpy()
    # arrives at 21.6 s, red until 30 s, then starts from a stop on link 1: the car's acceleration
    # loss v / (2 a) with a = 2.6 m/s^2 (TrafficModel's default; 0 with accel_mps2=None)
    assert tt[0] == pytest.approx(30.0 + 300 / VF + VF / (2 * 2.6), abs=1e-9)
    assert tt[1] == pytest.approx(2 * 300 / VF, abs=1e-9)  # arrives at 56.6 s, during green (30-60 s)


def test_emergency_vehicle_passes_red():
    net = red_corridor(300.0, 1)
    tm = TrafficModel(net)
    tm.add_trips(pd.DataFrame({"origin": [0, 0], "destination": [2, 2], "depart_s": [0.0, 100.0],
                               "vehicle_class": ["emergency", "car"]}))
    tm.run_one_step(300)
    st = tm.trip_status([0, 1])
    assert list(st.state) == ["arrived", "on_link"]
    assert tm.trips.travel_time_s.iloc[0] == pytest.approx(600 / VF)


@pytest.mark.parametrize("overtake", [False, True])
def test_emergency_vehicle_behind_a_queue(overtake):
    net = red_corridor(300.0, 1)
    tm = TrafficModel(net, emergency_overtake=overtake)
    cars = uniform_trips(0, 2, 0.2, 0, 100)                       # 20 cars wait at the red light
    amb = pd.DataFrame({"origin": [0], "destination": [2], "depart_s": [200.0], "vehicle_class": ["emergency"]})
    tm.add_trips(cars)
    amb_id = tm.add_trips(amb)[0]
    tm.run_one_step(600)
    st = tm.trip_status([amb_id])
    c = tm.counts()
    assert c["departed"] == c["on_network"] + c["arrived"] + c["waiting"]
    if overtake:   # the queue pulls aside: free-flow time through the red light and on
        assert st.state[0] == "arrived"
        assert tm.trips.travel_time_s.iloc[amb_id] == pytest.approx(600 / VF)
        assert tm.link_vehicles[0] == 20 and tm.counts()["arrived"] == 1
    else:          # strict FIFO: stuck behind the cars
        assert st.state[0] == "on_link" and tm.counts()["arrived"] == 0
