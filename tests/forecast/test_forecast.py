"""`twin forecast`: members from a run's checkpoint, the forecast folder's schema, probabilities,
reproducibility, CAP 1.2 alerts (validated against the OASIS XSD), updates and cancellations,
bad input."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from pyproj import Transformer

from tests.sim.helpers import X0, Y0
from twin.forecast import run_forecast
from twin.forecast.cap import CAP_NS, CapError, alert_to_decision, parse_alert, validate_cap
from twin.output.forecast_schema import (
    EXCEEDANCE_THRESHOLDS,
    FORECAST_NC,
    FORECAST_TABLES,
    exceedance_var,
    read_forecast_table,
)

from .helpers import write_rules

NS = {"c": CAP_NS}
CLON, CLAT = Transformer.from_crs("EPSG:32649", "EPSG:4326", always_xy=True).transform(X0 + 600.0, Y0 - 600.0)


@pytest.fixture(scope="module")
def fc(tmp_path_factory, forecast_base):
    """A 3-member forecast from the base run's 10-min checkpoint (20 min, 5-min outputs) with rules."""
    tmp = tmp_path_factory.mktemp("fc")
    run, city = forecast_base
    rules = write_rules(tmp / "rules.yaml")
    doc = run_forecast(run, 3, 1200.0, tmp / "fc", at=600.0, every_s=300.0, serial=True, city=city, rules=rules)
    return {"tmp": tmp, "city": city, "run": run, "rules": rules, "dir": tmp / "fc", "doc": doc}


def test_forecast_folder_has_the_declared_files_and_schema(fc):
    d = fc["dir"]
    doc = json.loads((d / "forecast.json").read_text())
    assert set(doc["files"]) == {str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()}
    for name in FORECAST_TABLES:
        read_forecast_table(d, name)  # raises on a column or dtype the schema does not declare
    with xr.open_dataset(d / "exceedance.nc", decode_times=False) as ds:
        assert ds.attrs["Conventions"] == "CF-1.8"
        for v in FORECAST_NC:
            assert ds[v.name].dims == v.dims and str(ds[v.name].dtype) == "float32"
            assert ds[v.name].attrs["grid_mapping"] == "spatial_ref"
        for t in EXCEEDANCE_THRESHOLDS:
            assert "probability" in ds[exceedance_var(t)].attrs["long_name"]
        assert {"p_depth_gt_0.1m", "p_depth_gt_0.3m", "p_depth_gt_0.5m", "p_depth_gt_1.0m"} <= set(ds.data_vars)
        assert ds["x"].attrs["units"] == "m" and ds["y"].attrs["units"] == "m"
        assert "32649" in ds["spatial_ref"].attrs["spatial_ref"] or "UTM zone 49N" in ds["spatial_ref"].attrs["spatial_ref"]
        # output times: the issue time (10 min) and every 5 min to 30 min
        np.testing.assert_allclose(ds["time"].values, [600, 900, 1200, 1500, 1800])
        np.testing.assert_allclose(ds["lead_time_s"].values, [0, 300, 600, 900, 1200])
    assert doc["n_members"] == 3 and doc["issue_time_s"] == 600.0 and doc["horizon_s"] == 1200.0
    assert doc["components"] == ["flood", "roads"]
    assert doc["members"][0]["perturbation"]["rain_factor"] == 1.0  # member 0: the control


