"""End to end in headless Chromium (Playwright, /usr/bin/chromium): every page loads without console
errors, the time slider changes the map, compare shows both runs' KPIs, a corrupt run gives a message;
screenshots of each page go to tests/artifacts/."""
from __future__ import annotations

import json

import pytest

from twin.dashboard.app import create_app

from . import fixture_run as fx
from .helpers import ENGINE_RUNNER, Server, png_pixels

PAGES = [("/", "map"), ("/builder", "builder"), ("/compare", "compare"), ("/sensors", "sensors"), ("/emergency", "emergency")]


@pytest.fixture(scope="module")
def server(runs_dir, scenarios_dir, tmp_path_factory):
    import numpy as np

    from twin.sensors.model import Datastream, Station
    from twin.sensors.store import SensorStore

    db = tmp_path_factory.mktemp("store") / "sensors.duckdb"
    p = fx.places().set_index("place_id").loc["G1"]
    store = SensorStore(db)   # the project's store (twin.sensors), schema as the ingester writes it
    store.register(stations=[Station("G1", name="Trạm thủy văn Tam Kỳ", x=float(p.x), y=float(p.y))],
                   datastreams=[Datastream("G1-stage", "G1", "river_stage", unit="m", name="Mực nước sông Tam Kỳ")])
    t = np.datetime64("2020-10-27T17:00") + np.arange(13) * np.timedelta64(30, "m")   # UTC = 00:00 local
    level = 1.0 + 0.2 * np.arange(13)
    level[7] = 25.0  # a spike for QC to flag
    store.insert("G1-stage", t, level)
    store.run_qc()
    store.close()
    app = create_app(runs_dir, store=db, city_loader=fx.fixture_city_loader, live_refresh_ms=2000,
                     scenarios_dir=scenarios_dir, runner=ENGINE_RUNNER)
    with Server(app) as srv:
        yield srv


def _wait_graph(page, gid):
    page.wait_for_function(f"() => {{ const g = document.querySelector('#{gid} .js-plotly-plot'); return g && g.data && g.data.length > 0; }}",
                           timeout=30000)


def test_every_page_loads_without_console_errors(server, page, artifacts_dir):
    for path, name in PAGES:
        page.goto(server.url + path)
        page.wait_for_selector("nav .brand")
        if name == "map":
            _wait_map(page)
        elif name == "compare":
            page.wait_for_selector("#cmp-headline-table")
            _wait_graph(page, "cmp-series")
        elif name == "emergency":
            page.wait_for_selector("#em-summary > *")
            page.wait_for_function("() => { const g = document.querySelector('#em-timeline .js-plotly-plot'); return g && g._fullLayout; }")
        elif name == "sensors":
            page.wait_for_selector("#sen-station-table")
        elif name == "builder":
            page.wait_for_selector("#b-runs li")
        page.wait_for_load_state("networkidle")
        assert "Tam Kỳ Twin" in page.title()
        assert "Traceback" not in page.content()
        page.screenshot(path=str(artifacts_dir / f"dashboard_{name}.png"), full_page=True)
        assert page.console_errors == [], (path, page.console_errors)


def _wait_map(page):
    page.wait_for_selector("img.twin-depth", state="attached", timeout=60000)
    page.wait_for_selector(".place-marker", timeout=30000)


def test_scrubbing_the_time_slider_changes_the_map(server, page, artifacts_dir, runs_dir):
    page.goto(server.url + "/")
    _wait_map(page)
    _choose(page, "map-run", "fixture-a — Mưa thiết kế 10 năm")
    page.wait_for_function("() => document.querySelector('#map-info .run-id').innerText.startsWith('Run fixture-a:')")
    page.wait_for_load_state("networkidle")
    src0 = page.get_attribute("img.twin-depth", "src")
    shot0 = page.locator("#map-map").screenshot()
    page.focus("#map-time [role=slider]")
    for _ in range(6):                      # scrub to mid-run (frame 6 of 12) with the keyboard
        page.keyboard.press("ArrowRight")
    page.wait_for_function("() => document.querySelector('#map-time-label').innerText === '03:00 28/10/2020 (UTC+7)'",
                           timeout=30000)
    wet0 = int((png_pixels(src0)[..., 3] > 0).sum())
    wet6 = int((png_pixels(page.get_attribute("img.twin-depth", "src"))[..., 3] > 0).sum())
    assert wet6 > wet0   # the river has risen above its normal level by then
    page.wait_for_timeout(300)
    assert page.locator("#map-map").screenshot() != shot0
    page.screenshot(path=str(artifacts_dir / "dashboard_map_scrubbed.png"), full_page=True)
    # play advances the slider by itself
    page.click("#map-play")
    before = page.inner_text("#map-time-label")
    page.wait_for_function(f"() => document.querySelector('#map-time-label').innerText !== {json.dumps(before)}", timeout=30000)
    page.click("#map-play")
    assert page.console_errors == []


