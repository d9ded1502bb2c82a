"""Homes are placed on land: nobody lives in the sea, a river or the lagoon."""
import numpy as np

from twin.agents import PeopleModel
from twin.city import load_city


def test_no_home_on_permanent_water_and_ward_totals_kept():
    city = load_city("tamky", resolution_m=100)
    pm = PeopleModel(city, {}, np.random.default_rng(3))
    lc = np.asarray(city.landcover).ravel()
    water_codes = [k for k, v in city.landcover_classes.items() if v in ("water", "sea")]
    assert water_codes, city.landcover_classes
    on_water = np.isin(lc[pm.home_cell], water_codes)
    assert on_water.sum() == 0
    # the ward totals of the bundle are still met exactly
    assert pm.n_households == int(round(city.population["households"].sum()))


def test_evacuees_crossing_bridges_are_not_in_the_river():
    """With the rivers and lagoon at their normal level and no flood, an evacuation crosses bridges
    without anyone meeting the channel depth: nobody is trapped and nobody is at hazard."""
    city = load_city("tamky", resolution_m=100)
    pm = PeopleModel(city, {"population_scale": 0.1}, np.random.default_rng(5))
    normal = np.nan_to_num(np.asarray(city.water_depth0, float))
    assert normal.max() > 1.0                       # the rivers are deep in their channels
    pm.issue_warning(0.0, "door_to_door")
    for _ in range(24):                             # 2 h of 5-min steps
        pm.run_one_step(300.0, normal, np.zeros_like(normal))
    table = pm.state_table()
    assert (table["state"] != "trapped").all()
    assert float(np.max(pm.max_hr)) < 0.05           # only the few cm of water some banks hold
    # and the evacuation did happen (people left home, some on foot over the road graph)
    assert (table["state"] != "home").sum() > 0


def test_services_route_boats_on_the_water_and_ambulances_over_bridges():
    """The services get both fields from the people model: boats see the rivers' real depth, road
    units the water met on the roads (none on bridges while the rivers are at their normal level)."""
    from twin.agents import EmergencyServices

    city = load_city("tamky", resolution_m=100)
    pm = PeopleModel(city, {"population_scale": 0.05}, np.random.default_rng(5))
    es = EmergencyServices(city, {}, np.random.default_rng(6), people=pm)
    normal = np.nan_to_num(np.asarray(city.water_depth0, float))
    pm.run_one_step(300.0, normal, np.zeros_like(normal))
    es.run_one_step(300.0)
    deep = int(np.argmax(normal))
    assert normal.ravel()[deep] > 1.0
    assert es._depth[deep] == normal.ravel()[deep]       # boats: the channel's water
    assert es._road_depth[deep] == 0.0                   # roads: nothing above the banks
    bridge = np.asarray(city.roads.links["bridge"], bool)
    assert len(bridge) == es.graph.n_links and bridge.sum() >= 10   # no traffic: the city's own graph
    assert np.isfinite(es.link_times("ambulance")[bridge]).all()
