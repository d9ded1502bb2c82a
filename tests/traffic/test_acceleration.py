"""Acceleration after a stop (individual vehicles, on by default, SUMO vehicle-class defaults).

Rule: a vehicle held at a node (it crosses later than it reached the stop line at its link speed)
or in its origin queue loses min(held, v / (2 a)) on the link it enters next, v that link's current
free speed. Times are event arithmetic in the engine, so the tolerance is 1e-9 s unless stated.
``accel_mps2=None`` must give the engine before this option to the bit.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from twin.roads import RoadNetwork
from twin.traffic import ACCEL_MPS2, TrafficModel

from .helpers import VF

TOL = 1e-9


def signal_corridor(phases, group, length=600.0, lanes=1.0):
    """0 -> 1 -> 2, a signal at node 1 for link 0 (green in phase `group`), link 1 unsignalised."""
    nodes = pd.DataFrame({"id": [0, 1, 2], "x": [0.0, length, 2 * length], "y": 0.0,
                          "signal_phases_s": [None, phases, None]})
    links = pd.DataFrame({"from": [0, 1], "to": [1, 2], "length_m": length, "lanes": lanes,
                          "free_speed_mps": VF, "signal_group": [group, -1]})
    return RoadNetwork.from_frames(nodes, links)


def link_times(tm, trip, link):
    log = tm.link_log.query("trip_id == @trip and link_id == @link")
    return float(log.enter_s.iloc[0]), float(log.exit_s.iloc[0])


def one_trip(net, vehicle_class="car", **kw):
    tm = TrafficModel(net, **kw)
    tm.add_trips(pd.DataFrame({"origin": [0], "destination": [2], "depart_s": [0.0],
                               "vehicle_class": [vehicle_class]}))
    tm.run_one_step(400.0)
    assert tm.counts()["arrived"] == 1
    return tm


def test_stopped_at_a_red_costs_exactly_v_over_2a_on_the_next_link():
    # it reaches node 1 at 600 / VF = 43.2 s. Green for group 0 (0-100 s): passes without stopping.
    # Group 1 (green 100-200 s): stopped for 56.8 s, then link 1 takes L/v + v/(2a).
    green = one_trip(signal_corridor((100.0, 100.0), 0))
    red = one_trip(signal_corridor((100.0, 100.0), 1))
    t0, t1 = link_times(green, 0, 1)
    assert t0 == pytest.approx(600.0 / VF, abs=TOL) and t1 - t0 == pytest.approx(600.0 / VF, abs=TOL)
    r0, r1 = link_times(red, 0, 1)
    assert r0 == pytest.approx(100.0, abs=TOL)
    assert r1 - r0 == pytest.approx(600.0 / VF + VF / (2 * 2.6), abs=TOL)   # car: 2.6 m/s^2 (SUMO)
    assert red.counts()["accel_starts"] == 1 and green.counts()["accel_starts"] == 0


def test_held_briefly_loses_only_the_time_it_was_held():
    # green for group 1 starts at 43.7 s, 0.5 s after the car reaches the stop line (43.2 s)
    tm = one_trip(signal_corridor((43.7, 46.3), 1))
    e, x = link_times(tm, 0, 1)
    assert e == pytest.approx(43.7, abs=TOL)
    assert x - e == pytest.approx(600.0 / VF + 0.5, abs=TOL)


@pytest.mark.parametrize("cls", ["motorbike", "car", "bus", "truck", "emergency"])
def test_class_accelerations_give_their_own_loss(cls):
    if cls == "emergency":  # passes the red: not held, no loss
        tm = one_trip(signal_corridor((100.0, 100.0), 1), cls)
        e, x = link_times(tm, 0, 1)
        assert e == pytest.approx(600.0 / VF, abs=TOL) and x - e == pytest.approx(600.0 / VF, abs=TOL)
        return
    tm = one_trip(signal_corridor((100.0, 100.0), 1), cls)
    e, x = link_times(tm, 0, 1)
    assert x - e == pytest.approx(600.0 / VF + VF / (2 * ACCEL_MPS2[cls]), abs=TOL)


def test_motorbike_and_truck_differ_by_their_accelerations_and_overrides_apply():
    net = signal_corridor((100.0, 100.0), 1)
    d = {}
    for cls in ("motorbike", "truck"):
        e, x = link_times(one_trip(net, cls), 0, 1)
        d[cls] = x - e
    assert d["truck"] - d["motorbike"] == pytest.approx(VF / 2 * (1 / 1.3 - 1 / 6.0), abs=TOL)
    assert ACCEL_MPS2 == {"motorbike": 6.0, "car": 2.6, "bus": 1.2, "truck": 1.3, "emergency": 2.6}
    e, x = link_times(one_trip(net, "motorbike", accel_mps2={"motorbike": 2.0}), 0, 1)
    assert x - e == pytest.approx(600.0 / VF + VF / 4.0, abs=TOL)
    e, x = link_times(one_trip(net, "truck", accel_mps2=1.0), 0, 1)        # one value for all classes
    assert x - e == pytest.approx(600.0 / VF + VF / 2.0, abs=TOL)
    for off in (None, float("inf"), {"truck": None}, {"truck": float("inf")}):
        e, x = link_times(one_trip(net, "truck", accel_mps2=off), 0, 1)
        assert x - e == pytest.approx(600.0 / VF, abs=TOL)


def test_invalid_accelerations_are_rejected():
    net = signal_corridor((100.0, 100.0), 1)
    for bad, match in ((0.0, "must be > 0"), (-1.0, "must be > 0"), (float("nan"), "must be > 0"),
                       ({"car": -2.0}, r"accel_mps2\['car'\]"), ({"tram": 1.0}, "unknown vehicle class"),
                       ("fast", "expected a number")):
        with pytest.raises(ValueError, match=match):
            TrafficModel(net, accel_mps2=bad)


def test_held_in_the_origin_queue_starts_from_a_stop():
    # two cars depart at the same instant into a 1-lane link: the second enters one capacity
    # headway later than it departed (held in the origin queue) and loses that headway, capped
    net = signal_corridor(None, -1)
    tm = TrafficModel(net)
    tm.add_trips(pd.DataFrame({"origin": [0, 0], "destination": [2, 2], "depart_s": [10.0, 10.0]}))
    tm.run_one_step(300.0)
    e0, x0 = link_times(tm, 0, 0)
    e1, x1 = link_times(tm, 1, 0)
    assert e0 == pytest.approx(10.0, abs=TOL) and x0 - e0 == pytest.approx(600.0 / VF, abs=TOL)
    held = e1 - 10.0
    assert held > 0.5
    assert x1 - e1 == pytest.approx(600.0 / VF + min(held, VF / (2 * 2.6)), abs=TOL)


def test_flood_slowdown_during_the_start_keeps_the_loss_left():
    # the car crosses node 1 at 100 s from a stop (loss 2.67 s on link 1); at 101 s link 1 floods
    # (Pregnolato speed at 0.1 m): nothing of the link is driven yet, so it exits at
    # 100 + loss + L / v(0.1 m)
    from twin.traffic import flooded_speed_mps
    tm = TrafficModel(signal_corridor((100.0, 100.0), 1))
    tm.add_trips(pd.DataFrame({"origin": [0], "destination": [2], "depart_s": [0.0]}))
    tm.run_one_step(101.0)
    tm.set_link_depth(np.array([0.0, 0.1]))
    tm.run_one_step(300.0)
    v1 = float(np.atleast_1d(flooded_speed_mps(0.1, VF))[0])
    e, x = link_times(tm, 0, 1)
    assert e == pytest.approx(100.0, abs=TOL)
    assert x == pytest.approx(100.0 + VF / (2 * 2.6) + 600.0 / v1, abs=1e-6)


def _grid_run(**kw):
    net = RoadNetwork.grid(6, spacing_m=300.0, lanes=1, free_speed_mps=50 / 3.6, signal_phases_s=(45.0, 45.0))
    rng = np.random.default_rng(7)
    ids = net.node_ids
    n = 2500
    o, d = ids[rng.integers(0, len(ids), n)], ids[rng.integers(0, len(ids), n)]
    keep = o != d
    cls = np.array(["motorbike", "car", "bus", "truck", "emergency"])[rng.integers(0, 5, n)]
    trips = pd.DataFrame({"origin": o[keep], "destination": d[keep],
                          "depart_s": np.sort(rng.uniform(0, 1200, n))[keep], "vehicle_class": cls[keep]})
    tm = TrafficModel(net, **kw)
    tm.add_trips(trips)
    tm.run_one_step(600.0)
    depth = np.zeros(net.n_links)
    depth[rng.integers(0, net.n_links, 20)] = rng.uniform(0.05, 0.4, 20)
    tm.set_link_depth(depth)
    tm.run_one_step(3000.0)
    log = tm.link_log[["trip_id", "link_id", "enter_s", "exit_s"]].to_numpy(np.float64)
    h = hashlib.sha256(np.ascontiguousarray(tm.trips.arrive_s.to_numpy(np.float64)).tobytes())
    h.update(np.ascontiguousarray(log).tobytes())
    return tm, h.hexdigest()


# sha256 of arrival times and the whole link log of _grid_run on the engine before acceleration
# (commit 10762d7, built and run on this machine): signals, five classes, flood slowdowns and
# closures by stall depth
ENGINE_BEFORE_ACCEL = "d3d22487afeceec313328247df9552d977f3ca9abfa71b657f408722db36daa3"


def test_off_switch_is_bit_identical_to_the_engine_before_acceleration():
    tm, h = _grid_run(accel_mps2=None)
    assert h == ENGINE_BEFORE_ACCEL
    assert tm.counts()["accel_starts"] == 0
    _, h_inf = _grid_run(accel_mps2=float("inf"))
    assert h_inf == ENGINE_BEFORE_ACCEL
    tm_on, h_on = _grid_run()
    assert h_on != ENGINE_BEFORE_ACCEL and tm_on.counts()["accel_starts"] > 1000


def test_conservation_fifo_and_storage_hold_with_acceleration():
    net = RoadNetwork.grid(5, spacing_m=200.0, lanes=1, signal_phases_s=(30.0, 30.0))
    rng = np.random.default_rng(3)
    ids = net.node_ids
    n = 3000
    o, d = ids[rng.integers(0, len(ids), n)], ids[rng.integers(0, len(ids), n)]
    keep = o != d
    cls = np.array(["motorbike", "car", "bus", "truck"])[rng.integers(0, 4, n)]
    tm = TrafficModel(net)
    tm.add_trips(pd.DataFrame({"origin": o[keep], "destination": d[keep],
                               "depart_s": np.sort(rng.uniform(0, 900, n))[keep], "vehicle_class": cls[keep]}))
    kj_l = (net.links.jam_density_vpm_per_lane * net.links.lanes * net.links.length_m).to_numpy()
    for _ in range(1500):
        tm.run_one_step(2.0)
        c = tm.counts()
        assert c["departed"] == c["waiting"] + c["on_network"] + c["arrived"] + c["stalled"] + c["stranded"]
        assert (tm.link_pcu_density * net.links.length_m.to_numpy() <= np.maximum(kj_l, 2.5) + 1e-9).all()
    c = tm.counts()
    assert c["arrived"] == int(keep.sum()) and c["accel_starts"] > 0
    log = tm.link_log.dropna()
    # FIFO: on every link vehicles leave in the order they joined it (the log's row order), and with
    # acceleration on never before the vehicle ahead (a follower cannot pass a leader still speeding up)
    for _, g in log.groupby("link_id", sort=False):
        assert (np.diff(g.exit_s.to_numpy()) >= 0.0).all()
        assert (g.exit_s - g.enter_s >= 0).all()


def test_restart_with_acceleration_is_bit_identical():
    # the per-vehicle loss (t_loss) and the shifted history are part of the restart state
    net = RoadNetwork.grid(5, spacing_m=300.0, lanes=1, signal_phases_s=(45.0, 45.0))
    rng = np.random.default_rng(11)
    ids = net.node_ids
    o, d = ids[rng.integers(0, len(ids), 1500)], ids[rng.integers(0, len(ids), 1500)]
    keep = o != d
    trips = pd.DataFrame({"origin": o[keep], "destination": d[keep],
                          "depart_s": np.sort(rng.uniform(0, 900, 1500))[keep]})
    a, b = TrafficModel(net), TrafficModel(net)
    a.add_trips(trips)
    a.run_one_step(400.0)
    b.set_state(a.get_state())
    a.run_one_step(2000.0)
    b.run_one_step(2000.0)
    assert a.counts()["accel_starts"] > 100
    assert np.array_equal(a.trips.arrive_s.to_numpy(), b.trips.arrive_s.to_numpy(), equal_nan=True)
    assert a.link_log.equals(b.link_log) and a.counts() == b.counts()


def test_start_on_short_links_carries_over_and_totals_v_over_2a():
    # red at node 1, then five 20 m links: a link takes at most floor(L / (w dt)) dt - dt = 1 s of
    # the loss (the rest carries on), so the car still loses v / (2 a) in total over the chain
    lengths = [600.0] + [20.0] * 5 + [600.0]
    x = np.concatenate([[0.0], np.cumsum(lengths)])
    nodes = pd.DataFrame({"id": np.arange(len(x)), "x": x, "y": 0.0,
                          "signal_phases_s": [None, (100.0, 100.0)] + [None] * (len(x) - 2)})
    links = pd.DataFrame({"from": np.arange(len(lengths)), "to": np.arange(1, len(x)), "length_m": lengths,
                          "lanes": 1.0, "free_speed_mps": VF, "signal_group": [1] + [-1] * (len(lengths) - 1)})
    net = RoadNetwork.from_frames(nodes, links)
    arrive = {}
    for acc in (None, "default"):
        tm = TrafficModel(net, accel_mps2=acc)
        tm.add_trips(pd.DataFrame({"origin": [0], "destination": [len(x) - 1], "depart_s": [0.0]}))
        tm.run_one_step(400.0)
        arrive[acc] = float(tm.trips.arrive_s.iloc[0])
        if acc is not None:
            log = tm.link_log.sort_values("enter_s")
            dur = (log.exit_s - log.enter_s).to_numpy()
            assert (dur[1:6] <= 20.0 / VF + 1.0 + 1.0 + TOL).all()   # L/v + at most 1 s loss + one step
    assert arrive["default"] - arrive[None] == pytest.approx(VF / (2 * 2.6), abs=TOL)


@pytest.mark.parametrize("length", [20.0, 100.0, 600.0])
def test_links_fed_from_a_queue_keep_their_capacity(length):
    # a 2-lane queue discharges into a 1-lane link of this length: every car enters from a stop,
    # yet the link passes capacity x time (within one vehicle over 1,800 s), as without acceleration
    from .helpers import QCAP, corridor
    tm = TrafficModel(corridor([600.0, length, 600.0], [2, 1, 1]))
    n = int(3600 * 1.5 * QCAP)
    tm.add_trips(pd.DataFrame({"origin": 0, "destination": 3, "depart_s": np.linspace(0, 3600, n)}))
    tm.run_one_step(2700.0)
    ex = tm.link_log.query("link_id == 1").exit_s.dropna().to_numpy()
    assert abs(((ex >= 900) & (ex < 2700)).sum() - 1800 * QCAP) <= 1.0
    assert tm.counts()["accel_starts"] > 1000