def test_probabilities_in_unit_interval_and_monotone_in_threshold(fc):
    with xr.open_dataset(fc["dir"] / "exceedance.nc", decode_times=False) as ds:
        ps = [ds[exceedance_var(t)].values for t in EXCEEDANCE_THRESHOLDS]
        ok = np.isfinite(ps[0])
        assert ok.any() and (ps[0][ok] > 0).any()  # rain on the valley: something exceeds 0.1 m
        for a, b in zip(ps, ps[1:]):
            assert np.all((a[ok] >= 0) & (a[ok] <= 1))
            assert np.all(b[ok] <= a[ok])  # deeper thresholds are never more likely
        # probabilities are shares of 3 members
        np.testing.assert_allclose(np.round(ps[0][ok] * 3), ps[0][ok] * 3, atol=1e-5)
        lo, med, hi = (ds[v].values for v in ("max_depth_p05_m", "max_depth_median_m", "max_depth_p95_m"))
        okm = np.isfinite(med)
        assert np.all(lo[okm] <= med[okm] + 1e-6) and np.all(med[okm] <= hi[okm] + 1e-6)
    imp = read_forecast_table(fc["dir"], "impacts.parquet")
    p = imp["probability"].dropna()
    assert len(p) and p.between(0, 1).all()
    assert {"hospital", "shelter", "road_link", "ward"} <= set(imp["target_kind"])
    assert {"flooded_above_threshold", "closed_to_cars", "population_at_significant_hazard"} <= set(imp["impact"])
    dist = imp[imp["quantile"].notna()]
    assert dist["probability"].isna().all() and dist["value"].notna().all()
    g = read_forecast_table(fc["dir"], "gauges.parquet")
    assert sorted(g["member"].unique()) == [0, 1, 2] and set(g["gauge_id"]) == {"G1"}
    assert len(g) == 3 * 5 and g["stage_m"].notna().all()


def test_members_differ_and_the_same_seed_reproduces_them(fc, tmp_path):
    doc = fc["doc"]
    assert doc["spread"]["members_differ"]
    perts = [m["perturbation"] for m in doc["members"]]
    assert perts[1] != perts[2]
    again = run_forecast(fc["run"], 3, 1200.0, tmp_path / "again", at=600.0, every_s=300.0, serial=True,
                         city=fc["city"])
    other = run_forecast(fc["run"], 3, 1200.0, tmp_path / "other", at=600.0, every_s=300.0, serial=True,
                         city=fc["city"], seed=99)
    assert [m["perturbation"] for m in again["members"]] == perts
    assert [m["perturbation"] for m in other["members"]] != perts
    with xr.open_dataset(fc["dir"] / "exceedance.nc", decode_times=False) as a, \
            xr.open_dataset(tmp_path / "again" / "exceedance.nc", decode_times=False) as b:
        for v in a.data_vars:
            np.testing.assert_array_equal(a[v].values, b[v].values)
    ga = read_forecast_table(fc["dir"], "gauges.parquet")
    gb = read_forecast_table(tmp_path / "again", "gauges.parquet")
    pd.testing.assert_frame_equal(ga, gb)
    # members differ at the gauge (rain, sea level and release perturbed)
    last = ga[ga["t_s"] == ga["t_s"].max()].set_index("member")["stage_m"]
    assert last.nunique() == 3


def test_a_local_dask_cluster_gives_the_serial_members(fc, tmp_path):
    """Members on 2 workers (the city scattered once) equal the serial ones bit for bit."""
    doc = run_forecast(fc["run"], 3, 1200.0, tmp_path / "dask", at=600.0, every_s=300.0, n_workers=2,
                       city=fc["city"])
    assert [m["perturbation"] for m in doc["members"]] == [m["perturbation"] for m in fc["doc"]["members"]]
    assert doc["scheduler"].startswith("LocalCluster(2")
    with xr.open_dataset(fc["dir"] / "exceedance.nc", decode_times=False) as a, \
            xr.open_dataset(tmp_path / "dask" / "exceedance.nc", decode_times=False) as b:
        for v in a.data_vars:
            np.testing.assert_array_equal(a[v].values, b[v].values)


