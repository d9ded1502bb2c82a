"""Dashboard logic without a browser: run reading and caching, frames, figures, callbacks' pure
functions, scenario form mapping and error placement, jobs, the sensor store."""
from __future__ import annotations

import json
import math
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twin.dashboard import comparison, figures, tables
from twin.dashboard import scenario_form as sf
from twin.dashboard.app import create_app
from twin.dashboard.jobs import JobManager, slug
from twin.dashboard.pages import builder, compare, emergency
from twin.dashboard.pages import map as map_page
from twin.dashboard.runs import Run, RunCache, RunError, block_reduce_max, hillshade, list_runs

from . import fixture_run as fx


@pytest.fixture(scope="module")
def app(runs_dir):
    return create_app(runs_dir, city_loader=fx.fixture_city_loader)


@pytest.fixture(scope="module")
def ctx(app):
    return app._twin_ctx


# -- run folders ---------------------------------------------------------------------------------
def test_list_runs_marks_corrupt_and_names(runs_dir):
    runs = {r["id"]: r for r in list_runs(runs_dir)}
    assert {"fixture-a", "fixture-b", "corrupt-run", "engine-rp10", "engine-rp100"} <= set(runs)  # + builder runs
    assert runs["engine-rp10"]["status"] == "complete"   # the engine writes status "completed"
    assert runs["engine-rp10"]["label"] == "engine-rp10 — rp10: Mưa thiết kế 10 năm (động cơ thật)"
    assert runs["corrupt-run"]["status"] == "corrupt"
    assert "manifest.json" in runs["corrupt-run"]["error"] and "not valid JSON" in runs["corrupt-run"]["error"]
    assert runs["fixture-b"]["name"] == "Bão Molave — đê tạm"


def test_hillshade_lights_northwest_slopes():
    flat = hillshade(np.zeros((5, 5)), 30.0)
    assert np.allclose(flat, math.sin(math.radians(45.0)), atol=1e-12)
    y, x = np.mgrid[0:20, 0:20].astype(float)
    rises_to_se = (x + y) * 3.0   # elevation grows east and south: faces north-west, toward the light
    rises_to_nw = -(x + y) * 3.0
    assert hillshade(rises_to_se, 30)[10, 10] > hillshade(rises_to_nw, 30)[10, 10]
    z = np.ones((4, 4)); z[1, 1] = np.nan
    assert np.isnan(hillshade(z, 30)[1, 1])


def test_block_reduce_max_with_nan():
    a = np.array([[1, 2, np.nan], [3, np.nan, np.nan], [0, 0, 5]], dtype=float)
    out = block_reduce_max(a, 2)
    assert out.shape == (2, 2)
    assert out[0, 0] == 3 and np.isnan(out[0, 1]) and out[1, 0] == 0 and out[1, 1] == 5


def test_frames_match_the_netcdf_and_are_cached(ctx, runs_dir):
    import xarray as xr

    run = ctx.runs.get(runs_dir / "fixture-a")
    fr = run.frames()
    assert fr is run.frames()                       # prepared once
    assert ctx.runs.get(runs_dir / "fixture-a") is run  # same run object while files are unchanged
    with xr.open_dataset(runs_dir / "fixture-a" / "fields.nc", decode_times=False) as ds:
        d = ds["depth"].values
        t = ds["time"].values
    assert np.allclose(fr.t_s, t)
    for i in (0, 6, 12):
        want = np.where(d[i] >= 0.01, np.round(d[i] * 100) / 100, np.nan)
        got = fr.depth_m(i)
        assert np.array_equal(np.isnan(got), np.isnan(want))
        assert np.nanmax(np.abs(got - want)) <= 0.005 + 1e-6
    assert abs(fr.max_depth_m - float(d.max())) < 0.01


def test_run_cache_reloads_when_files_change(tmp_path):
    fx.write_run(tmp_path / "r", n_times=3)
    cache = RunCache()
    r1 = cache.get(tmp_path / "r")
    r1.frames()
    time.sleep(0.01)
    fx.write_run(tmp_path / "r", n_times=5)  # a live run appends frames
    r2 = cache.get(tmp_path / "r")
    assert r2 is not r1 and len(r2.frames().t_s) == 5


