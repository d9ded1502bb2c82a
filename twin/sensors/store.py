"""The DuckDB sensor store.

Tables (names and the first columns are a public contract):

* ``observations(datastream_id, phenomenon_time, result, quality_flag, qc_mask, received_time, source)``
  one row per accepted observation; ``phenomenon_time`` is a UTC ``TIMESTAMP`` (naive, UTC by
  convention), ``result`` is in the observed property's canonical unit, ``quality_flag`` is
  ``'good'`` or the flag names joined by ``','`` (see :data:`twin.sensors.model.FLAG_BITS`),
  ``qc_mask`` the same as a bit mask. Primary key ``(datastream_id, phenomenon_time)``: inserting the
  same observation twice is a no-op (idempotent, so MQTT redeliveries are harmless).
* ``rejects(payload, topic, reason, received_time, ...)`` every payload that could not be accepted,
  raw, with the reason; a second *different* value for an existing (datastream, time) lands here
  too (reason ``duplicate: ...``) and flags the stored one ``duplicate``. One row per distinct
  ``(topic, payload)``: ``payload_sha256`` (of the payload's bytes) and ``payload_bytes`` identify
  it, a resent or redelivered copy only raises ``times_seen``; a payload over
  :data:`REJECT_PAYLOAD_KEEP` bytes is stored as its first bytes (size and hash name the whole).
* ``stations`` (STA Thing + Location) and ``datastreams`` (STA Datastream + ObservedProperty).

Batches go in through Arrow (``INSERT OR IGNORE ... SELECT FROM arrow_table``), which is what makes
tens of thousands of observations per second possible from Python.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from twin.sensors.model import (
    FLAG_BITS,
    INGEST_MASK,
    PROPERTIES,
    Datastream,
    Station,
    flag_text,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS stations (
    station_id VARCHAR PRIMARY KEY, name VARCHAR, description VARCHAR,
    x DOUBLE, y DOUBLE, lon DOUBLE, lat DOUBLE, crs VARCHAR, properties VARCHAR);
CREATE TABLE IF NOT EXISTS datastreams (
    datastream_id VARCHAR PRIMARY KEY, station_id VARCHAR, name VARCHAR, observed_property VARCHAR,
    unit VARCHAR, source_unit VARCHAR, sensor VARCHAR, interval_s DOUBLE, registered BOOLEAN,
    properties VARCHAR);
CREATE TABLE IF NOT EXISTS observations (
    datastream_id VARCHAR NOT NULL, phenomenon_time TIMESTAMP NOT NULL, result DOUBLE NOT NULL,
    quality_flag VARCHAR NOT NULL, qc_mask INTEGER NOT NULL, received_time TIMESTAMP, source VARCHAR,
    qc_checked BOOLEAN DEFAULT FALSE,
    PRIMARY KEY (datastream_id, phenomenon_time));
CREATE TABLE IF NOT EXISTS rejects (
    payload VARCHAR, topic VARCHAR, reason VARCHAR NOT NULL, received_time TIMESTAMP NOT NULL,
    mqtt_mid INTEGER, mqtt_acked BOOLEAN, payload_bytes BIGINT, payload_sha256 VARCHAR,
    times_seen INTEGER DEFAULT 1);
"""
# columns added to ``rejects`` after the first release: (name, type, backfill for existing rows)
_REJECT_MIGRATION = [
    ("payload_bytes", "BIGINT", "octet_length(encode(payload))"),
    ("payload_sha256", "VARCHAR", "sha256(payload)"),
    ("times_seen", "INTEGER DEFAULT 1", None),    # existing rows take the default
]
_REJECT_COLS = ("payload, topic, reason, received_time, mqtt_mid, mqtt_acked, payload_bytes, payload_sha256, "
                "times_seen")
REJECT_PAYLOAD_KEEP = 65536      # bytes of a rejected payload kept in ``rejects.payload``
REJECT_REASON_MAX = 1000         # characters of a reject's reason


@dataclass(frozen=True)
class PayloadDigest:
    """What is kept of a payload too large to keep: its first bytes, its size and its SHA-256."""
    prefix: bytes
    size: int
    sha256: str

    @classmethod
    def of(cls, payload, keep: int = REJECT_PAYLOAD_KEEP) -> PayloadDigest:
        b = payload if isinstance(payload, bytes) else bytes(payload)
        return cls(b[:keep], len(b), hashlib.sha256(b).hexdigest())

    def __len__(self):
        return self.size