def test_every_alert_validates_against_the_cap_12_schema(fc):
    alerts = sorted((fc["dir"] / "alerts").glob("*.xml"))
    doc = fc["doc"]
    assert len(alerts) == len(doc["alerts"]) >= 2
    for p in alerts:
        text = p.read_text(encoding="utf-8")
        validate_cap(text, p.name)
        root = ET.fromstring(text.encode())
        for tag in ("identifier", "sender", "sent", "status", "msgType", "scope"):
            assert root.find(f"c:{tag}", NS) is not None, tag
        infos = root.findall("c:info", NS)
        assert [i.find("c:language", NS).text for i in infos] == ["vi-VN", "en-US"]
        for info in infos:
            assert [c.text for c in info.findall("c:category", NS)] == ["Met", "Safety"]
            for tag in ("event", "urgency", "severity", "certainty", "onset", "expires", "headline", "description",
                        "instruction"):
                assert info.find(f"c:{tag}", NS).text, tag
            poly = info.find("c:area/c:polygon", NS).text.split()
            assert len(poly) >= 4 and poly[0] == poly[-1]
            lat, lon = np.array([[float(v) for v in pt.split(",")] for pt in poly]).T
            # "lat,lon" pairs around the valley (1.2 km at 600 km E, 1750 km N of UTM 49N)
            assert np.all(np.abs(lat - CLAT) < 0.02) and np.all(np.abs(lon - CLON) < 0.02)
    ward = [a for a in doc["alerts"] if a["area"] == "East"]
    assert ward and ward[0]["severity"] == "Extreme"
    a = parse_alert(fc["dir"] / ward[0]["file"])
    assert a["info"]["en-US"]["wards"] == ["East"] and a["info"]["vi-VN"]["headline"].startswith("Cảnh báo")


def test_an_invalid_alert_is_refused():
    bad = (f'<alert xmlns="{CAP_NS}"><identifier>x</identifier><sender>s</sender>'
           "<sent>2020-10-28T06:00:00+07:00</sent><status>BOGUS</status><msgType>Alert</msgType>"
           "<scope>Public</scope></alert>")
    with pytest.raises(CapError, match="not a valid CAP 1.2 alert"):
        validate_cap(bad, "bad.xml")
    with pytest.raises(CapError):
        validate_cap(bad.replace("BOGUS", "Actual").replace("+07:00", "Z"), "utc-z.xml")  # CAP wants ±hh:mm


def test_alert_becomes_a_warning_decision_for_its_wards(fc):
    doc = fc["doc"]
    ward = next(a for a in doc["alerts"] if a["area"] == "East")
    d = alert_to_decision(fc["dir"] / ward["file"])
    assert d.type == "warning" and d.area == ["East"] and d.channel == "cell_broadcast"
    city_wide = next(a for a in doc["alerts"] if a["area"] == "all")
    assert alert_to_decision(fc["dir"] / city_wide["file"]).area is None


def test_a_second_forecast_updates_and_cancels_the_previous_alerts(fc, tmp_path):
    first = {a["rule"]: a for a in fc["doc"]["alerts"]}
    # the same rules, but Low Shelter's within shortened to the issue time only: it no longer fires
    text = fc["rules"].read_text().replace("{area: Low Shelter, threshold_m: 0.05, probability: 0.3, within: 20min",
                                           "{area: Low Shelter, threshold_m: 0.05, probability: 0.3, within: 1s")
    rules2 = write_rules(tmp_path / "rules2.yaml", text)
    doc = run_forecast(fc["run"], 3, 1200.0, tmp_path / "fc2", at=600.0, every_s=300.0, serial=True,
                       city=fc["city"], rules=rules2, previous=fc["dir"])
    second = {a["rule"]: a for a in doc["alerts"]}
    assert second["all|0.1|Severe"]["msgType"] == "Update"
    assert second["Low Shelter|0.05|Moderate"]["msgType"] == "Cancel"
    for key, a in second.items():
        old = first[key]
        ref = f"{old['sender']},{old['identifier']},{old['sent']}"
        root = ET.fromstring((tmp_path / "fc2" / a["file"]).read_bytes())
        assert root.find("c:references", NS).text == ref
        assert root.find("c:msgType", NS).text == a["msgType"]
        validate_cap((tmp_path / "fc2" / a["file"]).read_text(), a["file"])
    with pytest.raises(ValueError, match="cancellation"):
        alert_to_decision(tmp_path / "fc2" / second["Low Shelter|0.05|Moderate"]["file"])


