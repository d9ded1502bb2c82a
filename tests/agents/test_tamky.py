"""People and services on the real Tam Kỳ bundle with the real TrafficModel.

The flood here is a prescribed rising water level over the bundle's terrain (a "bathtub" stage
rising 4 m in 6 h, the sea cells excluded), so the hazard is known exactly and the tests stay fast;
the coupled FloodModel runs are the simulation's tests.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from twin.agents import EmergencyServices, PeopleModel
from twin.agents.people import SHELTER, STATES
from twin.city import load_city
from twin.traffic import TrafficModel


@pytest.fixture(scope="module")
def tamky():
    city = load_city("tamky")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # "kept N of M nodes" of the largest component
        net = city.roads.largest_strongly_connected()
    return city, net


_Z = {}


def bathtub(city, t_s, rise_m=4.0, peak_s=6 * 3600.0):
    """Depth of a water level rising ``rise_m`` in ``peak_s`` over the land (sea cells dry), speed 0.4 m/s."""
    key = id(city)
    if key not in _Z:
        z = np.nan_to_num(np.asarray(city.terrain.elevation, float), nan=1e3)
        z[np.asarray(city.sea_cells, bool)] = 1e3
        _Z[key] = z
    d = np.maximum(rise_m * min(t_s / peak_s, 1.0) - _Z[key], 0.0)
    return d, (d > 0) * 0.4


def run(city, net, *, seed, hours, warn_s=None, people=None, services=None, check=None, dt=300.0, rise_m=4.0):
    tm = TrafficModel(net, dt=5.0, seed=seed, record_links=False)
    pm = PeopleModel(city, {"population_scale": 0.05, **(people or {})}, np.random.default_rng(seed), traffic=tm)
    es = EmergencyServices(city, services or {}, np.random.default_rng(seed + 1), traffic=tm, people=pm)
    if warn_s is not None:
        pm.issue_warning(warn_s, "cell_broadcast")
        pm.issue_warning(warn_s, "door_to_door")
    for _ in range(int(hours * 3600 / dt)):
        d, v = bathtub(city, pm.time_s + dt, rise_m=rise_m)
        tm.run_one_step(dt)
        pm.run_one_step(dt, d, v)
        es.run_one_step(dt)
        if check:
            check(pm, es)
    return tm, pm, es


def test_population_and_places_from_the_bundle(tamky):
    city, net = tamky
    pm = PeopleModel(city, {}, np.random.default_rng(0))
    pop = city.population
    assert pm.n_households == int(pop.households.sum())
    assert int(pm.n_members[pm.kind == 0].sum()) == int(pop.persons.sum())
    hotels = city.places[city.places.kind == "hotel"]
    assert int(pm.n_members[pm.kind == 1].sum()) == int(hotels.tourists.sum())
    # homes lie in their ward; shelters are the bundle's shelters, schools and ward halls
    r, c = np.divmod(pm.home_cell[pm.kind == 0], pm.shape[1])
    np.testing.assert_array_equal(city.ward_raster[r, c], pm.ward[pm.kind == 0])
    assert pm.n_shelters == int(city.places.kind.isin(["shelter", "school", "public_building"]).sum())
    # ward names work as warning areas
    pm.issue_warning(0.0, "cell_broadcast", area=["Tam Kỳ"])
    with pytest.raises(ValueError, match="not a ward"):
        pm.issue_warning(0.0, "cell_broadcast", area=["Atlantis"])


def test_earlier_warning_lowers_high_hazard_person_hours_and_conserves(tamky):
    city, net = tamky
    n = {}

    def check(pm, es):
        ps = pm.person_state()
        assert np.bincount(ps, minlength=len(STATES)).sum() == pm.n_persons == n.setdefault("p", pm.n_persons)
        assert len(pm.agents) == pm.n_agents == n.setdefault("a", pm.n_agents)
        assert np.all(pm.shelter_occupancy <= pm.shelter_capacity)
        at = pm.state == SHELTER
        np.testing.assert_array_equal(
            np.bincount(pm.shelter[at], weights=pm.n_present[at], minlength=pm.n_shelters), pm.shelter_occupancy)

    def high(warn_s):
        # 5 m: homes are placed by the census wards (twin.city.census), fewer of them in the low plain than
        # with the old synthetic partition; a 4 m rise left only ~20 person-hours at HR >= 1.25
        _, pm, _ = run(city, net, seed=21, hours=7, warn_s=warn_s, check=check, rise_m=5.0)
        ph = pm.person_hours_by_class()
        return ph["significant"] + ph["extreme"], pm

    early, pm_e = high(1800.0)
    late, pm_l = high(5 * 3600.0)
    assert late > 100.0                       # person-hours at HR >= 1.25 without an early warning
    assert early < 0.6 * late, (early, late)
    assert pm_e.kpis()["rescue_calls"] < pm_l.kpis()["rescue_calls"]


def test_more_boats_shorten_p90_rescue_response(tamky):
    city, net = tamky

    def p90(n_boats):
        # 5 m rise and 10 % of the people (were 4 m, 5 %): the census wards put fewer homes in the low plain
        _, _, es = run(city, net, seed=31, hours=7, rise_m=5.0, people={"population_scale": 0.1}, services={"n_boats": n_boats,
                                                                          "medical_rate_per_1000_per_day": 0.0})
        df = es.incident_table()
        r = df[df.kind == "rescue"]
        resp = np.where(r.response_time_s.notna(), r.response_time_s, es.time_s - r.call_s)   # censored
        return np.quantile(resp, 0.9), len(r)

    few, n1 = p90(1)
    many, n2 = p90(12)
    assert n1 > 20 and n2 > 20                 # the same flood and population; only the boats differ
    assert many < 0.7 * few, (many, few)


def test_identical_seeds_reproduce_the_incident_table(tamky):
    city, net = tamky
    svc = {"medical_rate_per_1000_per_day": 20.0}
    a = run(city, net, seed=41, hours=3, warn_s=1800.0, services=svc)[2].incident_table()
    b = run(city, net, seed=41, hours=3, warn_s=1800.0, services=svc)[2].incident_table()
    assert len(a) > 10 and a.equals(b)


def test_ambulance_route_respects_closure_and_flooded_road(tamky):
    city, net = tamky
    tm = TrafficModel(net, dt=2.0, seed=0, record_links=False)
    es = EmergencyServices(city, {}, np.random.default_rng(0), traffic=tm)
    h = int(es.hospital_node[0])
    far = int(np.argmax(np.hypot(es.graph.node_x - es.graph.node_x[h], es.graph.node_y - es.graph.node_y[h])
                        * np.isfinite(es._times_from("ambulance", h))))
    links, t0, len0 = es.route("ambulance", h, far)
    assert len(links) > 10 and np.isfinite(t0)
    # close the route's middle link in the traffic model: the new route avoids it and is longer
    mid = links[len(links) // 2]
    tm.close_links([mid])
    es.set_flood(None)
    links1, t1, len1 = es.route("ambulance", h, far)
    assert mid not in links1 and t1 > t0 and len1 >= len0
    tm.open_links([mid])
    # flood another link of the route above the emergency stall depth (0.45 m)
    other = links[len(links) // 3]
    depth = np.zeros(net.n_links)
    depth[other] = 0.6
    tm.set_link_depth(depth)
    es.set_flood(None)
    links2, t2, len2 = es.route("ambulance", h, far)
    assert other not in links2 and t2 > t0