def _text(s) -> str | None:
    """Text DuckDB can store (valid UTF-8: lone surrogates become escapes)."""
    if s is None:
        return None
    s = str(s)
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", errors="surrogatepass").decode("utf-8", errors="backslashreplace")


def _reject_payload(payload) -> tuple[str | None, int | None, str | None]:
    """A reject's payload -> (text kept, size in bytes, SHA-256 hex of the bytes)."""
    if payload is None:
        return None, None, None
    if isinstance(payload, PayloadDigest):
        b, size, sha = payload.prefix[:REJECT_PAYLOAD_KEEP], payload.size, payload.sha256
    else:
        if isinstance(payload, (bytes, bytearray, memoryview)):
            b = bytes(payload)
        else:
            b = str(payload).encode("utf-8", errors="surrogatepass")
        size, sha = len(b), hashlib.sha256(b).hexdigest()
        b = b[:REJECT_PAYLOAD_KEEP]
    return b.decode("utf-8", errors="backslashreplace"), size, sha

_OBS_SCHEMA = pa.schema([
    ("datastream_id", pa.string()),
    ("phenomenon_time", pa.timestamp("us")),
    ("result", pa.float64()),
    ("quality_flag", pa.string()),
    ("qc_mask", pa.int32()),
    ("received_time", pa.timestamp("us")),
    ("source", pa.string()),
])


def utcnow() -> np.datetime64:
    return np.datetime64(_dt.datetime.now(_dt.UTC).replace(tzinfo=None), "us")


def to_utc_naive(values) -> np.ndarray:
    """Anything time-like (ISO strings with offsets, tz-aware pandas, datetime64) -> datetime64[us] UTC."""
    if np.ndim(values) == 0:
        values = [values.item() if isinstance(values, np.ndarray) else values]
    elif isinstance(values, np.ndarray) and values.dtype.kind in "UO":
        values = values.tolist()
    idx = pd.DatetimeIndex(pd.to_datetime(values, utc=True))
    return idx.tz_convert("UTC").tz_localize(None).to_numpy(dtype="datetime64[us]")


@dataclass
class InsertResult:
    inserted: int = 0          # new rows written
    redelivered: int = 0       # identical (datastream, time, result) already stored: no-op
    conflicts: int = 0         # different result for a stored (datastream, time): kept in rejects
    out_of_order: int = 0
    clock_skew: int = 0

    def __iadd__(self, other: InsertResult):
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))
        return self


