"""MQTT ingester: SensorThings and vendor topics -> DuckDB store, at least once, idempotent.

* paho-mqtt 2.x, ``CallbackAPIVersion.VERSION2``, MQTT 5, QoS 1 subscriptions.
* **Persistent session**: a fixed client id, ``clean_start=False`` and a Session Expiry Interval
  (default 7 days): messages published while the ingester is down are queued by the broker and
  delivered when it reconnects (the broker's ``max_queued_messages`` bounds the queue; mosquitto's
  default is 1000, raise it for long outages).
* **Acknowledge after commit** (``manual_ack=True``): a message is PUBACKed only once its row (or
  its reject) is committed to DuckDB; anything received but not yet committed when the process
  dies is redelivered, and the store's primary key makes the redelivery a no-op. A reject is
  stored once per (topic, payload SHA-256): a redelivered or resent malformed message only raises
  its ``times_seen``.
* **Every failure stays with its message** (``docs/design/ingest-contain-failures.md``): a message
  the decoder cannot use (not JSON, too large, too deep, a value that overflows in the unit
  conversion, ...) becomes a reject with its reason; a batch the store refuses is retried in halves
  down to single rows, so only the refused rows become rejects and the rest are stored. Only a
  failure of the store itself (disk, I/O) stops the ingester (:class:`StoreFailure`), with nothing
  of the failed batch acknowledged, so the broker redelivers it after the restart.
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

import duckdb
import numpy as np

from twin.sensors.adapters import (
    MAX_JSON_DEPTH,
    MAX_PAYLOAD_BYTES,
    Decoded,
    Decoder,
    _store_datastreams,
    config_entities,
    load_config,
    reject_reason,
)
from twin.sensors.store import InsertResult, PayloadDigest, SensorStore, utcnow

log = logging.getLogger("twin.sensors.ingest")


def parse_broker(url: str) -> tuple[str, int]:
    """``mqtt://HOST:PORT`` (or ``HOST:PORT``) -> (host, port)."""
    u = urllib.parse.urlparse(url if "://" in url else "mqtt://" + url)
    if u.scheme not in ("mqtt", "tcp"):
        raise ValueError(f"--broker {url!r}: scheme must be mqtt:// (got {u.scheme!r})")
    if not u.hostname:
        raise ValueError(f"--broker {url!r}: no host")
    return u.hostname, u.port or 1883


class StoreFailure(RuntimeError):
    """The store itself failed (not one message's data): nothing of the batch was acknowledged."""


# DuckDB errors that say the database, not the row, is at fault: they stop the ingester
_STORE_ERRORS = (duckdb.IOException, duckdb.FatalException, duckdb.InternalException, duckdb.PermissionException,
                 duckdb.TransactionException, duckdb.ConnectionException, MemoryError)


def _row_error(exc: BaseException) -> bool:
    """Whether a failed insert may be the rows' fault (then retried in halves, down to the row)."""
    return isinstance(exc, Exception) and not isinstance(exc, _STORE_ERRORS)


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
        self.decoder = Decoder(meta, mcfg.get("vendor") or [],
                               max_payload_bytes=mcfg.get("max_payload_bytes", MAX_PAYLOAD_BYTES),
                               max_json_depth=mcfg.get("max_json_depth", MAX_JSON_DEPTH))
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
        try:
            topic = msg.topic
        except UnicodeDecodeError:     # brokers refuse such topics; never let one stop the network thread
            topic = bytes(msg._topic).decode("utf-8", errors="backslashreplace")
        payload = msg.payload
        if len(payload) > self.decoder.max_payload_bytes:
            payload = PayloadDigest.of(payload)     # the buffer keeps its first bytes, size and hash only
        rec = (topic, payload, msg.mid, msg.qos, bool(msg.dup), self._generation, time.time())
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
        row_msg = []           # per observation row: index of its message in buf
        t_epoch = np.array([b[6] for b in buf])
        rec_times = (t_epoch * 1e6).astype("int64").astype("datetime64[us]")
        for i, (topic, payload, mid, _qos, _dup, _gen, _t) in enumerate(buf):
            n_obs, n_rej = len(out.ids), len(out.rejects)
            self.decoder.decode(topic, payload, rec_times[i], out)        # never raises
            if len(out.rejects) > n_rej:
                r = out.rejects[-1]
                rejects.append((r[0], r[1], r[2], r[3], mid))
            else:
                row_msg.extend([i] * (len(out.ids) - n_obs))
        try:
            res, n_rej_stored = self._commit(out, rejects, buf, row_msg, rec_times)
        except Exception as exc:
            if isinstance(exc, StoreFailure):
                raise
            raise StoreFailure(f"sensor store {self.store.path!r}: writing a batch of {len(buf)} message(s) "
                               f"failed, none acknowledged (the broker redelivers them): {reject_reason(exc)}") from exc
        # committed: now acknowledge (only messages received on the current connection)
        gen_now = self._generation
        acked = []
        for (_topic, _payload, mid, qos, _dup, gen, _t) in buf:
            if qos > 0 and gen == gen_now:
                self.client.ack(mid, qos)
                acked.append(mid)
        self._unacked_rejects += n_rej_stored
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

    def _insert_rows(self, out: Decoded, idx=None) -> InsertResult:
        """Insert all of ``out``'s rows, or those at the indices ``idx``."""
        cols = [out.ids, out.times, out.results, out.payloads, out.topics]
        if idx is not None:
            cols = [[c[i] for i in idx] for c in cols]
        ids, times, results, payloads, topics = cols
        return self.store.insert(np.array(ids, dtype=object), np.array(times, dtype="datetime64[us]"),
                                 np.array(results, dtype=np.float64), source="mqtt", payloads=payloads, topics=topics)

    def _commit(self, out: Decoded, rejects: list, buf, row_msg, rec_times) -> tuple[InsertResult, int]:
        """Store the batch's observations and rejects in one transaction. If the store refuses the
        batch for its data, retry it in halves down to single rows: the rows it refuses alone
        become rejects (reason ``store refused ...``), the others are stored."""
        n = len(out.ids)
        try:
            with self.store.transaction():
                res = self._insert_rows(out) if n else InsertResult()
                return res, self.store.add_rejects(rejects)
        except Exception as exc:
            if not _row_error(exc) or n == 0:
                raise
            log.warning("store refused a batch of %d observation(s) (%s); retrying it in parts",
                        n, reject_reason(exc))
        res = InsertResult()
        refused: list[tuple[int, BaseException]] = []
        self._insert_parts(out, list(range(n)), res, refused)
        for i, err in refused:
            m = buf[row_msg[i]]
            rejects.append((m[1], m[0], f"store refused datastream {out.ids[i]!r} at "
                            f"{np.datetime64(out.times[i], 's')}Z: {reject_reason(err)}", rec_times[row_msg[i]], m[2]))
        with self.store.transaction():
            return res, self.store.add_rejects(rejects)

    def _insert_parts(self, out: Decoded, idx: list, res: InsertResult, refused: list):
        try:
            with self.store.transaction():
                res += self._insert_rows(out, idx)
            return
        except Exception as exc:
            if not _row_error(exc):
                raise
            if len(idx) == 1:
                refused.append((idx[0], exc))
                return
        h = len(idx) // 2
        self._insert_parts(out, idx[:h], res, refused)
        self._insert_parts(out, idx[h:], res, refused)

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