def test_compare_shows_both_runs_kpis(server, page, runs_dir, artifacts_dir):
    page.goto(server.url + "/compare")
    page.wait_for_selector("#cmp-headline-table")
    _choose(page, "cmp-a", "fixture-a — Mưa thiết kế 10 năm")
    _choose(page, "cmp-b", "fixture-b — Bão Molave — đê tạm")
    page.wait_for_function("() => document.querySelector('#cmp-headline-table').innerText.includes('A: Mưa thiết kế 10 năm')"
                           " && document.querySelector('#cmp-headline-table').innerText.includes('B: Bão Molave')")
    # keys of kpis.json the KPI catalog does not know are diagnostics, behind "All KPIs"
    text = page.text_content("#cmp-kpi-table-diagnostic")
    ka = json.loads((runs_dir / "fixture-a" / "kpis.json").read_text())
    kb = json.loads((runs_dir / "fixture-b" / "kpis.json").read_text())
    assert "damage usd" in text
    for v in (ka["damage_usd"], kb["damage_usd"]):
        assert f"{v:,.0f}" in text
    assert "▲" in text or "▼" in text
    page.wait_for_selector("#cmp-diff .leaflet-container img.twin-raster", state="attached")
    # two runs of the real engine: the largest flooded extent is a headline KPI, in km², lower is better
    _choose(page, "cmp-a", "engine-rp10 — rp10: Mưa thiết kế 10 năm (động cơ thật)")
    _choose(page, "cmp-b", "engine-rp100 — rp100: Mưa thiết kế 100 năm (động cơ thật)")
    page.wait_for_function("() => document.querySelector('#cmp-headline-table').innerText.includes('A: rp10')"
                           " && document.querySelector('#cmp-headline-table').innerText.includes('B: rp100')")
    text = page.inner_text("#cmp-headline-table")
    ka = json.loads((runs_dir / "engine-rp10" / "kpis.json").read_text())
    kb = json.loads((runs_dir / "engine-rp100" / "kpis.json").read_text())
    row = next(line for line in text.splitlines() if line.startswith("land flooded ≥ 0.1 m, largest extent"))
    from twin.dashboard.figures import fmt_num

    assert f"{fmt_num(ka['flooded_area_max_m2'] / 1e6)}" in row and f"{fmt_num(kb['flooded_area_max_m2'] / 1e6)}" in row
    assert "km²" in row and "▲ worse" in row
    _wait_graph(page, "cmp-series")
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts_dir / "dashboard_compare_engine.png"), full_page=True)
    assert page.console_errors == []


def test_click_on_gauge_shows_observed_and_simulated(server, page, artifacts_dir):
    page.goto(server.url + "/")
    _wait_map(page)
    _choose(page, "map-run", "fixture-a — Mưa thiết kế 10 năm")
    page.wait_for_function("() => document.querySelector('#map-info .run-id').innerText.startsWith('Run fixture-a:')")
    page.click(".place-marker[title^='Trạm thủy văn Tam Kỳ']")     # a real click on the gauge's marker
    page.wait_for_function("() => { const g = document.querySelector('#map-series .js-plotly-plot'); return g && g.data && g.data.length >= 1 && g.layout.title && g.layout.title.text.includes('Tam Kỳ'); }",
                           timeout=30000)
    names = page.evaluate("() => document.querySelector('#map-series .js-plotly-plot').data.map(d => d.name)")
    assert names[0] == "simulated water level" and any(n.startswith("observed") for n in names)
    page.screenshot(path=str(artifacts_dir / "dashboard_map_gauge.png"), full_page=True)
    # a corrupt run folder: a message in the page, no traceback
    _choose(page, "map-run", "corrupt-run (corrupt)")
    msg = page.wait_for_selector("#map-msg .msg-error")
    assert "manifest.json" in msg.inner_text() and "not valid JSON" in msg.inner_text()
    assert "Traceback" not in page.content()
    assert page.console_errors == []


def _choose(page, dropdown_id, text):
    page.click(f"#{dropdown_id}")
    page.get_by_role("option", name=text).or_(page.get_by_text(text, exact=True)).first.click()


