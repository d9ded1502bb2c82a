"""Emergency debrief without a browser: shelter labels by the people model's shelter order (people who
arrived only), the incident log's local clock times, the unit Gantt bars; compare's headline rows."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from twin.dashboard import comparison, debrief
from twin.dashboard.runs import Run
from twin.output.schema import validate_frame

from . import fixture_run as fx


def numbered_places() -> pd.DataFrame:
    """The fixture's places with numeric ids, as the Tam Kỳ bundle has them ("0", "1", …): an index
    read as a place id then names a wrong place."""
    return fx.places().assign(place_id=["0", "1", "2", "3"])


def write_shelters(folder, rows) -> None:
    validate_frame("shelters", pd.DataFrame(rows, columns=["shelter", "place_id", "name", "kind", "x", "y", "capacity"]).astype(
        {"shelter": "int64", "x": "float64", "y": "float64", "capacity": "float64"})).to_parquet(
        folder / "shelters.parquet", index=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = fx.write_run(tmp_path_factory.mktemp("debrief") / "run", scale=1.5, seed=1, name="debrief")
    p = numbered_places().set_index("place_id")
    # the model's order differs from the places table's: shelter 0 is place "3", shelter 1 is place "1"
    write_shelters(folder, [(0, "3", p.at["3", "name"], "shelter", p.at["3", "x"], p.at["3", "y"], 100.0),
                            (1, "1", p.at["1", "name"], "shelter", p.at["1", "x"], p.at["1", "y"], 500.0)])
    ppl = pd.read_parquet(folder / "people.parquet")
    # people on their way to shelter 0 at the last record: they have a shelter but have not arrived
    last = ppl["t_s"] == ppl["t_s"].max()
    on_way = last & (ppl["state"] == "home") & (ppl["agent_id"] % 3 == 0)
    ppl.loc[on_way, ["state", "shelter"]] = ["walking", 0]
    validate_frame("people", ppl).to_parquet(folder / "people.parquet", index=False)
    return folder


def test_shelter_labels_match_people_arrivals_and_the_places_table(run_dir):
    run = Run(run_dir)
    places = numbered_places()
    occ, note = debrief.shelter_occupancy(run, places)
    assert note is None                                                # shelters.parquet was used
    ppl = pd.read_parquet(run_dir / "people.parquet")
    sh = pd.read_parquet(run_dir / "shelters.parquet")
    name_of_place = dict(zip(places["place_id"], places["name"]))
    arrived = ppl[(ppl["state"] == "sheltered") & (ppl["shelter"] >= 0)]
    peak = arrived.groupby(["shelter", "t_s"])["persons"].sum().groupby("shelter").max()
    want = {name_of_place[sh.set_index("shelter").at[k, "place_id"]]: v for k, v in peak.items()}
    got = dict(zip(occ["name"], occ["peak"]))
    assert got == want
    assert "Nhà văn hóa Hòa Thuận" in got and "Bệnh viện Đa khoa Quảng Nam" not in got   # index 0 is not place "0"
    at_end = arrived[arrived["t_s"] == ppl["t_s"].max()].groupby("shelter")["persons"].sum()
    on_way = ppl[(ppl["state"] == "walking") & (ppl["shelter"] == 0)]["persons"].sum()
    assert on_way > 0
    row0 = occ.set_index("shelter").loc[0]
    assert row0["end"] == at_end.get(0, 0.0)                           # those on their way are not counted
    assert bool(row0["over"]) == (row0["peak"] > 100.0)
    assert occ.set_index("shelter").loc[0, "capacity"] == 100.0
    fig = debrief.shelter_figure(occ)
    assert set(fig.data[0].y) == {f"{n} (shelter)" for n in want}
    assert list(fig.data[1].x) == list(occ["capacity"].iloc[::-1])    # the capacity line per shelter
    text = debrief.shelter_summary(occ)
    assert ("Over capacity: " in text) == bool(occ["over"].any())


def test_shelter_order_without_shelters_parquet_is_the_models(run_dir, tmp_path):
    import shutil

    folder = tmp_path / "old-run"
    shutil.copytree(run_dir, folder)
    (folder / "shelters.parquet").unlink()
    lst, note = debrief.shelter_list(Run(folder), numbered_places())
    # the people model takes places of its shelter kinds in the table's order (twin.agents.population)
    assert list(lst["place_id"]) == ["1", "3"] and "rebuilt" in note
    lst, note = debrief.shelter_list(Run(folder), None)
    assert lst is None and "by index" in note


def test_incident_log_in_local_clock_time(run_dir):
    run = Run(run_dir)
    places = numbered_places()
    log = debrief.incident_log(run, places)
    inc = pd.read_parquet(run_dir / "incidents.parquet").sort_values("call_s", kind="stable").reset_index(drop=True)
    start = dt.datetime(2020, 10, 28, 0, 0, tzinfo=debrief.TZ)        # fields.nc: seconds since 2020-10-28 00:00 local
    assert debrief.run_start(run) == start
    for k in range(len(inc)):
        t = start + dt.timedelta(seconds=float(inc.at[k, "call_s"]))
        assert log.at[k, "call"] == t.strftime("%H:%M:%S")
        if np.isfinite(inc.at[k, "at_hospital_s"]):
            h = start + dt.timedelta(seconds=float(inc.at[k, "at_hospital_s"]))
            assert log.at[k, "handover"] == (h.strftime("%H:%M:%S") if h.date() == start.date() else h.strftime("%d/%m %H:%M:%S"))
            assert log.at[k, "destination"] == "Bệnh viện Đa khoa Quảng Nam"   # hospital 0 of the services
        assert log.at[k, "unit"] == f"ambulance {inc.at[k, 'unit_id']}"
    unreached = inc["arrive_scene_s"].isna().to_numpy()
    assert (log.loc[unreached, "arrival"] == "–").all() and log["response_min"].isna().sum() == unreached.sum()
    assert debrief.clock(start, 86400 + 3600) == "29/10 01:00:00"
    assert debrief.clock(None, 3900) == "+1 h 05 min"


def test_gantt_bars_are_the_units_phases(run_dir):
    run = Run(run_dir)
    tasks = debrief.unit_tasks(run)
    inc = pd.read_parquet(run_dir / "incidents.parquet")
    to_scene = tasks[tasks["phase"] == "to scene"].set_index("incident")
    reached = inc[inc["arrive_scene_s"].notna()].set_index("incident_id")
    assert np.allclose(to_scene.loc[reached.index, "end_s"] - to_scene.loc[reached.index, "start_s"],
                       reached["arrive_scene_s"] - reached["dispatch_s"])
    fig = debrief.gantt_figure(run)
    assert {tr.name for tr in fig.data} <= {p[0] for p in debrief.PHASES} and fig.data[0].orientation == "h"
    assert "units worked on" in debrief.gantt_summary(run)


def test_compare_headline_rows_first_and_summary(run_dir, tmp_path):
    a = fx.write_run(tmp_path / "a", scale=1.0, seed=0)
    rows = comparison.kpi_rows(Run(a), Run(run_dir))
    assert [r["headline"] for r in rows[:10]] == list(range(1, 11))
    ev = rows[1]
    assert ev["id"] == "evacuated_before_water" and ev["a"] is not None     # computed from people.parquet
    text = comparison.headline_summary(rows, "A", "B")
    assert text.startswith("Against A (A), B (B) is better on") and "of 10 headline KPIs" in text


def test_timeline_and_queue_on_local_clock_time(run_dir):
    from twin.dashboard import figures

    run = Run(run_dir)
    inc = pd.read_parquet(run_dir / "incidents.parquet").sort_values("call_s", kind="stable")
    fig = figures.incident_timeline_figure(run)
    calls = next(tr for tr in fig.data if tr.name == "call")
    want = pd.Timestamp("2020-10-28 00:00") + pd.to_timedelta(inc["call_s"].to_numpy(), unit="s")
    assert abs(pd.to_datetime(calls.x) - want).max() < pd.Timedelta("1ms")
    assert fig.layout.xaxis.title.text == "local time (Asia/Ho_Chi_Minh)"
    q = figures.queue_utilisation_figure(run)
    assert pd.Timestamp(q.data[0].x[0]) == pd.Timestamp("2020-10-28 00:00")


def test_replicate_sets_are_listed_and_confined(tmp_path):
    import json

    from twin.dashboard.runs import RunError

    root = tmp_path / "runs"
    (root / "rain-vs-levee").mkdir(parents=True)
    rows = [{"id": "flooded_area_max_m2", "label": "land flooded", "unit": "km²", "direction": "lower is better",
             "group": "decision", "headline": 10, "a_mean": 1.0, "b_mean": 0.8, "b_minus_a": -0.2, "lo": -0.3,
             "hi": -0.1, "n": 8, "verdict": "real", "direction_verdict": "better"}]
    (root / "rain-vs-levee" / "compare_replicates.json").write_text(json.dumps(
        {"scenario_a": "rain", "scenario_b": "levee", "replicates": 8, "level": 0.9, "decision_rows": rows}))
    (root / "no-rows").mkdir()
    (root / "no-rows" / "compare_replicates.json").write_text(json.dumps({"rows": []}))
    assert comparison.replicate_sets(root) == ["no-rows", "rain-vs-levee"]
    head, got = comparison.replicate_rows(root, "rain-vs-levee")
    assert head["replicates"] == 8 and got == rows
    with pytest.raises(RunError, match="no decision_rows"):
        comparison.replicate_rows(root, "no-rows")
    for bad in ("../runs/rain-vs-levee", str(root / "rain-vs-levee"), "missing", None):
        with pytest.raises(RunError, match="Unknown run"):
            comparison.replicate_rows(root, bad)


def test_compare_series_on_one_clock_when_the_runs_start_together(run_dir, tmp_path):
    from twin.dashboard import figures

    other = fx.write_run(tmp_path / "other", scale=1.0, seed=0)     # the same start (fields.nc time units)
    fig = figures.compare_series_figure(Run(other), Run(run_dir))
    assert fig.layout.xaxis4.title.text == "local time (Asia/Ho_Chi_Minh)"
    assert pd.Timestamp(fig.data[0].x[0]) == pd.Timestamp("2020-10-28 00:00")