def test_track_errors_grow_with_lead_time_and_spare_the_analysis():
    from twin.forecast.perturb import MemberPerturbation, perturb_track, track_sigma
    from twin.sensors.typhoon import load_track

    tr = load_track("MOLAVE", 2020)
    issue = tr.fixes["time"].iloc[10]
    p = MemberPerturbation(member=1, z_cross=1.0, z_vmax=-1.0)
    pt = perturb_track(tr, issue, p)
    d = np.hypot(pt.fixes["x"].to_numpy() - tr.fixes["x"].to_numpy(), pt.fixes["y"].to_numpy() - tr.fixes["y"].to_numpy())
    assert np.all(d[:11] < 1.0)  # the analysis and the past are kept
    lead = (tr.fixes["time"] - issue).dt.total_seconds().to_numpy() / 3600.0
    s, sv = track_sigma(lead[11:])
    np.testing.assert_allclose(d[11:], s, rtol=0.02)  # one sigma across the track at each lead
    assert np.all(np.diff(d[11:15]) > 0)
    dv = pt.fixes["vmax_kt"].to_numpy()[11:] - tr.fixes["vmax_kt"].to_numpy()[11:]
    np.testing.assert_allclose(dv[tr.fixes["vmax_kt"].to_numpy()[11:] - sv > 15], -sv[tr.fixes["vmax_kt"].to_numpy()[11:] - sv > 15])
    # the WP mean track errors tabulated by TSR (2014-2018): 24 / 34 / 46 nm at 0 / 12 / 24 h
    assert s[0] == pytest.approx(np.interp(lead[11], [0, 12, 24], [24, 34, 46]) * 1852 / np.sqrt(np.pi / 2))


def test_the_forecast_folder_reference_page_is_what_the_schema_says():
    from twin.output.forecast_schema import forecast_schema_markdown

    page = Path(__file__).resolve().parents[2] / "docs" / "reference" / "forecast-folder.md"
    assert page.read_text(encoding="utf-8") == forecast_schema_markdown(), (
        "docs/reference/forecast-folder.md is stale: write forecast_schema_markdown() to it")


def test_operations_page_reads_a_forecast_folder(fc, tmp_path):
    """The dashboard's Operations page: fan chart, probability map, impacts, alerts, confined ids."""
    import shutil
    from types import SimpleNamespace

    from twin.dashboard.app import PAGES, create_app
    from twin.dashboard.pages import operations as op

    assert ("/operations", "Operations") in PAGES
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copytree(fc["dir"], tmp_path / "forecasts" / "fc1")
    ctx = SimpleNamespace(runs_dir=runs)
    assert [f["id"] for f in op.forecast_folders(ctx)] == ["fc1"]
    fdir = op._folder(ctx, "fc1")
    with pytest.raises(ValueError, match="no forecast folder"):
        op._folder(ctx, "../forecasts/fc1")
    fan = op.fan_chart(fdir)
    assert any(t.name == "Creek gauge median" for t in fan.data)
    m = op.probability_map(fdir, 0.1, 4)
    with xr.open_dataset(fdir / "exceedance.nc", decode_times=False) as ds:
        np.testing.assert_array_equal(np.asarray(m.data[0].z), ds["p_depth_gt_0.1m"].isel(time=4).values)
    rows = op.impact_rows(fdir)
    probs = [float(r["probability"].rstrip("%")) for r in rows]
    assert rows and probs == sorted(probs, reverse=True)
    items = op.alert_items(fdir)
    assert len(items) == len(fc["doc"]["alerts"]) and "urn:oasis:names:tc:emergency:cap:1.2" in str(items[0])
    app = create_app(runs)
    assert op.layout(app._twin_ctx) is not None
