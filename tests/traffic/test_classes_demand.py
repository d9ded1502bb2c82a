"""Vehicle classes (PCU), short links and large steps, demand helpers, the component contract."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from twin.roads import RoadNetwork
from twin.traffic import TRIP_STATES, VEHICLE_CLASSES, TrafficModel, background_trips, daily_profile, trips_from_od

from .helpers import KJ, QCAP, VF, corridor, uniform_trips
from .test_validation import red_corridor


def test_motorbikes_take_a_quarter_of_the_space_and_capacity():
    # a standing queue of motorbikes holds 4x the vehicles (0.25 PCU each)
    tm = TrafficModel(red_corridor(300.0, 1))
    tm.add_trips(uniform_trips(0, 2, 2.0, 0, 150, vehicle_class="motorbike"))
    tm.run_one_step(600)
    assert tm.link_vehicles[0] == pytest.approx(4 * KJ * 300, rel=0.02)
    assert tm.link_pcu_density[0] == pytest.approx(KJ, rel=0.02)
    # and discharge at 4x the vehicle rate of cars
    net = corridor([600.0, 600.0], 1)
    tm = TrafficModel(net)
    tm.add_trips(uniform_trips(0, 2, 4.0, 0, 1200, vehicle_class="motorbike"))
    tm.run_one_step(300)
    tm.run_one_step(600)
    assert tm.link_flow[1] == pytest.approx(4 * QCAP, rel=0.05)


def test_trucks_count_two_and_a_half():
    tm = TrafficModel(red_corridor(300.0, 1))
    tm.add_trips(uniform_trips(0, 2, 0.5, 0, 200, vehicle_class="truck"))
    tm.run_one_step(900)
    assert tm.link_vehicles[0] == int(KJ * 300 / 2.5)  # 16 trucks of 2.5 PCU in 40 PCU of storage


@pytest.mark.parametrize("dt", [1.0, 5.0])
def test_short_links_and_large_steps_keep_conservation_and_bound_the_error(dt):
    # 50 m links take 3.6 s at free flow: shorter than dt = 5 s; each may add at most one step
    lengths = [300.0, 50.0, 50.0, 300.0]
    net = corridor(lengths, 1)
    tm = TrafficModel(net, dt=dt)
    tm.add_trips(pd.DataFrame({"origin": [0], "destination": [4], "depart_s": [0.0]}))
    tm.run_one_step(300)
    exact = sum(lengths) / VF
    tt = tm.trips.travel_time_s.iloc[0]
    assert exact - 1e-9 <= tt <= exact + 2 * dt * (dt > 50 / VF) + 1e-9


def test_large_step_capacity_is_close():
    net = corridor([600.0, 600.0], 1)
    tm = TrafficModel(net, dt=5.0)
    tm.add_trips(uniform_trips(0, 2, 1.0, 0, 2400))
    tm.run_one_step(600)
    tm.run_one_step(1200)
    assert tm.link_flow[1] == pytest.approx(QCAP, rel=0.05)


def test_routing_does_not_depend_on_thread_count():
    net = RoadNetwork.grid(8, signal_phases_s=(45.0, 45.0))
    rng = np.random.default_rng(4)
    ids = net.node_ids
    trips = pd.DataFrame({"origin": ids[rng.integers(0, 64, 3000)], "destination": ids[rng.integers(0, 64, 3000)],
                          "depart_s": np.sort(rng.uniform(0, 900, 3000))})
    routes = []
    for threads in (1, 2):
        tm = TrafficModel(net, threads=threads, informed_share=0.5, reroute_interval_s=120)
        tm.add_trips(trips)
        tm.run_one_step(1800)
        routes.append(list(tm.trips.route))
    assert routes[0] == routes[1]


def test_trips_from_od():
    rng = np.random.default_rng(0)
    od = np.array([[0, 10.4, 2], [3, 0, 0], [0.5, 0, 0]])
    df = trips_from_od(od, [7, 8, 9], 100.0, 700.0, rng, vehicle_class={"motorbike": 0.8, "car": 0.2})
    counts = df.groupby(["origin", "destination"]).size()
    assert counts[(8, 7)] == 3 and counts[(7, 9)] == 2 and counts[(7, 8)] in (10, 11)
    assert df.depart_s.between(100.0, 700.0).all() and df.depart_s.is_monotonic_increasing
    assert set(df.vehicle_class) <= {"motorbike", "car"}
    with pytest.raises(ValueError, match=r"od\[1, 1\]"):
        trips_from_od(np.array([[0, 1], [1, -1.0]]), [1, 2], 0, 10, rng)
    # the same seed gives the same trips
    a = trips_from_od(od, [7, 8, 9], 0, 60, np.random.default_rng(5))
    b = trips_from_od(od, [7, 8, 9], 0, 60, np.random.default_rng(5))
    assert a.equals(b)


def test_daily_profile_and_background_trips():
    p = daily_profile()
    assert p.shape == (24,) and p.sum() == pytest.approx(1.0)
    assert p[7] > 3 * p[3] and p[17] > 3 * p[3]      # two peaks, quiet nights
    net = RoadNetwork.grid(4)
    df = background_trips(net, 20_000, 0.0, 3600.0, np.random.default_rng(1), start_hour=7.0)
    assert len(df) == pytest.approx(20_000 * p[7], rel=0.1)
    assert (df.origin != df.destination).all()
    assert set(df.vehicle_class) <= set(VEHICLE_CLASSES)
    assert (df.vehicle_class == "motorbike").mean() > 0.7
    tm = TrafficModel(net)
    tm.add_trips(df)
    tm.run_until_done(3 * 3600)
    assert (tm.trips.state == "arrived").all()


def test_component_contract():
    info = TrafficModel._info
    for name, meta in info.items():
        assert "__" in name
        assert {"dtype", "intent", "optional", "units", "mapping", "doc"} <= set(meta)
        assert meta["intent"] in ("in", "out", "inout")
    tm = TrafficModel(RoadNetwork.grid(3))
    assert tm.run_one_step(30.0) == 30.0 and tm.time == 30.0
    outputs = {"road_link__vehicle_flow": tm.link_flow, "road_link__vehicle_density": tm.link_density,
               "road_link__mean_speed": tm.link_speed, "road_link__queue_length": tm.link_queue,
               "road_link__speed_factor": tm.link_speed_factor, "road_link__is_closed": tm.link_closed}
    for name, arr in outputs.items():
        assert name in info and arr.shape == (tm.network.n_links,)
    assert TRIP_STATES[3] == "arrived"


def test_link_depth_sampler_from_a_grid():
    from affine import Affine

    from twin.traffic.coupling import LinkDepthSampler

    net = corridor([300.0, 300.0], 1)          # along y = 0 from x = 0 to 600
    transform = Affine(10.0, 0, -50.0, 0, -10.0, 50.0)   # 10 m cells, NW corner (-50, 50)
    depth = np.zeros((10, 70))
    row = 5                                     # y in (-10, 0]... cells containing y = 0
    depth[row, 10:15] = 0.4                     # water over x in [50, 100) on link 0
    depth[row, 40] = 0.1                        # a puddle on link 1 at x in [350, 360)
    s = LinkDepthSampler(net, transform, depth.shape)
    d = s(depth)
    assert d[0] == pytest.approx(0.4) and d[1] == pytest.approx(0.1)
    mean = LinkDepthSampler(net, transform, depth.shape, statistic="mean")(depth)
    assert 0 < mean[0] < 0.4 and mean[1] < 0.1
    with pytest.raises(ValueError, match="shape"):
        s(np.zeros((3, 3)))
