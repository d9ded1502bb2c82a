"""The real thing end to end: ``twin run`` of the coupled Molave scenario on the Tam Kỳ bundle (flood,
traffic, people, services; the first hour only), then
``twin serve`` as a subprocess, the Map page in headless Chromium over it with the bundle's layers
(hillshade, water, roads, places with Vietnamese names); the server is stopped by its PID."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .helpers import free_port, measure_slider_steps, png_pixels, remote_refs

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tamky_runs(tmp_path_factory):
    runs = tmp_path_factory.mktemp("tamky_runs")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "twin", "run", str(REPO / "scenarios" / "tamky_molave_2020.yaml"),
           "--out", str(runs / "tamky-short"), "--no-progress",
           "--set", "duration=30min", "--set", "outputs.checkpoint_every=null",
           "--set", "outputs.fields_every=10min", "--set", "outputs.tables_every=10min",
           "--set", "outputs.kpis_every=10min", "--set", "outputs.png=false",
           # nobody is trapped in the first 30 min: a higher medical call rate gives the services work
           "--set", "services.params.medical_rate_per_1000_per_day=20"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return runs


@pytest.fixture(scope="module")
def served(tamky_runs):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "twin", "serve", "--runs", str(tamky_runs), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(url + "/", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("twin serve did not answer")
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_twin_serve_shows_the_tamky_run(served, tamky_runs, page, artifacts_dir):
    with urllib.request.urlopen(served + "/", timeout=5) as r:
        html = r.read().decode()
    assert "<title>Tam Kỳ Twin</title>" in html and remote_refs(html) == []  # every script served locally
    page.goto(served + "/")
    page.wait_for_selector("img.twin-depth", state="attached", timeout=60000)
    page.wait_for_selector(".place-marker", timeout=60000)
    names = page.eval_on_selector_all(".place-marker", "els => els.map(e => e.getAttribute('title'))")
    assert "Bệnh viện Đa khoa tỉnh Quảng Nam (hospital)" in names                # diacritics intact
    info = page.inner_text("#map-info")
    assert "city bundle 'tamky'" in info
    assert page.get_attribute("img.twin-basemap", "src").startswith("data:image/png;base64,")
    labels = page.eval_on_selector_all(".leaflet-control-layers label", "els => els.map(e => e.innerText.trim())")
    assert "wards" in labels and "roads (by class)" in labels
    import json as _json

    start = _json.loads((tamky_runs / "tamky-short" / "kpis.json").read_text())["start_local"]   # local, +07:00
    hh, mm = int(start[11:13]), int(start[14:16])
    assert page.inner_text("#map-time-label") == f"{hh:02d}:{mm:02d} {start[8:10]}/{start[5:7]}/{start[:4]} (UTC+7)"
    ms = measure_slider_steps(page, 3)   # a slider step on the Tam Kỳ run, measured in Chromium
    print(f"\nslider step (Tam Kỳ run, Chromium): {', '.join(f'{v:.0f}' for v in ms)} ms")
    assert max(ms) <= 1000, ms
    end = (hh * 60 + mm + 30) % (24 * 60)
    page.wait_for_function(f"() => document.querySelector('#map-time-label').innerText.startsWith('{end // 60:02d}:{end % 60:02d}')")
    people = png_pixels(page.get_attribute("img.twin-people", "src"))
    assert int((people[..., 3] > 0).sum()) > 100                               # residents drawn at 30 min
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts_dir / "dashboard_map_tamky_1600.png"))
    page.set_viewport_size({"width": 800, "height": 900})
    page.wait_for_timeout(500)
    assert page.locator("#map-map").bounding_box()["width"] > 500
    page.screenshot(path=str(artifacts_dir / "dashboard_map_tamky_800.png"), full_page=True)
    page.set_viewport_size({"width": 1366, "height": 768})
    # the Emergency page over the same run: the engine's incidents
    import pandas as pd

    inc = pd.read_parquet(tamky_runs / "tamky-short" / "incidents.parquet")
    page.click("#nav-emergency")
    page.wait_for_function("() => (document.querySelector('#em-summary')?.innerText || '').includes('incidents')", timeout=60000)
    assert len(inc) > 0
    assert page.inner_text("#em-summary .kpi-card >> nth=0").startswith(str(len(inc)))
    page.wait_for_function("() => { const g = document.querySelector('#em-queue .js-plotly-plot'); return g && g.data && g.data.length; }")
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts_dir / "dashboard_emergency_tamky.png"), full_page=True)
    assert page.console_errors == []
