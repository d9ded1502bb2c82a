"""Reinforcements: extra units that join the emergency services during a run (extra_units with at > 0)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twin.build import build_twin
from twin.scenario import load_scenario
from twin.simulation import Simulation

MOLAVE = Path(__file__).resolve().parents[2] / "scenarios" / "tamky_molave_2020.yaml"
FAST = ["resolution_m=300", "duration=1h", "coupling_step=5min", "outputs.tables_every=10min",
        "outputs.fields_every=30min", "outputs.kpis_every=30min", "outputs.checkpoint_every=null",
        "outputs.png=false", "interventions=[]", "traffic.background_trips_per_day=2000"]


def test_boats_join_at_their_time_and_are_recorded(tmp_path):
    sc = load_scenario(MOLAVE, FAST + ["interventions=[{type: extra_units, unit: boat, count: 4, at: 30min}]"])
    tw = build_twin(sc)
    n0 = len(tw.services.units)
    boats0 = sum(u.kind == "boat" for u in tw.services.units)
    sim = Simulation(tw, out_dir=tmp_path / "run")
    sim.run()
    assert len(tw.services.units) == n0 + 4
    assert sum(u.kind == "boat" for u in tw.services.units) == boats0 + 4
    acts = pd.read_parquet(tmp_path / "run" / "unit_actions.parquet")
    joined = acts[acts["action"] == "joined"]
    assert len(joined) == 4 and (joined["t_s"] == 1800.0).all() and (joined["unit_kind"] == "boat").all()
    units = pd.read_parquet(tmp_path / "run" / "units.parquet")
    per_t = units.groupby("t_s").size()
    # the table at 30 min is the state at the end of the step that ends then; the event acts on the
    # step that starts then
    assert (per_t[per_t.index <= 1800] == n0).all() and (per_t[per_t.index > 1800] == n0 + 4).all()
    # spread over the fire stations: no station gets two before every station has one more
    new = [u for u in tw.services.units if u.uid >= n0]
    counts = pd.Series([u.station for u in tw.services.units if u.kind == "boat"]).value_counts()
    assert counts.max() - counts.min() <= 1 and len(new) == 4


def test_units_at_the_start_still_join_when_built():
    sc = load_scenario(MOLAVE, FAST + ["interventions=[{type: extra_units, unit: ambulance, count: 5, at: 0}]"])
    base = build_twin(load_scenario(MOLAVE, FAST))
    tw = build_twin(sc)
    extra = sum(u.kind == "ambulance" for u in tw.services.units) - sum(u.kind == "ambulance" for u in base.services.units)
    assert extra >= 5  # spread over the hospitals, rounded up per hospital


def test_add_units_validates():
    tw = build_twin(load_scenario(MOLAVE, FAST))
    with pytest.raises(ValueError, match="unknown unit kind 'helicopter'"):
        tw.services.add_units("helicopter", 1)
    with pytest.raises(ValueError, match="count"):
        tw.services.add_units("boat", 0)
    ids = tw.services.add_units("ambulance", 2)
    assert ids == [len(tw.services.units) - 2, len(tw.services.units) - 1]
    assert np.isfinite([tw.services.units[i].x for i in ids]).all()
