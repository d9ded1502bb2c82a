"""Counterfactual forks (twin.review.forks) on the small valley: a decision still pending in the
checkpoint the fork restores is left out, the decisions submitted after the checkpoint are
submitted again, and the result equals a run that never had the left-out decision."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.sim.helpers import X0, Y0, small_city, write_scenario
from twin.build import build_twin
from twin.review.forks import run_counterfactual
from twin.scenario import load_scenario
from twin.simulation import Simulation

OV = ["duration=10min", "outputs.checkpoint_every=4min", "outputs.png=false", "outputs.fields_every=2min",
      "outputs.kpis_every=2min", "outputs.tables_every=2min", "traffic.background_trips_per_day=3000"]
LEVEE = {"type": "levee", "polyline": [[X0 + 500, Y0 - 5], [X0 + 500, Y0 - 1195]], "crest_m": 400}
PUMP = {"type": "pump", "xy": [X0 + 300, Y0 - 600], "capacity_m3_per_s": 30}


def _run(tmp: Path, out: Path, city, subs) -> Path:
    sim = Simulation(build_twin(load_scenario(write_scenario(tmp), OV), city=city), out_dir=out)
    for until, d, at in subs:
        sim.run(until=until)
        sim.submit(d, at=at, source="api", issuer="trainee")
    sim.run()
    return out


def test_leaving_out_a_decision_pending_in_the_checkpoint(tmp_path):
    city = small_city()
    # the levee is submitted at 2 min for 5 min: it is pending in the 4 min checkpoint
    a = _run(tmp_path, tmp_path / "a", city, [(120, LEVEE, 300), (360, PUMP, 360)])
    b = _run(tmp_path, tmp_path / "b", city, [(360, PUMP, 360)])
    assert (a / "kpis.json").read_bytes() != (b / "kpis.json").read_bytes()      # the levee matters
    cf = run_counterfactual(str(a), str(tmp_path / "cf"), [0], city=city)
    assert cf["from_checkpoint_s"] == 240.0 and cf["resubmitted"] == 1
    assert (tmp_path / "cf" / "kpis.json").read_bytes() == (b / "kpis.json").read_bytes()
    log = pd.read_parquet(tmp_path / "cf" / "decisions.parquet")
    assert list(log["type"]) == ["pump"] and list(log["source"]) == ["replay"]
    # nothing left out, from the same checkpoint: the run itself, the pending levee included
    noop = run_counterfactual(str(a), str(tmp_path / "noop"), [], start_s=300, city=city)
    assert noop["from_checkpoint_s"] == 240.0
    assert (tmp_path / "noop" / "kpis.json").read_bytes() == (a / "kpis.json").read_bytes()
    with pytest.raises(ValueError, match=r"decisions \[7\] are not applied decisions"):
        run_counterfactual(str(a), str(tmp_path / "bad"), [7], city=city)
