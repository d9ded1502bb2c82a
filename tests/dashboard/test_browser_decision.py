"""Compare and Emergency debrief in headless Chromium (Playwright): headline KPIs first with verdicts in
words and colour, the warning for runs that are not like for like, the difference map on the basemap;
the incident log linked to the map, the Gantt chart, shelters by the right places. Screenshots at 1600
and 800 px wide go to tests/artifacts/."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from twin.dashboard.app import create_app
from twin.output.schema import validate_frame

from . import fixture_run as fx
from .helpers import Server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("decision_runs")
    fx.write_run(root / "fixture-a", scale=1.0, seed=0, name="Phương án A", city="fixture")
    fx.write_run(root / "fixture-b", scale=1.5, seed=1, name="Phương án B", city="fixture")
    fx.write_run(root / "fixture-short", scale=1.2, seed=2, n_times=7, name="Ngắn hơn", city="fixture")
    deb = fx.write_run(root / "debrief", scale=1.5, seed=1, name="Debrief", city="fixture")
    p = fx.places().set_index("place_id")
    # the people model's order: shelter 0 is S2, shelter 1 is S1 (not the places table's order)
    validate_frame("shelters", pd.DataFrame({
        "shelter": [0, 1], "place_id": ["S2", "S1"], "name": [p.at["S2", "name"], p.at["S1", "name"]],
        "kind": ["shelter", "shelter"], "x": [p.at["S2", "x"], p.at["S1", "x"]], "y": [p.at["S2", "y"], p.at["S1", "y"]],
        "capacity": [50.0, 500.0]})).to_parquet(deb / "shelters.parquet", index=False)
    rep = root / "levee-replicates"            # what twin compare --replicates 8 --out writes, in short
    rep.mkdir()
    (rep / "compare_replicates.json").write_text(json.dumps({
        "scenario_a": "rain", "scenario_b": "levee", "replicates": 8, "level": 0.9, "decision_rows": [
            {"id": "flooded_area_max_m2", "label": "land flooded ≥ 0.1 m, largest extent", "unit": "km²",
             "direction": "lower is better", "group": "decision", "headline": 10, "a_mean": 1.2, "b_mean": 0.9,
             "b_minus_a": -0.3, "lo": -0.4, "hi": -0.2, "n": 8, "verdict": "real", "direction_verdict": "better"},
            {"id": "ambulance_response_s/p90_s", "label": "ambulance response time, 90th percentile", "unit": "min",
             "direction": "lower is better", "group": "decision", "headline": 3, "a_mean": 20.0, "b_mean": 20.5,
             "b_minus_a": 0.5, "lo": -1.0, "hi": 2.0, "n": 8, "verdict": "noise", "direction_verdict": "noise"}]}))
    app = create_app(root, city_loader=fx.fixture_city_loader)
    with Server(app) as srv:
        yield srv


def _choose(page, dropdown_id, text):
    page.click(f"#{dropdown_id}")
    page.get_by_role("option", name=text).or_(page.get_by_text(text, exact=True)).first.click()


def _shots(page, artifacts_dir, name):
    for width in (1600, 800):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(400)
        page.screenshot(path=str(artifacts_dir / f"dashboard_{name}_{width}.png"), full_page=True)


def test_compare_headline_verdicts_and_warning(server, page, artifacts_dir):
    page.set_default_timeout(90000)   # a loaded 2-core machine: the first answer can take 20-30 s
    page.goto(server.url + "/compare")
    page.wait_for_selector("#cmp-headline-table")
    _choose(page, "cmp-a", "fixture-a — Phương án A")
    _choose(page, "cmp-b", "fixture-b — Phương án B")
    page.wait_for_function("() => document.querySelector('#cmp-headline-table').innerText.includes('B: Phương án B')"
                           " && document.querySelector('#cmp-headline-table').innerText.includes('A: Phương án A')")
    rows = page.locator("#cmp-headline-table tbody tr")
    assert rows.count() == 10
    assert rows.nth(0).locator("th").inner_text() == "people-hours at significant or extreme hazard"
    assert rows.nth(1).inner_text().startswith("persons who reached safety before meeting water\tpersons\thigher")
    # verdicts: in words and in colour (blue better, orange worse), never colour alone
    cells = page.locator("#cmp-headline-table td.verdict, #cmp-kpi-table-decision td.verdict")
    verdicts = {cells.nth(i).get_attribute("data-verdict") for i in range(cells.count())}
    assert {"better", "worse"} <= verdicts
    better = page.locator("td.verdict-better").first
    worse = page.locator("td.verdict-worse").first
    assert re.search(r"[▲▼] better", better.text_content()) and re.search(r"[▲▼] worse", worse.text_content())
    bg = [c.evaluate("e => getComputedStyle(e).backgroundColor") for c in (better, worse)]
    assert bg[0] != bg[1] and "rgba(0, 0, 0, 0)" not in bg
    assert page.locator("#cmp-warning").count() == 0                   # same grid, duration and start
    assert "of 10 headline KPIs" in page.inner_text("#cmp-summary")
    # all KPIs behind a disclosure, diagnostics apart from decision KPIs
    page.click("#cmp-all-summary")
    page.wait_for_selector("#cmp-kpi-table-diagnostic", state="visible")
    assert "damage usd" in page.inner_text("#cmp-kpi-table-diagnostic")
    # the difference map on the offline basemap, its legend and its summary in words
    page.wait_for_selector("#cmp-diff .leaflet-container img.twin-raster", state="attached")
    assert "fixed scale" in page.inner_text("#cmp-diff-legend")
    assert "B is deeper by 5 cm or more" in page.inner_text("#cmp-diff-summary")
    # replicate comparisons in the runs folder: each difference with its interval
    rep = page.wait_for_selector("#cmp-rep-table-t")
    assert "[-0.4, -0.2]" in rep.inner_text()
    assert "seed noise" in rep.inner_text() and page.locator("#cmp-rep-table-t td.verdict-better").count() == 1
    _shots(page, artifacts_dir, "compare")
    # a run of a different duration: a warning, in words, as an alert
    page.set_viewport_size({"width": 1366, "height": 768})
    _choose(page, "cmp-b", "fixture-short — Ngắn hơn")
    warn = page.wait_for_selector("#cmp-warning[role=alert]")
    assert "different durations: A 6 h, B 3 h" in warn.inner_text()
    page.screenshot(path=str(artifacts_dir / "dashboard_compare_warning.png"), full_page=True)
    assert page.console_errors == [], page.console_errors


def test_emergency_debrief_log_map_gantt_shelters(server, page, artifacts_dir):
    page.set_default_timeout(90000)
    page.goto(server.url + "/emergency")
    page.wait_for_selector("#em-summary > *")
    _choose(page, "em-run", "debrief — Debrief")
    page.wait_for_function("() => (document.querySelector('#em-log-summary')?.innerText || '').startsWith('12 incidents')")
    inc = pd.read_parquet(server.app._twin_ctx.runs_dir / "debrief" / "incidents.parquet").sort_values("call_s")
    page.wait_for_selector("#em-log-table")
    call = page.locator("#em-log-table tbody tr").first.locator("td[data-col=call]").inner_text()
    t0 = pd.Timestamp("2020-10-28 00:00") + pd.to_timedelta(float(inc["call_s"].iloc[0]), unit="s")
    assert call == t0.strftime("%H:%M:%S")                  # local clock time, not hours since start
    unreached = page.locator("#em-log-table tbody tr.unreached")
    assert unreached.count() == int(inc["arrive_scene_s"].isna().sum())
    assert "not reached" in unreached.first.inner_text()
    # a row chosen (keyboard: Tab to its button, Enter): the incident is ringed on the map and named
    page.wait_for_selector("#em-map-wrap .leaflet-container")
    page.locator("#em-log-table tbody tr").first.locator("button").focus()
    page.keyboard.press("Enter")
    page.wait_for_function("() => (document.querySelector('#em-map-caption')?.innerText || '').startsWith('Incident #')")
    assert f"Incident #{int(inc['incident_id'].iloc[0])}" in page.inner_text("#em-map-caption")
    ring = page.wait_for_selector("#em-map-wrap .leaflet-tooltip")          # the ring's permanent label
    assert ring.inner_text() == f"incident #{int(inc['incident_id'].iloc[0])}"
    # units as a Gantt chart, shelters by the model's order with capacity
    page.wait_for_function("() => { const g = document.querySelector('#em-gantt .js-plotly-plot'); return g && g.data && g.data.length; }")
    assert "units worked on" in page.inner_text("#em-gantt-summary")
    page.wait_for_function("() => { const g = document.querySelector('#em-shelters .js-plotly-plot'); return g && g.data && g.data.length == 2; }")
    labels = page.evaluate("() => Array.from(document.querySelector('#em-shelters .js-plotly-plot').data[0].y)")
    assert "Nhà văn hóa Hòa Thuận (shelter)" in labels
    table = page.inner_text("#em-shelter-table-t")
    assert "Nhà văn hóa Hòa Thuận" in table and "yes: over capacity" in table   # capacity 50 here
    assert "Over capacity:" in page.inner_text("#em-shelter-summary")
    _shots(page, artifacts_dir, "emergency")
    assert page.console_errors == [], page.console_errors
