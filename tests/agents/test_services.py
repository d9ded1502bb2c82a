"""Emergency services: dispatch, units, hospitals, shelters (numbers in each test)."""
from __future__ import annotations

import heapq

import numpy as np
import pandas as pd
import pytest

from twin.agents import EmergencyServices, PeopleModel

from .helpers import coastal_flood


def coupled(city, seed=1, people=None, services=None, hours=10.0, dt=300.0, warn=None):
    pm = PeopleModel(city, {"n_tourists": 300, **(people or {})}, np.random.default_rng(seed))
    es = EmergencyServices(city, services or {}, np.random.default_rng(seed + 1000), people=pm)
    if warn is not None:
        pm.issue_warning(warn, "cell_broadcast")
    step(pm, es, hours, dt)
    return pm, es


def step(pm, es, hours, dt=300.0):
    for _ in range(int(hours * 3600 / dt)):
        d, v = coastal_flood(pm.city, pm.time_s + dt)
        pm.run_one_step(dt, d, v)
        es.run_one_step(dt)


def test_identical_seeds_reproduce_incident_table(city):
    svc = {"medical_rate_per_1000_per_day": 20.0}
    _, a = coupled(city, seed=3, services=svc, hours=8)
    _, b = coupled(city, seed=3, services=svc, hours=8)
    _, c = coupled(city, seed=4, services=svc, hours=8)
    ta, tb, tc = a.incident_table(), b.incident_table(), c.incident_table()
    assert len(ta) > 20
    assert ta.equals(tb)
    assert a.action_table().equals(b.action_table())
    assert not (len(ta) == len(tc) and ta.equals(tc))


def test_more_boats_shorten_p90_rescue_response(city):
    # no warning: many households are trapped as the water rises; 1 boat versus 6 boats
    def p90(n_boats):
        _, es = coupled(city, seed=5, services={"n_boats": n_boats, "fire_trucks_per_station": 0,
                                                "medical_rate_per_1000_per_day": 0.0}, hours=12)
        df = es.incident_table()
        r = df[df.kind == "rescue"]
        assert len(r) > 15
        # incidents still waiting count as responding at the end of the run (censored)
        resp = np.where(r.response_time_s.notna(), r.response_time_s, es.time_s - r.call_s)
        return np.quantile(resp, 0.9), r

    few, r1 = p90(1)
    many, r6 = p90(6)
    assert (r6.unit_kind.dropna() == "boat").all()
    assert many < 0.5 * few, (many, few)


def test_priority_one_is_dispatched_first(city):
    es = EmergencyServices(city, {"ambulances_per_hospital": 1, "medical_rate_per_1000_per_day": 0.0,
                                  "fire_trucks_per_station": 0, "n_boats": 0}, np.random.default_rng(0))
    hx, hy = city.places.query("kind == 'hospital'")[["x", "y"]].to_numpy()[0]
    # four calls at once for two ambulances: the priority-1 calls (filed last) get them
    for prio in (3, 3, 1, 1):
        es.report_incident(0.0, "medical", hx + 300, hy, priority=prio, transport=False)
    es.run_one_step(60.0)
    df = es.incident_table()
    assert list(df.priority) == [3, 3, 1, 1]
    assert df.loc[df.priority == 1, "dispatch_s"].notna().all()
    assert df.loc[df.priority == 3, "dispatch_s"].isna().all()
    es.run_one_step(7200.0)
    df = es.incident_table()
    assert (df.loc[df.priority == 3, "dispatch_s"].min() >= df.loc[df.priority == 1, "clear_s"].min())


def test_flooded_road_lengthens_route_and_closure_is_respected(city):
    es = EmergencyServices(city, {}, np.random.default_rng(0))
    a, b = 0, 11           # two ends of the top row of the road grid (11 links of 150 m)
    links, t0, length0 = es.route("ambulance", a, b)
    assert length0 == pytest.approx(11 * 150.0)
    assert t0 == pytest.approx(11 * 150.0 / 11.0)
    # flood the middle link of the row 0.5 m deep: impassable for an ambulance (stall 0.45 m)
    mid = links[5]
    depth = np.zeros(es.shape)
    r, c = divmod(int(es._link_cell[mid]), es.shape[1])
    depth[r, c] = 0.5
    es.set_flood(depth)
    links1, t1, length1 = es.route("ambulance", a, b)
    assert mid not in links1
    assert length1 == pytest.approx(13 * 150.0)     # detour via the next row
    assert t1 > t0
    # a fire truck wades 0.6 m: the link stays open to it, slowed by the water
    assert np.isinf(es.link_times("ambulance")[mid])
    assert 150.0 / 11.0 < es.link_times("fire_truck")[mid] < np.inf
    # a closed link is never used, whatever the depth
    es.set_flood(None)
    es.close_links([links[2]])
    links2, _, length2 = es.route("ambulance", a, b)
    assert links[2] not in links2 and length2 > length0
    es.open_links([links[2]])
    assert es.route("ambulance", a, b)[2] == pytest.approx(length0)