def test_builder_runs_a_scenario_and_it_appears_in_the_run_list(server, page, runs_dir, artifacts_dir):
    before = {p.name for p in runs_dir.iterdir()}
    page.goto(server.url + "/builder")
    page.wait_for_selector("#b-runs li")
    page.fill("#b-name", "Mưa 50 năm — thử")
    page.fill("#b-duration", "0.01")
    page.click("#b-validate")
    err = page.wait_for_selector("#b-duration-wrap .field-error:not(:empty)", timeout=30000)
    assert "0.01" in err.inner_text() or "coupling steps" in err.inner_text()
    page.fill("#b-duration", "1")
    # the event now defaults to the base scenario's own (issue 15): choose the design storm to set it
    page.get_by_label("Design storm (return period)").check()
    _choose(page, "b-return-period", "50 years")
    page.fill("#b-storm-duration", "1")
    page.click("#b-validate")
    page.wait_for_selector("#b-msg .msg-ok", timeout=30000)
    assert page.inner_text("#b-duration-wrap .field-error") == ""
    page.screenshot(path=str(artifacts_dir / "dashboard_builder_valid.png"), full_page=True)
    page.click("#b-run")
    page.wait_for_function("() => document.querySelector('#b-status').innerText.startsWith('finished')", timeout=90000)
    assert page.get_attribute("#b-progress-bar", "style").replace(" ", "").startswith("width:100%")
    new = {p.name for p in runs_dir.iterdir()} - before - {".jobs"}
    assert len(new) == 1
    run_id = new.pop()
    assert (runs_dir / run_id / "fields.nc").exists() and (runs_dir / run_id / "kpis.json").exists()
    page.wait_for_selector(f"#b-runs li[data-run='{run_id}']", timeout=30000)
    page.screenshot(path=str(artifacts_dir / "dashboard_builder_done.png"), full_page=True)
    # and the map offers it
    page.click("#nav-map")
    page.wait_for_selector("#map-run")
    page.click("#map-run")
    assert page.get_by_text(run_id, exact=False).count() >= 1
    assert page.console_errors == []


def test_builder_cancel(server, page, runs_dir):
    page.goto(server.url + "/builder")
    page.wait_for_selector("#b-runs li")
    page.fill("#b-name", "long run to cancel")
    page.fill("#b-duration", "96")
    page.click("#b-run")
    page.wait_for_function("() => document.querySelector('#b-status').innerText.startsWith('running')", timeout=30000)
    page.wait_for_function("() => !document.querySelector('#b-cancel').disabled", timeout=30000)
    page.click("#b-cancel")
    page.wait_for_function("() => document.querySelector('#b-status').innerText.includes('cancelled')", timeout=30000)
    assert page.console_errors == []


def test_emergency_page_for_a_run_with_incidents(server, page, runs_dir, artifacts_dir):
    page.goto(server.url + "/emergency")
    page.wait_for_selector("#em-summary > *")
    _choose(page, "em-run", "fixture-b — Bão Molave — đê tạm")
    page.wait_for_function("() => document.querySelector('#em-summary').innerText.includes('incidents')")
    _wait_graph(page, "em-timeline")
    _wait_graph(page, "em-occupancy")
    inc = __import__("pandas").read_parquet(runs_dir / "fixture-b" / "incidents.parquet")
    assert page.inner_text("#em-summary .kpi-card >> nth=0").startswith(str(len(inc)))
    page.wait_for_timeout(300)
    page.screenshot(path=str(artifacts_dir / "dashboard_emergency.png"), full_page=True)
    assert page.console_errors == []


def test_sensors_observed_versus_simulated(server, page, artifacts_dir):
    page.goto(server.url + "/sensors")
    page.wait_for_selector("#sen-station-table")
    assert "Trạm thủy văn Tam Kỳ" in page.inner_text("#sen-station-table")
    _choose(page, "sen-run", "fixture-a — Mưa thiết kế 10 năm")
    page.wait_for_function("() => { const g = document.querySelector('#sen-series .js-plotly-plot');"
                           " return g && g.data && g.data.length === 3 && g.data[2].name.includes('Mưa thiết kế 10 năm'); }")
    names = page.evaluate("() => document.querySelector('#sen-series .js-plotly-plot').data.map(d => d.name)")
    assert names[:2] == ["observed", "observed, flagged by QC"] and names[2].startswith("simulated water level")
    ylab = page.evaluate("() => document.querySelector('#sen-series .js-plotly-plot').layout.yaxis.title.text")
    assert ylab == "m"
    page.screenshot(path=str(artifacts_dir / "dashboard_sensors_series.png"), full_page=True)
    assert page.console_errors == []


