"""The scenario builder's drawing of what-ifs (twin.dashboard.drawing) and the form fixes of issue 15:
every decision kind from a drawing, the event that defaults to the base's own, the typhoon replay on
the Molave base, the warning lead outside the run, negative inputs, the upload/form precedence, the
run-list links, the YAML preview and the run-time estimate. No browser (test_browser.py draws)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from shapely.geometry import LineString, box

from twin.dashboard import drawing as dr
from twin.dashboard import scenario_form as sf
from twin.dashboard.app import create_app, run_from_search
from twin.dashboard.pages import builder
from twin.decisions import DECISION_TYPES, parse_decision

from . import fixture_run as fx

REPO = Path(__file__).resolve().parents[2]
MOLAVE = REPO / "scenarios" / "tamky_molave_2020.yaml"


# -- decision_from_drawing -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def city() -> dr.DrawingCity:
    """A 3 km square city in UTM 49N with places, three road links (0 and 1 the two directions of
    one street) and two wards."""
    x0, y0 = 224000.0, 1724000.0
    places = pd.DataFrame({"place_id": ["H1", "S1", "P1"], "name": ["Bệnh viện", "Trường học", "Trạm bơm"],
                           "kind": ["hospital", "school", "pumping_station"],
                           "x": [x0 + 500, x0 + 1500, x0 + 2500], "y": [y0 + 500, y0 + 1500, y0 + 2500],
                           "capacity": [300, 600, 0]})
    street = LineString([(x0 + 1000, y0 + 200), (x0 + 1000, y0 + 2800)])
    links = {0: street, 1: LineString(list(street.coords)[::-1]),
             2: LineString([(x0 + 200, y0 + 2000), (x0 + 2800, y0 + 2000)])}
    wards = {"Tây": box(x0, y0, x0 + 1500, y0 + 3000), "Đông": box(x0 + 1500, y0, x0 + 3000, y0 + 3000)}
    return dr.DrawingCity("test", "EPSG:32649", (x0, y0, x0 + 3000, y0 + 3000), places, links, wards)


def lonlat(city, pts):
    return dr.to_lonlat(pts, city.crs).tolist()


def feat(gtype, coords, **props):
    return {"type": "Feature", "properties": props, "geometry": {"type": gtype, "coordinates": coords}}


def test_every_decision_kind_is_reachable(city):
    """All 15 kinds of twin.decisions have a tool, and each one gives a decision the schema takes."""
    assert set(dr.KINDS) == set(DECISION_TYPES)
    x0, y0 = city.bounds[:2]
    line = feat("LineString", lonlat(city, [[x0 + 100, y0 + 100], [x0 + 2900, y0 + 2900]]))
    pt = feat("Point", lonlat(city, [[x0 + 2400, y0 + 2450]])[0])          # 71 m from P1
    area = feat("Polygon", [lonlat(city, [[x0 + 800, y0 + 100], [x0 + 1200, y0 + 100], [x0 + 1200, y0 + 600],
                                          [x0 + 800, y0 + 600], [x0 + 800, y0 + 100]])])
    cases = {"levee": (line, {"crest_m": 8}), "breach": (line, {"crest_start_m": 8, "crest_end_m": 2}),
             "pump": (pt, {"capacity_m3_per_s": 2.5}), "road_closure": (area, {"until_h": 2}),
             "contraflow": (area, {}), "road_reopen": (area, {}), "shelter_open": (pt, {"capacity": 400}),
             "shelter_close": (pt, {}), "evacuation_order": (area, {"channel": "loudspeaker"}),
             "warning": (None, {"channel": "tv", "at_h": 1}), "extra_units": (None, {"unit": "boat", "count": 3}),
             "dispatch": (pt, {"unit_id": 0}), "reservoir_release": (None, {"discharge_m3_per_s": 900}),
             "reservoir_gate": (None, {"spillway": 3, "opening_m": 4.0}), "hospital_closure": (pt, {"reason": "power"})}
    assert set(cases) == set(DECISION_TYPES)
    for kind, (f, params) in cases.items():
        d = dr.decision_from_drawing(f, kind, params, city)
        assert d["type"] == kind
        parse_decision(d)      # the decision schema takes it as it is


def test_levee_polyline_in_utm_with_its_crest(city):
    x0, y0 = city.bounds[:2]
    pts = [[x0 + 100.0, y0 + 200.0], [x0 + 1500.0, y0 + 1700.0], [x0 + 2900.0, y0 + 1800.0]]
    d = dr.decision_from_drawing(feat("LineString", lonlat(city, pts)), "levee", {"crest_m": 7.5, "at_h": 0.5,
                                                                                   "label": "đê"}, city)
    assert d == {"type": "levee", "polyline": pts, "crest_m": 7.5, "at": 1800.0, "label": "đê"}   # 0.1 m round trip


def test_map_in_city_metres_needs_no_transform(city):
    """The dashboard's Leaflet map is in the city's metres (Simple CRS): feature_crs=city.crs."""
    x0, y0 = city.bounds[:2]
    d = dr.decision_from_drawing(feat("Point", [x0 + 10.0, y0 + 20.0]), "pump", {"capacity_m3_per_s": 1}, city,
                                 feature_crs=city.crs)
    assert d["xy"] == [x0 + 10.0, y0 + 20.0]


def test_pump_at_a_point_or_a_place_with_capacity(city):
    x0, y0 = city.bounds[:2]
    d = dr.decision_from_drawing(feat("Point", lonlat(city, [[x0 + 700, y0 + 900]])[0]), "pump",
                                 {"capacity_m3_per_s": 3}, city)
    assert d["xy"] == pytest.approx([x0 + 700, y0 + 900], abs=0.11) and d["capacity_m3_per_s"] == 3
    d = dr.decision_from_drawing(feat("Point", [0, 0], place_id="P1"), "pump", {"capacity_m3_per_s": 3}, city)
    assert d == {"type": "pump", "place": "P1", "capacity_m3_per_s": 3}
    with pytest.raises(dr.DrawingError, match="capacity_m3_per_s"):
        dr.decision_from_drawing(feat("Point", [0, 0], place_id="P1"), "pump", {"capacity_m3_per_s": -1}, city)


def test_road_closure_by_click_area_or_point(city):
    x0, y0 = city.bounds[:2]
    click = feat("Point", lonlat(city, [[x0 + 1030, y0 + 1000]])[0], pick="link")
    assert dr.decision_from_drawing(click, "road_closure", {}, city)["links"] == [0, 1]   # both directions
    far = feat("Point", lonlat(city, [[x0 + 2500, y0 + 700]])[0], pick="link")
    with pytest.raises(dr.DrawingError, match="no road within 60 m"):
        dr.decision_from_drawing(far, "road_closure", {}, city)
    area = feat("Polygon", [lonlat(city, [[x0 + 100, y0 + 1900], [x0 + 600, y0 + 1900], [x0 + 600, y0 + 2100],
                                          [x0 + 100, y0 + 2100], [x0 + 100, y0 + 1900]])])
    assert dr.decision_from_drawing(area, "road_closure", {"until_h": 3}, city) == {
        "type": "road_closure", "links": [2], "until": 10800.0}
    marker = feat("Point", lonlat(city, [[x0 + 1000, y0 + 1000]])[0])
    d = dr.decision_from_drawing(marker, "road_closure", {"radius_m": 150}, city)
    assert d["near"] == pytest.approx([x0 + 1000, y0 + 1000], abs=0.11) and d["radius_m"] == 150


def test_shelter_by_clicking_a_place_takes_its_capacity(city):
    d = dr.decision_from_drawing(feat("Point", [0, 0], place_id="S1"), "shelter_open", {}, city)
    assert d == {"type": "shelter_open", "place": "S1", "capacity": 600}
    with pytest.raises(dr.DrawingError, match="no capacity"):
        dr.decision_from_drawing(feat("Point", [0, 0], place_id="P1"), "shelter_open", {}, city)
    x0, y0 = city.bounds[:2]
    with pytest.raises(dr.DrawingError, match="no place within 250 m"):
        dr.decision_from_drawing(feat("Point", lonlat(city, [[x0 + 2900, y0 + 100]])[0]), "shelter_close", {}, city)


def test_warning_area_names_the_wards(city):
    x0, y0 = city.bounds[:2]
    area = feat("Polygon", [lonlat(city, [[x0 + 100, y0 + 100], [x0 + 900, y0 + 100], [x0 + 900, y0 + 900],
                                          [x0 + 100, y0 + 100]])])
    assert dr.decision_from_drawing(area, "warning", {"channel": "tv"}, city)["area"] == ["Tây"]
    assert "area" not in dr.decision_from_drawing(None, "warning", {}, city)     # the whole city


def test_drawing_errors_name_the_problem(city):
    outside = feat("Point", [108.0, 10.0])
    with pytest.raises(dr.DrawingError, match="outside the map"):
        dr.decision_from_drawing(outside, "pump", {"capacity_m3_per_s": 1}, city)
    with pytest.raises(dr.DrawingError, match="unknown decision kind"):
        dr.decision_from_drawing(None, "sandbags", {}, city)
    with pytest.raises(dr.DrawingError, match="takes no geometry"):
        dr.decision_from_drawing(feat("Point", [108.5, 15.5]), "reservoir_release", {"discharge_m3_per_s": 1}, city)
    with pytest.raises(dr.DrawingError, match="lon -180..180"):
        dr.decision_from_drawing(feat("Point", [224000.0, 1724000.0]), "pump", {"capacity_m3_per_s": 1}, city)


def test_drawn_decisions_are_submitted_to_a_running_simulation():
    """What the exercise and live pages do with a drawing: Simulation.submit accepts the dict."""
    from twin.build import build_twin
    from twin.scenario import load_scenario
    from twin.simulation import Simulation

    c = dr.DrawingCity.from_city(fx.engine_city())
    x0, y0, x1, y1 = c.bounds
    levee = dr.decision_from_drawing(feat("LineString", [[x0 + 300, y0 + 900], [x1 - 300, y0 + 900]]), "levee",
                                     {"crest_m": 9}, c, feature_crs=c.crs)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "s.yaml"
        p.write_text(fx.ENGINE_SCENARIO.format(name="s", description="d", rp=10, duration="10min", seed=1)
                     .replace("traffic: {background_trips_per_day: 9600}\n", ""), encoding="utf-8")
        sc = load_scenario(p)
        sim = Simulation(build_twin(sc, city=fx.engine_city()), stop_time=sc.duration)
        sim.submit(levee, at=120, source="dashboard", issuer="planner")
        sim.run(progress=False)
        log = sim.twin.decisions.frame()
    row = log[log["type"] == "levee"].iloc[0]
    assert row["outcome"] == "applied" and "raised to 9 m" in row["message"]


# -- the form fixes (issue 15: each failed before) --------------------------------------------------
FORM = {"name": "what-if", "duration_h": 2, "interventions": [], "base_interventions": [0, 1]}


@pytest.fixture(scope="module")
def molave():
    base, _ = sf.load_base(MOLAVE)
    return base


def test_event_defaults_to_the_base_scenarios_own(molave):
    """Before: the form's default event (a design storm) replaced Molave's rain silently."""
    r = sf.build_from_form(dict(FORM), molave)
    assert r.data["flood"]["rain"] == molave["flood"]["rain"] and r.data["start"] == molave["start"]
    assert sf.EVENTS[0]["value"] == "base"
    assert "typhoon MOLAVE 2020 replay" in sf.describe_event(molave)


def test_typhoon_replay_on_the_molave_base_validates(molave, tmp_path):
    """Before: 'interventions.0.at: ... got -25200.0': the replay moved the start to 12:00 (closest
    approach 13:00 minus half of a 2 h run), so the base's 05:00 warning fell 7 h (25,200 s) before it."""
    form = dict(FORM, event="typhoon", track="WP212020")
    r = sf.build_from_form(form, molave)
    assert r.data["start"] == "2020-10-28T02:00" and r.errors == {}
    assert any("closest approach" in n and "after this run ends" in n for n in r.notes)   # said, not silent
    assert "'official typhoon warning' (28 Oct 05:00) is after this run ends (28 Oct 04:00): it will not act." in r.notes
    sc, fe, ge = sf.validate(r.data, tmp_path, r.keys)
    assert (fe, ge) == ({}, []) and sc.flood.rain.storm == "MOLAVE"


