"""Issuing a warning to a running live twin: the MQTT decisions channel (a real mosquitto, a real
``twin live`` in a thread), the Operations page's checks, and the page in headless Chromium."""
from __future__ import annotations

import json
import re
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from tests.sensors.helpers import start_mosquitto, stop_pid
from twin.decisions import DecisionError
from twin.sensors.decision_channel import ChannelError, ack_topic, decisions_topic, send_decision

from .helpers import LiveTwin, write_rules


@pytest.fixture
def mosquitto(tmp_path):
    (tmp_path / "broker").mkdir()
    proc, port = start_mosquitto(tmp_path / "broker")
    try:
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        stop_pid(proc)


def _raw_requests(broker: str, run_id: str, payloads: list[bytes], done, timeout_s: float = 15.0) -> list[dict]:
    """Publish raw payloads on the decisions topic; the answers (JSON) seen on the ack topic until
    ``done(answers)`` or the timeout."""
    import paho.mqtt.client as mqtt

    host, port = broker.split("//")[1].split(":")
    got: list[dict] = []
    sub = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv311)
    c.on_message = lambda cl, ud, m: got.append(json.loads(m.payload))
    c.on_subscribe = lambda *a, **k: sub.set()
    c.connect(host, int(port))
    c.loop_start()
    try:
        c.subscribe(ack_topic(run_id), qos=1)
        assert sub.wait(10)
        for p in payloads:
            c.publish(decisions_topic(run_id), p, qos=1).wait_for_publish(10)
        t_end = time.monotonic() + timeout_s
        while not done(list(got)) and time.monotonic() < t_end:
            time.sleep(0.05)
    finally:
        c.disconnect()
        c.loop_stop()
    return got


@pytest.mark.mosquitto
def test_opswarn_decision_round_trip_through_the_broker_to_the_live_twin(tmp_path, mosquitto):
    run_dir = tmp_path / "runs" / "live-a"
    with LiveTwin(tmp_path, mosquitto, run_dir):
        ack = send_decision(mosquitto, "live-a", {"type": "warning", "area": ["East"], "label": "East, now"},
                            issuer="ops test, cap:a-1", timeout_s=15)
        assert ack.status == "accepted", ack
        assert ack.acts_at_s is not None and ack.acts_at_s > 0 and ack.acts_at_s % 60 == 0
        assert ack.acts_at_local == str(pd.Timestamp("2020-10-28T07:00+07:00") + pd.Timedelta(seconds=ack.acts_at_s))
        # refused by the twin, naming the field; nothing queued
        bad = send_decision(mosquitto, "live-a", {"type": "warning", "area": ["Nowhere"]}, timeout_s=15)
        assert bad.status == "refused" and bad.field == "area" and "Nowhere" in bad.message
        unknown = send_decision(mosquitto, "live-a", {"type": "bogus"}, timeout_s=15)
        assert unknown.status == "refused" and unknown.field == "type" and "bogus" in unknown.message
        # a malformed envelope is refused by the inbox, a redelivered request is submitted once
        rid = uuid.uuid4().hex
        dup = json.dumps({"request_id": rid, "decision": {"type": "warning"}, "issuer": "dup"}).encode()
        answers = _raw_requests(mosquitto, "live-a", [b"{not json", json.dumps(
            {"request_id": uuid.uuid4().hex, "decision": {"type": "warning"}, "run": "../x"}).encode(), dup, dup],
            lambda got: (sum(a["status"] == "refused" for a in got) >= 2
                         and sum(a["request_id"] == rid and a["status"] == "accepted" for a in got) >= 2))
        refused = [a for a in answers if a["status"] == "refused"]
        assert any(a["field"] == "run" and "unknown field" in a["message"] for a in refused), answers
        assert any(a["request_id"] == "" and "request." in a["message"] for a in refused), answers
        dup_final = [a for a in answers if a["request_id"] == rid and a["status"] == "accepted"]
        assert len(dup_final) == 2 and dup_final[0]["decision_id"] == dup_final[1]["decision_id"], answers
        t_end = time.monotonic() + 20          # the warning is in the log once its step ran
        while time.monotonic() < t_end:
            p = run_dir / "decisions.parquet"
            log = pd.read_parquet(p) if p.exists() else pd.DataFrame({"decision_id": []})
            if ack.decision_id in set(log["decision_id"]):
                break
            time.sleep(0.2)
    row = log[log["decision_id"] == ack.decision_id].iloc[0]
    assert (row["source"], row["issuer"], row["type"], row["outcome"]) == ("dashboard", "ops test, cap:a-1",
                                                                           "warning", "applied")
    assert row["t_s"] == ack.acts_at_s and json.loads(row["params"])["area"] == ["East"]
    final = pd.read_parquet(run_dir / "decisions.parquet")
    assert (final["issuer"] == "dup").sum() == 1                  # submitted once
    assert "bogus" not in set(final["type"]) and "Nowhere" not in "".join(final["params"])  # refused: not queued
    live = json.loads((run_dir / "live.json").read_text())
    assert live["state"] == "stopped" and live["decisions_topic"] == "twin/live-a/decisions"
    assert {d["request_id"] for d in live["decisions_received"]} >= {ack.request_id, bad.request_id}
    # nobody listens any more; no broker at all
    with pytest.raises(ChannelError, match="no live twin of run 'live-a' answered"):
        send_decision(mosquitto, "live-a", {"type": "warning"}, timeout_s=1)
    with pytest.raises(ChannelError, match="cannot reach the broker"):
        send_decision("mqtt://127.0.0.1:9", "live-a", {"type": "warning"}, timeout_s=1)


