"""Sensor store benchmarks: sustained MQTT ingest into DuckDB, and query latency at 10 M rows.

One JSON line per case on stdout. Wall-clock numbers on a shared machine are noisy, so every case
also reports a ratio against a reference measured in the same invocation:

* ``mqtt_ingest_sta``: N SensorThings messages (one observation each, QoS 1) published by
  ``--publishers`` separate processes (many devices) to a local mosquitto, received by the Ingester (manual ack after commit) and
  committed to DuckDB; rate = N / (first publish -> last commit). Reference: the same N
  observations inserted directly with ``SensorStore.insert`` (no broker) -> ``ratio_to_direct``.
  Second reference: the same publishers into a bare paho subscriber (QoS 1, auto-ack, no
  decoding, no store) -> ``ratio_to_bare_paho`` (what Python MQTT alone allows on this machine).
* ``mqtt_ingest_vendor_batched``: the same through a vendor topic carrying 100 readings per message.
* ``query_last_24h``: one datastream's last 24 h (1,440 rows) from a store of ``--rows`` rows
  (default 10 M: 1,000 datastreams x 10,000 one-minute values); median of 30 queries. Reference:
  the same query on a 100 k-row store -> ``ratio_to_100k``.

Usage: ``python benchmarks/sensors_ingest.py [--n 100000] [--rows 10000000]``
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.sensors.conftest import start_mosquitto, stop_pid  # noqa: E402
from twin.sensors import SensorStore  # noqa: E402
from twin.sensors.ingest import Ingester  # noqa: E402

PUBLISHER = r"""
import json, sys, time
import numpy as np
import paho.mqtt.client as mqtt
port, n, mode, k, npub = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub{k}", protocol=mqtt.MQTTv5)
c.max_inflight_messages_set(20)   # paho's publish rate falls with large in-flight windows
c.max_queued_messages_set(0)
c.connect("127.0.0.1", port)
c.loop_start()
t0 = np.datetime64("2020-01-01T00:00:00", "s")
msgs = []
if mode == "sta":
    for i in range(k, n, npub):
        ds = i % 100
        t = t0 + np.timedelta64(60 * (i // 100), "s")
        msgs.append((f"v1.1/Datastreams(ds{ds})/Observations",
                     json.dumps({"phenomenonTime": str(t) + "Z", "result": float(i % 50) / 10}).encode()))
else:
    per = 100
    for m in range(k, n // per, npub):
        ts = 1577836800000 + 60000 * m
        msgs.append((f"bench/st{m % 10}/batch", json.dumps({"readings": [
            {"k": k, "ts": ts, "v": float(k % 50) / 10} for k in range(per)]}).encode()))
print("ready", flush=True)
sys.stdin.readline()
t_start = time.time()
infos = [c.publish(t, p, qos=1) for t, p in msgs]
for i in infos:
    i.wait_for_publish(120)
print(json.dumps({"t_start": t_start, "t_published": time.time()}), flush=True)
c.disconnect(); c.loop_stop()
"""

VENDOR = {"mqtt": {"vendor": [{"topic": "bench/+/batch", "pattern": "bench/{station}/batch", "items": "readings",
                               "datastream": "{station}-{k}", "time": "ts", "time_format": "epoch_ms", "value": "v"}]}}


def _direct(n: int, tmp: Path) -> float:
    ids = np.array([f"ds{i % 100}" for i in range(n)], dtype=object)
    t = np.datetime64("2020-01-01T00:00:00", "us") + (np.arange(n) // 100) * np.timedelta64(60, "s")
    res = (np.arange(n) % 50) / 10.0
    with SensorStore(tmp / "direct.duckdb") as st:
        t0 = time.perf_counter()
        for s in range(0, n, 4000):     # the ingester's typical batch at 20 k/s and 0.2 s flushes
            st.insert(ids[s:s + 4000], t[s:s + 4000], res[s:s + 4000])
        return n / (time.perf_counter() - t0)


def _mqtt_case(n: int, tmp: Path, mode: str, n_pub: int, protocol: str = "5") -> dict:
    proc, port = start_mosquitto(tmp)
    store_path = tmp / f"mqtt_{mode}.duckdb"
    try:
        st = SensorStore(store_path)
        ing = Ingester(f"mqtt://127.0.0.1:{port}", st, VENDOR if mode == "vendor" else None,
                       client_id=f"bench-{mode}-{protocol}", flush_interval_s=0.1, protocol=protocol)
        th = threading.Thread(target=ing.run, daemon=True)
        th.start()
        assert ing.wait_subscribed(10)
        pubs = [subprocess.Popen([sys.executable, "-c", PUBLISHER, str(port), str(n), mode, str(k), str(n_pub)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 env=dict(os.environ, PYTHONPATH=str(REPO))) for k in range(n_pub)]
        for pub in pubs:
            assert pub.stdout.readline().strip() == "ready"
        for pub in pubs:
            pub.stdin.write("go\n")
            pub.stdin.flush()
        done_at = None
        deadline = time.time() + 600
        while time.time() < deadline:
            if ing.stats.stored >= n:
                done_at = time.time()
                break
            time.sleep(0.01)
        infos = [json.loads(pub.stdout.readline()) for pub in pubs]
        for pub in pubs:
            pub.wait(30)
        pubinfo = {"t_start": min(i["t_start"] for i in infos), "t_published": max(i["t_published"] for i in infos)}
        ing.stop()
        th.join(30)
        stored = st.count()
        st.close()
        if done_at is None:
            raise RuntimeError(f"{mode}: only {stored}/{n} stored in time")
        dt = done_at - pubinfo["t_start"]
        return {"stored": stored, "seconds": round(dt, 3), "obs_per_s": round(n / dt, 1),
                "publish_obs_per_s": round(n / (pubinfo["t_published"] - pubinfo["t_start"]), 1),
                "publishers": n_pub}
    finally:
        stop_pid(proc)


def _paho_ceiling(n: int, tmp: Path, n_pub: int) -> float:
    """Reference: the same publishers to a bare paho subscriber (QoS 1, auto-ack, no decoding, no store)."""
    import paho.mqtt.client as mqtt

    proc, port = start_mosquitto(tmp)
    try:
        got = [0, None]
        done = threading.Event()

        def on_message(c, u, m):
            got[0] += 1
            if got[0] >= n:
                got[1] = time.time()
                done.set()

        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-ref", protocol=mqtt.MQTTv5)
        sub.on_message = on_message
        sub.connect("127.0.0.1", port)
        sub.subscribe("v1.1/+/Observations", qos=1)
        sub.loop_start()
        time.sleep(0.5)
        pubs = [subprocess.Popen([sys.executable, "-c", PUBLISHER, str(port), str(n), "sta", str(k), str(n_pub)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 env=dict(os.environ, PYTHONPATH=str(REPO))) for k in range(n_pub)]
        for pub in pubs:
            assert pub.stdout.readline().strip() == "ready"
        for pub in pubs:
            pub.stdin.write("go\n")
            pub.stdin.flush()
        done.wait(600)
        infos = [json.loads(pub.stdout.readline()) for pub in pubs]
        for pub in pubs:
            pub.wait(30)
        sub.disconnect()
        sub.loop_stop()
        return n / (got[1] - min(i["t_start"] for i in infos))
    finally:
        stop_pid(proc)


def _build_store(path: Path, rows: int, n_ds: int) -> float:
    per = rows // n_ds
    t0 = time.perf_counter()
    with SensorStore(path) as st:
        base = np.datetime64("2020-01-01T00:00:00", "us")
        chunk_ds = max(1, 2_000_000 // per)
        for d0 in range(0, n_ds, chunk_ds):
            d1 = min(n_ds, d0 + chunk_ds)
            ids = np.repeat(np.array([f"ds{d:04d}" for d in range(d0, d1)], dtype=object), per)
            t = np.tile(base + np.arange(per) * np.timedelta64(60, "s"), d1 - d0)
            res = np.tile(np.sin(np.arange(per) / 100.0), d1 - d0)
            st.insert(ids, t, res)
    return time.perf_counter() - t0


def _query_latency(path: Path, ds: str, repeats: int = 30) -> tuple[float, int]:
    with SensorStore(path, read_only=True) as st:
        tmax = st.cursor().execute("SELECT max(phenomenon_time) FROM observations WHERE datastream_id = ?",
                                   [ds]).fetchone()[0]
        start = pd.Timestamp(tmax) - pd.Timedelta(hours=24)
        times = []
        n = 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            df = st.observations(ds, start=start, end=tmax)
            times.append(time.perf_counter() - t0)
            n = len(df)
        return float(np.median(times)), n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="observations per MQTT case")
    ap.add_argument("--rows", type=int, default=10_000_000, help="rows of the query-latency store")
    ap.add_argument("--publishers", type=int, default=4, help="publisher processes (devices) for the STA case")
    ap.add_argument("--skip-query", action="store_true")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        direct = _direct(a.n, tmp)
        ceiling = _paho_ceiling(a.n, tmp, a.publishers)
        for mode, protocol in (("sta", "5"), ("vendor", "5")):
            r = _mqtt_case(a.n, tmp, mode, a.publishers if mode == "sta" else 1, protocol)
            name = ("mqtt_ingest_sta" if mode == "sta" else "mqtt_ingest_vendor_batched") + \
                ("_mqtt311" if protocol == "3.1.1" else "")
            print(json.dumps({"case": name, "n": a.n, **r, "direct_insert_obs_per_s": round(direct, 1),
                              "ratio_to_direct": round(r["obs_per_s"] / direct, 3),
                              "bare_paho_subscriber_msgs_per_s": round(ceiling, 1),
                              "ratio_to_bare_paho": round(r["obs_per_s"] / ceiling, 3),
                              "target_obs_per_s": 20000, "cores": os.cpu_count()}), flush=True)
        if not a.skip_query:
            ref = tmp / "ref.duckdb"
            big = tmp / "big.duckdb"
            build_ref = _build_store(ref, 100_000, 10)
            lat_ref, n_ref = _query_latency(ref, "ds0003")
            build = _build_store(big, a.rows, 1000)
            lat, n = _query_latency(big, "ds0500")
            print(json.dumps({"case": "query_last_24h", "rows": a.rows, "rows_returned": n,
                              "median_ms": round(lat * 1e3, 2), "ref_rows": 100_000, "ref_median_ms": round(lat_ref * 1e3, 2),
                              "ratio_to_100k": round(lat / lat_ref, 2), "build_s": round(build, 1),
                              "build_rows_per_s": round(a.rows / build, 0), "ref_build_s": round(build_ref, 2),
                              "db_mb": round(big.stat().st_size / 1e6, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
