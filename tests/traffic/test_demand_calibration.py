"""Calibrating the background demand from link counts: a twin experiment on a grid network."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from twin.roads import RoadNetwork
from twin.traffic import TrafficModel
from twin.traffic.calibration import (
    DemandCalibration,
    calibrate_background_demand,
    calibrated_background_trips,
    grid_zones,
)
from twin.traffic.demand import daily_profile

TRUE_MULT = {7: [1.5, 0.7, 1.0, 2.0], 8: [0.8, 1.3, 1.6, 0.5]}
TRIPS_PER_DAY = 300_000.0


def _truth(net, zones):
    nz = int(zones.max()) + 1
    mult = np.ones((nz, 24))
    for h, m in TRUE_MULT.items():
        mult[:, h] = m
    frac = np.bincount(zones) / zones.size
    prior = TRIPS_PER_DAY * frac[:, None] * daily_profile()[None, :]
    return DemandCalibration(net.node_ids.copy(), zones, mult, prior, prior * mult, list(TRUE_MULT))


def _counts(net, trips, links):
    """Vehicles per hour on ``links`` by departure hour, each trip on its free-flow shortest path."""
    tm = TrafficModel(net, dt=1.0, seed=0)
    cache: dict = {}
    pos = {int(lk): i for i, lk in enumerate(links)}
    hours = sorted(TRUE_MULT)
    c = np.zeros((len(links), len(hours)))
    for o, d, t in zip(trips["origin"], trips["destination"], trips["depart_s"]):
        key = (int(o), int(d))
        if key not in cache:
            cache[key] = tm.shortest_path(o, d)[1]
        h = 7 + int(t // 3600.0)
        for lk in cache[key]:
            i = pos.get(int(lk))
            if i is not None:
                c[i, hours.index(h)] += 1
    return pd.DataFrame(c, index=pd.Index(links, name="link_id"), columns=hours)


def test_counts_from_a_known_demand_recover_it_within_10_percent():
    net = RoadNetwork.grid(7, spacing_m=300.0)
    zones = grid_zones(net, 2)
    assert sorted(np.bincount(zones)) == [9, 12, 12, 16]
    truth = _truth(net, zones)
    trips = calibrated_background_trips(net, TRIPS_PER_DAY, 0.0, 7200.0, np.random.default_rng(5), truth,
                                        start_hour=7.0)
    expected = truth.trips[:, [7, 8]].sum()
    assert abs(len(trips) - expected) < 4 * math.sqrt(expected)      # the generator follows the multipliers
    # cameras on every approach of five junctions (one per zone and the centre): 40 links of 168
    junctions = [16, 18, 24, 30, 32]
    L = net.links
    links = np.flatnonzero(L["from"].isin(junctions).to_numpy() | L["to"].isin(junctions).to_numpy())
    counts = _counts(net, trips, links)
    cal = calibrate_background_demand(net, counts, TRIPS_PER_DAY, zones=zones)
    assert cal.hours == [7, 8]
    for h, m in TRUE_MULT.items():
        np.testing.assert_allclose(cal.trips[:, h], truth.trips[:, h], rtol=0.10)
        np.testing.assert_allclose(cal.multipliers[:, h], m, rtol=0.10)
        assert cal.fit[str(h)]["rmse_vph"] < 0.5 * cal.fit[str(h)]["rmse_prior_vph"]
    # hours without counts keep the prior
    assert np.all(cal.multipliers[:, 12] == 1.0)


def test_calibration_round_trip_and_bad_files(tmp_path):
    net = RoadNetwork.grid(3)
    zones = grid_zones(net, 2)
    cal = _truth(net, zones)
    p = cal.save(tmp_path / "cal.json")
    back = DemandCalibration.load(p)
    np.testing.assert_array_equal(back.multipliers, cal.multipliers)
    np.testing.assert_array_equal(back.zones_for(net), zones)
    with pytest.raises(ValueError, match="does not exist"):
        DemandCalibration.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text('{"kind": "twin.demand_calibration", "node_ids": [0], "zones": [0], '
                                       '"multipliers": [[1.0]]}')
    with pytest.raises(ValueError, match=r"bad.json.*'multipliers' must be finite, >= 0, shape \(1, 24\)"):
        DemandCalibration.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="node id 9 of the road network has no zone"):
        back.zones_for(RoadNetwork.grid(4))
    with pytest.raises(ValueError, match="camera link id 999 is not a link"):
        calibrate_background_demand(net, pd.DataFrame({7: [10.0]}, index=[999]), 1000.0, zones=zones)


def test_scenario_key_applies_the_calibration_at_build(tmp_path):
    """traffic.demand_calibration (a path relative to the scenario): every zone and hour x2 -> about twice
    the background trips of the same scenario without it."""
    from tests.sim.helpers import SCENARIO, small_city, write_scenario
    from twin.build import build_twin
    from twin.scenario import load_scenario

    city = small_city()
    net = city.roads
    zones = grid_zones(net, 2)
    cal = _truth(net, zones)
    cal.multipliers[:] = 2.0
    cal.save(tmp_path / "cal.json")
    plain = build_twin(load_scenario(write_scenario(tmp_path)), city=city)
    text = SCENARIO.replace("  background_trips_per_day: 30000\n",
                            "  background_trips_per_day: 30000\n  demand_calibration: cal.json\n")
    calibrated = build_twin(load_scenario(write_scenario(tmp_path, text, "cal.yaml")), city=city)
    n0, n1 = plain.traffic.n_trips, calibrated.traffic.n_trips
    assert n0 > 100
    assert n1 == pytest.approx(2 * n0, rel=4 / math.sqrt(n0))
    bad = SCENARIO.replace("  background_trips_per_day: 30000\n",
                           "  background_trips_per_day: 30000\n  demand_calibration: other.json\n")
    d = cal.to_dict()
    d["node_ids"][0] = 99                       # node 0 of the network is not in this calibration
    (tmp_path / "other.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"traffic.demand_calibration .*other.json.*node id 0 .*has no zone"):
        build_twin(load_scenario(write_scenario(tmp_path, bad, "bad.yaml")), city=city)