class SensorStore:
    """A DuckDB file (or ``":memory:"``) holding stations, datastreams, observations and rejects.

    ``clock_skew_tolerance_s``: an observation stamped more than this ahead of its receive time is
    flagged ``clock_skew`` (the sensor's clock runs fast, or its time zone is wrong).
    Thread-safe: one connection guarded by a lock; readers in other threads may use
    :meth:`cursor`.
    """

    def __init__(self, path: str | Path = ":memory:", *, read_only: bool = False,
                 clock_skew_tolerance_s: float = 300.0):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(self.path, read_only=read_only)
        except duckdb.Error as exc:
            raise ValueError(f"cannot open sensor store {self.path!r}: {exc}") from exc
        self.read_only = read_only
        self.clock_skew_tolerance = np.timedelta64(int(clock_skew_tolerance_s * 1e6), "us")
        self._lock = threading.RLock()
        if not read_only:
            self.con.execute(_SCHEMA)
            self._migrate_rejects()
        self._datastreams: dict[str, dict] = {}
        self._last_time: dict[str, np.datetime64] = {}
        self._load_caches()

    # ------------------------------------------------------------------ lifecycle
    def close(self):
        with self._lock:
            if self.con is not None:
                self.con.close()
                self.con = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection for another thread (DuckDB cursors share the database). Created under the
        store's lock: the parent connection is not used concurrently."""
        with self._lock:
            return self.con.cursor()

    def _migrate_rejects(self):
        """Add the columns a store written by an older version lacks (hash and size of existing
        rejects computed from the stored text)."""
        have = {r[0] for r in self.con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'rejects'").fetchall()}
        for name, typ, fill in _REJECT_MIGRATION:
            if name not in have:
                self.con.execute(f"ALTER TABLE rejects ADD COLUMN {name} {typ}")
                if fill is not None:
                    self.con.execute(f"UPDATE rejects SET {name} = {fill} WHERE payload IS NOT NULL")

    @contextlib.contextmanager
    def transaction(self):
        """``BEGIN`` ... ``COMMIT``, or ``ROLLBACK`` on an exception, which also restores the
        in-memory caches (datastreams met, latest time per stream) that the rolled-back writes
        changed, so the next write sees the store as it is."""
        with self._lock:
            ds, last = dict(self._datastreams), dict(self._last_time)
            self.con.execute("BEGIN TRANSACTION")
            try:
                yield self
                self.con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    self.con.execute("ROLLBACK")
                self._datastreams, self._last_time = ds, last
                raise

    def _load_caches(self):
        ds = self.con.execute("SELECT * FROM datastreams").fetchdf()
        self._datastreams = {r["datastream_id"]: dict(r) for r in ds.to_dict("records")}
        last = self.con.execute(
            "SELECT datastream_id, max(phenomenon_time) FROM observations GROUP BY 1").fetchall()
        self._last_time = {k: np.datetime64(v, "us") for k, v in last}

    # ------------------------------------------------------------------ metadata
    def add_station(self, st: Station):
        with self._lock:
            self.con.execute(
                "INSERT OR REPLACE INTO stations VALUES (?,?,?,?,?,?,?,?,?)",
                [st.station_id, st.name, st.description, st.x, st.y, st.lon, st.lat, "EPSG:32649",
                 json.dumps(st.properties)],
            )

    def add_datastream(self, ds: Datastream):
        row = dict(datastream_id=ds.datastream_id, station_id=ds.station_id, name=ds.name or ds.datastream_id,
                   observed_property=ds.observed_property, unit=ds.prop.unit, source_unit=ds.unit,
                   sensor=ds.sensor, interval_s=ds.interval_s, registered=ds.registered,
                   properties=json.dumps(ds.properties))
        with self._lock:
            self.con.execute("INSERT OR REPLACE INTO datastreams VALUES (?,?,?,?,?,?,?,?,?,?)",
                             list(row.values()))
            self._datastreams[ds.datastream_id] = row

    def register(self, stations=(), datastreams=()):
        for st in stations:
            self.add_station(st)
        for ds in datastreams:
            self.add_datastream(ds)

    def datastream(self, datastream_id) -> dict | None:
        return self._datastreams.get(str(datastream_id))

    def stations(self) -> pd.DataFrame:
        return self.cursor().execute("SELECT * FROM stations ORDER BY station_id").fetchdf()

    def datastreams(self) -> pd.DataFrame:
        return self.cursor().execute(
            "SELECT d.*, s.x, s.y FROM datastreams d LEFT JOIN stations s USING (station_id) "
            "ORDER BY datastream_id").fetchdf()

    def _ensure_unregistered(self, ids):
        new = [i for i in ids if i not in self._datastreams]
        if not new:
            return
        rows = [dict(datastream_id=i, station_id=None, name=i, observed_property=None, unit=None,
                     source_unit=None, sensor=None, interval_s=None, registered=False, properties="{}")
                for i in new]
        tbl = pa.Table.from_pylist(rows, schema=pa.schema([
            ("datastream_id", pa.string()), ("station_id", pa.string()), ("name", pa.string()),
            ("observed_property", pa.string()), ("unit", pa.string()), ("source_unit", pa.string()),
            ("sensor", pa.string()), ("interval_s", pa.float64()), ("registered", pa.bool_()),
            ("properties", pa.string())]))
        self.con.register("_new_ds", tbl)
        try:
            self.con.execute("INSERT OR IGNORE INTO datastreams SELECT * FROM _new_ds")
        finally:
            self.con.unregister("_new_ds")
        for r in rows:
            self._datastreams[r["datastream_id"]] = r

    # ------------------------------------------------------------------ writes
    def add_rejects(self, rejects) -> int:
        """``rejects``: iterable of ``(payload, topic, reason[, received_time[, mqtt_mid]])``; the
        payload is bytes, text or a :class:`PayloadDigest`. A reject whose ``(topic, payload)`` is
        already stored (or repeats within the batch) is not stored again: the stored row's
        ``times_seen`` goes up. Returns the number of rows written."""
        keep: dict = {}          # (topic, sha256) -> index in rows, for deduplication
        rows: list[list] = []
        now = utcnow()
        for r in rejects:
            topic, reason = _text(r[1]), _text(r[2]) or "rejected"
            rec = r[3] if len(r) > 3 and r[3] is not None else now
            mid = r[4] if len(r) > 4 else None
            text, size, sha = _reject_payload(r[0])
            if len(reason) > REJECT_REASON_MAX:
                reason = reason[:REJECT_REASON_MAX - 20] + f"... ({len(reason):,} chars)"
            if sha is not None:
                k = keep.get((topic, sha))
                if k is not None:
                    rows[k][-1] += 1
                    continue
                keep[(topic, sha)] = len(rows)
            rows.append([text, topic, reason, rec, mid, size, sha, 1])
        if not rows:
            return 0
        with self._lock:
            seen: set[int] = set()
            if keep:
                keys = pa.table({"topic": pa.array([k[0] for k in keep], pa.string()),
                                 "h": pa.array([k[1] for k in keep], pa.string()),
                                 "n": pa.array([rows[i][-1] for i in keep.values()], pa.int32())})
                self.con.register("_rej_keys", keys)
                try:
                    hits = self.con.execute(
                        "SELECT DISTINCT k.topic, k.h FROM _rej_keys k JOIN rejects r ON r.payload_sha256 = k.h "
                        "AND r.topic IS NOT DISTINCT FROM k.topic").fetchall()
                    if hits:
                        self.con.execute(
                            "UPDATE rejects r SET times_seen = coalesce(r.times_seen, 1) + k.n FROM _rej_keys k "
                            "WHERE r.payload_sha256 = k.h AND r.topic IS NOT DISTINCT FROM k.topic")
                finally:
                    self.con.unregister("_rej_keys")
                seen = {keep[tuple(h)] for h in hits}
            rows = [r for i, r in enumerate(rows) if i not in seen]
            if not rows:
                return 0
            tbl = pa.table({
                "payload": pa.array([r[0] for r in rows], pa.string()),
                "topic": pa.array([r[1] for r in rows], pa.string()),
                "reason": pa.array([r[2] for r in rows], pa.string()),
                "received_time": pa.array(np.array([np.datetime64(r[3], "us") for r in rows]), pa.timestamp("us")),
                "mqtt_mid": pa.array([r[4] for r in rows], pa.int32()),
                "mqtt_acked": pa.array([False if r[4] is not None else None for r in rows], pa.bool_()),
                "payload_bytes": pa.array([r[5] for r in rows], pa.int64()),
                "payload_sha256": pa.array([r[6] for r in rows], pa.string()),
                "times_seen": pa.array([r[7] for r in rows], pa.int32()),
            })
            self.con.register("_rej_batch", tbl)
            try:
                self.con.execute(f"INSERT INTO rejects ({_REJECT_COLS}) SELECT * FROM _rej_batch")
            finally:
                self.con.unregister("_rej_batch")
        return len(rows)

    def insert(self, datastream_id, phenomenon_time, result, *, received_time=None, source=None,
               payloads=None, topics=None, commit: bool = True) -> InsertResult:
        """Insert a batch of observations (results already in canonical units).

        ``datastream_id``: array of ids (or one id); ``phenomenon_time``: anything time-like (naive =
        UTC); ``result``: float array. ``payloads``/``topics`` (optional, per row) are what goes to
        ``rejects`` if a row conflicts with a stored value. Returns an :class:`InsertResult`.
        Sets the arrival flags: ``out_of_order``, ``clock_skew``, ``duplicate``, ``unregistered``
        and ``range`` (cheap per-value test); the series tests run in :meth:`run_qc`.
        """
        res = np.asarray(result, dtype=np.float64).ravel()
        n = res.size
        if n == 0:
            return InsertResult()
        ids = np.asarray(datastream_id, dtype=object)
        ids = np.full(n, str(ids.item()), dtype=object) if ids.ndim == 0 else np.array([str(i) for i in ids], dtype=object)
        t = np.asarray(phenomenon_time)
        t = t.astype("datetime64[us]") if np.issubdtype(t.dtype, np.datetime64) else to_utc_naive(t)
        if t.ndim == 0:
            t = np.full(n, t)
        if not (ids.size == n and t.size == n):
            raise ValueError(f"insert: datastream_id ({ids.size}), phenomenon_time ({t.size}) and result ({n}) lengths differ")
        if not np.all(np.isfinite(res)):
            bad = int(np.flatnonzero(~np.isfinite(res))[0])
            raise ValueError(f"insert: result must be finite, row {bad} of datastream {ids[bad]!r} is {res[bad]!r}")
        if np.any(np.isnat(t)):
            raise ValueError("insert: phenomenon_time contains NaT")
        rec = utcnow() if received_time is None else received_time
        rec = np.asarray(rec)
        rec = rec.astype("datetime64[us]") if np.issubdtype(rec.dtype, np.datetime64) else to_utc_naive(rec)
        if rec.ndim == 0:
            rec = np.full(n, rec)
        out = InsertResult()
        with self._lock:
            return self._insert_locked(ids, t, res, rec, source, payloads, topics, out, commit)

    def _insert_locked(self, ids, t, res, rec, source, payloads, topics, out, commit):
        n = res.size
        mask = np.zeros(n, dtype=np.int32)
        codes, uniq = pd.factorize(ids)
        self._ensure_unregistered(uniq.tolist())
        # --- duplicates inside the batch: keep the first, compare the rest
        frame = pd.DataFrame({"ds": ids, "t": t, "r": res})
        dup = frame.duplicated(["ds", "t"], keep="first").to_numpy()
        rejects = []
        conflict_keys = set()
        if dup.any():
            first = frame[~dup].set_index(["ds", "t"])["r"]
            for i in np.flatnonzero(dup):
                r0 = first.loc[(ids[i], t[i])]
                if r0 == res[i]:
                    out.redelivered += 1
                else:
                    out.conflicts += 1
                    conflict_keys.add((ids[i], t[i]))
                    rejects.append(self._conflict_reject(ids[i], t[i], res[i], r0, rec[i], payloads, topics, i, source))
            keep = ~dup
            ids, t, res, rec, mask, codes = ids[keep], t[keep], res[keep], rec[keep], mask[keep], codes[keep]
            if payloads is not None:
                payloads = [payloads[i] for i in np.flatnonzero(keep)]
            if topics is not None and not isinstance(topics, str):
                topics = [topics[i] for i in np.flatnonzero(keep)]
        # --- rows not newer than the stream's latest stored time: duplicate or out of order
        u_last = np.array([self._last_time.get(k, np.datetime64("NaT", "us")) for k in uniq], dtype="datetime64[us]")
        last = u_last[codes]
        maybe_old = ~np.isnat(last) & (t <= last)
        drop = np.zeros(ids.size, dtype=bool)
        if maybe_old.any():
            idx = np.flatnonzero(maybe_old)
            cand = pa.table({"datastream_id": pa.array(ids[idx].tolist(), pa.string()),
                             "phenomenon_time": pa.array(t[idx], pa.timestamp("us")),
                             "k": pa.array(idx, pa.int64())})
            self.con.register("_cand", cand)
            try:
                hit = self.con.execute(
                    "SELECT c.k, o.result FROM _cand c JOIN observations o "
                    "ON o.datastream_id = c.datastream_id AND o.phenomenon_time = c.phenomenon_time").fetchall()
            finally:
                self.con.unregister("_cand")
            hit = dict(hit)
            for k in idx:
                if k in hit:
                    drop[k] = True
                    if hit[k] == res[k]:
                        out.redelivered += 1
                    else:
                        out.conflicts += 1
                        conflict_keys.add((ids[k], t[k]))
                        rejects.append(self._conflict_reject(ids[k], t[k], res[k], hit[k], rec[k], payloads, topics, k, source))
                else:
                    mask[k] |= FLAG_BITS["out_of_order"]
        # out of order inside the batch itself (arrival order = row order)
        if ids.size > 1:
            fr = pd.DataFrame({"ds": ids, "t": t})
            prev_max = fr.groupby("ds")["t"].cummax().groupby(fr["ds"]).shift(1)
            ooo = (fr["t"] < prev_max).to_numpy()
            mask[ooo & ~drop] |= FLAG_BITS["out_of_order"]
        # --- clock skew, unregistered, range
        skew = t > rec + self.clock_skew_tolerance
        mask[skew] |= FLAG_BITS["clock_skew"]
        props = np.array([(self._datastreams[k].get("observed_property") or "") for k in uniq], dtype=object)[codes]
        unreg = np.array([not self._datastreams[k].get("registered") for k in uniq], dtype=bool)[codes]
        mask[unreg] |= FLAG_BITS["unregistered"]
        for pname in set(props.tolist()):
            if pname in PROPERTIES:
                lo, hi = PROPERTIES[pname].valid_range
                sel = (props == pname) & ((res < lo) | (res > hi))
                mask[sel] |= FLAG_BITS["range"]
        keep = ~drop
        ids, t, res, rec, mask = ids[keep], t[keep], res[keep], rec[keep], mask[keep]
        out.out_of_order += int(np.count_nonzero(mask & FLAG_BITS["out_of_order"]))
        out.clock_skew += int(np.count_nonzero(mask & FLAG_BITS["clock_skew"]))
        if ids.size:
            um, minv = np.unique(mask, return_inverse=True)
            texts = np.array([flag_text(m) for m in um.tolist()], dtype=object)[minv]
            tbl = pa.table([
                pa.array(ids.tolist(), pa.string()),
                pa.array(t, pa.timestamp("us")),
                pa.array(res, pa.float64()),
                pa.array(texts, pa.string()),
                pa.array(mask, pa.int32()),
                pa.array(rec, pa.timestamp("us")),
                pa.array(source if isinstance(source, list) else [source] * ids.size, pa.string()),
            ], schema=_OBS_SCHEMA)
            self.con.register("_obs_batch", tbl)
            try:
                self.con.execute(
                    "INSERT OR IGNORE INTO observations (datastream_id, phenomenon_time, result, quality_flag, "
                    "qc_mask, received_time, source) SELECT * FROM _obs_batch")
            finally:
                self.con.unregister("_obs_batch")
            out.inserted += int(ids.size)
            # update the per-stream latest time
            s = pd.Series(t).groupby(ids).max()
            for k, v in s.items():
                v = np.datetime64(v, "us")
                old = self._last_time.get(k)
                if old is None or v > old:
                    self._last_time[k] = v
        if conflict_keys:
            ck = pa.table({"datastream_id": pa.array([k[0] for k in conflict_keys], pa.string()),
                           "phenomenon_time": pa.array(np.array([k[1] for k in conflict_keys], dtype="datetime64[us]"), pa.timestamp("us"))})
            self.con.register("_ck", ck)
            try:
                self.con.execute(
                    f"UPDATE observations o SET qc_mask = o.qc_mask | {FLAG_BITS['duplicate']} FROM _ck "
                    "WHERE o.datastream_id = _ck.datastream_id AND o.phenomenon_time = _ck.phenomenon_time")
                self._refresh_flag_text(f"qc_mask & {FLAG_BITS['duplicate']} != 0")
            finally:
                self.con.unregister("_ck")
        if rejects:
            self.add_rejects(rejects)
        return out

    @staticmethod
    def _conflict_reject(ds, t, r, r0, rec, payloads, topics, i, source):
        payload = payloads[i] if payloads is not None else json.dumps(
            {"datastream_id": ds, "phenomenon_time": str(np.datetime64(t, "us")) + "Z", "result": float(r)})
        topic = (topics if isinstance(topics, str) else topics[i]) if topics is not None else (
            source if isinstance(source, str) else None)
        return (payload, topic, f"duplicate: datastream {ds!r} already has result {r0!r} at "
                f"{np.datetime64(t, 's')}Z, this payload says {float(r)!r}", rec)

    def _refresh_flag_text(self, where: str = "TRUE"):
        """Rewrite quality_flag from qc_mask for the rows matching ``where``."""
        cases = " ".join(
            f"CASE WHEN qc_mask & {bit} != 0 THEN '{name},' ELSE '' END ||" for name, bit in FLAG_BITS.items())
        self.con.execute(
            f"UPDATE observations SET quality_flag = CASE WHEN qc_mask = 0 THEN 'good' ELSE "
            f"rtrim({cases[:-2]}, ',') END WHERE {where}")

    # ------------------------------------------------------------------ reads
    def count(self, table: str = "observations") -> int:
        if table not in ("observations", "rejects", "datastreams", "stations"):
            raise ValueError(f"unknown table {table!r}")
        return int(self.cursor().execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def observations(self, datastream_id=None, start=None, end=None, *, good_only: bool = False,
                     exclude_mask: int | None = None, con=None) -> pd.DataFrame:
        """Observations ordered by (datastream, time); ``start``/``end`` UTC (inclusive start,
        inclusive end); ``good_only`` drops rows with any flag in :data:`BAD_MASK`."""
        from twin.sensors.model import BAD_MASK

        where, params = [], []
        if datastream_id is not None:
            ids = [datastream_id] if isinstance(datastream_id, (str, int)) else list(datastream_id)
            where.append("datastream_id IN (SELECT unnest(?::VARCHAR[]))")
            params.append([str(i) for i in ids])
        if start is not None:
            where.append("phenomenon_time >= ?")
            params.append(pd.Timestamp(to_utc_naive([start])[0]).to_pydatetime())
        if end is not None:
            where.append("phenomenon_time <= ?")
            params.append(pd.Timestamp(to_utc_naive([end])[0]).to_pydatetime())
        m = BAD_MASK if good_only else exclude_mask
        if m:
            where.append(f"qc_mask & {int(m)} = 0")
        sql = "SELECT * FROM observations"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY datastream_id, phenomenon_time"
        return (con or self.cursor()).execute(sql, params).fetchdf()

    def rejects(self) -> pd.DataFrame:
        return self.cursor().execute("SELECT * FROM rejects ORDER BY received_time").fetchdf()

    def export(self, datastream_id, path, fmt: str | None = None) -> int:
        """Write one datastream's observations (time-ordered) to CSV or Parquet; returns the row count."""
        path = Path(path)
        fmt = (fmt or path.suffix.lstrip(".")).lower()
        if fmt not in ("csv", "parquet"):
            raise ValueError(f"export format must be 'csv' or 'parquet', got {fmt!r}")
        if str(datastream_id) not in self._datastreams:
            raise ValueError(f"datastream {datastream_id!r} is not in store {self.path!r}")
        df = self.observations(datastream_id)
        df["phenomenon_time"] = pd.to_datetime(df["phenomenon_time"]).dt.tz_localize("UTC")
        df["received_time"] = pd.to_datetime(df["received_time"]).dt.tz_localize("UTC")
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            df.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
        else:
            df.to_parquet(path, index=False)
        return len(df)

    # ------------------------------------------------------------------ QC
    def run_qc(self, datastream_ids=None, **kw) -> pd.DataFrame:
        """Run the series QC (:func:`twin.sensors.qc.qc_series`) over each datastream, store the
        flags (arrival flags are kept) and return the per-datastream report."""
        from twin.sensors.qc import qc_series, report_row

        ids = list(self._datastreams) if datastream_ids is None else [str(i) for i in datastream_ids]
        rows, updates = [], []
        with self._lock:
            for ds in sorted(ids):
                meta = self._datastreams.get(ds)
                if meta is None:
                    raise ValueError(f"datastream {ds!r} is not in store {self.path!r}")
                df = self.con.execute(
                    "SELECT phenomenon_time, result, qc_mask, received_time FROM observations "
                    "WHERE datastream_id = ? ORDER BY phenomenon_time", [ds]).fetchdf()
                if df.empty:
                    rows.append(report_row(ds, meta, df, np.zeros(0, np.int32), None))
                    continue
                t = df["phenomenon_time"].to_numpy(dtype="datetime64[us]")
                arrival = df["qc_mask"].to_numpy().astype(np.int32) & INGEST_MASK
                flags, info = qc_series(t, df["result"].to_numpy(np.float64), meta.get("observed_property"),
                                        interval_s=meta.get("interval_s"), **kw)
                mask = flags | arrival
                rows.append(report_row(ds, meta, df, mask, info))
                updates.append(pd.DataFrame({"datastream_id": ds, "phenomenon_time": t, "qc_mask": mask}))
            if updates:
                up = pa.Table.from_pandas(pd.concat(updates, ignore_index=True), preserve_index=False)
                self.con.register("_qc", up)
                try:
                    self.con.execute(
                        "UPDATE observations o SET qc_mask = _qc.qc_mask, qc_checked = TRUE FROM _qc "
                        "WHERE o.datastream_id = _qc.datastream_id AND o.phenomenon_time = _qc.phenomenon_time")
                    self._refresh_flag_text("qc_checked")
                finally:
                    self.con.unregister("_qc")
        return pd.DataFrame(rows)
