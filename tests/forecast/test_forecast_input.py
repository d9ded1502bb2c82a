"""Bad input to `twin forecast`: one clear error line naming the input, exit code 2, nothing written
and nothing already there lost. And the alerts on MQTT (a real mosquitto broker)."""
from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from twin.cli import main
from twin.forecast import run_forecast
from twin.forecast.rules import RulesError

from .helpers import forecast_city, write_rules


@pytest.fixture
def run(forecast_base):
    return forecast_base


def _cli_error(capsys, argv, *needles):
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)
    return err


def test_bad_command_line_input_is_one_error_line_and_writes_nothing(run, tmp_path, capsys):
    base, _ = run
    out = tmp_path / "fc"
    common = ["--out", out]
    _cli_error(capsys, ["forecast", base, "--members", "1", "--horizon", "10min", *common], "--members 1", "at least 2")
    _cli_error(capsys, ["forecast", base, "--members", "3", "--horizon", "0", *common], "--horizon", "> 0")
    _cli_error(capsys, ["forecast", base, "--members", "3", "--horizon=-1h", *common], "--horizon")
    _cli_error(capsys, ["forecast", base, "--members", "3", "--horizon", "90s", *common], "--horizon 90",
               "coupling step")
    _cli_error(capsys, ["forecast", base, "--members", "3", "--horizon", "10min", "--at", "7min", *common],
               "--at 420", "600, 1200, 1800")
    _cli_error(capsys, ["forecast", base, "--members", "3", "--horizon", "10min", "--components", "flood,boats",
                        *common], "--components", "'boats'")
    nock = tmp_path / "nock"
    shutil.copytree(base, nock, ignore=shutil.ignore_patterns("checkpoints"))
    _cli_error(capsys, ["forecast", nock, "--members", "3", "--horizon", "10min", *common], str(nock),
               "no checkpoint")
    _cli_error(capsys, ["forecast", tmp_path / "nowhere", "--members", "3", "--horizon", "10min", *common],
               "nowhere", "no such run folder")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [{area: all, threshold_m: 0.5\n")
    _cli_error(capsys, ["forecast", base, "--members", "3", "--horizon", "10min", "--alerts", bad, *common],
               str(bad), "not valid YAML")
    worse = write_rules(tmp_path / "worse.yaml", "rules: [{area: all, threshold_m: 0.5, probability: 1.5, "
                                                 "within: 6h, severity: Severe}]\n")
    _cli_error(capsys, ["forecast", base, "--members", "3", "--horizon", "10min", "--alerts", worse, *common],
               "rules.0.probability", "1.5")
    assert not out.exists()
    # an existing, non-empty folder is refused and left as it was
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    _cli_error(capsys, ["forecast", base, "--members", "3", "--horizon", "10min", *common], "not empty")
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    assert not list(tmp_path.glob(".fc.tmp-*"))


def test_rules_naming_unknown_areas_and_an_unreachable_scheduler_are_refused(run, tmp_path):
    base, city = run
    rules = write_rules(tmp_path / "r.yaml", "rules:\n  - {area: Nowhere Ward, threshold_m: 0.5, probability: 0.3, "
                                             "within: 6h, severity: Severe}\n")
    with pytest.raises(RulesError, match="rules.0.area: 'Nowhere Ward' is not a ward \\(West, East\\)"):
        run_forecast(base, 3, 600.0, tmp_path / "a", serial=True, city=city, rules=rules)
    gauge = write_rules(tmp_path / "g.yaml", "rules:\n  - {area: Creek gauge, threshold_m: 0.5, probability: 0.3, "
                                             "within: 6h, severity: Severe}\n")
    with pytest.raises(RulesError, match="rules.0.area: 'Creek gauge' is not a ward"):  # a gauge is no warning area
        run_forecast(base, 3, 600.0, tmp_path / "a", serial=True, city=city, rules=gauge)
    with pytest.raises(ValueError, match="--scheduler tcp://127.0.0.1:9: cannot connect"):
        run_forecast(base, 3, 600.0, tmp_path / "b", scheduler="tcp://127.0.0.1:9", city=city)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert not list(tmp_path.glob(".*.tmp-*"))  # the temporary folder went too


@pytest.mark.mosquitto
def test_alerts_are_published_on_mqtt_and_a_listener_turns_them_into_warnings(run, tmp_path):
    import paho.mqtt.client as mqtt

    from tests.sensors.helpers import MOSQUITTO, start_mosquitto, stop_pid
    from twin.forecast.cap import AlertListener, parse_alert, publish_alerts

    base, city = run
    doc = run_forecast(base, 2, 600.0, tmp_path / "fc", at=600.0, every_s=300.0, serial=True, city=city,
                       rules=write_rules(tmp_path / "rules.yaml"))
    files = [tmp_path / "fc" / a["file"] for a in doc["alerts"]]
    assert files
    if not shutil.which("mosquitto") and not Path(MOSQUITTO).exists():
        pytest.fail("mosquitto is required (apt-get install mosquitto)")
    (tmp_path / "broker").mkdir()
    proc, port = start_mosquitto(tmp_path / "broker")
    try:
        broker = f"mqtt://127.0.0.1:{port}"
        got: list[bytes] = []
        done = threading.Event()
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ops-room", protocol=mqtt.MQTTv311)
        subscribed = threading.Event()
        sub.on_subscribe = lambda *a, **k: subscribed.set()

        def on_msg(c, u, m):
            got.append(m.payload)
            if len(got) == len(files):
                done.set()
        sub.on_message = on_msg
        sub.connect("127.0.0.1", port)
        sub.loop_start()
        sub.subscribe("tamky/alerts/cap", qos=1)
        listener = AlertListener(broker).start()
        try:
            assert subscribed.wait(10) and listener.subscribed.wait(10)
            assert publish_alerts(files, broker) == len(files)
            assert done.wait(10)
            ids = sorted(parse_alert(p)["identifier"] for p in got)
            assert ids == sorted(a["identifier"] for a in doc["alerts"])
            decisions = []
            for _ in range(100):
                decisions += listener.pending()
                if len(decisions) == len(files):
                    break
                threading.Event().wait(0.1)
            assert sorted(i for i, _ in decisions) == ids
            assert all(d.type == "warning" for _, d in decisions)
            assert any(d.area == ["East"] for _, d in decisions)
        finally:
            listener.stop()
            sub.disconnect()
            sub.loop_stop()
        with pytest.raises(ValueError, match="cannot connect"):
            publish_alerts(files, "mqtt://127.0.0.1:9")
    finally:
        stop_pid(proc)


LIVE = """
name: valley-live-warn
city: valley
resolution_m: 20
start: 2020-10-28T07:00
duration: 10min
coupling_step: 60
seed: 1
flood:
  rain: {kind: design_storm, peak_mm_per_h: 60, duration: 30min, peak_fraction: 0.3}
people: {sample_fraction: 1.0}
outputs: {fields_every: 5min, kpis_every: 5min, tables_every: 5min, png: false}
"""


@pytest.mark.mosquitto
def test_live_twin_with_auto_warn_turns_a_published_alert_into_a_warning(tmp_path):
    """`auto_warn: true`: a CAP alert on the alerts topic becomes a warning decision of the live twin."""
    import pandas as pd

    from tests.sensors.helpers import start_mosquitto, stop_pid
    from twin.forecast.cap import AlertSpec, build_alert, publish_alerts
    from twin.sensors.live import run_live

    xml = build_alert(AlertSpec(
        identifier="test-east-1", sender="ops@example.vn", sent="2020-10-28T07:00:00+07:00", msg_type="Alert",
        severity="Severe", urgency="Expected", certainty="Likely", onset="2020-10-28T07:30:00+07:00",
        expires="2020-10-28T12:00:00+07:00", area_desc="East", wards=["East"],
        polygon=[(15.8, 111.9), (15.81, 111.9), (15.81, 111.91), (15.8, 111.9)],
        headline_en="Severe flood warning: East", headline_vi="Cảnh báo ngập lụt: East"))
    alert = tmp_path / "a.xml"
    alert.write_text(xml, encoding="utf-8")
    (tmp_path / "broker").mkdir()
    proc, port = start_mosquitto(tmp_path / "broker")
    broker = f"mqtt://127.0.0.1:{port}"
    sent = {}

    def on_step(sim, info):
        if sim.iteration == 1 and not sent:
            sent["n"] = publish_alerts([alert], broker)
        if sim.iteration >= 2 and not info.get("auto_warn"):
            import time

            time.sleep(0.2)  # let the listener receive it before the next step (paced run)

    sc = tmp_path / "live.yaml"
    sc.write_text(LIVE)
    try:
        rc = run_live(sc, broker, config={"auto_warn": True}, speed=600.0, city=forecast_city(),
                      run_dir=tmp_path / "run", duration_s=600, on_step=on_step, client_id="live-warn")
    finally:
        stop_pid(proc)
    assert rc == 0 and sent["n"] == 1
    live = json.loads((tmp_path / "run" / "live.json").read_text())
    assert live["auto_warn"] == ["test-east-1"] and "auto_warn_refused" not in live
    log = pd.read_parquet(tmp_path / "run" / "decisions.parquet")
    row = log[log["issuer"] == "cap:test-east-1"]
    assert len(row) == 1 and row["type"].iloc[0] == "warning" and row["outcome"].iloc[0] == "applied"
    assert json.loads(row["params"].iloc[0])["area"] == ["East"]