def test_flooded_hospital_closes_and_patients_go_to_the_next(city):
    svc = {"medical_rate_per_1000_per_day": 200.0, "transport_share": 1.0}
    pm = PeopleModel(city, {"n_tourists": 0}, np.random.default_rng(2))
    es = EmergencyServices(city, svc, np.random.default_rng(2), people=pm)
    depth = np.zeros(pm.shape)
    h1 = es.hospital_cell[1]
    depth.ravel()[h1] = 0.5
    for _ in range(24):
        pm.run_one_step(300.0, depth, np.zeros(pm.shape))
        es.run_one_step(300.0)
    df = es.incident_table()
    assert es.hospital_closed.tolist() == [False, True]
    at = df[df.at_hospital_s.notna()]
    assert len(at) > 5 and (at.hospital == 0).all()
    assert (es.action_table().action == "hospital_closed").sum() == 1
    # patients are counted in hospital by the people model until discharged
    n_out = int((es.action_table().action == "discharge").sum())
    assert int((pm.p_hospital == 0).sum()) == int(at.persons.sum()) - n_out


def test_full_hospital_redirects_and_beds_never_negative(city):
    pm = PeopleModel(city, {"n_tourists": 0}, np.random.default_rng(9))
    es = EmergencyServices(city, {"medical_rate_per_1000_per_day": 300.0, "transport_share": 1.0,
                                  "hospital_occupancy0": 0.9}, np.random.default_rng(9), people=pm)
    # 50 beds, 90 % occupied: 5 free per hospital
    assert [b.level for b in es.beds] == [5, 5]
    for _ in range(48):
        pm.run_one_step(300.0, None, None)
        es.run_one_step(300.0)
        assert all(0 <= b.level <= b.capacity for b in es.beds)
    df = es.incident_table()
    assert (df.hospital >= 0).sum() == 10             # every free bed used once, none twice
    assert (df.outcome == "no_hospital_reachable").sum() > 0
    # ambulances that arrived at a hospital with no free bed were turned away (the redirect path ran),
    # and none of those patients was admitted at the full hospital
    acts = es.action_table()
    full = acts[acts.action == "hospital_full"]
    assert len(full) > 0
    by_incident = df.set_index("incident_id")
    for iid, detail in zip(full.incident_id, full.detail):
        assert by_incident.loc[iid, "hospital"] != int(detail.split()[-1])


def test_every_incident_has_an_ordered_action_trail(city):
    _, es = coupled(city, seed=6, services={"medical_rate_per_1000_per_day": 30.0}, hours=8)
    df = es.incident_table()
    done = df[df.clear_s.notna()]
    assert len(done) > 10
    assert (done.call_s <= done.dispatch_s).all()
    assert (done.dispatch_s <= done.arrive_scene_s).all()
    assert (done.arrive_scene_s <= done.depart_scene_s).all()
    assert (done.depart_scene_s <= done.clear_s).all()
    np.testing.assert_allclose(done.response_time_s, done.arrive_scene_s - done.call_s)
    acts = es.action_table()
    for iid in done.incident_id[:20]:
        seq = acts[acts.incident_id == iid]
        names = list(seq.action)
        assert names[0] == "call" and "dispatch" in names and "on_scene" in names
        assert seq.t_s.is_monotonic_increasing


def test_services_restart_is_bit_identical(city):
    svc = {"medical_rate_per_1000_per_day": 30.0}
    pm, es = coupled(city, seed=7, services=svc, hours=4)
    ps, ss = pm.get_state(), es.get_state()
    step(pm, es, 4)
    pm2 = PeopleModel(city, {"n_tourists": 300}, np.random.default_rng(7))
    es2 = EmergencyServices(city, svc, np.random.default_rng(1007), people=pm2)
    pm2.set_state(ps)
    es2.set_state(ss)
    step(pm2, es2, 4)
    assert len(es.incident_table()) > 10
    assert es.incident_table().equals(es2.incident_table())
    assert es.action_table().equals(es2.action_table())
    assert pm.state_table().equals(pm2.state_table())


