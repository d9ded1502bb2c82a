"""CSV and SensorThings fixtures that between them raise every QC flag; conversions; CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from twin.cli import main as twin_main
from twin.sensors import FLAG_BITS, SensorStore
from twin.sensors.adapters import load_csv, load_sta, read_csv

FIX = Path(__file__).parent / "fixtures"
CFG = FIX / "sensors.yaml"


def _flags(store, ds):
    df = store.observations(ds)
    return {pd.Timestamp(t).strftime("%Y-%m-%dT%H:%M"): (r, set(f.split(",")) if f != "good" else set())
            for t, r, f in zip(df["phenomenon_time"], df["result"], df["quality_flag"])}


@pytest.fixture
def qc_store(tmp_path):
    st = SensorStore(tmp_path / "qc.duckdb")
    res, nrej = load_csv(st, FIX / "qc_long.csv", CFG)
    res2, nrej2, pages = load_sta(st, str(FIX / "Datastreams(wl1)_Observations.json"), CFG)
    st.run_qc()
    yield st, (res, nrej), (res2, nrej2, pages)
    st.close()


def test_csv_fixture_flags_conversions_and_rejects(qc_store):
    st, (res, nrej), _ = qc_store
    assert nrej == 3               # not-a-number, 'yesterday', unit 'furlong'
    rain = _flags(st, "rg1-rain")
    # 07:00 local = 00:00 UTC; 1.0 mm per 10 min = 6 mm/h
    assert rain["2020-10-28T00:00"] == (6.0, set())
    assert "range" in rain["2020-10-28T00:20"][1] and rain["2020-10-28T00:20"][0] == pytest.approx(-18.0)
    assert "gap" in rain["2020-10-28T02:30"][1]
    assert "duplicate" in rain["2020-10-28T02:40"][1] and rain["2020-10-28T02:40"][0] == pytest.approx(18.0)
    assert "out_of_order" in rain["2020-10-28T02:35"][1]
    assert "clock_skew" in rain["2098-12-31T17:00"][1]
    stage = _flags(st, "st1-stage")
    assert {"spike", "rate_of_change"} <= stage["2020-10-28T00:20"][1]
    assert stage["2020-10-28T00:50"][1] == {"rate_of_change"}          # a step, not a spike
    assert {"unit_mistake", "range"} <= stage["2020-10-28T01:20"][1]
    assert stage["2020-10-28T01:30"][1] == set()
    tide = _flags(st, "td1-tide")
    assert tide["2020-10-28T01:00"] == (pytest.approx(0.8), set())     # 80 cm -> 0.8 m
    assert "flat_line" in tide["2020-10-28T08:00"][1]                   # 7 h unchanged > 6 h
    assert "flat_line" not in tide["2020-10-28T06:00"][1]
    assert "unregistered" in _flags(st, "xx-unknown")["2020-10-28T00:00"][1]
    rej = st.rejects()
    rej = rej[rej["topic"].str.startswith("file:")]
    reasons = " | ".join(rej["reason"])
    assert "not-a-number" in reasons and "yesterday" in reasons and "furlong" in reasons
    assert "duplicate" in reasons                                     # 09:40 local given twice
    assert rej["topic"].str.contains("qc_long.csv:").all()
    assert rej["reason"].str.contains("qc_long.csv line").sum() == 3


def test_sta_fixture_paging_flags_and_rejects(qc_store):
    st, _, (res, nrej, pages) = qc_store
    assert pages == 2
    wl = _flags(st, "wl1")
    assert {"spike", "rate_of_change"} <= wl["2020-10-28T00:30"][1]
    assert "spike" in wl["2020-10-28T01:00"][1]
    assert {"gap", "out_of_order"} <= wl["2020-10-28T02:45"][1]
    assert "duplicate" in wl["2020-10-28T03:15"][1] and wl["2020-10-28T03:15"][0] == pytest.approx(0.60)
    assert wl["2020-10-28T03:30"][0] == pytest.approx(0.55)             # 55 cm in parameters.unit
    assert {"unit_mistake", "range"} <= wl["2020-10-28T03:50"][1]
    assert "out_of_order" in wl["2020-10-27T21:00"][1]                  # 04:00+07:00
    assert "unregistered" in _flags(st, "td2")["2020-10-28T04:00"][1]
    assert nrej == 1                                                   # no result
    sta_rej = st.rejects()
    sta_rej = sta_rej[sta_rej["topic"].str.startswith("sta:")]
    assert len(sta_rej) == 3                                           # + two conflicting duplicates
    # every flag of the model is raised by the two fixtures together
    all_flags = set()
    for ds in st.datastreams()["datastream_id"]:
        for _, f in _flags(st, ds).values():
            all_flags |= f
    assert all_flags == set(FLAG_BITS)


def test_qc_report_and_good_only(qc_store):
    st, _, _ = qc_store
    rep = st.run_qc().set_index("datastream_id")
    assert rep.loc["rg1-rain", "n_gaps"] >= 1 and rep.loc["rg1-rain", "n_duplicate"] == 1
    assert rep.loc["st1-stage", "n_unit_mistake"] == 1
    good = st.observations("st1-stage", good_only=True)
    assert 362.0 not in good["result"].to_numpy() and 3.9 not in good["result"].to_numpy()
    # rerunning QC is stable (arrival flags are kept, series flags recomputed)
    rep2 = st.run_qc().set_index("datastream_id")
    pd.testing.assert_frame_equal(rep, rep2)


def test_wide_csv_units_and_empty_cells(tmp_path):
    from twin.sensors.adapters import config_entities, load_config

    _, streams = config_entities(load_config(CFG))
    rows, rej = read_csv(FIX / "qc_wide.csv", {d.datastream_id: d for d in streams})
    assert rej == []
    r = rows.set_index(["datastream_id", "phenomenon_time"])["result"]
    assert r[("rg1-rain", pd.Timestamp("2020-10-28T00:00"))] == pytest.approx(6.0)
    assert r[("st1-stage", pd.Timestamp("2020-10-28T00:10"))] == pytest.approx(2.51)
    assert len(rows) == 5                                             # the empty rain cell is no reading


def test_cli_load_qc_export_idempotent(tmp_path, capsys):
    store = tmp_path / "cli.duckdb"
    assert twin_main(["sensors", "load", str(FIX / "qc_long.csv"), "--store", str(store), "--config", str(CFG)]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert twin_main(["sensors", "load", str(FIX / "qc_long.csv"), "--store", str(store), "--config", str(CFG)]) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert second["inserted"] == 0 and second["redelivered"] == first["inserted"] + 0
    assert twin_main(["sensors", "qc", "--store", str(store), "--out", str(tmp_path / "qc.json")]) == 0
    rep = json.loads((tmp_path / "qc.json").read_text())
    assert {r["datastream_id"] for r in rep} >= {"rg1-rain", "st1-stage", "td1-tide"}
    for fmt in ("csv", "parquet"):
        out = tmp_path / f"st1.{fmt}"
        assert twin_main(["sensors", "export", "--store", str(store), "--datastream", "st1-stage",
                          "--format", fmt, "--out", str(out)]) == 0
        df = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
        assert len(df) == 12 and list(df.columns[:4]) == ["datastream_id", "phenomenon_time", "result", "quality_flag"]
        t = pd.to_datetime(df["phenomenon_time"], utc=True)
        assert t.is_monotonic_increasing and t.iloc[0] == pd.Timestamp("2020-10-28T00:00Z")
    capsys.readouterr()
    assert twin_main(["sensors", "export", "--store", str(store), "--datastream", "nope", "--format", "csv",
                      "--out", str(tmp_path / "x.csv")]) == 2
    assert "datastream 'nope' is not in store" in capsys.readouterr().err
    # a relative SensorThings path (its nextLink relative to it) from another working directory
    import os

    cwd = os.getcwd()
    os.chdir(FIX.parent)
    try:
        assert twin_main(["sensors", "load", "fixtures/Datastreams(wl1)_Observations.json", "--store", str(store)]) == 0
    finally:
        os.chdir(cwd)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["pages"] == 2