def _map_click(page, fx_, fy_):
    box = page.locator("#b-map").bounding_box()
    page.mouse.click(box["x"] + fx_ * box["width"], box["y"] + fy_ * box["height"])


def test_builder_draws_a_levee_and_a_pump_and_runs_them(server, page, runs_dir, artifacts_dir):
    """Issue 15: draw a levee (crest) and place a pump (capacity) on the map; the YAML preview shows
    them; the scenario validates and runs; the run list links to the run by id."""
    import yaml

    from twin.scenario import load_scenario

    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(server.url + "/builder")
    page.wait_for_selector("#b-map .leaflet-draw-draw-polyline")
    page.wait_for_selector("#b-map .place-marker")                     # the basemap's places
    page.fill("#b-name", "Đê và bơm")
    page.fill("#b-duration", "-3")                                     # a negative input says so
    page.click("#b-validate")
    err = page.wait_for_selector("#b-duration-wrap .field-error:not(:empty)")
    assert "negative" in err.inner_text() and "-3" in err.inner_text()
    page.fill("#b-duration", "0.5")
    page.fill('[id=\'{"name":"crest_m","type":"b-param"}\']', "7.5")
    page.click("#b-map .leaflet-draw-draw-polyline")
    for fx_, fy_ in ((0.2, 0.45), (0.45, 0.38), (0.55, 0.45)):
        # apart in time: two clicks within the double-click interval on a loaded machine end the line
        page.wait_for_timeout(600)
        _map_click(page, fx_, fy_)
    page.wait_for_function("() => document.querySelectorAll('#b-map .leaflet-draw-guide-dash, #b-map "
                           ".leaflet-marker-icon.leaflet-editing-icon').length >= 3")
    page.get_by_text("Finish", exact=True).click()
    page.wait_for_function("() => document.querySelector('#b-drawn-list').innerText.includes('Levee')")
    page.locator("#b-tool").get_by_label("Mobile pump", exact=True).check()
    page.fill('[id=\'{"name":"capacity_m3_per_s","type":"b-param"}\']', "3")
    page.click("#b-map .leaflet-draw-draw-marker")
    _map_click(page, 0.35, 0.7)
    page.wait_for_function("() => document.querySelector('#b-drawn-list').innerText.includes('Mobile pump')")
    page.wait_for_function("() => document.querySelector('#b-yaml').innerText.includes('capacity_m3_per_s: 3')")
    text = page.inner_text("#b-yaml")
    data = yaml.safe_load(text)
    kinds = [iv["type"] for iv in data["interventions"]]
    assert kinds == ["levee", "pump"] and data["interventions"][0]["crest_m"] == 7.5
    assert len(data["interventions"][0]["polyline"]) == 3
    assert "Estimated run time" in page.inner_text("#b-estimate")
    path = runs_dir.parent / "drawn_scenario.yaml"
    path.write_text(text, encoding="utf-8")
    sc = load_scenario(path)                                           # the project's schema takes it
    assert [iv.type for iv in sc.interventions] == ["levee", "pump"]
    page.screenshot(path=str(artifacts_dir / "dashboard_builder_drawn.png"), full_page=True)
    # leaflet-draw and its icons come from the package: no CDN, no tile server
    assert [u for u in requests if not u.startswith((server.url, "data:"))] == []
    before = {p.name for p in runs_dir.iterdir()}
    page.click("#b-run")
    page.wait_for_function("() => document.querySelector('#b-status').innerText.startsWith('finished')", timeout=90000)
    run_id = ({p.name for p in runs_dir.iterdir()} - before - {".jobs"}).pop()
    import pandas as pd

    log = pd.read_parquet(runs_dir / run_id / "decisions.parquet")
    applied = log[log["outcome"] == "applied"]
    assert {"levee", "pump"} <= set(applied["type"])
    assert "7.5 m" in applied[applied["type"] == "levee"]["message"].iloc[0]
    link = page.locator(f"#b-runs li[data-run='{run_id}'] a")         # a locator: the list is re-rendered
    assert link.get_attribute("href") == f"/?run={run_id}"
    link.click()                                                       # the link opens that run on the map
    page.wait_for_selector("#map-run")
    assert run_id in page.inner_text("#map-run")
    for width in (1600, 800):                                          # usable at both widths (screenshots kept)
        page.set_viewport_size({"width": width, "height": 1000})
        page.goto(server.url + "/builder")
        page.wait_for_selector("#b-map .place-marker")
        assert page.locator("#b-map").bounding_box()["width"] >= 0.6 * width - 40
        page.screenshot(path=str(artifacts_dir / f"dashboard_builder_{width}.png"), full_page=True)
    assert page.console_errors == []
