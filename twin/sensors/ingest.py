"""MQTT ingester: SensorThings and vendor topics -> DuckDB store, at least once, idempotent.

* paho-mqtt 2.x, ``CallbackAPIVersion.VERSION2``, MQTT 5, QoS 1 subscriptions.
* **Persistent session**: a fixed client id, ``clean_start=False`` and a Session Expiry Interval
  (default 7 days): messages published while the ingester is down are queued by the broker and
  delivered when it reconnects (the broker's ``max_queued_messages`` bounds the queue; mosquitto's
  default is 1000, raise it for long outages).
* **Acknowledge after commit** (``manual_ack=True``): a message is PUBACKed only once its row (or
  its reject) is committed to DuckDB; anything received but not yet committed when the process
  dies is redelivered, and the store's primary key makes the redelivery a no-op. Redelivered
  malformed payloads (``dup`` set) are not rejected twice.
* Automatic reconnect with exponential backoff (``reconnect_delay_set(min, max)``).
* ``stop()`` (SIGINT/SIGTERM in the CLI) flushes, acknowledges, and disconnects leaving the session.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
from dataclasses import dataclass

import numpy as np

from twin.sensors.adapters import Decoded, Decoder, _store_datastreams, config_entities, load_config
from twin.sensors.store import SensorStore, utcnow

log = logging.getLogger("twin.sensors.ingest")


def parse_broker(url: str) -> tuple[str, int]:
    """``mqtt://HOST:PORT`` (or ``HOST:PORT``) -> (host, port)."""
    u = urllib.parse.urlparse(url if "://" in url else "mqtt://" + url)
    if u.scheme not in ("mqtt", "tcp"):
        raise ValueError(f"--broker {url!r}: scheme must be mqtt:// (got {u.scheme!r})")
    if not u.hostname:
        raise ValueError(f"--broker {url!r}: no host")
    return u.hostname, u.port or 1883


@dataclass
class IngestStats:
    received: int = 0
    stored: int = 0
    redelivered: int = 0
    rejected: int = 0
    batches: int = 0
    connects: int = 0


