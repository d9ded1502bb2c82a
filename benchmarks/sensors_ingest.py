"""Sensor store benchmarks: sustained MQTT ingest into DuckDB, and query latency at 10 M rows.

One JSON line per case on stdout, each with the load average (1 min) before and after it. Wall-clock
numbers on a shared machine are noisy, so every case also reports a ratio against a reference
measured in the same invocation.

Publishers are C processes (``mosquitto_pub -l``, Debian ``mosquitto-clients``), one per datastream
topic (``--datastreams``, i.e. that many devices), QoS 1, MQTT 5, each reading one STA JSON
payload per line from a file: they cost little CPU, so they do not steal much from the ingester
on the same 2 cores (4 Python paho publishers used to take most of a core).

* ``bare_paho_live`` (reference): a bare paho subscriber (MQTT 5, QoS 1, auto-ack, no decoding,
  no store) while the publishers publish N one-observation messages: what Python MQTT alone allows.
* ``mqtt_ingest_sta_live``: the Ingester (decode, DuckDB commit, then manual PUBACK) on the same
  load; rate = N / (publishers started -> last observation committed); ``ratio_to_bare_paho``.
* ``bare_paho_backlog`` (reference) and ``mqtt_ingest_sta_backlog``: the broker already holds N
  messages for the client's persistent session (published while it was down, as after an outage
  of the operations centre's ingester); rate = N / (connect -> last message / last commit).
* ``mqtt_ingest_vendor_batched``: a vendor topic carrying 100 readings per message.
* ``--protocols 5,3.1.1`` repeats the two ingest STA cases over MQTT 3.1.1 (no MQTT 5 properties
  to decode per message; the broker must then allow enough unacknowledged messages in flight,
  ``max_inflight_messages 0``, which the benchmark broker sets).
* ``bare_paho_shared_<K>proc_live`` (reference, ``--shared-ref K``, default 2): K bare paho
  subscribers in separate processes sharing ``$share/bench/v1.1/+/Observations`` (MQTT 5): what
  several decoding processes feeding one DuckDB writer could at best gain on this machine.
* ``direct_insert`` reference: the same N observations through ``SensorStore.insert`` (no broker).
* ``query_last_24h``: one datastream's last 24 h (1,440 rows) from a store of ``--rows`` rows
  (default 10 M: 1,000 datastreams x 10,000 one-minute values); median of 30 queries. Reference:
  the same query on a 100 k-row store -> ``ratio_to_100k``.

CPU seconds per observation are reported for the subscriber process (``sub_cpu_us_per_obs``), the
publishers and the broker: on 2 shared cores the rate is bounded by their sum.

Usage: ``python benchmarks/sensors_ingest.py [--n 100000] [--datastreams 10] [--rows 10000000]
[--skip-query] [--protocols 5,3.1.1] [--repeat 1] [--shared-ref 2]``
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
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

from tests.sensors.helpers import start_mosquitto, stop_pid  # noqa: E402
from twin.sensors import SensorStore  # noqa: E402
from twin.sensors.ingest import Ingester  # noqa: E402

VENDOR = {"mqtt": {"vendor": [{"topic": "bench/+/batch", "pattern": "bench/{station}/batch", "items": "readings",
                               "datastream": "{station}-{k}", "time": "ts", "time_format": "epoch_ms", "value": "v"}]}}
MOSQUITTO_PUB = shutil.which("mosquitto_pub")


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _proc_cpu_s(pid: int) -> float:
    """user + system CPU seconds of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _write_payloads(tmp: Path, n: int, n_ds: int, mode: str) -> list[tuple[str, Path, int]]:
    """One file per publisher: (topic, file, message count). STA: one observation per line on
    ``v1.1/Datastreams(ds<k>)/Observations``; vendor: 100 readings per line on ``bench/st<k>/batch``."""
    out = []
    t0 = np.datetime64("2020-01-01T00:00:00", "s")
    if mode == "sta":
        for d in range(n_ds):
            i = np.arange(d, n, n_ds)
            times = (t0 + (i // n_ds) * np.timedelta64(60, "s")).astype(str)
            res = (i % 50) / 10.0
            path = tmp / f"sta_ds{d}.txt"
            path.write_text("".join(f'{{"phenomenonTime": "{t}Z", "result": {float(r)!r}}}\n' for t, r in zip(times, res)))
            out.append((f"v1.1/Datastreams(ds{d})/Observations", path, i.size))
    else:
        per = 100
        n_msg = n // per
        for st in range(n_ds):
            lines = []
            for m in range(st, n_msg, n_ds):
                ts = 1577836800000 + 60000 * m
                lines.append(json.dumps({"readings": [{"k": k, "ts": ts, "v": float(k % 50) / 10} for k in range(per)]}))
            path = tmp / f"vendor_st{st}.txt"
            path.write_text("".join(ln + "\n" for ln in lines))
            out.append((f"bench/st{st}/batch", path, len(lines)))
    return out


def _publish(port: int, payloads, wait: bool = True):
    """Start one ``mosquitto_pub -l`` per topic (QoS 1, MQTT 5); returns (t_start, procs)."""
    t_start = time.time()
    procs = [subprocess.Popen([MOSQUITTO_PUB, "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-V", "5",
                               "-i", f"bench-pub{k}", "-t", topic, "-l"], stdin=open(path, "rb"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for k, (topic, path, _n) in enumerate(payloads)]
    return t_start, procs


def _wait_publishers(procs, timeout: float = 600) -> tuple[float, float]:
    """Wait for the publishers; returns (time all done, their CPU seconds)."""
    cpu = 0.0
    deadline = time.time() + timeout
    for p in procs:
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                p.returncode = os.waitstatus_to_exitcode(status)
                cpu += ru.ru_utime + ru.ru_stime
                break
            if time.time() > deadline:
                raise RuntimeError("mosquitto_pub did not finish in time")
            time.sleep(0.005)
        if p.returncode != 0:
            raise RuntimeError(f"mosquitto_pub failed: {p.stderr.read().decode()}")
    return time.time(), cpu


class _Bare:
    """Reference subscriber: paho, QoS 1, auto-ack, no decoding, no store (persistent session)."""

    def __init__(self, port: int, n: int, client_id: str, protocol: str = "5"):
        import paho.mqtt.client as mqtt

        self.n, self.port, self.got, self.done_at = n, port, 0, None
        self.done = threading.Event()
        self.subscribed = threading.Event()
        v5 = protocol == "5"
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, **({} if v5 else {"clean_session": False}))
        self.v5 = v5
        self.c.on_message = self._on_message
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe("v1.1/+/Observations", qos=1)
        self.c.on_subscribe = lambda *a: self.subscribed.set()

    def _on_message(self, c, u, m):
        self.got += 1
        if self.got >= self.n and self.done_at is None:
            self.done_at = time.time()
            self.done.set()

    def connect(self):
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.subscribed.clear()
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
            self.c.connect("127.0.0.1", self.port, clean_start=False, properties=props)
        else:
            self.c.connect("127.0.0.1", self.port)
        self.c.loop_start()
        assert self.subscribed.wait(120)   # a busy shared machine can take long

    def disconnect(self):
        self.c.disconnect()
        self.c.loop_stop()


def _case(n: int, tmp: Path, payloads, *, who: str, backlog: bool, protocol: str = "5", config=None) -> dict:
    """One measured run on a fresh broker. ``who``: 'bare' or 'ingester'."""
    proc, port = start_mosquitto(tmp)
    try:
        load0 = _load()
        if who == "bare":
            sub = _Bare(port, n, f"bench-bare-{protocol}", protocol)
            sub.connect()
            if backlog:
                sub.disconnect()
        else:
            store_path = tmp / f"ingest_{time.time_ns()}.duckdb"
            st = SensorStore(store_path)
            done = threading.Event()

            def make():
                ing = Ingester(f"mqtt://127.0.0.1:{port}", st, config, client_id=f"bench-ingest-{protocol}",
                               protocol=protocol)      # the CLI's defaults: 0.2 s between commits
                ing.on_batch = lambda res, n_rej: ((ing.stats.stored >= n or ing.stats.rejected) and not done.is_set()
                                                   and (setattr(ing, "done_at", time.time()) or done.set()))
                th = threading.Thread(target=ing.run, daemon=True)
                th.start()
                assert ing.wait_subscribed(120)
                return ing, th

            ing, th = make()
            if backlog:          # the session exists; the ingester goes down (clean stop keeps the session)
                ing.stop()
                th.join(30)
        broker_cpu0 = _proc_cpu_s(proc.pid)
        cpu0 = time.process_time()
        t_pub, pubs = _publish(port, payloads)
        t_published, pub_cpu = _wait_publishers(pubs)
        if backlog:                                  # everything is queued in the broker: now connect
            time.sleep(0.2)
            cpu0 = time.process_time()
            t0 = time.time()
            if who == "bare":
                sub.connect()
            else:
                ing, th = make()
        else:
            t0 = t_pub
        if who == "bare":
            ok = sub.done.wait(300)
            done_at = sub.done_at
            sub.disconnect()
            stored = sub.got
        else:
            ok = done.wait(300)
            done_at = getattr(ing, "done_at", None)
            cpu1 = time.process_time()
            ing.stop()
            th.join(30)
            stored = st.count()
            n_rej = st.count("rejects")
            st.close()
        cpu1 = time.process_time() if who == "bare" else cpu1
        if not ok:
            raise RuntimeError(f"{who}: only {stored}/{n} in time")
        dt = done_at - t0
        out = {"n": n, "received" if who == "bare" else "stored": stored, "seconds": round(dt, 3),
               "obs_per_s": round(n / dt, 1), "protocol": protocol,
               "publishers": len(payloads), "publisher": "mosquitto_pub -l (C), QoS 1",
               "publish_obs_per_s": round(n / (t_published - t_pub), 1),
               "sub_cpu_us_per_obs": round((cpu1 - cpu0) / n * 1e6, 1),
               "pub_cpu_us_per_obs": round(pub_cpu / n * 1e6, 1),
               "broker_cpu_us_per_obs": round((_proc_cpu_s(proc.pid) - broker_cpu0) / n * 1e6, 1),
               "load_before": load0, "load_after": _load(), "cores": os.cpu_count()}
        if who != "bare":
            out["rejects"] = n_rej
            if stored != n or n_rej:
                raise RuntimeError(f"ingester stored {stored}/{n}, {n_rej} rejects")
        return out
    finally:
        stop_pid(proc)


SHARED_SUB = r"""
import sys, time, paho.mqtt.client as mqtt
port, k, group = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
got = [0, 0.0]
def on_message(c, u, m):
    got[0] += 1
    got[1] = time.time()
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-shared{k}", protocol=mqtt.MQTTv5)
c.on_message = on_message
c.on_subscribe = lambda *a: print("ready", flush=True)
c.connect("127.0.0.1", port)
c.subscribe(f"$share/{group}/v1.1/+/Observations", qos=1)
c.loop_start()
for line in sys.stdin:                  # "report" -> count, last arrival, CPU seconds; "stop" ends
    print(got[0], got[1], time.process_time(), flush=True)
    if line.strip() == "stop":
        break
c.disconnect(); c.loop_stop()
"""


def _shared_bare(n: int, tmp: Path, payloads, n_proc: int) -> dict:
    """Reference for the 'several decoding processes' idea: ``n_proc`` bare paho subscribers (MQTT 5,
    QoS 1, auto-ack) in separate processes sharing ``$share/bench/v1.1/+/Observations``."""
    proc, port = start_mosquitto(tmp)
    try:
        load0 = _load()
        subs = [subprocess.Popen([sys.executable, "-c", SHARED_SUB, str(port), str(k), "bench"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True) for k in range(n_proc)]
        for sp in subs:
            assert sp.stdout.readline().strip() == "ready"
        broker_cpu0 = _proc_cpu_s(proc.pid)
        t_pub, pubs = _publish(port, payloads)
        t_published, pub_cpu = _wait_publishers(pubs)
        deadline = time.time() + 300
        while True:                              # poll the subscribers' counts until all N are in
            res = []
            for sp in subs:
                sp.stdin.write("report\n")
                sp.stdin.flush()
            res = [sp.stdout.readline().split() for sp in subs]
            if sum(int(r[0]) for r in res) >= n:
                break
            if time.time() > deadline:
                raise RuntimeError(f"shared subscribers got {sum(int(r[0]) for r in res)}/{n} in time")
            time.sleep(0.2)
        for sp in subs:
            sp.stdin.write("stop\n")
            sp.stdin.flush()
            sp.stdout.readline()
            sp.wait(30)
        got = sum(int(r[0]) for r in res)
        done_at = max(float(r[1]) for r in res)
        dt = done_at - t_pub
        return {"n": n, "received": got, "seconds": round(dt, 3), "obs_per_s": round(n / dt, 1), "protocol": "5",
                "subscriber_processes": n_proc, "per_process": [int(r[0]) for r in res],
                "publishers": len(payloads), "publisher": "mosquitto_pub -l (C), QoS 1",
                "publish_obs_per_s": round(n / (t_published - t_pub), 1),
                "sub_cpu_us_per_obs": round(sum(float(r[2]) for r in res) / n * 1e6, 1),
                "pub_cpu_us_per_obs": round(pub_cpu / n * 1e6, 1),
                "broker_cpu_us_per_obs": round((_proc_cpu_s(proc.pid) - broker_cpu0) / n * 1e6, 1),
                "load_before": load0, "load_after": _load(), "cores": os.cpu_count()}
    finally:
        stop_pid(proc)


def _direct(n: int, tmp: Path) -> float:
    ids = np.array([f"ds{i % 100}" for i in range(n)], dtype=object)
    t = np.datetime64("2020-01-01T00:00:00", "us") + (np.arange(n) // 100) * np.timedelta64(60, "s")
    res = (np.arange(n) % 50) / 10.0
    with SensorStore(tmp / "direct.duckdb") as st:
        t0 = time.perf_counter()
        for s in range(0, n, 4000):     # the ingester's typical batch at 20 k/s and 0.2 s flushes
            st.insert(ids[s:s + 4000], t[s:s + 4000], res[s:s + 4000])
        return n / (time.perf_counter() - t0)


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
    ap.add_argument("--datastreams", type=int, default=10, help="publisher processes, one per datastream topic")
    ap.add_argument("--rows", type=int, default=10_000_000, help="rows of the query-latency store")
    ap.add_argument("--protocols", default="5", help="MQTT versions for the ingest STA cases, e.g. 5,3.1.1")
    ap.add_argument("--repeat", type=int, default=1, help="repeat the STA live/backlog pairs")
    ap.add_argument("--skip-query", action="store_true")
    ap.add_argument("--skip-vendor", action="store_true")
    ap.add_argument("--shared-ref", type=int, default=2, metavar="K",
                    help="also K bare paho processes on one MQTT 5 shared subscription (0: skip)")
    a = ap.parse_args(argv)
    if MOSQUITTO_PUB is None:
        raise SystemExit("benchmarks/sensors_ingest.py needs mosquitto_pub (apt-get install mosquitto-clients)")
    protocols = [p.strip() for p in a.protocols.split(",") if p.strip()]

    def emit(case, r, **extra):
        print(json.dumps({"case": case, **r, **extra, "target_obs_per_s": 20000}), flush=True)

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        sta = _write_payloads(tmp, a.n, a.datastreams, "sta")
        direct = _direct(a.n, tmp)
        print(json.dumps({"case": "direct_insert", "n": a.n, "obs_per_s": round(direct, 1), "load": _load()}),
              flush=True)
        for _rep in range(a.repeat):
            for backlog in (False, True):
                kind = "backlog" if backlog else "live"
                ref = _case(a.n, tmp, sta, who="bare", backlog=backlog)
                emit(f"bare_paho_{kind}", ref)
                if not backlog and a.shared_ref:
                    r = _shared_bare(a.n, tmp, sta, a.shared_ref)
                    emit(f"bare_paho_shared_{a.shared_ref}proc_live", r, bare_paho_obs_per_s=ref["obs_per_s"],
                         ratio_to_bare_paho=round(r["obs_per_s"] / ref["obs_per_s"], 3))
                for protocol in protocols:
                    r = _case(a.n, tmp, sta, who="ingester", backlog=backlog, protocol=protocol)
                    emit(f"mqtt_ingest_sta_{kind}" + ("" if protocol == "5" else "_mqtt311"), r,
                         bare_paho_obs_per_s=ref["obs_per_s"], ratio_to_bare_paho=round(r["obs_per_s"] / ref["obs_per_s"], 3),
                         direct_insert_obs_per_s=round(direct, 1), ratio_to_direct=round(r["obs_per_s"] / direct, 3))
        if not a.skip_vendor:
            vendor = _write_payloads(tmp, a.n, 1, "vendor")
            r = _case(a.n, tmp, vendor, who="ingester", backlog=False, config=VENDOR)
            emit("mqtt_ingest_vendor_batched", r, readings_per_message=100, direct_insert_obs_per_s=round(direct, 1),
                 ratio_to_direct=round(r["obs_per_s"] / direct, 3))
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
                              "db_mb": round(big.stat().st_size / 1e6, 1), "load": _load()}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