def test_another_storm_moves_the_start_and_names_base_items_before_it(molave):
    r = sf.build_from_form(dict(FORM, event="typhoon", track="WP212020", start=""), {**molave, "flood": {
        **molave["flood"], "rain": {"kind": "design_storm", "return_period_years": 10}}})
    assert r.data["start"] == "2020-10-28T12:00"
    msg = r.errors["b-base-interventions"]
    assert "interventions.0.at: 'official typhoon warning'" in msg and "7 h before this run starts" in msg


def test_warning_lead_longer_than_the_run_is_an_error_not_clamped(molave):
    """Before: a 48 h lead on a 2 h run gave a warning at t = 0 without a word."""
    base = {**molave, "flood": {**molave["flood"], "rain": {"kind": "design_storm", "return_period_years": 10,
                                                           "duration": "2h"}}}
    r = sf.build_from_form(dict(FORM, interventions=["warning"], warning_lead_h=48), base)
    assert "A 48 h lead puts the warning 47 h before the run starts" in r.errors["b-warning-lead"]
    assert "at most 1.0 h" in r.errors["b-warning-lead"]
    ok = sf.build_from_form(dict(FORM, interventions=["warning"], warning_lead_h=0.5), base)
    assert ok.errors == {} and ok.data["interventions"][-1]["at"] == 1800.0
    assert any("28 Oct 02:30" in n for n in ok.notes)        # the warning's clock time is stated