def test_live_run_grows_the_slider(tmp_path):
    from dash import no_update

    runs = tmp_path / "runs"
    fx.write_run(runs / "live", n_times=3)
    app = create_app(runs, city_loader=fx.fixture_city_loader)
    ctx = app._twin_ctx
    path = "live"  # the client sends run ids (folder names), not paths
    opts, imax = map_page.refresh_runs(ctx, path, None)
    assert [o["value"] for o in opts] == [path] and imax is no_update       # the page has no frames yet
    opts, imax = map_page.refresh_runs(ctx, path, 3)
    assert imax is no_update                                                  # nothing new
    time.sleep(0.01)
    fx.write_run(runs / "live", n_times=6)                                    # the live twin wrote more frames
    opts, imax = map_page.refresh_runs(ctx, path, 3)
    assert imax == 5
    out = map_page.build_map(ctx, path, imax)                                 # the reload the new max triggers
    assert out[3] == 5 and out[4][5] == "02:30 28/10" and out[2]["n"] == 6 and out[5] == 5


def test_large_grid_is_block_reduced(tmp_path):
    import xarray as xr

    ny, nx = 700, 500
    x = 224000 + (np.arange(nx) + 0.5) * 30.0
    y = 1727000 - (np.arange(ny) + 0.5) * 30.0
    d = np.zeros((2, ny, nx), np.float32)
    d[1, 333, 222] = 2.5
    xr.Dataset({"depth": (("time", "y", "x"), d)}, coords={"time": [0.0, 600.0], "x": x, "y": y}).to_netcdf(tmp_path / "fields.nc")
    fr = Run(tmp_path).frames()
    assert fr.factor == 3 and fr.depth_cm.shape == (2, 234, 167)
    assert fr.depth_m(1)[333 // 3, 222 // 3] == pytest.approx(2.5)   # the block maximum keeps the peak
    assert np.isnan(fr.depth_m(0)).all()


# -- map page ------------------------------------------------------------------------------------
def test_build_map_has_layers_in_utm_metres_and_clock_time(ctx, runs_dir):
    tree, viewport, store, imax, marks, i, msg, info, legend, places = map_page.build_map(ctx, "fixture-a")
    assert msg is None and imax == 12 and i == 0 and store["n"] == 13
    # fields.nc: seconds since 2020-10-28 00:00 (local, no offset): slider marks in local clock time
    assert marks[0] == "00:00 28/10" and marks[12] == "06:00 28/10"
    assert store["labels"][6] == "03:00 28/10/2020 (UTC+7)" and store["summaries"][6].startswith("03:00 28/10/2020")
    names = [c.name for c in tree]
    assert names[:2] == ["terrain and water", "plain background"] and names[-1] == "places"   # places above all
    for want in ("roads (by class)", "flood depth above normal water", "hazard to people (FD2321 classes)",
                 "closed roads", "vehicles on links", "people"):
        assert want in names
    x0, y0 = fx.X0, fx.Y0                     # Simple CRS: [lat, lng] = [northing, easting] in metres
    assert viewport["bounds"] == [[y0 - fx.NY * fx.DX, x0], [y0, x0 + fx.NX * fx.DX]]
    assert {o["value"] for o in places} == {"H1", "S1", "G1", "S2"}
    assert "Fixed classes" in str(legend[0].children)


def test_closed_roads_are_drawn_in_their_frames(ctx, runs_dir):
    from twin.dashboard import basemap

    store = map_page.build_map(ctx, "fixture-a")[2]
    links = pd.read_parquet(runs_dir / "fixture-a" / "links.parquet")
    for k, t in ((0, 0.0), (6, 3 * 3600.0)):
        n_closed = int(links[links.t_s == t].closed.sum())
        img = store["images"]["closed"][k]
        assert (img == basemap.TRANSPARENT_PNG) == (n_closed == 0)
    assert int(links[links.t_s == 3 * 3600.0].closed.sum()) > 0
    assert store["images"]["depth"][6] != store["images"]["depth"][0]   # the river rises by mid-run


def test_place_click_gives_depth_series_in_clock_time(ctx, runs_dir):
    import xarray as xr

    path = "fixture-a"
    map_page.build_map(ctx, path)
    fig, text = map_page.place_series(ctx, path, "G1")
    p = fx.places().set_index("place_id").loc["G1"]
    x, y = fx.grid()
    c = int(np.argmin(abs(x - p.x))); r = int(np.argmin(abs(y - p.y)))
    with xr.open_dataset(runs_dir / "fixture-a" / "fields.nc") as ds:
        want = ds["depth"].values[:, r, c]
    assert np.allclose(fig.data[0].y, want + fx.elevation()[r, c], atol=1e-3)   # a stage gauge: level = z + depth
    assert fig.layout.yaxis.title.text == "water level (m above datum)"
    assert "Trạm thủy văn Tam Kỳ" in fig.layout.title.text
    assert fig.layout.xaxis.title.text == "local time (Asia/Ho_Chi_Minh)"
    assert str(fig.data[0].x[0]).startswith("2020-10-28") and "00:00" in str(fig.data[0].x[0])
    k = int(np.argmax(want))
    assert f"peak {want[k] + fx.elevation()[r, c]:.2f}" in text and f"{k // 2:02d}:{30 * (k % 2):02d} 28/10/2020" in text
    fig, text = map_page.place_series(ctx, path, "H1")
    assert fig.layout.yaxis.title.text == "water depth (m)" and fig.data[0].name == "simulated depth"


def test_corrupt_run_gives_a_message_not_a_traceback(ctx, runs_dir):
    path = "corrupt-run"
    msg = map_page.build_map(ctx, path)[6]
    text = msg.children
    assert "manifest.json" in text and "Traceback" not in text
    out = emergency.emergency(ctx, path)
    assert "incidents.parquet" in str(out["msg"].children) and "Traceback" not in str(out["msg"].children)
    run = Run(runs_dir / path)
    with pytest.raises(RunError, match="fields.nc"):
        run.frames()
    with pytest.raises(RunError, match="incidents.parquet"):
        run.table("incidents")


# -- compare -------------------------------------------------------------------------------------
def test_kpi_rows_differences_and_directions(ctx, runs_dir):
    a = ctx.runs.get(runs_dir / "fixture-a"); b = ctx.runs.get(runs_dir / "fixture-b")
    rows = {r["id"]: r for r in comparison.kpi_rows(a, b)}
    ka = json.loads((runs_dir / "fixture-a" / "kpis.json").read_text())
    kb = json.loads((runs_dir / "fixture-b" / "kpis.json").read_text())
    r = rows["damage_usd"]    # a key the catalog does not know: a diagnostic, unit from its own suffix
    assert r["a"] == ka["damage_usd"] and r["b"] == kb["damage_usd"] and r["diff"] == pytest.approx(5e5)
    assert r["unit"] == "USD" and r["group"] == "diagnostic" and r["verdict"] == "changed"
    assert comparison.arrow(r) == "▲" and r["rel_pct"] == pytest.approx(50.0)
    assert rows["flooded_area_km2"]["unit"] == "km²" and rows["flooded_area_km2"]["verdict"] == "worse"
    assert rows["ambulance/unreached_incidents"]["verdict"] == "same"
    assert comparison.arrow(rows["ambulance/unreached_incidents"]) == "="


def test_difference_is_b_minus_a_and_summarised(ctx, runs_dir):
    import rasterio

    a = ctx.runs.get(runs_dir / "fixture-a"); b = ctx.runs.get(runs_dir / "fixture-b")
    x, y, diff = comparison.depth_difference(a, b)
    with rasterio.open(runs_dir / "fixture-a" / "max_depth.tif") as s:
        ma = s.read(1)
    with rasterio.open(runs_dir / "fixture-b" / "max_depth.tif") as s:
        mb = s.read(1)
    assert np.allclose(diff, mb - ma, atol=1e-6)
    text = comparison.difference_summary(x, y, diff)
    up = int(((mb - ma) >= 0.05).sum())
    assert f"({up} cells;" in text and "deeper" in text
    m, legend, summary = comparison.difference_map(a, b, ctx.layers.for_run(a))
    assert summary == text and "fixed scale" in str(legend)


def test_compare_series_share_axes_and_units(ctx, runs_dir):
    *_, series, msg = compare.compare(ctx, "fixture-a", "fixture-b")
    assert msg is None
    assert len(series.data) == 6   # the fixture runs have no flooded-area series in kpis.json
    ys = [series.layout[f"yaxis{k}"].title.text for k in ("", "2", "3", "4")]
    assert ys == ["km²", "persons", "min", "% of links"]
    assert series.layout.xaxis.matches == "x4"
    s = tables.high_hazard_series(ctx.runs.get(runs_dir / "fixture-a"))
    ppl = pd.read_parquet(runs_dir / "fixture-a" / "people.parquet")
    assert s[1][6] == (ppl[ppl.t_s == s[0][6]].hazard_rating > 1.25).sum()


# -- emergency -----------------------------------------------------------------------------------
def test_queue_and_utilisation_from_incidents(ctx, runs_dir):
    run = ctx.runs.get(runs_dir / "fixture-a")
    inc = pd.read_parquet(runs_dir / "fixture-a" / "incidents.parquet")
    t = np.array([inc.call_s[0] + 1.0])
    waiting = ((inc.call_s <= t[0]) & (inc.dispatch_s > t[0])).sum()
    assert tables.queue_series(run, t)[0] == waiting
    u, n = tables.utilisation_series(run, np.array([inc.dispatch_s[0] + 1.0]))
    busy = inc[(inc.dispatch_s <= inc.dispatch_s[0] + 1) & (inc.clear_s > inc.dispatch_s[0] + 1)].unit_id.nunique()
    assert n == 4 and u[0] == pytest.approx(busy / 4 * 100)
    summ = emergency.summary(run)
    assert "12" in str(summ[0]) and "1" in str(summ[2])


# -- scenario builder ----------------------------------------------------------------------------
BASE_YAML = """
name: base_case
city: danang
start: 2022-10-14T12:00
duration: 8h
coupling_step: 5min
seed: 3
flood:
  solver: inertial
  rain: {kind: design_storm, duration: 6h, peak_mm_per_h: 100}
interventions:
  - {type: levee, polyline: [[0, 0], [100, 0]], crest_m: 4.0, label: river wall}
  - {type: extra_units, unit: ambulance, count: 1}
"""
FORM = {"name": "Mưa 50 năm + cảnh báo", "duration_h": 2, "event": "design_storm", "return_period": 50,
        "storm_duration_h": 2, "interventions": ["warning", "boats"], "warning_lead_h": 0.5,
        "warning_channel": "tv", "boats": 4, "base_interventions": [0]}


@pytest.fixture
def base_file(tmp_path):
    f = tmp_path / "base.yaml"
    f.write_text(BASE_YAML, encoding="utf-8")
    return f


def test_scenario_from_form_merges_into_base_and_validates(base_file, tmp_path):
    base, _ = sf.load_base(base_file)
    d, keys = sf.scenario_from_form(FORM, base)
    assert d["flood"]["solver"] == "inertial" and d["seed"] == 3
    assert d["name"] == "mua_50_nam_canh_bao" and d["description"] == "Mưa 50 năm + cảnh báo"
    assert d["flood"]["rain"] == {"kind": "design_storm", "return_period_years": 50, "duration": "2h"}  # replaced whole
    assert [iv["type"] for iv in d["interventions"]] == ["levee", "warning", "extra_units"]  # base item 1 left out
    assert d["interventions"][1] == {"type": "warning", "at": 1800.0, "channel": "tv"}  # 30 min before the 1 h peak
    assert keys["interventions.2"] == "b-boats"
    sc, fe, ge = sf.validate(d, tmp_path, keys)  # the project's schema (twin.scenario.load_scenario)
    assert (fe, ge) == ({}, []) and sc.duration == 7200.0 and sc.flood.rain.return_period_years == 50


def test_real_schema_errors_land_next_to_their_field(base_file, tmp_path):
    base, _ = sf.load_base(base_file)
    bad = dict(FORM, return_period=1, boats=0)
    d, keys = sf.scenario_from_form(bad, base)
    sc, fe, ge = sf.validate(d, tmp_path, keys)
    assert sc is None
    assert "greater than 1" in fe["b-return-period"]
    assert "greater than 0" in fe["b-boats"]
    d, keys = sf.scenario_from_form(dict(FORM, duration_h=0.01), base)   # not a whole number of 5 min steps
    sc, fe, ge = sf.validate(d, tmp_path, keys)
    assert sc is None and "whole number of coupling steps" in fe["b-duration"]


def test_typhoon_event_starts_at_the_storm(base_file):
    base, _ = sf.load_base(base_file)
    d, _ = sf.scenario_from_form(dict(FORM, event="typhoon", track="WP212020", duration_h=24), base)
    assert d["flood"]["rain"] == {"kind": "typhoon", "storm": "WP212020"}
    # Molave's closest fix to Tam Kỳ: 2020-10-28 06Z = 13:00 local; a 24 h run starts 12 h before
    assert d["start"] == "2020-10-28T01:00"


def test_form_errors_name_the_field():
    err = sf.form_errors({"name": " ", "duration_h": 500, "event": "typhoon", "track": None})
    assert set(err) == {"b-name", "b-duration", "b-track"}
    assert "500" in err["b-duration"]


def test_schema_errors_land_next_to_their_field():
    import pydantic

    class Rain(pydantic.BaseModel, extra="forbid"):
        return_period_years: pydantic.PositiveFloat

    class Flood(pydantic.BaseModel, extra="forbid"):
        rain: Rain

    class Scen(pydantic.BaseModel, extra="forbid"):
        name: str
        flood: Flood

    try:
        Scen.model_validate({"name": "x", "flood": {"rain": {"return_period_years": -5}}, "bogus": 1})
    except pydantic.ValidationError as exc:
        fe, ge = sf.map_errors(exc)
    assert "b-return-period" in fe and "greater than 0" in fe["b-return-period"]
    assert any("bogus" in g for g in ge)


def test_parse_upload_messages():
    import base64

    def enc(b: bytes) -> str:
        return "data:application/x-yaml;base64," + base64.b64encode(b).decode()

    assert builder.parse_upload(enc(b"\xff\xfe\x00bad"), "x.yaml")[1] == "x.yaml: not a UTF-8 text file"
    assert "not valid YAML" in builder.parse_upload(enc(b"a: [1, 2"), "y.yaml")[1]
    assert "must be a YAML mapping" in builder.parse_upload(enc(b"- 1\n- 2\n"), "z.yaml")[1]
    data, err = builder.parse_upload(enc("name: Tam Kỳ\n".encode()), "ok.yaml")
    assert err is None and data == {"name": "Tam Kỳ"}


def test_typhoon_list_has_molave():
    opts = sf.typhoon_options()
    assert any("Molave" in o["label"] and o["value"] == "WP212020" for o in opts)


def test_slug_strips_diacritics():
    assert slug("Bão Molave — đê tạm") == "bao-molave-de-tam"


# -- jobs ----------------------------------------------------------------------------------------
RUNNER = textwrap.dedent("""
    import json, pathlib, sys, time
    scen, out = sys.argv[1], pathlib.Path(sys.argv[sys.argv.index("--out") + 1])
    slow = "slow" in pathlib.Path(scen).read_text()
    for k in range(0, 101, 25):
        sys.stderr.write(f"\\rsimulating {{k:3d}}%|###| "); sys.stderr.flush()
        time.sleep(5 if slow else 0.05)
    out.mkdir(parents=True)
    (out / "manifest.json").write_text(json.dumps({{"scenario_name": "from runner", "status": "completed"}}))
    (out / "kpis.json").write_text("{{}}")
    print("done")
""")


@pytest.fixture
def runner(tmp_path):
    f = tmp_path / "runner.py"
    f.write_text(RUNNER.format())
    return [sys.executable, str(f)]


def _wait(pred, timeout=30.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_job_runs_reports_progress_and_appears_in_run_list(tmp_path, runner):
    runs = tmp_path / "runs"; runs.mkdir()
    jm = JobManager(runs, runner=runner)
    scen = tmp_path / "s.yaml"; scen.write_text("name: fast\n")
    job = jm.submit(scen, "fast")
    assert _wait(lambda: job.status != "running")
    assert job.status == "done" and job.progress == 100.0 and job.returncode == 0
    assert [r["id"] for r in list_runs(runs)] == [job.id]
    style, status, log, cancel_disabled, poll_disabled, items = builder.job_status(type("C", (), {"jobs": jm, "runs_dir": runs})(), job.id)
    assert style == {"width": "100%"} and "now in the run list" in status and cancel_disabled


def test_job_cancel_stops_the_process(tmp_path, runner):
    runs = tmp_path / "runs"; runs.mkdir()
    jm = JobManager(runs, runner=runner)
    scen = tmp_path / "s.yaml"; scen.write_text("name: slow\n")
    job = jm.submit(scen, "slow")
    assert _wait(lambda: job.progress is not None)
    assert jm.cancel(job.id, grace_s=1.0)
    assert _wait(lambda: job.status == "cancelled", 15)
    assert job.proc.poll() is not None and not (runs / job.id / "kpis.json").exists()


def test_failing_job_shows_its_output(tmp_path):
    runs = tmp_path / "runs"; runs.mkdir()
    jm = JobManager(runs, runner=[sys.executable, "-c", "import sys; print('scenario.yaml: flood.rain: bad value'); sys.exit(2)"])
    job = jm.submit(tmp_path / "s.yaml", "bad")
    assert _wait(lambda: job.status != "running")
    assert job.status == "failed" and "flood.rain: bad value" in job.as_dict()["tail"]


# -- sensors -------------------------------------------------------------------------------------
def test_sensor_store_latest_values_and_flags(tmp_path):
    import duckdb

    from twin.dashboard.sensors_store import datastreams, observations

    db = tmp_path / "s.duckdb"
    con = duckdb.connect(str(db))
    con.execute("create table observations (datastream_id varchar, phenomenon_time timestamptz, result double, quality_flag varchar)")
    con.execute("create table datastreams (datastream_id varchar, name varchar, unit varchar, observed_property varchar, x double, y double)")
    con.execute("insert into datastreams values ('st1', 'Trạm Tam Kỳ', 'm', 'river_stage', 229000, 1722000), ('r1', 'Mưa Bàn Thạch', 'mm/h', 'rain_rate', 230000, 1723000)")
    con.execute("""insert into observations values
        ('st1', '2020-10-28 00:00+00', 1.0, 'good'), ('st1', '2020-10-28 01:00+00', 1.6, 'good'),
        ('st1', '2020-10-28 02:00+00', 9.9, 'spike'), ('r1', '2020-10-28 00:30+00', 12.0, 'good')""")
    con.close()
    df = datastreams(db).set_index("datastream_id")
    assert df.loc["st1", "latest_value"] == 9.9 and df.loc["st1", "latest_flag"] == "spike" and df.loc["st1", "n_obs"] == 3
    assert df.loc["st1", "name"] == "Trạm Tam Kỳ" and df.loc["r1", "unit"] == "mm/h"
    assert str(df.loc["st1", "latest_time"].tz) == "Asia/Ho_Chi_Minh" and df.loc["st1", "latest_time"].hour == 9
    obs = observations(db, "st1")
    assert list(obs.result) == [1.0, 1.6, 9.9]
    fig = figures.observed_vs_simulated_figure(obs, None, "st1", "m")
    assert [t.name for t in fig.data] == ["observed", "observed, flagged by QC"] and fig.layout.yaxis.title.text == "m"


def test_missing_store_is_a_message(tmp_path, runs_dir):
    from twin.dashboard.pages import sensors

    app = create_app(runs_dir, store=tmp_path / "nope.duckdb", city_loader=fx.fixture_city_loader)
    out = sensors.refresh(app._twin_ctx, None, None)
    assert "does not exist" in out[4].children


def test_cli_registers_serve():
    import argparse

    from twin.dashboard import cli

    p = argparse.ArgumentParser(); sub = p.add_subparsers(dest="command")
    cli.register(sub)
    a = p.parse_args(["serve", "--runs", "r", "--port", "8123"])
    assert a.port == 8123 and a.runs == Path("r") and a.func is cli.serve


# -- runs by the real engine ---------------------------------------------------------------------
def test_engine_run_frames_and_closed_roads(ctx, runs_dir):
    import xarray as xr

    path = runs_dir / "engine-rp100"
    run = ctx.runs.get(path)
    tree, _, store, imax, marks, i, msg, *_ = map_page.build_map(ctx, path.name)
    assert msg is None and "roads (by class)" in [c.name for c in tree]
    with xr.open_dataset(path / "fields.nc", decode_times=False) as ds:
        d = ds["depth"].values
        assert ds["time"].attrs["units"].startswith("seconds since 2020-10-28 00:00:00")
    fr = run.frames()
    assert imax == d.shape[0] - 1 and fr.start.startswith("2020-10-28 00:00:00")
    k = int(np.argmax(d.reshape(d.shape[0], -1).max(axis=1)))
    want = np.where(d[k] >= 0.01, d[k], np.nan)
    assert np.nanmax(np.abs(fr.depth_m(k) - want)) <= 0.005 + 1e-6
    links = pd.read_parquet(path / "links.parquet")
    for t_s, g in links.groupby("t_s"):
        ls = tables.link_state_at(run, float(t_s))
        assert sorted(ls["closed"]) == sorted(g.loc[g.closed, "link_id"].tolist())


def test_engine_runs_compare(ctx, runs_dir):
    a = ctx.runs.get(runs_dir / "engine-rp10"); b = ctx.runs.get(runs_dir / "engine-rp100")
    ka = json.loads((runs_dir / "engine-rp10" / "kpis.json").read_text())
    kb = json.loads((runs_dir / "engine-rp100" / "kpis.json").read_text())
    rows = {r["id"]: r for r in comparison.kpi_rows(a, b)}
    r = rows["flooded_area_max_m2"]       # a headline KPI, in km², lower is better
    assert (r["a"], r["b"]) == pytest.approx((ka["flooded_area_max_m2"] / 1e6, kb["flooded_area_max_m2"] / 1e6))
    assert r["unit"] == "km²" and r["headline"] == 10 and comparison.arrow(r) == "▲" and r["verdict"] == "worse"
    t, area = tables.flooded_area_series(b)
    assert np.allclose(area * 1e6, [sum(x.values()) for x in kb["flooded_area_m2"]])
    x, y, diff = comparison.depth_difference(a, b)
    assert diff.max() >= 0.05


def test_base_items_and_channels_follow_the_schema(tmp_path):
    import typing

    from twin.scenario import Warning_

    assert [c["value"] for c in sf.warning_channels()] == list(typing.get_args(Warning_.model_fields["channel"].annotation))
    f = tmp_path / "base.yaml"
    f.write_text(BASE_YAML.replace("interventions:\n", "interventions:\n  - {type: warning, at: 2019-06-01T13:00, channel: tv}\n"),
                 encoding="utf-8")
    base, _ = sf.load_base(f)
    # a base warning dated before the replayed storm: it now falls before the start
    d, keys = sf.scenario_from_form(dict(FORM, event="typhoon", track="WP212020", duration_h=12, base_interventions=[0],
                                         interventions=["warning"], warning_channel="no_such_channel"), base)
    sc, fe, ge = sf.validate(d, tmp_path, keys)
    assert sc is None and "interventions.0.at" in fe["b-base-interventions"]
    assert "interventions.1.channel" in fe["b-warning-channel"]


def test_units_on_scene_from_incidents(ctx, runs_dir):
    run = ctx.runs.get(runs_dir / "fixture-a")
    inc = pd.read_parquet(runs_dir / "fixture-a" / "incidents.parquet")
    k = int(np.nanargmin(inc.arrive_scene_s))
    t = float(inc.arrive_scene_s[k]) + 1.0
    u = tables.units_at(run, t)
    on = inc[(inc.arrive_scene_s <= t) & ~(inc.depart_scene_s <= t)]
    assert len(u) == len(on) >= 1
    assert np.allclose(sorted(u.x), sorted(on.x)) and all(s.endswith("on scene") for s in u.unit_id)