class Ingester:
    """Subscribe to SensorThings (``v1.1/+/Observations``) and vendor topics and store observations.

    ``store``: a :class:`SensorStore` or a path. ``config``: dict/YAML path (see
    :mod:`twin.sensors.adapters`). Use :meth:`run` (blocking until :meth:`stop`) or
    :meth:`start`/:meth:`stop` around your own loop.
    """

    def __init__(self, broker: str, store, config=None, *, client_id: str | None = None,
                 batch_size: int = 20000, flush_interval_s: float = 0.2, session_expiry_s: int = 7 * 86400,
                 reconnect_min_s: int = 1, reconnect_max_s: int = 30, on_batch=None, progress: bool = False,
                 protocol: str | None = None):
        import paho.mqtt.client as mqtt

        self.host, self.port = parse_broker(broker)
        self.cfg = load_config(config)
        mcfg = self.cfg.get("mqtt") or {}
        self.client_id = client_id or mcfg.get("client_id", "twin-sensors-ingest")
        self.topics = list(mcfg.get("sta_topics", ["v1.1/+/Observations"]))
        self.store = store if isinstance(store, SensorStore) else SensorStore(store)
        self._own_store = not isinstance(store, SensorStore)
        stations, streams = config_entities(self.cfg)
        self.store.register(stations, streams)
        meta = _store_datastreams(self.store)
        self.decoder = Decoder(meta, mcfg.get("vendor") or [])
        self.topics += [v.topic for v in self.decoder.vendor]
        self.batch_size = int(batch_size)
        self.flush_interval_s = float(flush_interval_s)
        self.session_expiry_s = int(session_expiry_s)
        self.stats = IngestStats()
        self.on_batch = on_batch
        self.progress = progress
        self._buf: list = []
        self._buf_lock = threading.Lock()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._generation = 0
        # rejects stored with an MQTT packet id but not yet acknowledged (also from a killed run):
        # only while there are any does a flush have to mark acknowledged ones in the table
        with self.store._lock:
            self._unacked_rejects = int(self.store.con.execute(
                "SELECT count(*) FROM rejects WHERE mqtt_acked = FALSE").fetchone()[0])
        self.protocol = str(protocol or mcfg.get("protocol", "5"))
        if self.protocol not in ("5", "3.1.1"):
            raise ValueError(f"mqtt.protocol must be '5' or '3.1.1', got {self.protocol!r}")
        if self.protocol == "5":
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                            protocol=mqtt.MQTTv5, manual_ack=True)
        else:   # MQTT 3.1.1: clean_session=False is the persistent session (no per-message v5 properties)
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                            protocol=mqtt.MQTTv311, clean_session=False, manual_ack=True)
        c.reconnect_delay_set(reconnect_min_s, reconnect_max_s)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        self.client = c

    # ------------------------------------------------------------------ paho callbacks (network thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.warning("connect to %s:%s refused: %s", self.host, self.port, reason_code)
            return
        self._generation += 1
        self.stats.connects += 1
        log.info("connected to %s:%s (session present: %s)", self.host, self.port, flags.session_present)
        self._connected.set()
        client.subscribe([(t, 1) for t in self.topics])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self._subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("disconnected (%s); reconnecting with backoff", reason_code)

    def _on_message(self, client, userdata, msg):
        rec = (msg.topic, msg.payload, msg.mid, msg.qos, bool(msg.dup), self._generation, time.time())
        with self._buf_lock:
            self._buf.append(rec)

    # ------------------------------------------------------------------ flushing (caller's thread)
    def flush(self) -> int:
        """Decode, store and commit everything received, then acknowledge it. Returns the count."""
        with self._buf_lock:
            buf, self._buf = self._buf, []
        if not buf:
            return 0
        out = Decoded()
        rejects = []
        t_epoch = np.array([b[6] for b in buf])
        rec_times = (t_epoch * 1e6).astype("int64").astype("datetime64[us]")
        cur = None
        for i, (topic, payload, mid, _qos, dup, _gen, _t) in enumerate(buf):
            n_rej = len(out.rejects)
            self.decoder.decode(topic, payload, rec_times[i], out)
            if len(out.rejects) > n_rej:
                r = out.rejects[-1]
                if dup:
                    # a redelivery of a malformed message we stored but had not acknowledged?
                    cur = cur or self.store.cursor()
                    p = bytes(payload).decode("utf-8", errors="backslashreplace")
                    if cur.execute("SELECT 1 FROM rejects WHERE mqtt_acked = FALSE AND mqtt_mid = ? AND topic = ? "
                                   "AND payload = ? LIMIT 1", [mid, topic, p]).fetchone():
                        continue
                rejects.append((r[0], r[1], r[2], r[3], mid))
        con = self.store.con
        with self.store._lock:
            con.execute("BEGIN TRANSACTION")
            try:
                res = self.store.insert(np.array(out.ids, dtype=object), np.array(out.times, dtype="datetime64[us]"),
                                        np.array(out.results, dtype=np.float64), source="mqtt",
                                        payloads=out.payloads, topics=out.topics)
                self.store.add_rejects(rejects)
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise
        # committed: now acknowledge (only messages received on the current connection)
        gen_now = self._generation
        acked = []
        for (_topic, _payload, mid, qos, _dup, gen, _t) in buf:
            if qos > 0 and gen == gen_now:
                self.client.ack(mid, qos)
                acked.append(mid)
        self._unacked_rejects += len(rejects)
        if acked and self._unacked_rejects > 0:
            with self.store._lock:
                n_marked = self.store.con.execute(
                    "UPDATE rejects SET mqtt_acked = TRUE WHERE mqtt_acked = FALSE AND "
                    "mqtt_mid IN (SELECT unnest(?::INTEGER[]))", [acked]).fetchone()[0]
            self._unacked_rejects = max(0, self._unacked_rejects - int(n_marked))
        self.stats.received += len(buf)
        self.stats.stored += res.inserted
        self.stats.redelivered += res.redelivered
        self.stats.rejected += len(rejects) + res.conflicts
        self.stats.batches += 1
        if self.on_batch is not None:
            self.on_batch(res, len(rejects))
        if self.progress:
            cur = self.store.cursor()
            n_obs = cur.execute("SELECT count(*) FROM observations").fetchone()[0]
            n_rej = cur.execute("SELECT count(*) FROM rejects").fetchone()[0]
            print(json.dumps({"observations": n_obs, "rejects": n_rej, "received": self.stats.received}), flush=True)
        return len(buf)

    # ------------------------------------------------------------------ lifecycle
    def start(self):
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        if self.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.session_expiry_s
            props.ReceiveMaximum = 65535
            self.client.connect_async(self.host, self.port, keepalive=30, clean_start=False, properties=props)
        else:
            self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()

    def wait_subscribed(self, timeout: float = 10.0) -> bool:
        return self._subscribed.wait(timeout)

    def run(self, stop_event: threading.Event | None = None):
        """Start, then flush every ``flush_interval_s`` until :meth:`stop` (or ``stop_event``)."""
        self.start()
        try:
            while not self._stop.is_set() and not (stop_event is not None and stop_event.is_set()):
                self._stop.wait(self.flush_interval_s)
                with self._buf_lock:
                    n = len(self._buf)
                if n:
                    self.flush()
        finally:
            self.close()

    def stop(self):
        self._stop.set()

    def close(self):
        """Final flush (committed, then acknowledged), disconnect keeping the session, close the store."""
        self._stop.set()
        try:
            self.flush()
            # give the network thread a moment to send the PUBACKs before DISCONNECT
            time.sleep(0.05)
        finally:
            try:
                self.client.disconnect()
            finally:
                self.client.loop_stop()
                if self._own_store:
                    self.store.close()


def received_now():
    return utcnow()
