"""The KPI catalog (twin.output.kpi_catalog): headline order, units, directions, verdicts; the
evacuated-before-water KPI; twin compare's warnings for runs that are not like for like."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from twin.output import kpi_catalog as kc
from twin.output.kpis import evacuated_before_water

# the shape recorders.compute_kpis writes (sections of every component)
KP = {
    "scenario": "x", "start_local": "2020-10-28T02:00:00+07:00", "end_time_s": 7200.0,
    "series_t_s": [0.0, 3600.0], "flooded_area_m2": [{}, {}],
    "flooded_area_final_m2": {"0.1-0.3m": 2e5, "0.3-0.5m": 1e5}, "flooded_area_max_m2": 7.3e5,
    "land_area_m2": 4.8e8,
    "volume_balance": {"volume_m3": 3e8, "relative_error": 1e-6},
    "max_depth_at_places": [
        {"place_id": "0", "name": "BV 1", "kind": "hospital", "max_depth_m": 0.25},
        {"place_id": "1", "name": "BV 2", "kind": "hospital", "max_depth_m": 0.05},
        {"place_id": "4", "name": "Trường 1", "kind": "school", "max_depth_m": 0.4}],
    "direct_damage": {"method": "JRC", "min_depth_m": 0.1, "by_class": {"agriculture": {
        "damage_equivalent_area_m2": 1e4, "damage_usd": 6e3, "flooded_area_m2": 6.5e5}}, "total_usd": 2.8e5,
        "max_damage_usd_per_m2_assumed": {"agriculture": 0.6}},
    "people_exposure_person_hours": {"low": 10.0, "moderate": 5.0, "significant": 3.0, "extreme": 1.5},
    "evacuation_clearance_s": {"p50": 4800.0, "p90": 10800.0, "p95": None},
    "evacuated_before_water": {"persons": 700.0, "after_water_persons": 9.0, "met_water_never_safe_persons": 8.0},
    "people_model": {"t_s": 7200.0, "sample_fraction": 1.0, "persons": 1000, "persons_warned": 800,
                     "persons_by_state": {"home": 300}, "shelter_capacity": [10, 20]},
    "ambulance_response_s": {"n_incidents": 109, "n_medical": 109, "median_s": 451.0, "p90_s": 983.0,
                             "unreached": 78, "unreached_by_kind": {"medical": 78}},
    "services_model": {"t_s": 7200.0, "incidents": 109, "medical_response_p90_s": 983.0, "waiting": 77},
    "road_links_closed_share_max": 0.125,
    "travel_time_index": {"completed_trips": 39, "index": 1.2},
}


def test_headline_kpis_come_first_in_order_with_units_and_directions():
    vals = kc.catalog_values(KP)
    head = [(m, v) for m, v in vals if m.headline]
    assert [m.headline for m, _ in head] == list(range(1, 11)) == [m.headline for m, _ in vals[:10]]
    assert all(m.unit and m.better in ("lower", "higher") and m.group == "decision" for m, _ in head)
    got = {m.id: v for m, v in head}
    assert got["people_hours_significant_plus"] == 4.5                      # significant + extreme
    assert got["evacuated_before_water"] == 700.0
    assert got["ambulance_response_s/p90_s"] == pytest.approx(983.0 / 60)   # min, not s
    assert got["ambulance_response_s/unreached"] == 78
    assert got["road_links_closed_share_max"] == pytest.approx(12.5)        # %
    assert got["direct_damage/total_usd"] == pytest.approx(0.28)            # M USD
    assert got["hospitals_flooded"] == 1 and got["shelters_flooded"] == 1   # ≥ 0.1 m
    assert got["evacuation_clearance_s/p90"] == 180.0
    assert got["flooded_area_max_m2"] == pytest.approx(0.73)
    by_id = {m.id: m for m, _ in head}
    assert by_id["evacuated_before_water"].direction == "higher is better"
    assert by_id["hospitals_flooded"].direction == "lower is better"
    groups = [m.group for m, _ in vals[10:]]
    assert groups == sorted(groups, key=kc.GROUPS.index)                    # decision, context, diagnostic


def test_units_are_the_keys_own_not_their_sections():
    """Regression: "n incidents" showed in s (the unit of its section ambulance_response_s)."""
    m = kc.meta_for("ambulance_response_s/n_incidents")
    assert m.unit == "incidents" and m.group == "context"
    assert kc.meta_for("ambulance_response_s/median_s").unit == "min"
    assert kc.meta_for("volume_balance/relative_error").group == "diagnostic"
    assert kc.meta_for("direct_damage/by_class/agriculture/flooded_area_m2").label == "agriculture land flooded ≥ 0.1 m"
    unknown = kc.meta_for("new_section/n_things")
    assert unknown.unit == "" and unknown.group == "diagnostic"             # never the section's "s"
    assert kc.meta_for("new_section_s/wait_s").unit == "s"


def test_every_scalar_of_a_run_is_in_the_catalog():
    unknown = [p for p in kc.leaves(KP) if kc.meta_for(p).id == p and kc.meta_for(p).label == p.replace("/", " › ").replace("_", " ")]
    assert unknown == []


def test_verdicts_follow_the_direction():
    lower = kc.HEADLINE[0]
    higher = next(m for m in kc.HEADLINE if m.better == "higher")
    assert kc.verdict(lower, 5.0, 3.0) == "better" and kc.verdict(lower, 3.0, 5.0) == "worse"
    assert kc.verdict(higher, 5.0, 3.0) == "worse" and kc.verdict(higher, 3.0, 5.0) == "better"
    assert kc.verdict(lower, 3.0, 3.0) == "same" and kc.verdict(lower, None, 3.0) == "n/a"
    b = json.loads(json.dumps(KP))
    b["people_exposure_person_hours"]["extreme"] = 0.0
    b["evacuated_before_water"]["persons"] = 650.0
    rows = kc.compare_rows(KP, b)
    assert [r["headline"] for r in rows[:10]] == list(range(1, 11))
    r = {x["id"]: x for x in rows}
    assert r["people_hours_significant_plus"]["verdict"] == "better" and r["people_hours_significant_plus"]["diff"] == -1.5
    assert r["evacuated_before_water"]["verdict"] == "worse"
    assert r["travel_time_index/index"]["verdict"] == "same"


def test_evacuated_before_water_from_people_records():
    # agent 0: safe at t=600, never wet -> before; agent 1: wet at 600, safe at 1200 -> after;
    # agent 2: wet, never safe; agent 3: safe and wet in the same record -> before (it was safe then)
    rows = [(0, 0, "walking", 0.0), (0, 600, "sheltered", 0.0), (1, 0, "home", 0.0), (1, 600, "walking", 0.3),
            (1, 1200, "sheltered", 0.0), (2, 0, "home", 0.2), (2, 600, "home", 0.5), (3, 600, "evacuated", 0.2)]
    people = pd.DataFrame(rows, columns=["agent_id", "t_s", "state", "depth_m"]).assign(
        persons=lambda d: d["agent_id"].map({0: 4.0, 1: 3.0, 2: 2.0, 3: 5.0}))
    got = evacuated_before_water(people)
    assert got == {"persons": 9.0, "after_water_persons": 3.0, "met_water_never_safe_persons": 2.0}


def _run(folder, *, duration_s, start, shape=(4, 5), dx=30.0):
    import rasterio
    from rasterio.transform import from_origin

    folder.mkdir(parents=True)
    (folder / "kpis.json").write_text(json.dumps({"start_local": start, "end_time_s": duration_s}))
    (folder / "scenario.yaml").write_text(f"name: {folder.name}\ncity: fixture\nduration: {duration_s}\n")
    with rasterio.open(folder / "max_depth.tif", "w", driver="GTiff", height=shape[0], width=shape[1], count=1,
                       dtype="float32", crs="EPSG:32649", transform=from_origin(224000, 1727000, dx, dx)) as dst:
        dst.write(np.zeros(shape, np.float32), 1)
    return folder


def test_compare_warns_when_runs_differ_in_grid_duration_or_start(tmp_path):
    from twin.workflows.compare import compare_runs, run_differences

    a = _run(tmp_path / "a", duration_s=7200, start="2020-10-28T02:00:00+07:00")
    same = _run(tmp_path / "same", duration_s=7200, start="2020-10-28T02:00:00+07:00")
    b = _run(tmp_path / "b", duration_s=3600, start="2020-10-28T05:00:00+07:00", shape=(2, 3), dx=60.0)
    assert run_differences(a, same) == []
    w = run_differences(a, b)
    assert len(w) == 3
    assert w[0].startswith("different grids: A is 5 × 4 cells of 30 m") and "B 3 × 2 cells of 60 m" in w[0]
    assert w[1].startswith("different durations: A 2 h, B 1 h")
    assert w[2].startswith("different start times: A 2020-10-28T02:00:00+07:00, B 2020-10-28T05:00:00+07:00")
    res = compare_runs(a, b)
    assert res["warnings"] == w and res["map_note"] == "grids differ: no difference map"
    assert [r["headline"] for r in res["decision_rows"][:10]] == list(range(1, 11))