def test_opswarn_issue_warning_refuses_before_sending(tmp_path, capsys):
    """Token, live run and form checks on the server: a message each, nothing sent."""
    from twin.cli import main

    assert main(["serve", "--runs", str(tmp_path / "runs"), "--live-broker", "http://example.org"]) == 2
    assert "--live-broker expects mqtt://HOST[:PORT], got 'http://example.org'" in capsys.readouterr().err
    from twin.dashboard.app import create_app
    from twin.dashboard.pages import operations as op

    runs = tmp_path / "runs"
    (runs / "stopped-live").mkdir(parents=True)
    (runs / "stopped-live" / "live.json").write_text(json.dumps(
        {"scenario": "v", "t_s": 600.0, "state": "stopped", "stop_reason": "stop time 600 s reached",
         "broker": "mqtt://127.0.0.1:9"}))
    (runs / "stopped-live" / "manifest.json").write_text(json.dumps({"name": "v", "status": "running"}))
    (runs / "plain-run").mkdir()
    (runs / "plain-run" / "manifest.json").write_text(json.dumps({"name": "v", "status": "complete"}))
    ctx = create_app(runs, token="s3cret", live_timeout_s=1)._twin_ctx
    args = ("stopped-live", None, None, "East", "cell_broadcast", "Severe", "water rising")
    assert op.issue_warning(ctx, *args, token="wrong") == ("error", op.TOKEN_NEEDED)
    kind, msg = op.issue_warning(ctx, *args, token="s3cret")
    assert kind == "error" and "has stopped" in msg and "600 s" in msg
    assert op.issue_warning(ctx, None, *args[1:], token="s3cret") == ("error", op.NO_LIVE_RUN)
    for bad in ("plain-run", "../runs/stopped-live", "nope"):
        assert op.issue_warning(ctx, bad, *args[1:], token="s3cret")[1].startswith("Unknown live run")
    assert [r["id"] for r in op.live_runs(ctx)] == ["stopped-live"]
    with pytest.raises(DecisionError, match=r"warning\.label: String should have at most 200"):
        op.warning_decision("East", "cell_broadcast", "Severe", "x" * 300)
    with pytest.raises(DecisionError, match=r"warning\.channel"):
        op.warning_decision("East", "carrier_pigeon", "Severe", "go")
    with pytest.raises(DecisionError, match=r"warning\.severity"):
        op.warning_decision("East", "cell_broadcast", "Apocalyptic", "go")
    assert op.warning_decision(" East ; West,", None, "Severe", "") == {
        "type": "warning", "channel": "cell_broadcast", "area": ["East", "West"],
        "label": "Severe: flood warning for East, West"}


@pytest.mark.mosquitto
def test_opswarn_operations_page_issues_a_warning_in_chromium(tmp_path, forecast_base, mosquitto, browser,
                                                              artifacts_dir):
    from tests.dashboard.helpers import Server
    from twin.dashboard.app import create_app
    from twin.forecast import run_forecast

    run, city = forecast_base
    doc = run_forecast(run, 2, 600.0, tmp_path / "forecasts" / "fc1", at=600.0, every_s=300.0, serial=True,
                       city=city, rules=write_rules(tmp_path / "rules.yaml"))
    east = next(a for a in doc["alerts"] if a["area"] == "East" and a["msgType"] != "Cancel")
    runs = tmp_path / "runs"
    with LiveTwin(tmp_path, mosquitto, runs / "live-ops"), Server(create_app(runs, live_timeout_s=15)) as srv:
        ctx = browser.new_context(viewport={"width": 1366, "height": 2600})   # the form's menus open in view
        ctx.set_default_timeout(30000)
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            page.goto(srv.url + "/operations")
            page.wait_for_function("() => (document.querySelector('#op-live') || {innerText: ''})"
                                   ".innerText.includes('live-ops')")       # the running live twin, chosen
            page.locator("#op-alert").scroll_into_view_if_needed()
            page.click("#op-alert")
            page.get_by_role("option", name=re.compile(re.escape(east["identifier"]))).click()
            page.wait_for_function("() => document.querySelector('#op-area').value === 'East'")
            page.click("#op-issue")
            ok = page.wait_for_selector("#op-issue-msg .msg-ok", timeout=30000).inner_text()
            m = re.search(r"decision (\d+), acts at model time (\d+(?:\.\d+)?) s", ok)
            assert m, ok
            did, at_s = int(m.group(1)), float(m.group(2))
            # a warning for a ward the twin does not have: the twin's refusal, naming the field
            page.fill("#op-area", "Nowhere")
            page.click("#op-issue")
            bad = page.wait_for_selector("#op-issue-msg .msg-error", timeout=30000).inner_text()
            assert "Refused by live run live-ops" in bad and "warning.area" in bad and "Nowhere" in bad, bad
            page.screenshot(path=str(artifacts_dir / "dashboard_operations_issue_warning.png"), full_page=True)
            t_end = time.monotonic() + 20      # recorded by the live twin once the step it acts at ran
            log = pd.DataFrame({"decision_id": []})
            while time.monotonic() < t_end and did not in set(log["decision_id"]):
                p = runs / "live-ops" / "decisions.parquet"
                log = pd.read_parquet(p) if p.exists() else log
                time.sleep(0.2)
        finally:
            ctx.close()
    assert not errors, errors
    row = log[log["decision_id"] == did].iloc[0]
    assert row["t_s"] == at_s and row["source"] == "dashboard" and row["outcome"] == "applied"
    assert row["issuer"] == f"dashboard operations page, cap:{east['identifier']}"
    assert json.loads(row["params"])["area"] == ["East"]
    assert "Nowhere" not in "".join(pd.read_parquet(runs / "live-ops" / "decisions.parquet")["params"])
    live = json.loads(Path(runs / "live-ops" / "live.json").read_text())
    assert any(d.get("decision_id") == did for d in live["decisions_received"])
