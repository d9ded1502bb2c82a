"""End to end in headless Chromium (Playwright, /usr/bin/chromium): every page loads without console
errors, the time slider changes the map, compare shows both runs' KPIs, a corrupt run gives a message;
screenshots of each page go to tests/artifacts/."""
from __future__ import annotations

import json

import pytest

import fixture_run as fx
from conftest import Server
from dashboards.app import create_app

PAGES = [("/", "map"), ("/builder", "builder"), ("/compare", "compare"), ("/sensors", "sensors"), ("/emergency", "emergency")]


@pytest.fixture(scope="module")
def server(runs_dir, tmp_path_factory):
    import duckdb

    db = tmp_path_factory.mktemp("store") / "sensors.duckdb"
    con = duckdb.connect(str(db))
    con.execute("create table observations (datastream_id varchar, phenomenon_time timestamptz, result double, quality_flag varchar)")
    con.execute("create table datastreams (datastream_id varchar, name varchar, unit varchar, observed_property varchar, place_id varchar, x double, y double)")
    p = fx.places().set_index("place_id").loc["G1"]
    con.execute("insert into datastreams values ('G1-stage', 'Trạm thủy văn Tam Kỳ', 'm', 'river_stage', 'G1', ?, ?)", [p.x, p.y])
    for k in range(13):
        con.execute("insert into observations values ('G1-stage', timestamptz '2020-10-27 17:00:00+00' + ?::integer * interval 30 minute, ?, ?)",
                    [k, 1.0 + 0.2 * k, "good" if k != 7 else "spike"])
    con.close()
    app = create_app(runs_dir, store=db, city_loader=fx.fixture_city_loader, live_refresh_ms=2000)
    with Server(app) as srv:
        yield srv


def _wait_graph(page, gid):
    page.wait_for_function(f"() => {{ const g = document.querySelector('#{gid} .js-plotly-plot'); return g && g.data && g.data.length > 0; }}",
                           timeout=20000)


@pytest.mark.parametrize("path,name", PAGES)
def test_page_loads_without_console_errors(server, page, artifacts_dir, path, name):
    page.goto(server.url + path)
    page.wait_for_selector("nav .brand")
    page.wait_for_load_state("networkidle")
    if name == "map":
        _wait_graph(page, "map-graph")
        page.wait_for_function("() => document.querySelector('#map-graph .js-plotly-plot').data[0].type === 'heatmap'")
    elif name == "compare":
        page.wait_for_selector("#cmp-kpi-table")
    elif name == "emergency":
        _wait_graph(page, "em-timeline")
    elif name == "sensors":
        page.wait_for_selector("#sen-station-table")
    elif name == "builder":
        page.wait_for_selector("#b-runs li")
    assert "Tam Kỳ Twin" in page.title()
    assert "Traceback" not in page.content()
    page.screenshot(path=str(artifacts_dir / f"dashboard_{name}.png"), full_page=True)
    assert page.console_errors == []


def _depth_sum(page):
    return page.evaluate("""() => { const z = document.querySelector('#map-graph .js-plotly-plot').data[0].z;
        let s = 0; for (const row of z) for (const v of row) if (v !== null) s += v; return s; }""")


def test_scrubbing_the_time_slider_changes_the_map(server, page, artifacts_dir, runs_dir):
    page.goto(server.url + "/")
    _wait_graph(page, "map-graph")
    page.wait_for_function("() => document.querySelector('#map-graph .js-plotly-plot').data[0].type === 'heatmap'")
    page.select_option if False else None
    # choose fixture-a explicitly through the dropdown
    page.click("#map-run")
    page.get_by_text("fixture-a — Mưa thiết kế 10 năm", exact=False).last.click()
    page.wait_for_load_state("networkidle")
    s0 = _depth_sum(page)
    shot0 = page.locator("#map-graph").screenshot()
    box = page.locator("#map-time").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)  # scrub to mid-run
    page.wait_for_function("() => !document.querySelector('#map-time-label').innerText.includes('0 h 00 min')", timeout=15000)
    page.wait_for_function(f"() => {{ const z = document.querySelector('#map-graph .js-plotly-plot').data[0].z; let s = 0;"
                           f" for (const r of z) for (const v of r) if (v !== null) s += v; return Math.abs(s - {s0}) > 1; }}", timeout=15000)
    s1 = _depth_sum(page)
    assert s1 > s0  # the river has risen by then
    assert page.locator("#map-graph").screenshot() != shot0
    label = page.inner_text("#map-time-label")
    assert label.startswith("t = ") and "h" in label
    page.screenshot(path=str(artifacts_dir / "dashboard_map_scrubbed.png"), full_page=True)
    # play advances the slider by itself
    page.click("#map-play")
    before = page.inner_text("#map-time-label")
    page.wait_for_function(f"() => document.querySelector('#map-time-label').innerText !== {json.dumps(before)}", timeout=10000)
    page.click("#map-play")
    assert page.console_errors == []


def test_compare_shows_both_runs_kpis(server, page, runs_dir):
    page.goto(server.url + "/compare")
    page.wait_for_selector("#cmp-kpi-table")
    text = page.inner_text("#cmp-kpi-table")
    ka = json.loads((runs_dir / "fixture-a" / "kpis.json").read_text())
    kb = json.loads((runs_dir / "fixture-b" / "kpis.json").read_text())
    assert "Mưa thiết kế 10 năm" in text and "Bão Molave — đê tạm" in text
    assert "damage usd" in text
    for v in (ka["damage_usd"], kb["damage_usd"]):
        assert f"{v:,.0f}" in text
    assert "▲" in text or "▼" in text
    _wait_graph(page, "cmp-diff")
    assert page.console_errors == []


def test_corrupt_run_shows_a_message(server, page):
    page.goto(server.url + "/")
    _wait_graph(page, "map-graph")
    page.click("#map-run")
    page.get_by_text("corrupt-run", exact=False).last.click()
    msg = page.wait_for_selector("#map-msg .msg-error", timeout=15000)
    assert "manifest.json" in msg.inner_text() and "not valid JSON" in msg.inner_text()
    assert "Traceback" not in page.content()


def test_click_on_gauge_shows_observed_and_simulated(server, page, artifacts_dir):
    page.goto(server.url + "/")
    _wait_graph(page, "map-graph")
    page.click("#map-run")
    page.get_by_text("fixture-a", exact=False).last.click()
    page.wait_for_load_state("networkidle")
    # click the gauge marker through plotly's own event path
    page.evaluate("""() => { const g = document.querySelector('#map-graph .js-plotly-plot');
        const tr = g.data.length - 1; const k = g.data[tr].customdata.findIndex(c => c[0] === 'G1');
        g.emit('plotly_click', {points: [{curveNumber: tr, pointNumber: k, pointIndex: k, x: g.data[tr].x[k], y: g.data[tr].y[k],
                                          customdata: g.data[tr].customdata[k]}]}); }""")
    page.wait_for_function("() => { const g = document.querySelector('#map-series .js-plotly-plot'); return g && g.data && g.data.length >= 1 && g.layout.title && g.layout.title.text.includes('Tam Kỳ'); }",
                           timeout=15000)
    names = page.evaluate("() => document.querySelector('#map-series .js-plotly-plot').data.map(d => d.name)")
    assert names[0] == "simulated depth" and any(n.startswith("observed") for n in names)
    page.screenshot(path=str(artifacts_dir / "dashboard_map_gauge.png"), full_page=True)