def test_units_work_their_shift(city):
    # ambulances on duty 08:00-20:00 after scenario start (t = 0 is 00:00); no other units
    es = EmergencyServices(city, {"shifts": {"ambulance": (8 * 3600.0, 12 * 3600.0)}, "n_boats": 0,
                                  "fire_trucks_per_station": 0, "medical_rate_per_1000_per_day": 0.0},
                           np.random.default_rng(0))
    hx, hy = city.places.query("kind == 'hospital'")[["x", "y"]].to_numpy()[0]
    es.report_incident(2 * 3600.0, "medical", hx + 300, hy, priority=1, transport=False)
    es.report_incident(21 * 3600.0, "medical", hx + 300, hy, priority=1, transport=False)
    for _ in range(int(36 * 3600 / 600)):
        es.run_one_step(600.0)
    df = es.incident_table()
    # the 02:00 call waits for the 08:00 shift; the 21:00 call for 08:00 next day
    assert df.dispatch_s.tolist() == [8 * 3600.0, 32 * 3600.0]
    assert (df.outcome == "treated_on_scene").all()
    with pytest.raises(ValueError, match="shifts"):
        EmergencyServices(city, {"shifts": {"boat": (0.0, 0.0)}}, np.random.default_rng(0))


def test_background_medical_calls_follow_the_poisson_rate(city):
    # 3,200 residents at 2 calls per 1,000 per day for 20 days: mean 128, sd 11.3
    es = EmergencyServices(city, {"medical_rate_per_1000_per_day": 2.0}, np.random.default_rng(5))
    for _ in range(20 * 24):
        es.run_one_step(3600.0)
    df = es.incident_table()
    assert abs(len(df) - 128) < 4 * 11.3
    assert (df.kind == "medical").all()
    assert df.call_s.is_monotonic_increasing
    # life-threatening share 0.3
    assert abs((df.priority == 1).mean() - 0.3) < 0.15


def test_receding_water_frees_trapped_people_and_cancels_their_calls(city):
    # no units at all: trapped households wait; when the water falls below 0.3 m they are free
    pm = PeopleModel(city, {"n_tourists": 0}, np.random.default_rng(12))
    es = EmergencyServices(city, {"ambulances_per_hospital": 0, "fire_trucks_per_station": 0, "n_boats": 0,
                                  "medical_rate_per_1000_per_day": 0.0}, np.random.default_rng(12), people=pm)
    for _ in range(72):                          # rise for 6 h
        pm.run_one_step(300.0, *coastal_flood(city, pm.time_s + 300.0))
        es.run_one_step(300.0)
    trapped = np.flatnonzero(pm.state == 6)
    assert trapped.size > 10
    assert (es.incident_table().outcome == "waiting").sum() == trapped.size
    dry = np.zeros(pm.shape)
    pm.run_one_step(300.0, dry, dry)             # the water is gone
    es.run_one_step(300.0)
    assert not np.any(pm.state == 6)
    assert np.all(np.isin(pm.state[trapped], (0, 2, 8)))   # home, walking on, or safe
    df = es.incident_table()
    assert (df.outcome == "cancelled_no_longer_trapped").sum() == trapped.size
    assert (df.outcome == "waiting").sum() == 0


def test_a_boat_shuttles_a_household_larger_than_its_capacity(city):
    # one boat (capacity 6) rescues a household of 13: three trips; of 5: one trip
    def transport_time(members):
        pm = PeopleModel(city, {"n_tourists": 0}, np.random.default_rng(1))
        es = EmergencyServices(city, {"n_boats": 1, "fire_trucks_per_station": 0, "ambulances_per_hospital": 0,
                                      "medical_rate_per_1000_per_day": 0.0}, np.random.default_rng(1), people=pm)
        i = int(np.flatnonzero((pm.kind == 0) & (pm.storeys == 1))[0])
        pm.n_present[i] = members                  # the household's size as far as the rescue goes
        d = np.full(pm.shape, 1.5)
        pm._depth = d.ravel()
        pm._trap(np.array([i]), 0.0, "test")
        es.run_one_step(7200.0)
        es.run_one_step(7200.0)
        row = es.incident_table().iloc[0]
        assert row.outcome.startswith("rescued")
        return row.clear_s - row.depart_scene_s, es

    one, _ = transport_time(5)
    three, es = transport_time(13)
    on_scene = es.params.unit_classes["boat"].on_scene_s
    # 3 trips: t + 2 (2 t + loading)  versus  t
    assert three == pytest.approx(one + 2 * (2 * one + on_scene), rel=1e-9)
    assert es.action_table().detail.str.contains("in 3 trips").any()


