"""The ingester against a real mosquitto: kill -9 mid-way, restart, nothing lost, nothing doubled."""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import duckdb
import numpy as np
import paho.mqtt.client as mqtt
import pytest

from tests.sensors.helpers import REPO, die_with_parent, twin_env

N = 10_000
N_BAD = N // 20          # 5 % malformed


def _messages(rng):
    """N messages: (topic, payload, valid). Valid ones are unique (datastream, time) pairs."""
    bad_idx = set(rng.choice(N, size=N_BAD, replace=False).tolist())
    t0 = np.datetime64("2020-10-28T00:00:00", "s")
    msgs = []
    k = 0
    malformed = [
        lambda i: b"{not json",
        lambda i: json.dumps({"result": 1.0}).encode(),                                  # no phenomenonTime
        lambda i: json.dumps({"phenomenonTime": "2020-10-28T00:00:00Z"}).encode(),       # no result
        lambda i: json.dumps({"phenomenonTime": "yesterday-ish", "result": 2.0}).encode(),
        lambda i: json.dumps({"phenomenonTime": "2020-10-28T00:00:00Z", "result": "high"}).encode(),
        lambda i: json.dumps({"phenomenonTime": "2020-10-28T00:00:00Z", "result": None}).encode(),
        lambda i: b"\xff\xfe\x00garbage",
    ]
    for i in range(N):
        ds = f"rg{(k if i not in bad_idx else i) % 20}"
        topic = f"v1.1/Datastreams({ds})/Observations"
        if i in bad_idx:
            payload = malformed[i % len(malformed)](i)
            msgs.append((topic, payload, False))
        else:
            t = t0 + np.timedelta64(60 * (k // 20), "s")
            k += 1
            msgs.append((topic, json.dumps({"phenomenonTime": str(t) + "Z", "result": float(i % 97) / 10}).encode(), True))
    return msgs


def _start_ingester(broker, store, cfg, protocol="5", procs=None):
    """Start the ingester CLI; its stdout lines go to ``p.lines`` and its stderr to ``p.err_lines``.

    Both pipes are drained by threads from the start: an undrained pipe fills up under load
    (progress lines after every commit) and would block the ingester, stalling the broker.
    """
    p = subprocess.Popen([sys.executable, "-m", "twin", "sensors", "ingest", "--broker", broker, "--store",
                          str(store), "--config", str(cfg), "--client-id", "ingest-test", "--progress",
                          "--protocol", protocol],
                         cwd=REPO, env=twin_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=die_with_parent)
    if procs is not None:
        procs.append(p)
    p.lines = queue.Queue()
    p.err_lines = []
    threading.Thread(target=lambda: [p.lines.put(ln) for ln in iter(p.stdout.readline, "")], daemon=True).start()
    threading.Thread(target=lambda: [p.err_lines.append(ln) for ln in iter(p.stderr.readline, "")],
                     daemon=True).start()
    deadline = time.monotonic() + 30
    line = ""
    while time.monotonic() < deadline:
        try:
            line = p.lines.get(timeout=0.5)
        except queue.Empty:
            if p.poll() is not None:
                break
            continue
        if line.startswith("subscribed"):
            return p
    p.kill()
    p.wait(timeout=10)
    raise RuntimeError(f"ingester did not subscribe: {line!r} {''.join(p.err_lines)}")


def _count(store):
    try:
        con = duckdb.connect(str(store), read_only=True)
    except duckdb.Error:
        return None
    try:
        return con.execute("SELECT count(*) FROM observations").fetchone()[0], \
            con.execute("SELECT count(*) FROM rejects").fetchone()[0]
    finally:
        con.close()


@pytest.mark.timeout(240)
def test_kill_restart_exactly_once_in_store(broker, tmp_path, procs):
    rng = np.random.default_rng(7)
    msgs = _messages(rng)
    n_valid = sum(1 for m in msgs if m[2])
    # rejects are stored once per distinct (topic, payload) since issue #14 item 18 (was: one per message)
    n_bad = len({(t, p) for t, p, ok in msgs if not ok})
    store = tmp_path / "obs.duckdb"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("datastreams:\n" + "".join(
        f"  - {{id: rg{i}, station: S{i}, property: rain_rate, unit: mm/h}}\n" for i in range(20)))
    ing = _start_ingester(broker, store, cfg, procs=procs)

    host, port = broker.split("//")[1].split(":")
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub-test", protocol=mqtt.MQTTv5)
    pub.max_inflight_messages_set(20)
    pub.connect(host, int(port))
    pub.loop_start()
    try:
        half = N // 2
        infos = [pub.publish(t, p, qos=1) for t, p, _ in msgs[:half]]
        for i in infos:
            i.wait_for_publish(30)
        time.sleep(0.3)
        os.kill(ing.pid, signal.SIGKILL)          # hard kill: no flush, no clean disconnect
        ing.wait()
        # published while the ingester is down: queued by the broker for its persistent session
        infos = [pub.publish(t, p, qos=1) for t, p, _ in msgs[half:]]
        for i in infos:
            i.wait_for_publish(30)
    finally:
        pub.disconnect()
        pub.loop_stop()

    ing = _start_ingester(broker, store, cfg, procs=procs)
    # it prints the store's counts after each commit: wait for the last one
    lines = ing.lines
    last = None
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=2.0)
        except queue.Empty:
            if last is not None:
                break          # quiet for 2 s after progress: everything queued has arrived
            continue
        if line.startswith("{"):
            last = json.loads(line)
            if (last["observations"], last["rejects"]) == (n_valid, n_bad):
                break
    ing.send_signal(signal.SIGTERM)             # clean stop: flush, ack, disconnect
    ing.wait(timeout=30)
    time.sleep(0.2)                             # let the reader threads take the last lines
    err = "".join(ing.err_lines)
    out = "".join(lines.queue)
    assert ing.returncode == 0, err
    assert last is not None, err
    con = duckdb.connect(str(store), read_only=True)
    n_obs, n_distinct = con.execute(
        "SELECT count(*), count(DISTINCT (datastream_id, phenomenon_time)) FROM observations").fetchone()
    n_rej, n_seen = con.execute("SELECT count(*), sum(times_seen) FROM rejects").fetchone()
    reasons = con.execute("SELECT reason FROM rejects").fetchall()
    con.close()
    assert n_obs == n_valid
    assert n_distinct == n_obs
    assert n_rej == n_bad, reasons[:5]
    assert n_seen >= N_BAD        # every malformed message was received (redeliveries count too)
    final = json.loads(out.strip().splitlines()[-1])
    assert N - N // 2 <= final["received"] <= N   # the restarted ingester got the half queued while it was down


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_sigint_stops_cleanly_and_keeps_session(broker, tmp_path, protocol, procs):
    """SIGINT: flush, acknowledge, disconnect, exit 0; the session survives for the next start."""
    store = tmp_path / "s.duckdb"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("datastreams: []\n")
    ing = _start_ingester(broker, store, cfg, protocol, procs=procs)
    host, port = broker.split("//")[1].split(":")
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub-sigint", protocol=mqtt.MQTTv5)
    pub.connect(host, int(port))
    pub.loop_start()
    pub.publish("v1.1/Datastreams(7)/Observations",
                json.dumps({"phenomenonTime": "2020-10-28T00:00:00Z", "result": 1.5}), qos=1).wait_for_publish(10)
    time.sleep(0.5)
    ing.send_signal(signal.SIGINT)
    ing.wait(timeout=30)
    time.sleep(0.2)
    err = "".join(ing.err_lines)
    assert ing.returncode == 0, err
    # published while stopped, delivered on the next start under the same client id
    pub.publish("v1.1/Datastreams(7)/Observations",
                json.dumps({"phenomenonTime": "2020-10-28T00:01:00Z", "result": 2.5}), qos=1).wait_for_publish(10)
    pub.disconnect()
    pub.loop_stop()
    ing = _start_ingester(broker, store, cfg, protocol, procs=procs)
    time.sleep(1.0)
    ing.send_signal(signal.SIGTERM)
    ing.wait(timeout=30)
    time.sleep(0.2)
    err = "".join(ing.err_lines)
    assert ing.returncode == 0, err
    assert "session present: True" in err
    con = duckdb.connect(str(store), read_only=True)
    rows = con.execute("SELECT datastream_id, result, quality_flag FROM observations ORDER BY phenomenon_time").fetchall()
    reg = con.execute("SELECT registered FROM datastreams WHERE datastream_id = '7'").fetchone()
    con.close()
    assert rows == [("7", 1.5, "unregistered"), ("7", 2.5, "unregistered")]
    assert reg == (False,)
