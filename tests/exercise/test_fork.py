"""``twin fork`` of an exercise run: the decisions the seats issued through the API (and the injects'
decisions) that acted before the fork time act again in the fork, so its past is the exercise's;
those after the fork time only with ``later_decisions`` (``--keep-decisions``)."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.sim.helpers import X0, Y0, small_city
from twin.exercise.spec import Inject
from twin.workflows.runs import fork_run

from .helpers import advance, paced_session

ROAD = [X0 + 350.0, Y0 - 1100.0]
PUMP = {"type": "pump", "xy": [X0 + 300, Y0 - 600], "capacity_m3_per_s": 30}
T = 540.0          # the fork time: after the seat's closure (420 s), after the checkpoint at 300 s
COLS = ["t_s", "at_s", "type", "source", "issuer", "params", "outcome"]


@pytest.fixture(scope="module")
def exercise(tmp_path_factory):
    """An exercise session on the valley (fake clock): an inject's pump at 6 min, a seat's road closure
    through the API at 7 min, another seat's pump at 13 min; checkpoints every 5 min."""
    tmp = tmp_path_factory.mktemp("fork")
    city = small_city()
    s, clock = paced_session(tmp, city, injects=[Inject(at=360, message="pumps arrive", decision=PUMP)],
                             overrides=["outputs.checkpoint_every=5min", "outputs.tables_every=2min",
                                        "outputs.kpis_every=2min", "duration=15min",
                                        "traffic.background_trips_per_day=3000"])
    advance(s, clock, 7.0)
    assert s.sim.time == 420.0
    assert s.handle("roads", "decide", {"type": "road_closure", "near": ROAD, "radius_m": 100})[0] == 202
    advance(s, clock, 6.0)
    assert s.handle("pumps", "decide", {**PUMP, "xy": [X0 + 900, Y0 - 600]})[0] == 202
    advance(s, clock, 20.0)
    assert s.state == "finished"
    return tmp / "run", city


def _log(run):
    return pd.read_parquet(run / "decisions.parquet")[COLS]


def test_the_fork_of_an_exercise_keeps_the_seats_decisions_before_the_fork(exercise, tmp_path):
    run, city = exercise
    log = _log(run)
    assert list(log["source"]) == ["exercise", "api", "api"] and list(log["t_s"]) == [360.0, 420.0, 780.0]
    fork_run(run, T, [], tmp_path / "fork", city=city)
    flog = _log(tmp_path / "fork")
    # before the fix the closure (acted at 420 s, after the checkpoint at 300 s) was missing here
    pd.testing.assert_frame_equal(flog.reset_index(drop=True), log[log["t_s"] < T].reset_index(drop=True))
    assert flog.set_index("type").loc["road_closure", "issuer"] == "roads"
    # the fork's past is the exercise's: the road links up to T, closures included, and the KPI series
    links = pd.read_parquet(run / "links.parquet")
    flinks = pd.read_parquet(tmp_path / "fork" / "links.parquet")
    before = links[links["t_s"] <= T].reset_index(drop=True)
    pd.testing.assert_frame_equal(flinks[flinks["t_s"] <= T].reset_index(drop=True), before)
    assert (before[before["t_s"] == 480.0]["closed"] & ~before[before["t_s"] == 480.0]["closed_by_water"]).any()
    k, fk = (json.loads((d / "kpis.json").read_text()) for d in (run, tmp_path / "fork"))
    n = sum(t <= T for t in k["series_t_s"])
    assert fk["series_t_s"][:n] == k["series_t_s"][:n] and fk["volume_m3"][:n] == k["volume_m3"][:n]
    # the second pump (13 min) is the fork's future: left out, so the fork differs from the run after T
    assert fk["volume_m3"][-1] != k["volume_m3"][-1]


def test_a_fork_that_keeps_the_later_decisions_reproduces_the_exercise(exercise, tmp_path):
    run, city = exercise
    fork_run(run, T, [], tmp_path / "all", city=city, later_decisions=True)
    k, fk = (json.loads((d / "kpis.json").read_text()) for d in (run, tmp_path / "all"))
    assert fk.pop("scenario") == "valley-fork" and k.pop("scenario") == "valley"
    assert fk == k                                           # every KPI, exactly
    pd.testing.assert_frame_equal(_log(tmp_path / "all"), _log(run))


def test_twin_fork_passes_keep_decisions(monkeypatch, tmp_path):
    """The CLI flag reaches fork_run (the run itself above; here only the wiring)."""
    from twin.cli import main

    seen = {}

    def fake(run_dir, at, overrides, out, progress=False, later_decisions=False):
        seen.update(at=at, later=later_decisions)
        raise ValueError("stop here")

    monkeypatch.setattr("twin.workflows.runs.fork_run", fake)
    assert main(["fork", str(tmp_path), "--at", "9min", "--keep-decisions", "--out", str(tmp_path / "f")]) == 2
    assert seen == {"at": 540.0, "later": True}
    assert main(["fork", str(tmp_path), "--at", "9min", "--out", str(tmp_path / "g")]) == 2
    assert seen["later"] is False