def test_patients_are_transferred_when_their_hospital_floods_and_discharged_home(city):
    pm = PeopleModel(city, {"n_tourists": 0}, np.random.default_rng(3))
    es = EmergencyServices(city, {"medical_rate_per_1000_per_day": 150.0, "transport_share": 1.0,
                                  "hospital_occupancy0": 0.0, "hospital_stay_mean_s": 6 * 3600.0},
                           np.random.default_rng(3), people=pm)
    dry = np.zeros(pm.shape)
    for _ in range(24):                          # 2 h dry: patients in both hospitals
        pm.run_one_step(300.0, dry, dry)
        es.run_one_step(300.0)
    in_h1 = np.flatnonzero(pm.p_hospital == 1)
    assert in_h1.size > 3 and (pm.p_hospital == 0).sum() > 3
    used0 = [b.capacity - b.level for b in es.beds]
    flood = dry.copy()
    flood.ravel()[es.hospital_cell[1]] = 0.5     # hospital 1 floods
    pm.run_one_step(300.0, flood, dry)
    es.run_one_step(300.0)
    assert es.hospital_closed.tolist() == [False, True]
    # its patients are now in hospital 0 with their beds (or were discharged in this step)
    assert not np.any(pm.p_hospital[in_h1] == 1)
    moved = int((pm.p_hospital[in_h1] == 0).sum())
    assert moved >= in_h1.size - 2
    assert (es.action_table().action == "patient_transfer").sum() == in_h1.size
    used1 = [b.capacity - b.level for b in es.beds]
    assert used1[1] == 0 and used1[0] >= used0[0] + moved - 3
    # stays of 6 h: after 2 days everyone admitted has gone home, members present again
    for _ in range(48 * 12):
        pm.run_one_step(300.0, flood, dry)
        es.run_one_step(3600.0 / 12)
    n_in = int((pm.p_hospital >= 0).sum())
    recent = int((es.incident_table().at_hospital_s > es.time_s - 86400.0).sum())
    assert n_in <= recent
    assert int(pm.n_present.sum()) + n_in == pm.n_persons
    assert all(0 <= b.level <= b.capacity for b in es.beds)


class _PlainDispatch(EmergencyServices):
    """The dispatcher written as the plain priority loop (every waiting incident popped in turn while
    a unit is free): the reference the dispatcher that visits only what can change must equal."""

    def _sweep_queue(self, t):
        if self.people is None or not self._queue:
            return
        keep = []
        for item in sorted(self._queue):
            inc = self.incidents[item[2]]
            if inc["kind"] == "rescue" and inc["agent_id"] >= 0 and not self.people.is_trapped(inc["agent_id"]):
                inc.update(outcome="cancelled_no_longer_trapped", clear_s=t)
                self._log(t, None, item[2], "cancelled", inc["x"], inc["y"], "no longer trapped")
            else:
                keep.append(item)
        heapq.heapify(keep)
        self._queue = keep

    def _try_dispatch(self):
        now = self.env.now
        free = [u for u in self.units if u.available and self.on_duty(u, now)]
        keep = []
        while self._queue and free:
            prio, t, iid = heapq.heappop(self._queue)
            inc = self.incidents[iid]
            if (inc["kind"] == "rescue" and self.people is not None and inc["agent_id"] >= 0
                    and not self.people.is_trapped(inc["agent_id"])):
                inc.update(outcome="cancelled_no_longer_trapped", clear_s=now)
                self._log(now, None, iid, "cancelled", inc["x"], inc["y"], "no longer trapped")
                continue
            kinds = self._suitable(inc)
            best, best_t = None, np.inf
            for u in free:
                if u.kind in kinds:
                    eta = self._eta(u, inc)
                    if eta < best_t:
                        best, best_t = u, eta
            if best is None:
                keep.append((prio, t, iid))
                continue
            free.remove(best)
            self._dispatch(best, inc, best_t)
        for item in keep:
            heapq.heappush(self._queue, item)


def _long_queue(city, cls):
    """7 h of a rising flood with few units for many calls: rescues wait for the one boat while the
    ambulances and trucks are free, medical calls beside them."""
    svc = {"n_boats": 1, "ambulances_per_hospital": 1, "fire_trucks_per_station": 1,
           "medical_rate_per_1000_per_day": 30.0}
    pm = PeopleModel(city, {"n_tourists": 300}, np.random.default_rng(21))
    es = cls(city, svc, np.random.default_rng(22), people=pm)
    step(pm, es, 7.0)
    return pm, es