@pytest.mark.parametrize("key,fid", [("duration_h", "b-duration"), ("warning_lead_h", "b-warning-lead"),
                                     ("ambulances", "b-ambulances"), ("boats", "b-boats"), ("seed", "b-seed")])
def test_negative_inputs_are_reported_as_negative(key, fid):
    """Before: the number inputs had min=0, so the browser sent None and the page said 'Required'."""
    form = dict(FORM, interventions=["warning", "ambulances", "boats"], warning_lead_h=1, ambulances=1, boats=1)
    form[key] = -3
    err = sf.form_errors(form)[fid]
    assert "negative" in err and "-3" in err and "Required" not in err


def test_number_inputs_let_negative_values_through(ctx):
    """The browser nulls a number outside the input's min: the builder's inputs carry none."""
    def walk(c):
        yield c
        kids = getattr(c, "children", None)
        for k in kids if isinstance(kids, (list, tuple)) else [kids] if kids is not None else []:
            if hasattr(k, "to_plotly_json"):
                yield from walk(k)

    numbers = [c for c in walk(builder.layout(ctx)) if getattr(c, "type", None) == "number"]
    assert len(numbers) >= 6 and all(getattr(c, "min", None) is None for c in numbers)
    by_id = {c.id: c for c in walk(builder.layout(ctx)) if isinstance(getattr(c, "id", None), str)}
    assert by_id["b-event"].value == "base"                 # the base's own event ...
    assert by_id["b-duration"].value == 1.0                 # ... and its duration (fixture_base: 1 h)


