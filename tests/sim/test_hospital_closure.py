"""``hospital_closure``: a hospital that loses power takes no patient afterwards (an exercise inject)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.agents.helpers import synthetic_city
from twin.agents import EmergencyServices, PeopleModel
from twin.build import build_twin
from twin.decisions import DecisionError, parse_decision
from twin.scenario import load_scenario
from twin.simulation import Simulation

MOLAVE = Path(__file__).resolve().parents[2] / "scenarios" / "tamky_molave_2020.yaml"
FAST = ["resolution_m=300", "start=2020-10-28T08:00", "duration=20min", "coupling_step=5min",
        "outputs.fields_every=10min", "outputs.tables_every=10min", "outputs.kpis_every=10min",
        "outputs.checkpoint_every=null", "outputs.png=false", "interventions=[]",
        "traffic.background_trips_per_day=2000"]


def _deliveries(close_at=None, hospital=1):
    city = synthetic_city()
    pm = PeopleModel(city, {"n_tourists": 0}, np.random.default_rng(3))
    es = EmergencyServices(city, {"medical_rate_per_1000_per_day": 150.0, "transport_share": 1.0,
                                  "hospital_occupancy0": 0.0}, np.random.default_rng(3), people=pm)
    dry = np.zeros(pm.shape)
    for _ in range(24):                                   # 2 h, dry
        if close_at is not None and pm.time_s == close_at:
            es.close_hospital(hospital, close_at, "power loss")
        pm.run_one_step(300.0, dry, dry)
        es.run_one_step(300.0)
    return es, es.incident_table()


def test_a_closed_hospital_receives_no_patient_afterwards():
    _, base = _deliveries()
    assert (base.loc[base["at_hospital_s"] > 1800.0, "hospital"] == 1).sum() > 3   # it would have had patients
    es, inc = _deliveries(close_at=1800.0)
    after = inc[inc["at_hospital_s"] > 1800.0]
    assert len(after) > 3 and not (after["hospital"] == 1).any()                  # they all went elsewhere
    assert es.hospital_closed[1] and es.kpis()["hospitals_closed"] == 1
    acts = es.action_table()
    assert ((acts["action"] == "hospital_closed") & acts["detail"].str.contains("power loss")).sum() == 1


def test_the_decision_acts_and_is_logged(tmp_path):
    tw = build_twin(load_scenario(MOLAVE, FAST))
    pl = tw.city.places
    school = str(pl.loc[pl["kind"] == "school", "place_id"].iloc[0])
    hrow = pl[pl["kind"] == "hospital"].iloc[0]
    hospital = str(hrow["place_id"])
    with pytest.raises(DecisionError, match=r"hospital_closure\.place: not a hospital"):
        tw.submit({"type": "hospital_closure", "place": school})
    with pytest.raises(DecisionError, match=r"hospital_closure\.place: .*Field required"):
        parse_decision({"type": "hospital_closure"})
    sim = Simulation(tw, out_dir=tmp_path)
    sim.run(until=600)
    sim.submit({"type": "hospital_closure", "place": hospital, "reason": "power loss"}, source="exercise",
               issuer="exercise")
    sim.run()
    h = tw.services.hospital_at(float(hrow["x"]), float(hrow["y"]))
    assert h >= 0 and tw.services.hospital_closed[h]
    log = pd.read_parquet(tmp_path / "decisions.parquet")
    row = log[log["type"] == "hospital_closure"].iloc[0]
    assert (row["outcome"], row["t_s"], row["source"]) == ("applied", 600.0, "exercise")
    assert "power loss" in row["message"]
