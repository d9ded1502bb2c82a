"""The coupled Tam Kỳ twin (real city bundle, flood, traffic, people, services) on a coarse grid:
resume equals uninterrupted, seeds, and the people/incident KPIs recomputed from the tables."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twin.build import build_twin
from twin.scenario import load_scenario
from twin.simulation import Simulation

MOLAVE = Path(__file__).resolve().parents[2] / "scenarios" / "tamky_molave_2020.yaml"
# 300 m grid, 1 h from 08:00 local (rain, warnings already out), heavier rain to flood quickly
FAST = ["resolution_m=300", "start=2020-10-28T08:00", "duration=1h", "coupling_step=5min",
        "flood.rain.time_shift=3h", "flood.rain.rain_scale=3", "outputs.fields_every=30min",
        "outputs.tables_every=10min", "outputs.kpis_every=30min", "outputs.checkpoint_every=null",
        "outputs.png=false", "interventions.0.at=0", "interventions.1.at=10min",
        "services.params={medical_rate_per_1000_per_day: 20}", "traffic.background_trips_per_day=5000"]


def _run(out, overrides=(), interrupt_at=None):
    sc = load_scenario(MOLAVE, FAST + list(overrides))
    sim = Simulation(build_twin(sc), out_dir=out)
    if interrupt_at is not None:
        def stop(s):
            if s.iteration == interrupt_at:
                raise KeyboardInterrupt
        sim.add_callback("ctrl_c", stop)
        with pytest.raises(KeyboardInterrupt):
            sim.run()
        return sim
    sim.run()
    return sim


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tamky")
    sim = _run(tmp / "a")
    return sim, tmp


def _tables(run):
    return {n: pd.read_parquet(run / f"{n}.parquet")
            for n in ("trips", "links", "people", "incidents", "units", "unit_actions")}


def test_all_components_ran_and_interacted(base):
    sim, tmp = base
    assert sim.twin.component_names() == ["flood", "traffic", "people", "services"]
    t = _tables(tmp / "a")
    assert len(t["people"]) > 1000 and t["people"]["t_s"].nunique() == 7
    assert (t["people"]["warned"]).any()
    assert len(t["incidents"]) > 0 and len(t["trips"]) > 0
    assert t["links"]["depth_m"].max() > 0
    # every unit at every table time, and the units that served incidents moved
    units, acts = t["units"], t["unit_actions"]
    n_units = len(sim.twin.services.units)
    assert units["t_s"].nunique() == 7 and len(units) == 7 * n_units
    assert set(units["phase"]) >= {"idle"} and units[["x", "y"]].notna().all().all()
    served = t["incidents"]["unit_id"].dropna()
    served = set(served[served >= 0].astype(int))
    assert served and served <= set(acts["unit_id"])
    on_scene = acts[acts["action"] == "on_scene"]
    assert len(on_scene) >= 1
    inc = t["incidents"].set_index("incident_id")
    # a unit on scene stands at its incident
    np.testing.assert_allclose(on_scene[["x", "y"]].to_numpy(),
                               inc.loc[on_scene["incident_id"], ["x", "y"]].to_numpy(), atol=1e-6)
    man = json.loads((tmp / "a" / "manifest.json").read_text())
    sums = {Path(k).name: v for k, v in man["input_checksums_sha256"].items()}
    assert len(sums["terrain_30m.tif"]) == 64 and "population.csv" in sums and "manifest.json" in sums


def test_resume_equals_uninterrupted_with_people_and_services(base):
    from twin.workflows.runs import resume_run

    sim_a, tmp = base
    _run(tmp / "b", interrupt_at=5)
    sim_b = resume_run(tmp / "b")
    assert sim_b.iteration == sim_a.iteration == 12
    ta, tb = _tables(tmp / "a"), _tables(tmp / "b")
    for k in ta:
        pd.testing.assert_frame_equal(ta[k], tb[k], check_exact=True)
    np.testing.assert_array_equal(sim_a.twin.flood.depth, sim_b.twin.flood.depth)
    ka = json.loads((tmp / "a" / "kpis.json").read_text())
    kb = json.loads((tmp / "b" / "kpis.json").read_text())
    for k in ("people_exposure_person_hours", "evacuation_clearance_s", "ambulance_response_s",
              "travel_time_index", "flooded_area_m2", "people_model", "services_model"):
        assert ka[k] == kb[k], k


def test_same_seed_same_people_other_seed_different(base):
    _, tmp = base
    rec = _tables(tmp / "a")["people"]
    rec0 = rec[rec["t_s"] == 0.0].drop(columns=["t_s", "depth_m", "hazard_class"]).reset_index(drop=True)
    same = build_twin(load_scenario(MOLAVE, FAST)).people.state_table()
    other = build_twin(load_scenario(MOLAVE, FAST + ["seed=7"])).people.state_table()
    for col in ("agent_id", "x", "y", "persons", "members"):
        np.testing.assert_array_equal(rec0[col].to_numpy(), same[col].to_numpy())
    assert not np.array_equal(same["x"].to_numpy(), other["x"].to_numpy())


def test_people_and_incident_kpis_recomputed_from_tables(base):
    _, tmp = base
    kp = json.loads((tmp / "a" / "kpis.json").read_text())
    t = _tables(tmp / "a")
    p = t["people"]
    wet = p["hazard_class"] != "none"
    ph = (p.loc[wet, "persons"] * 600 / 3600).groupby(p.loc[wet, "hazard_class"]).sum()
    for cls in ("low", "moderate", "significant", "extreme"):
        assert kp["people_exposure_person_hours"][cls] == pytest.approx(ph.get(cls, 0.0))
    assert sum(kp["people_exposure_person_hours"].values()) > 0
    # hazard class follows FD2321 thresholds on the recorded rating
    hr = p.loc[wet, "hazard_rating"]
    expect = np.select([hr < 0.75, hr < 1.25, hr < 2.0], ["low", "moderate", "significant"], "extreme")
    assert (p.loc[wet, "hazard_class"].to_numpy() == expect).all()
    inc = t["incidents"]
    med = inc[inc["kind"] == "medical"]["response_time_s"].dropna()
    amb = kp["ambulance_response_s"]
    assert amb["n_incidents"] == len(inc) and amb["unreached"] == int(inc["response_time_s"].isna().sum())
    if len(med):
        assert amb["median_s"] == pytest.approx(float(np.median(med)))
        assert amb["p90_s"] == pytest.approx(float(np.percentile(med, 90)))
    # clearance: first time each evacuating household is safe, persons-weighted
    safe_states = {"sheltered", "evacuated", "safe"}
    moving = {"walking", "driving"} | safe_states
    inv = p[p["state"].isin(moving)]["agent_id"].unique()
    first = p[p["state"].isin(safe_states)].groupby("agent_id")["t_s"].min().sort_values(kind="stable")
    w = p.drop_duplicates("agent_id").set_index("agent_id")["persons"]
    if len(first):
        cum = np.cumsum(w.reindex(first.index).to_numpy()) / w.reindex(inv).sum()
        i50 = np.searchsorted(cum, 0.5 - 1e-12)
        expect50 = float(first.iloc[i50]) if i50 < len(first) else None
        assert kp["evacuation_clearance_s"]["p50"] == expect50


def test_warning_area_by_ward_name():
    sc = load_scenario(MOLAVE, FAST + ["interventions.0.area=[Tam Kỳ]"])
    tw = build_twin(sc)
    assert tw.ward_codes["Tam Kỳ"] == 1
    with pytest.raises(ValueError, match=r"unknown ward\(s\) \['Atlantis'\] \(wards: Tam Kỳ, Bàn Thạch"):
        build_twin(sc.with_overrides(["interventions.0.area=[Atlantis]"]))