# -- the page's logic -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def app(runs_dir, scenarios_dir):
    return create_app(runs_dir, city_loader=fx.fixture_city_loader, scenarios_dir=scenarios_dir)


@pytest.fixture(scope="module")
def ctx(app):
    return app._twin_ctx


PAGE_FORM = dict(base="fixture_base", name="vẽ thử", duration_h=1, event="base", interventions=[],
                 base_interventions=[], start="", drawn_items=[])


def test_a_valid_upload_does_not_override_the_edited_form(ctx):
    """Before: once a valid file was uploaded, Run kept starting it whatever the form said."""
    uploaded = {"name": "up.yaml", "data": {"name": "uploaded_one"}}
    data, fe, ge = builder.check(ctx, PAGE_FORM, uploaded, "upload")               # the upload is used ...
    assert data is None and any("start" in m for m in list(fe.values()) + ge)       # ... and it lacks a start
    data, fe, ge = builder.check(ctx, PAGE_FORM, uploaded, "form")
    assert (fe, ge) == ({}, []) and data["name"] == "ve_thu"                       # the form is used
    opts, value, note = builder.source_after("b-uploaded", "form", "up.yaml")
    assert value == "upload" and not opts[1]["disabled"]
    opts, value, note = builder.source_after("b-name", "upload", "up.yaml")
    assert value == "form" and "You edited the form" in note


def test_run_links_point_to_each_run(ctx, runs_dir):
    """Before: every entry of the run list linked to '/'."""
    items = builder.run_list_items(ctx)
    hrefs = {li.__getattribute__("data-run"): li.children[0].href for li in items}
    assert hrefs["fixture-a"] == "/?run=fixture-a" and len(set(hrefs.values())) == len(hrefs)
    assert run_from_search(runs_dir, "?run=fixture-a") == "fixture-a"
    assert run_from_search(runs_dir, "?run=../etc") is None      # ids from the list only