def test_the_dispatcher_equals_the_plain_priority_loop(city):
    # a long queue, then the water goes and the waiting rescues are cancelled
    runs = []
    for cls in (EmergencyServices, _PlainDispatch):
        pm, es = _long_queue(city, cls)
        dry = np.zeros(pm.shape)
        for _ in range(3):
            pm.run_one_step(300.0, dry, dry)
            es.run_one_step(300.0)
        runs.append((es.incident_table(), es.action_table()))
    (inc, act), (inc_ref, act_ref) = runs
    assert (inc_ref.outcome == "cancelled_no_longer_trapped").sum() > 5
    assert inc_ref.dispatch_s.notna().sum() > 20
    assert (act_ref.action == "cancelled").sum() > 5
    pd.testing.assert_frame_equal(inc, inc_ref)
    pd.testing.assert_frame_equal(act, act_ref)


def test_the_dispatcher_cancels_and_stops_where_the_priority_loop_does(city):
    # a long queue; every other waiting household freed between two dispatches (no sweep in between);
    # one ambulance free (it suits none of the rescues): the freed households' calls ahead of the
    # medical call it takes are cancelled, those behind it wait (the plain loop stops when no unit is free)
    out = []
    for cls in (EmergencyServices, _PlainDispatch):
        pm, es = _long_queue(city, cls)
        queued = [es.incidents[i] for _, _, i in sorted(es._queue)]
        rescues = [c for c in queued if c["kind"] == "rescue" and pm.is_trapped(c["agent_id"])]
        assert len(rescues) > 10
        for c in rescues[::2]:
            pm.state[c["agent_id"]] = 0   # home again
        amb = next(u for u in es.units if u.kind == "ambulance" and u.phase == "idle")
        for u in es.units:
            u.available = u is amb
        # a priority-1 medical call at the ambulance's station now: after the priority-1 rescues in turn
        es._register(es.env.now, "medical", 1, amb.x, amb.y, -1, 1, False)
        n_before = len(es._queue)
        es._try_dispatch()
        out.append((sorted(es._queue), es.incident_table(), es.action_table(), n_before))
    (q, inc, act, n0), (q_ref, inc_ref, act_ref, n0_ref) = out
    freed = inc_ref.agent_id.isin([c["agent_id"] for c in rescues[::2]]) & (inc_ref.kind == "rescue")
    gone = inc_ref.outcome == "cancelled_no_longer_trapped"
    assert 0 < (freed & gone).sum() < freed.sum()   # cancelled ahead of the ambulance's call, left behind it
    assert (inc_ref.dispatch_s == inc_ref.dispatch_s.max()).sum() >= 1
    assert n0 == n0_ref and len(q_ref) < n0_ref
    assert q == q_ref
    pd.testing.assert_frame_equal(inc, inc_ref)
    pd.testing.assert_frame_equal(act, act_ref)


def test_services_keep_a_read_only_flood_as_it_is_and_copy_one_that_may_change(city):
    es = EmergencyServices(city, {}, np.random.default_rng(0))
    d = np.full(es.shape, 0.4)
    es.set_flood(d)
    d[:] = 5.0                                   # the caller's array changes afterwards
    assert es.depth_at_xy(*city.places[["x", "y"]].to_numpy()[0]) == 0.4
    ro = np.full(es.shape, 0.7)
    ro.flags.writeable = False                   # the step's shared field: nobody can change it
    es.set_flood(ro)
    assert np.shares_memory(es._depth, ro)
    nan = np.full(es.shape, np.nan)
    nan.flags.writeable = False
    es.set_flood(nan)                            # NaN (no data) counts as dry, in a copy
    assert es.depth_at_xy(*city.places[["x", "y"]].to_numpy()[0]) == 0.0 and not np.shares_memory(es._depth, nan)


def test_the_boat_grid_depth_is_the_block_mean_with_nan_as_dry():
    from affine import Affine

    from twin.agents.routing import GridRouter

    rng = np.random.default_rng(2)
    d = rng.uniform(0, 2, (53, 47))
    d[rng.random(d.shape) < 0.1] = np.nan
    g = GridRouter(d.shape, Affine(10, 0, 0, 0, -10, 530), max_cells=40)
    f = g.f
    assert f > 1 and d.shape[0] % f and d.shape[1] % f   # blocks cut by the edge
    ref = np.zeros((g.cny, g.cnx))
    for r in range(g.cny):
        for c in range(g.cnx):
            block = np.nan_to_num(d[r * f:(r + 1) * f, c * f:(c + 1) * f])
            ref[r, c] = block.sum() / (f * f)      # outside the grid counts as dry
    np.testing.assert_allclose(g.coarse_depth(d).reshape(g.cny, g.cnx), ref, rtol=1e-12, atol=0)
    keep = d.copy()
    g.coarse_depth(d)
    np.testing.assert_array_equal(d, keep)         # (NaN made dry in its own copy)
