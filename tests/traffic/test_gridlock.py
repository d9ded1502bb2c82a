"""Links shorter than one vehicle, and the SUMO-style teleport for genuine strict-FIFO gridlock.

The first test is the root cause of the stuck trips seen on the Tam Kỳ network (people notes:
trips staying on_link for hours): the bundle has 28 junction connectors of 1.9–5.7 m whose whole
storage k_j·L at 0.15 PCU/m is below one car, so a car could never enter them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from twin.roads import RoadNetwork
from twin.traffic import TrafficModel

from .helpers import KJ, corridor, uniform_trips


def _conserved(tm):
    c = tm.counts()
    assert c["departed"] == c["waiting"] + c["on_network"] + c["arrived"] + c["stalled"] + c["stranded"]
    return c


@pytest.mark.parametrize("vehicle_class, pcu, short_m", [("car", 1.0, 3.0), ("truck", 2.5, 7.5),
                                                          ("motorbike", 0.25, 1.0)])
def test_link_shorter_than_one_vehicle_passes_one_vehicle_at_a_time(vehicle_class, pcu, short_m):
    # 300 m, then a 1-lane link whose storage k_j L is below one vehicle, then 300 m
    net = corridor([300.0, short_m, 300.0], [2, 1, 2])
    assert KJ * short_m < pcu
    tm = TrafficModel(net, dt=1.0)
    tm.add_trips(uniform_trips(0, 3, 0.2, 0.0, 300.0, vehicle_class))   # 60 vehicles
    pcu_on = []
    for _ in range(1200):
        tm.run_one_step(1.0)
        _conserved(tm)
        pcu_on.append(tm.link_pcu_density[1] * short_m)
        # the storage bound generalised: k_j L, or one vehicle when the link is shorter than that
        assert pcu_on[-1] <= max(KJ * short_m, pcu) + 1e-9
    c = tm.counts()
    assert c["arrived"] == 60 and c["on_network"] == 0 and c["teleports"] == 0
    if KJ * short_m < pcu:
        assert max(pcu_on) == pytest.approx(pcu)          # exactly one vehicle on it at a time


def ring_network(ring_m=30.0):
    """Four ring nodes 0..3 (one-lane links i -> i+1 of ``ring_m``), an entry node 4+i feeding ring node
    i and an exit node 8+i fed by it (300 m, 2 lanes)."""
    xy = np.array([[0, 0], [ring_m, 0], [ring_m, ring_m], [0, ring_m]], float)
    out = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float) * 300.0
    nodes = pd.DataFrame({"id": np.arange(12), "x": np.r_[xy[:, 0], xy[:, 0] + out[:, 0], xy[:, 0] + out[:, 0] * 1.1],
                          "y": np.r_[xy[:, 1], xy[:, 1] + out[:, 1], xy[:, 1] + out[:, 1] * 1.1]})
    fr = [0, 1, 2, 3] + [4, 5, 6, 7] + [0, 1, 2, 3]
    to = [1, 2, 3, 0] + [0, 1, 2, 3] + [8, 9, 10, 11]
    links = pd.DataFrame({"from": fr, "to": to, "length_m": [ring_m] * 4 + [300.0] * 8,
                          "lanes": [1.0] * 4 + [2.0] * 8, "free_speed_mps": 10.0})
    return RoadNetwork.from_frames(nodes, links)


def ring_trips(n_per_entry=150):
    # from every entry, three ring links round to the exit before the entry: everybody needs the ring
    rows = [(4 + i, 8 + (i + 3) % 4, 0.5 * k) for i in range(4) for k in range(n_per_entry)]
    return pd.DataFrame(rows, columns=["origin", "destination", "depart_s"])


def test_ring_of_full_links_gridlocks_under_strict_fifo_and_teleport_resolves_it():
    net = ring_network()
    locked = TrafficModel(net, dt=1.0)
    locked.add_trips(ring_trips())
    locked.run_one_step(3600.0)
    c = _conserved(locked)
    ring_pcu = locked.link_pcu_density[:4] * 30.0
    # a genuine gridlock: every ring link full (k_j L = 4 cars), nobody has moved for an hour
    assert c["arrived"] < 600 and c["on_network"] > 0 and c["teleports"] == 0
    np.testing.assert_allclose(ring_pcu, KJ * 30.0 * np.ones(4), atol=1.0)
    arrived_before = c["arrived"]
    locked.run_one_step(3600.0)
    assert locked.counts()["arrived"] == arrived_before

    # each teleport lets one ring vehicle out to its exit, and the entries refill the freed place, so the
    # ring clears at about one vehicle per ring node per time_to_teleport_s (measured: 30 s -> all 600
    # out in ~1 h, 120 s -> 4 h): the option trades realism for progress, as in SUMO
    tm = TrafficModel(net, dt=1.0, time_to_teleport_s=30.0)
    assert tm.time_to_teleport_s == 30.0
    tm.add_trips(ring_trips())
    bound = (KJ * net.links["length_m"] * net.links["lanes"]).to_numpy()
    for _ in range(2 * 3600 // 10):
        tm.run_one_step(10.0)
        _conserved(tm)
        assert (tm.link_pcu_density * net.links["length_m"].to_numpy() <= bound + 1e-9).all()
    c = tm.counts()
    assert c["arrived"] == 600 and c["on_network"] == 0 and c["waiting"] == 0
    assert c["teleports"] > 0
    # a teleported vehicle's route is still complete in the log (skipped links with zero duration)
    trips = tm.trips
    assert all(r[-1] in (8, 9, 10, 11) for r in trips.route)          # ends on its exit link
    assert (trips.route.map(len) == 5).all()                            # entry, 3 ring links, exit


def test_teleport_is_off_by_default_and_validated():
    net = ring_network()
    assert TrafficModel(net).time_to_teleport_s is None
    for bad in (0.0, -5.0, float("nan")):
        with pytest.raises(ValueError, match="time_to_teleport_s"):
            TrafficModel(net, time_to_teleport_s=bad)


def test_teleport_restart_is_bit_identical():
    net = ring_network()
    a = TrafficModel(net, dt=1.0, time_to_teleport_s=60.0)
    a.add_trips(ring_trips(60))
    a.run_one_step(900.0)
    st = a.get_state()
    b = TrafficModel(net, dt=1.0, time_to_teleport_s=60.0)
    b.add_trips(ring_trips(60))
    b.set_state(st)
    a.run_one_step(1800.0)
    b.run_one_step(1800.0)
    assert a.counts() == b.counts() and a.counts()["teleports"] > 0
    pd.testing.assert_frame_equal(a.trips, b.trips)


def test_scenario_sets_time_to_teleport(tmp_path):
    import importlib.util
    from pathlib import Path

    from twin.build import build_twin
    from twin.scenario import load_scenario

    spec = importlib.util.spec_from_file_location("sim_helpers", Path(__file__).parents[1] / "sim" / "helpers.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    small_city, write_scenario = helpers.small_city, helpers.write_scenario

    city = small_city()
    path = write_scenario(tmp_path)
    assert build_twin(load_scenario(path), city=city).traffic.time_to_teleport_s is None
    tw = build_twin(load_scenario(path, ["traffic.time_to_teleport_s=5min"]), city=city)
    assert tw.traffic.time_to_teleport_s == 300.0
    assert tw.traffic._engine.teleport_steps == int(300.0 / tw.traffic.dt)


def test_tamky_short_connectors_pass_cars_and_trucks():
    # the people room's evacuation runs left trips on_link for hours on the Tam Kỳ bundle; the cause
    # was its junction connectors shorter than one vehicle at jam density (reproduced with seed 21,
    # 12 h, population_scale 0.05: 3 cars stuck for ever before the fix, all 1,294 trips arrive after)
    from twin.city import load_city

    net = load_city("tamky").roads
    links = net.links
    storage = (links.length_m * links.lanes * links.jam_density_vpm_per_lane).to_numpy()
    short = np.flatnonzero(storage < 1.0)
    assert len(short) >= 20
    ids = net.node_ids
    fr, to = net.link_from_index, net.link_to_index
    # a car and a truck across each short connector, starting one link upstream of it
    up = [int(np.flatnonzero(to == fr[l])[0]) for l in short]
    trips = pd.DataFrame({"origin": np.repeat(ids[fr[up]], 2), "destination": np.repeat(ids[to[short]], 2),
                          "depart_s": 0.0, "vehicle_class": ["car", "truck"] * len(short)})
    tm = TrafficModel(net, dt=1.0)
    tm.add_trips(trips)
    tm.run_until_done(3600.0)
    c = _conserved(tm)
    assert c["arrived"] == len(trips) and c["teleports"] == 0