def test_drawing_on_the_page_previews_yaml_that_validates(ctx, tmp_path):
    base = builder.load_base(ctx, "fixture_base")
    c = builder.map_city(ctx, base)[0]
    x0, y0, x1, y1 = c.bounds
    items: list = []
    for event, kind, params in [
        (("draw", feat("LineString", [[x0 + 300, y0 + 900], [x1 - 300, y0 + 1000]])), "levee", {"crest_m": 6}),
        (("draw", feat("Point", [x0 + 600, y0 + 600])), "pump", {"capacity_m3_per_s": 3}),
        (("click", feat("Point", [x0 + 1200, y1 - 160], pick="link")), "road_closure", {}),
        (("click", feat("Point", [x0 + 1200, y1 - 160], pick="link")), "levee", {"crest_m": 6}),   # ignored
    ]:
        items, msg = builder.apply_draw_event(event, items, kind, "click", params, c)
    assert [it["kind"] for it in items] == ["levee", "pump", "road_closure"]
    again = feat("Point", [x0 + 600, y0 + 600], _leaflet_id=77)
    once, _ = builder.apply_draw_event(("draw", again), items, "pump", "click", {"capacity_m3_per_s": 1}, c)
    twice, msg = builder.apply_draw_event(("draw", again), once, "pump", "click", {"capacity_m3_per_s": 1}, c)
    assert len(once) == 4 and twice == once and msg is None    # the control reports a drawing again: added once
    text, notes, est = builder.preview(ctx, dict(PAGE_FORM, drawn_items=items), None, "form")
    assert "type: levee" in text and "crest_m: 6" in text and "capacity_m3_per_s: 3" in text
    import yaml

    data = yaml.safe_load(text)
    sc, fe, ge = sf.validate(data, tmp_path)
    assert (fe, ge) == ({}, []) and [iv.type for iv in sc.interventions] == ["levee", "pump", "road_closure"]
    assert "Estimated run time" in str(est.children[0].children)
    items, _ = builder.apply_draw_event(("remove", {"index": 2}), items, "levee", "click", {}, c)
    assert [it["kind"] for it in items] == ["levee", "road_closure"]


def test_a_decision_the_scenario_cannot_take_is_an_error_before_run(ctx):
    """shelter_open needs people or services: the fixture base has neither; said before the build."""
    data, fe, ge = builder.check(ctx, dict(PAGE_FORM, drawn_items=[
        {"decision": {"type": "shelter_open", "place": "S1", "capacity": 100}}]), None, "form")
    assert data is None and "needs the people or services section" in fe["b-drawn"]


def test_run_time_estimate_range_and_assumption():
    est = sf.estimate_run_time({"resolution_m": 100, "duration": "18h", "people": {}}, (0, 0, 26100, 25800), 35000)
    assert 30 < est["low_s"] < est["high_s"] < 600          # Molave at 100 m: "a few minutes" (README)
    assert "67,338 cells" in est["assumption"] and "35,000 households" in est["assumption"]
    small = sf.estimate_run_time({"resolution_m": 30, "duration": "1h"}, (0, 0, 2400, 1800), None)
    assert small["high_s"] < est["low_s"]
    assert sf.estimate_run_time({"resolution_m": 30, "duration": "1h"}, None, None) is None
    assert np.isfinite(small["low_s"])


def test_changing_the_base_keeps_only_decisions_drawn_on_its_city(ctx):
    items = [{"key": 1, "city": "tamky", "decision": {"type": "pump", "xy": [0, 0], "capacity_m3_per_s": 1}},
             {"key": 2, "city": "fixture", "decision": {"type": "pump", "xy": [0, 0], "capacity_m3_per_s": 1}}]
    out = builder.base_changed(ctx, "fixture_base")
    assert out[0] == 1.0 and "design storm 10-year" in out[1]           # the base's duration and event
    layers, view, msg, kept = builder.base_map(ctx, "fixture_base", items)
    assert layers and msg is None and [it["key"] for it in kept] == [2]


def test_a_malformed_drawing_gives_a_message_not_an_error(ctx):
    c = builder.map_city(ctx, builder.load_base(ctx, "fixture_base"))[0]
    bad = {"type": "Feature", "properties": {"_mRadius": "wide"}, "geometry": {"type": "Point", "coordinates": ["a", 1]}}
    items, msg = builder.apply_draw_event(("draw", bad), [], "road_closure", "draw", {}, c)
    assert items == [] and "road_closure" in str(msg.children)
    items, msg = builder.apply_draw_event(("add", None), [], "levee", "click", {}, c)
    assert items == [] and "needs a geometry" in str(msg.children)
