"""Behaviour of the people model on the synthetic coastal city (numbers in each test)."""
from __future__ import annotations

import mesa
import numpy as np
import pytest

from twin.agents import HAZARD_CLASSES, PeopleModel, debris_factor, hazard_class, hazard_rating
from twin.agents.people import HOSPITAL, SHELTER, STATES, Household, TouristParty

from .helpers import coastal_flood, synthetic_city


def run(pm, hours, dt=300.0, city=None, warn=None, check=None):
    city = city or pm.city
    n = int(hours * 3600 / dt)
    for _k in range(n):
        t = pm.time_s + dt
        d, v = coastal_flood(city, t)
        pm.run_one_step(dt, d, v)
        if check:
            check(pm)
    return pm


def test_hazard_rating_matches_fd2321_formula():
    # HR = d (v + 0.5) + DF; urban DF = 0 up to 0.25 m, 1 above
    d = np.array([0.0, 0.2, 0.5, 1.0, 2.0])
    v = np.array([0.0, 1.0, 0.5, 2.0, 0.0])
    expect = np.array([0.0, 0.2 * 1.5, 0.5 * 1.0 + 1, 1.0 * 2.5 + 1, 2.0 * 0.5 + 1])
    np.testing.assert_allclose(hazard_rating(d, v), expect, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(debris_factor([0.1, 0.5, 1.0], urban=False), [0.0, 0.0, 0.5])
    # HR = 2.0 is "significant" since twin.hazard decided the boundaries by FD2321's wording ("more
    # than 2.0" is extreme); it was 3 (extreme) before. Boundary tests: tests/test_hazard.py
    np.testing.assert_array_equal(hazard_class([0.5, 0.75, 1.0, 1.3, 2.0, 5.0]), [0, 1, 1, 2, 2, 3])
    assert HAZARD_CLASSES == ("low", "moderate", "significant", "extreme")


def test_population_from_city_and_mesa_agents(city):
    pm = PeopleModel(city, {"n_tourists": 300}, np.random.default_rng(3))
    # households and persons conserve the city's totals exactly
    assert pm.n_households == int(city.population["households"].sum()) == 1000
    assert int(pm.n_members[pm.kind == 0].sum()) == int(city.population["persons"].sum()) == 3200
    assert int(pm.n_members[pm.kind == 1].sum()) == 300
    # every agent is a Mesa agent, typed
    assert isinstance(pm, mesa.Model)
    assert len(pm.agents) == pm.n_agents
    assert len(pm.agents_by_type[Household]) == 1000
    tourists = pm.agents_by_type[TouristParty]
    assert len(tourists) == pm.n_agents - 1000
    assert sum(a.members for a in tourists) == 300
    # tourists sit at hotels, mostly without vehicles
    hotel_xy = set(zip(city.places.query("kind == 'hotel'").x, city.places.query("kind == 'hotel'").y))
    assert all(a.home in hotel_xy for a in tourists)
    assert np.mean(pm.vehicle[pm.kind == 1] > 0) < 0.3
    # each ward's homes lie in that ward
    rows, cols = np.divmod(pm.home_cell[pm.kind == 0], pm.shape[1])
    np.testing.assert_array_equal(city.ward_raster[rows, cols], pm.ward[pm.kind == 0])
    # vehicle shares close to the ward shares (1000 households: ±5 points)
    assert abs(np.mean(pm.vehicle[pm.kind == 0] == 1) - 0.7) < 0.05
    a = pm.agents_by_type[Household].select(lambda a: a.members >= 1)
    assert len(a) == 1000
    pm.agents.shuffle_do("member_ages")  # AgentSet verbs work on the views
    pm.step()                            # Mesa's step: one 300-s people step (dry without flood fields)
    assert pm.steps == 1 and pm.time_s == 300.0


def test_conservation_and_single_place_each_step(city):
    pm = PeopleModel(city, {"n_tourists": 300}, np.random.default_rng(4))
    pm.issue_warning(1800.0, "cell_broadcast")
    pm.issue_warning(3600.0, "door_to_door", area=[3, 4])
    n_agents, n_persons = pm.n_agents, pm.n_persons
    seen = set()

    def check(m):
        ps = m.person_state()
        # every person is in exactly one state; the states add up to the population
        assert np.bincount(ps, minlength=len(STATES)).sum() == n_persons
        assert len(m.agents) == n_agents == len(m.state)
        assert int(m.n_present.sum()) + int((ps == HOSPITAL).sum()) == n_persons
        # shelter occupancy equals the persons whose household is at that shelter
        at = (m.state == SHELTER)
        occ = np.bincount(m.shelter[at], weights=m.n_present[at], minlength=m.n_shelters)
        np.testing.assert_array_equal(occ, m.shelter_occupancy)
        assert np.all(m.shelter_occupancy <= m.shelter_capacity)
        # one position per person: members share their household's (x, y), which is finite
        assert np.all(np.isfinite(m.x)) and np.all(np.isfinite(m.y))
        seen.update(np.unique(m.state).tolist())

    run(pm, 8.0, check=check)
    # the run exercised the states that matter
    assert {SHELTER, 1, 5}.issubset(seen)


def test_earlier_warning_lowers_high_hazard_person_hours(city):
    # flood rises from t = 0 to its peak at 6 h; warning at 0.5 h versus at 5 h
    def high_ph(t_warn, seed):
        pm = PeopleModel(city, {"n_tourists": 300}, np.random.default_rng(seed))
        pm.issue_warning(t_warn, "cell_broadcast")
        pm.issue_warning(t_warn, "door_to_door")
        run(pm, 10.0)
        ph = pm.person_hours_by_class()
        return ph["significant"] + ph["extreme"]

    early = np.mean([high_ph(1800.0, s) for s in (11, 12)])
    late = np.mean([high_ph(5 * 3600.0, s) for s in (11, 12)])
    assert late > 0
    assert early < 0.6 * late, (early, late)


def test_shelter_capacity_never_exceeded_and_overflow_redirected():
    city = synthetic_city(shelter_capacity=(30, 25, 20))
    pm = PeopleModel(city, {"n_tourists": 0, "w_upper": 0.0, "w_relatives": 0.0}, np.random.default_rng(5))
    pm.issue_warning(0.0, "door_to_door")
    pm.issue_warning(0.0, "cell_broadcast")
    peak = np.zeros(3)

    def check(m):
        assert np.all(m.shelter_occupancy <= m.shelter_capacity), m.shelter_occupancy
        peak[:] = np.maximum(peak, m.shelter_occupancy)

    run(pm, 4.0, check=check)
    assert pm.redirections > 50
    # the shelters fill to within one household of capacity (households are not split)
    assert np.all(peak >= pm.shelter_capacity - pm.n_members.max())
    ev = pm.event_table()
    assert (ev["event"] == "redirected").sum() > 0


def test_walking_speed_is_reduced_by_depth(city):
    def walked(depth_m):
        pm = PeopleModel(city, {"n_tourists": 0, "w_upper": 0.0, "w_relatives": 0.0,
                                "walk_stop_depth_m": 1.0, "walk_stop_depth_vulnerable_m": 1.0,
                                "shelter_close_depth_m": 1.0},
                         np.random.default_rng(6))
        pm.vulnerable[:] = False
        pm.walk_speed[:] = 1.0
        pm.walk_stop[:] = 1.0
        pm.vehicle[:] = 0
        pm.act_s[:] = 0.0     # everybody acts now
        d = np.full(pm.shape, depth_m)
        pm.run_one_step(60.0, d, np.zeros(pm.shape))
        x0, y0 = pm.x.copy(), pm.y.copy()
        pm.run_one_step(60.0, d, np.zeros(pm.shape))
        moving = pm.state == 2
        return np.median(np.hypot(pm.x - x0, pm.y - y0)[moving])

    # 60 s at 1 m/s dry; factor (1 - d/d_stop) = 0.5 at 0.5 m (grid paths: straight segments)
    dry, wet = walked(0.0), walked(0.5)
    assert dry == pytest.approx(60.0, abs=1.0)
    assert wet == pytest.approx(30.0, abs=1.0)


def test_trapped_households_call_for_rescue(city):
    pm = PeopleModel(city, {"n_tourists": 0}, np.random.default_rng(7))
    run(pm, 8.0)   # no warning at all
    calls = pm.pop_rescue_calls()
    trapped = np.isfinite(pm.trapped_s)
    assert len(calls) == trapped.sum() > 10
    # single-storey homes under >= 1 m of water (the trapped depth) are trapped
    d, _ = coastal_flood(city, 8 * 3600.0)
    deep1 = (pm.kind == 0) & (pm.storeys == 1) & (d.ravel()[pm.home_cell] >= 1.3) & (pm.action == 0)
    assert deep1.sum() > 0 and np.all(trapped[deep1])


def test_restart_is_bit_identical(city):
    pm = PeopleModel(city, {"n_tourists": 200}, np.random.default_rng(8))
    pm.issue_warning(1200.0, "loudspeaker")
    run(pm, 2.0)
    state = pm.get_state()
    run(pm, 2.0)
    a = pm.state_table()
    # a restart builds the same model (same city, params, seed) and restores the dynamic state
    pm2 = PeopleModel(city, {"n_tourists": 200}, np.random.default_rng(8))
    pm2.run_one_step(300.0, *coastal_flood(city, 300.0))   # diverge first: set_state must undo it
    pm2.set_state(state)
    run(pm2, 2.0)
    b = pm2.state_table()
    assert pm.time_s == pm2.time_s == 4 * 3600.0
    assert a.equals(b)
    np.testing.assert_array_equal(pm.person_hours, pm2.person_hours)
    assert pm.event_table().equals(pm2.event_table())
    # a different population cannot be restored into
    pm3 = PeopleModel(city, {"n_tourists": 50}, np.random.default_rng(8))
    with pytest.raises(ValueError, match="set_state: state has shape"):
        pm3.set_state(state)


def test_bad_inputs_are_named(city):
    with pytest.raises(ValueError, match="unknown key 'walk_sped_mps'"):
        PeopleModel(city, {"walk_sped_mps": 1.0}, np.random.default_rng(0))
    pm = PeopleModel(city, {"n_tourists": 0}, np.random.default_rng(0))
    with pytest.raises(ValueError, match="channel"):
        pm.issue_warning(0.0, "pigeon")
    with pytest.raises(ValueError, match="flood_depth shape"):
        pm.run_one_step(60.0, np.zeros((3, 3)), None)
    with pytest.raises(ValueError, match="dt must be > 0"):
        pm.run_one_step(0.0)


def test_sample_fraction_scales_people_and_shelters(city):
    full = PeopleModel(city, {"n_tourists": 400}, np.random.default_rng(1))
    half = PeopleModel(city, {"n_tourists": 400, "sample_fraction": 0.5}, np.random.default_rng(1))
    assert half.n_households == 500 and int(half.n_members[half.kind == 0].sum()) == 1600
    np.testing.assert_array_equal(half.shelter_capacity, np.round(full.shelter_capacity * 0.5))
    tab = half.state_table()
    assert tab.persons.sum() == pytest.approx(2 * tab.members.sum())
    assert half.kpis()["persons"] == pytest.approx(2 * half.n_persons)
    assert "t_s" not in tab.columns and {"agent_id", "state", "x", "y", "persons"} <= set(tab.columns)
    with pytest.raises(ValueError, match="agents_per_household"):
        PeopleModel(city, {"agents_per_household": 2.0}, np.random.default_rng(1))


def test_warning_area_channels_and_tourists(city):
    pm = PeopleModel(city, {"n_tourists": 1000}, np.random.default_rng(2))
    pm.issue_warning(0.0, "cell_broadcast", area=[1, 2])
    pm.run_one_step(3 * 3600.0, None, None)
    warned = np.isfinite(pm.warned_s)
    res = pm.kind == 0
    # residents: reach 0.85 inside wards 1-2, nobody outside
    inside = res & np.isin(pm.ward, [1, 2])
    assert abs(warned[inside].mean() - 0.85) < 0.05
    assert not warned[res & ~inside].any()
    # hotel 0 is in ward 2, hotel 1 in ward 4: only guests of hotel 0, directly (0.6) or via staff
    t = pm.kind == 1
    g0, g1 = t & (pm.hotel == 0), t & (pm.hotel == 1)
    assert not warned[g1].any()
    p_direct, p_staff = 0.6, 0.85 * 0.9
    assert abs(warned[g0].mean() - (1 - (1 - p_direct) * (1 - p_staff))) < 0.07
    # a TV warning barely reaches tourists (0.1) but half the residents (0.5)
    pm2 = PeopleModel(city, {"n_tourists": 1000}, np.random.default_rng(3))
    pm2.recv_s[:, :] = np.inf
    pm2._apply_warning(0.0, "tv", None)
    got = np.isfinite(pm2.recv_s[:, 2])
    assert abs(got[pm2.kind == 0].mean() - 0.5) < 0.05 and got[pm2.kind == 1].mean() < 0.2


def test_night_warnings_reach_fewer_people(city):
    # scenario starts at 20:00; a TV warning at t = 0 (20:00) versus t = 4 h (00:00)
    def reached(t_s):
        pm = PeopleModel(city, {"n_tourists": 0, "start_hour_local": 20.0}, np.random.default_rng(4))
        pm._apply_warning(t_s, "tv", None)
        return np.isfinite(pm.recv_s[:, 2]).mean()

    day, night = reached(0.0), reached(4 * 3600.0)
    assert abs(day - 0.5) < 0.04                 # TV reach 0.5
    assert abs(night - 0.5 * 0.2) < 0.03         # × night factor 0.2


def test_road_space_is_a_mesa_network_snapshot(city):
    from mesa.discrete_space import Network

    pm = PeopleModel(city, {"n_tourists": 100, "w_upper": 0.0, "w_relatives": 0.0}, np.random.default_rng(5))
    pm.act_s[:] = 0.0
    run(pm, 3.0)
    space = pm.road_space()
    assert isinstance(space, Network)
    assert len(space.all_cells) == pm.graph.n_nodes
    assert sum(len(c.agents) for c in space.all_cells) == pm.n_agents
    # a household at shelter s sits in the cell of the shelter's nearest road node
    i = int(np.flatnonzero(pm.state == SHELTER)[0])
    cell = space[int(pm.graph.nearest_node(pm.shelter_x[pm.shelter[i]], pm.shelter_y[pm.shelter[i]])[0])]
    assert any(a.idx == i for a in cell.agents)
    assert len(cell.neighborhood) >= 2          # road grid neighbours


def test_component_info_contract(city):
    from twin.agents import EmergencyServices

    for comp in (PeopleModel, EmergencyServices):
        assert isinstance(comp._name, str) and comp._info
        for name, meta in comp._info.items():
            assert set(meta) == {"dtype", "intent", "optional", "units", "mapping", "doc"}, name
            assert meta["intent"] in ("in", "out", "inout") and isinstance(meta["units"], str)
            assert "__" in name
    # the declared outputs of the people model exist with one value per agent
    pm = PeopleModel(city, {"n_tourists": 50}, np.random.default_rng(0))
    pm.run_one_step(300.0, *coastal_flood(city, 300.0))
    for attr in ("state", "x", "y", "hr"):
        assert getattr(pm, attr).shape == (pm.n_agents,)
    assert pm.person_hours.sum() == pytest.approx(pm.n_persons * 300.0 / 3600.0)


def test_a_shelter_opened_later_gets_the_trees_it_would_have_had_from_the_start(city):
    """open_shelter (a decision) inserts the new destination's rows: equal to a table built with it."""
    pm = PeopleModel(city, {"n_tourists": 0}, np.random.default_rng(1))
    x, y = float(city.roads.nodes["x"].iloc[7]), float(city.roads.nodes["y"].iloc[7])
    k = pm.open_shelter(x, y, 100, name="late")
    want = pm.destination_tables(pm.dest_node)
    for name, table in zip(("walk_cost", "walk_next", "drive_cost", "drive_next", "walk_len", "drive_len",
                            "drive_speed"), want):
        np.testing.assert_array_equal(getattr(pm, name), table, err_msg=name)
    assert pm.dest_node[k] == pm.shelter_node[k] and pm.n_shelters == k + 1


def test_read_only_fields_are_read_in_place_and_writable_ones_copied(city):
    """A read-only field (the step's shared depth) is used without a copy, the same result as from a writable
    copy of it; a writable field is copied, so a caller writing into its array later changes nothing here."""
    d, v = coastal_flood(city, 3600.0)
    pm1 = PeopleModel(city, {"n_tourists": 100}, np.random.default_rng(3))
    pm2 = PeopleModel(city, {"n_tourists": 100}, np.random.default_rng(3))
    ro_d, ro_v = d.copy(), v.copy()
    ro_d.flags.writeable = False
    ro_v.flags.writeable = False
    wd, wv = d.copy(), v.copy()
    pm1.issue_warning(0.0, "loudspeaker")
    pm2.issue_warning(0.0, "loudspeaker")
    pm1.run_one_step(600.0, ro_d, ro_v)
    pm2.run_one_step(600.0, wd, wv)
    assert np.shares_memory(pm1.flood_depth, ro_d) and not np.shares_memory(pm2.flood_depth, wd)
    wd[...] = 99.0                                  # the caller reuses its buffer
    np.testing.assert_array_equal(pm2.flood_depth, pm1.flood_depth)
    assert pm1.state_table().equals(pm2.state_table())
