"""Decisions as runtime commands (twin.decisions): validation before anything changes, each kind
acting mid-run, the log in decisions.parquet, and replay/resume with decisions."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twin.build import build_twin
from twin.decisions import DECISION_TYPES, DecisionError, parse_decision
from twin.scenario import load_scenario
from twin.simulation import Simulation

from .helpers import X0, Y0, small_city, write_scenario

MOLAVE = Path(__file__).resolve().parents[2] / "scenarios" / "tamky_molave_2020.yaml"
FAST = ["resolution_m=300", "start=2020-10-28T08:00", "duration=1h", "coupling_step=5min",
        "flood.rain.time_shift=3h", "flood.rain.rain_scale=3", "outputs.fields_every=30min",
        "outputs.tables_every=10min", "outputs.kpis_every=30min", "outputs.checkpoint_every=null",
        "outputs.png=false", "interventions=[]",
        "services.params={medical_rate_per_1000_per_day: 20}", "traffic.background_trips_per_day=5000"]


@pytest.fixture(scope="module")
def valley():
    return small_city()


def _valley_sim(tmp_path, city, overrides=(), **kw):
    sc = load_scenario(write_scenario(tmp_path), list(overrides))
    return Simulation(build_twin(sc, city=city), **kw)


# -- schema and validation ---------------------------------------------------------------------
def test_every_kind_parses_and_names_its_field():
    assert {"warning", "evacuation_order", "road_closure", "road_reopen", "contraflow", "shelter_open",
            "shelter_close", "extra_units", "dispatch", "pump", "levee", "reservoir_release",
            "breach"} <= set(DECISION_TYPES)
    with pytest.raises(DecisionError, match="unknown decision kind") as ei:
        parse_decision({"type": "teleport"})
    assert ei.value.field == "type"
    with pytest.raises(DecisionError, match=r"levee\.crest_m: .*greater than -50.*value -99") as ei:
        parse_decision({"type": "levee", "polyline": [[0, 0], [1, 1]], "crest_m": -99})
    assert ei.value.field == "crest_m" and ei.value.value == -99
    with pytest.raises(DecisionError, match=r"pump\.colour: unknown field"):
        parse_decision({"type": "pump", "xy": [0, 0], "capacity_m3_per_s": 1, "colour": "red"})
    with pytest.raises(DecisionError, match="not valid JSON"):
        parse_decision("{not json")


def test_a_bad_decision_changes_nothing(tmp_path, valley):
    sim = _valley_sim(tmp_path, valley, ["duration=10min"])
    sim.run(until=240)
    tw = sim.twin
    before = (len(tw.decisions.pending), tw.flood.depth.copy(), tw.manual_closed.copy())
    bad = [
        ({"type": "levee", "polyline": [[0, 0], [10, 10]], "crest_m": 5}, "outside the map"),
        ({"type": "road_closure", "links": [10_000]}, "no such link"),
        ({"type": "road_closure", "near": [X0 + 1, Y0 - 1], "radius_m": 1}, "no road link within"),
        ({"type": "shelter_open", "place": "Atlantis", "capacity": 10}, "needs the people or services"),
        ({"type": "pump", "place": "Nowhere", "capacity_m3_per_s": 2}, "not found"),
        ({"type": "warning"}, "needs the people component"),
    ]
    for d, msg in bad:
        with pytest.raises(DecisionError, match=msg):
            sim.submit(d)
    with pytest.raises(DecisionError, match=r"at: 60 s is in the past \(model time is 240 s\)"):
        sim.submit({"type": "road_closure", "links": [0]}, at=60)
    assert len(tw.decisions.pending) == before[0] and not tw.decisions.log[1:]
    np.testing.assert_array_equal(tw.flood.depth, before[1])
    np.testing.assert_array_equal(tw.manual_closed, before[2])


# -- kinds acting mid-run ----------------------------------------------------------------------------
def test_road_closed_mid_run_carries_no_vehicle_after(tmp_path, valley):
    sim = _valley_sim(tmp_path, valley, ["duration=20min"])
    tw = sim.twin
    busy = int(np.argmax(np.bincount(np.concatenate([r for r in tw.traffic.trips["route"] if r is not None]),
                                     minlength=tw.traffic.network.n_links)))
    entered = {}
    sim.add_callback("watch", lambda s: entered.__setitem__(s.time, tw.traffic.link_vehicles[busy]))
    sim.run(until=600)
    assert max(entered[t] for t in entered if t <= 600) > 0   # used before the closure
    p = sim.submit({"type": "road_closure", "links": [busy], "label": "bridge works"})
    sim.run()
    row = [r for r in tw.decisions.log if r["decision_id"] == p.seq][0]
    assert row["t_s"] == 600.0 and row["outcome"] == "applied" and row["source"] == "api"
    assert tw.traffic.link_closed[busy]
    # vehicles on it drive out within a step; none is on it afterwards
    assert all(entered[t] == 0 for t in entered if t >= 720)


def test_levee_and_pump_mid_run_change_the_water(tmp_path, valley):
    def run(decisions):
        d = tmp_path / f"run{len(decisions)}-{decisions[0]['type'] if decisions else 'base'}"
        d.mkdir()
        sim = _valley_sim(d, valley, ["duration=30min"])
        sim.run(until=600)
        d0 = sim.twin.flood.depth.copy()
        for d in decisions:
            sim.submit(d)
        sim.run()
        return sim, d0

    base, d0 = run([])
    pumped, d1 = run([{"type": "pump", "xy": [X0 + 300, Y0 - 600], "capacity_m3_per_s": 30}])
    np.testing.assert_array_equal(d0, d1)    # identical until the decision acted
    assert pumped.twin.flood.volume_balance()["pumped_m3"] > 0
    assert base.twin.flood.volume_balance()["pumped_m3"] == 0
    assert pumped.twin.flood.volume_balance()["volume_m3"] < base.twin.flood.volume_balance()["volume_m3"]
    # a wall across the valley at 10 min holds the creek's water west of it
    x = X0 + 500
    walled, _ = run([{"type": "levee", "polyline": [[x, Y0 - 5], [x, Y0 - 1195]], "crest_m": 400}])
    c = int((x - X0) // 20)
    east = (slice(None), slice(c + 1, c + 10))
    assert walled.twin.flood.depth[east].sum() < base.twin.flood.depth[east].sum()
    faces = [r for r in walled.twin.decisions.log if r["type"] == "levee"][0]["message"]
    assert "cell faces raised" in faces and not faces.startswith("0 ")


# -- the coupled Tam Kỳ twin ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tamky(tmp_path_factory):
    """Tam Kỳ at 300 m for 1 h: a hotel opened as a shelter at 20 min, an evacuation order to it at 20 min,
    a boat sent to a place and a road closed at 30 min, all submitted while the run pauses."""
    tmp = tmp_path_factory.mktemp("decisions")
    sc = load_scenario(MOLAVE, FAST)
    tw = build_twin(sc)
    sim = Simulation(tw, out_dir=tmp / "run")
    pl = tw.city.places
    school = pl[pl["kind"] == "hotel"].iloc[0]   # a hotel opened as a shelter
    boat = next(u.uid for u in tw.services.units if u.kind == "boat")
    sim.run(until=1200)
    occ_before = tw.people.shelter_occupancy.copy()
    sim.submit({"type": "shelter_open", "place": str(school["place_id"]), "capacity": 800}, issuer="commander")
    sim.submit({"type": "evacuation_order", "shelters": [str(school["place_id"])]}, issuer="commander")
    sim.submit({"type": "dispatch", "unit_id": boat, "place": str(school["place_id"])}, at=1800,
               source="exercise", issuer="dispatch")
    sim.submit({"type": "road_closure", "near": [float(school["x"]), float(school["y"])], "radius_m": 400},
               at=1800, source="dashboard", issuer="traffic police")
    sim.run()
    return sim, tmp, school, boat, occ_before


def test_shelter_opened_mid_run_receives_evacuees_only_after(tamky):
    sim, tmp, school, _, occ_before = tamky
    pm = sim.twin.people
    k = pm.shelter_index(float(school["x"]), float(school["y"]))
    assert k == len(occ_before)                        # a new shelter, appended at 20 min
    assert pm.shelter_occupancy[k] > 0                 # the ordered households went there
    people = pd.read_parquet(tmp / "run" / "people.parquet")
    there = people[(people["state"] == "sheltered") & (np.hypot(people["x"] - school["x"], people["y"] - school["y"]) < 1)]
    assert len(there) > 0 and there["t_s"].min() > 1200.0


def test_dispatch_sends_that_unit(tamky):
    sim, tmp, school, boat, _ = tamky
    acts = pd.read_parquet(tmp / "run" / "unit_actions.parquet")
    mine = acts[acts["unit_id"] == boat]
    md = mine[mine["action"] == "manual_dispatch"]
    assert len(md) == 1 and md["t_s"].iloc[0] == 1800.0
    arrived = mine[mine["action"] == "at_place"]
    if len(arrived):   # the boat may still be on its way at the end of the hour
        assert np.hypot(arrived["x"].iloc[0] - school["x"], arrived["y"].iloc[0] - school["y"]) < 1.0


def test_decisions_parquet_logs_every_decision(tamky):
    sim, tmp, *_ = tamky
    log = pd.read_parquet(tmp / "run" / "decisions.parquet")
    assert list(log["type"]) == ["shelter_open", "evacuation_order", "dispatch", "road_closure"]
    assert list(log["t_s"]) == [1200.0, 1200.0, 1800.0, 1800.0]
    assert list(log["source"]) == ["api", "api", "exercise", "dashboard"]
    assert list(log["issuer"]) == ["commander", "commander", "dispatch", "traffic police"]
    assert (log["outcome"] == "applied").all()
    assert json.loads(log["params"].iloc[0])["capacity"] == 800
    assert log["decision_id"].is_unique and pd.api.types.is_integer_dtype(log["decision_id"])


def test_replay_is_bit_identical(tamky, tmp_path):
    import xarray as xr

    from twin.workflows.runs import replay_run

    sim, tmp, *_ = tamky
    replay_run(tmp / "run", tmp_path / "replay")
    assert (tmp / "run" / "kpis.json").read_bytes() == (tmp_path / "replay" / "kpis.json").read_bytes()
    a = xr.open_dataset(tmp / "run" / "fields.nc", decode_times=False)
    b = xr.open_dataset(tmp_path / "replay" / "fields.nc", decode_times=False)
    for v in ("depth", "speed", "hazard"):
        np.testing.assert_array_equal(a[v].values, b[v].values)
    log = pd.read_parquet(tmp_path / "replay" / "decisions.parquet")
    assert list(log["source"]) == ["replay"] * 4 and list(log["t_s"]) == [1200.0, 1200.0, 1800.0, 1800.0]


def test_checkpoint_carries_pending_decisions(tmp_path):
    """Interrupted with decisions still queued, resumed: identical to the uninterrupted run."""
    from twin.workflows.runs import resume_run

    def run(out, interrupt_at=None):
        sc = load_scenario(MOLAVE, FAST + ["duration=30min"])
        tw = build_twin(sc)
        sim = Simulation(tw, out_dir=out)
        sim.run(until=600)
        hotel = str(tw.city.places.loc[tw.city.places["kind"] == "hotel", "place_id"].iloc[0])
        sim.submit({"type": "shelter_open", "place": hotel, "capacity": 300})
        sim.submit({"type": "warning", "channel": "tv"}, at=1500)
        if interrupt_at is not None:
            def stop(s):
                if s.iteration == interrupt_at:
                    raise KeyboardInterrupt
            sim.add_callback("ctrl_c", stop)
            with pytest.raises(KeyboardInterrupt):
                sim.run()
            assert len(sim.twin.decisions.pending) == 1
            return resume_run(out)
        return sim.run()

    run(tmp_path / "a")
    run(tmp_path / "b", interrupt_at=3)
    assert (tmp_path / "a" / "kpis.json").read_bytes() == (tmp_path / "b" / "kpis.json").read_bytes()
    la, lb = (pd.read_parquet(tmp_path / x / "decisions.parquet") for x in ("a", "b"))
    pd.testing.assert_frame_equal(la.drop(columns="wall_time"), lb.drop(columns="wall_time"))


def test_extra_units_join_at_their_named_base():
    """`base` was accepted and ignored before: units now start at the named station, or are refused."""
    sc = load_scenario(MOLAVE, FAST + ["duration=10min"])
    tw = build_twin(sc)
    sim = Simulation(tw)
    pl = tw.city.places
    fire = pl[pl["kind"] == "fire_station"].iloc[-1]
    school = pl[pl["kind"] == "school"].iloc[0]
    with pytest.raises(DecisionError, match=r"extra_units\.base: not a station"):
        sim.submit({"type": "extra_units", "unit": "boat", "count": 2, "base": str(school["place_id"])})
    n0 = len(tw.services.units)
    sim.submit({"type": "extra_units", "unit": "boat", "count": 2, "base": str(fire["name"])})
    sim.run(until=300)
    new = tw.services.units[n0:]
    assert len(new) == 2 and all(u.kind == "boat" for u in new)
    assert all(abs(u.home_x - fire["x"]) < 1 and abs(u.home_y - fire["y"]) < 1 for u in new)


def test_flood_and_road_kinds_mid_run(tmp_path, valley):
    """reservoir_release, breach, contraflow and road_reopen issued at 10 min act from 10 min on."""
    def run(decisions, name):
        d = tmp_path / name
        d.mkdir()
        sim = _valley_sim(d, valley, ["duration=20min"])
        sim.run(until=600)
        snap = (sim.twin.flood.volume_balance()["inflow_m3"], sim.twin.flood.get_state()["z"].copy(),
                sim.twin.traffic.link_lanes.copy())
        for dec in decisions:
            sim.submit(dec)
        sim.run()
        return sim, snap

    base, (in0, z0, lanes0) = run([], "base")
    rel, (in1, _, _) = run([{"type": "reservoir_release", "times": [0, 7200], "discharge_m3_per_s": [40, 40]}], "rel")
    assert in1 == in0                                               # nothing before the decision
    extra = rel.twin.flood.volume_balance()["inflow_m3"] - base.twin.flood.volume_balance()["inflow_m3"]
    assert extra == pytest.approx(40.0 * 600, rel=0.02)             # 40 m3/s for the last 10 min
    line = [[X0 + 500, Y0 - 300], [X0 + 500, Y0 - 900]]
    br, (_, z1, _) = run([{"type": "breach", "polyline": line, "crest_start_m": 6.0, "crest_end_m": -1.0,
                           "formation": "5min"}], "breach")
    np.testing.assert_array_equal(z1, z0)
    assert (br.twin.flood.get_state()["z"] < base.twin.flood.get_state()["z"] - 0.5).any()   # the bed fell
    net = base.twin.traffic.network
    fr, to = net.link_from_index, net.link_to_index
    two_way = next(j for j in range(net.n_links) if any((to[j], fr[j]) == (fr[k], to[k]) for k in range(net.n_links)))
    cf, (_, _, lanes1) = run([{"type": "contraflow", "links": [two_way], "until": "15min"}], "cf")
    np.testing.assert_array_equal(lanes1, lanes0)
    log = [(r["type"], r["t_s"], r["parent_id"] >= 0) for r in cf.twin.decisions.log if r["source"] == "api"]
    assert log == [("contraflow", 600.0, False), ("road_reopen", 900.0, True)]   # the until is a follow-up
    np.testing.assert_array_equal(cf.twin.traffic.link_lanes, lanes0)            # lanes back after 15 min
    ro, _ = run([{"type": "road_closure", "links": [0, 1]}, {"type": "road_reopen", "links": [0], "at": 900}], "ro")
    assert not ro.twin.traffic.link_closed[0] and ro.twin.traffic.link_closed[1]


def test_warning_and_shelter_close_mid_run(tmp_path):
    """A warning issued at 20 min reaches households only after 20 min; a shelter closed at 20 min
    admits nobody after 20 min."""
    sc = load_scenario(MOLAVE, FAST + ["duration=40min", "outputs.tables_every=5min"])
    tw = build_twin(sc)
    sim = Simulation(tw, out_dir=tmp_path / "run")
    pm = tw.people
    sim.run(until=1200)
    from twin.agents.people import CHANNELS

    tv = CHANNELS.index("tv")
    assert not np.isfinite(pm.recv_s[:, tv]).any()
    busiest = int(np.argmax(pm.shelter_occupancy)) if pm.shelter_occupancy.any() else 0
    occ = int(pm.shelter_occupancy[busiest])
    sx, sy = float(pm.shelter_x[busiest]), float(pm.shelter_y[busiest])
    pl = tw.city.places
    place = pl.loc[(np.hypot(pl["x"] - sx, pl["y"] - sy) < 1.0), "place_id"].iloc[0]
    sim.submit({"type": "warning", "channel": "tv"})
    sim.submit({"type": "shelter_close", "place": str(place)})
    sim.run()
    got = pm.recv_s[:, tv]
    assert np.isfinite(got).any() and got[np.isfinite(got)].min() >= 1200.0
    assert pm.shelter_occupancy[busiest] <= occ        # nobody admitted after the closure


def test_a_levee_across_the_map_with_both_ends_outside_is_accepted(tmp_path, valley):
    """Only a polyline that misses the map entirely is refused (its vertices may lie outside)."""
    sim = _valley_sim(tmp_path, valley, ["duration=2min"])
    x0, y0, x1, y1 = sim.twin.terrain.bounds
    mid = 0.5 * (x0 + x1)
    sim.submit({"type": "levee", "polyline": [[mid, y1 + 50], [mid, y0 - 50]], "crest_m": 20})
    with pytest.raises(DecisionError, match="outside the map"):
        sim.submit({"type": "levee", "polyline": [[x1 + 10, y1 + 50], [x1 + 10, y0 - 50]], "crest_m": 20})
    sim.run()
    row = [r for r in sim.twin.decisions.log if r["type"] == "levee"][0]
    assert row["outcome"] == "applied" and not row["message"].startswith("0 ")
