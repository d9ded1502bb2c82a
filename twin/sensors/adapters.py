"""Adapters: CSV (long/wide), SensorThings JSON pages and MQTT, generic vendor MQTT JSON.

Every adapter turns raw input into rows ``(datastream_id, phenomenon_time UTC, result)`` with the
result converted to the observed property's canonical unit, plus *rejects* ``(payload, topic,
reason)`` for what could not be read: nothing is dropped silently.

Configuration (YAML or dict) shared by ``twin sensors load/ingest``::

    stations:    [{id: RG01, name: Tam Thanh, lon: 108.52, lat: 15.58}, ...]       # or x/y (EPSG:32649)
    datastreams: [{id: RG01-rain, station: RG01, property: rain_rate, unit: mm, interval_s: 600}, ...]
    csv:  {tz: Asia/Ho_Chi_Minh}
    mqtt:
      client_id: twin-sensors-ingest
      protocol: "5"                                       # or "3.1.1" (clean_session=False)
      sta_topics: ["v1.1/+/Observations"]                # SensorThings MQTT (default)
      vendor:
        - topic: "ioc/tamky/+/+"                          # MQTT subscription filter
          pattern: "ioc/tamky/{station}/{quantity}"       # named levels for the templates
          datastream: "{station}-{quantity}"
          time: "ts"                                      # JSON field path (a.b[0].c)
          time_format: epoch_ms                           # iso | epoch_s | epoch_ms
          tz: UTC                                         # for naive ISO times
          value: "data.value"
          unit: "cm"                                      # or unit_path: "data.unit"
          items: "readings"                               # optional: path to a list of readings
"""
from __future__ import annotations

import functools
import json
import math
import re
import reprlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twin.sensors.model import PROPERTIES, Datastream, Station, convert, get_property, normalise_unit
from twin.sensors.store import PayloadDigest

LOCAL_TZ = "Asia/Ho_Chi_Minh"
STA_TOPIC_RE = re.compile(r"^(?:[^/]+/)?Datastreams\((?:'([^']*)'|([^)]*))\)/Observations$")
_MISS = object()
MAX_PAYLOAD_BYTES = 1 << 20      # an MQTT payload larger than this is rejected unread (mqtt.max_payload_bytes)
MAX_JSON_DEPTH = 64              # deeper JSON nesting is rejected before parsing (mqtt.max_json_depth)
REASON_MAX = 500                 # characters of a decoder's reject reason
_CACHE_KEY_MAX = 256             # topics / ids longer than this are not cached
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_SHORT = reprlib.Repr(maxlevel=3, maxstring=60, maxother=60, maxlist=6, maxdict=6, maxlong=40)


def short(value) -> str:
    """``repr`` of a value from a payload, bounded in length and nesting (for reject reasons)."""
    try:
        return _SHORT.repr(value)
    except Exception:     # noqa: BLE001 - a reason must never fail
        return f"<{type(value).__name__}>"


def json_depth_exceeds(payload: bytes, max_depth: int) -> bool:
    """True when the JSON text nests arrays/objects deeper than ``max_depth`` (brackets inside
    strings do not count). Cheap for ordinary payloads: only one with more than ``max_depth``
    brackets in all is scanned."""
    if payload.count(b"[") + payload.count(b"{") <= max_depth:
        return False
    a = np.frombuffer(_JSON_STRING.sub(b'""', payload), dtype=np.uint8)
    step = ((a == 0x5B) | (a == 0x7B)).astype(np.int32) - ((a == 0x5D) | (a == 0x7D))
    return bool(step.size) and int(np.cumsum(step).max()) > max_depth


def reject_reason(exc: BaseException) -> str:
    """One bounded line saying why a message was rejected."""
    if isinstance(exc, KeyError):
        msg = f"missing field {exc}"
    elif isinstance(exc, RecursionError):
        msg = "payload nests too deeply to decode"
    elif isinstance(exc, (ValueError, TypeError)):
        msg = str(exc) or type(exc).__name__
    else:     # an unexpected failure is still this message's reject, named by its type
        msg = f"{type(exc).__name__}: {exc}".rstrip(": ")
    return msg if len(msg) <= REASON_MAX else msg[:REASON_MAX - 20] + f"... ({len(msg):,} chars)"


# --------------------------------------------------------------------------------- config
def load_config(path_or_dict) -> dict:
    """Read a YAML/JSON config (or pass a dict through), checking the top-level keys."""
    if path_or_dict is None:
        return {}
    if isinstance(path_or_dict, dict):
        cfg = dict(path_or_dict)
        src = "config"
    else:
        import yaml

        p = Path(path_or_dict)
        if not p.exists():
            raise ValueError(f"sensor config {str(p)!r} does not exist")
        try:
            cfg = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"sensor config {str(p)!r} is not valid YAML: {exc}") from exc
        src = str(p)
    if "sensors" in cfg and isinstance(cfg["sensors"], dict):
        cfg = cfg["sensors"]
    known = {"stations", "datastreams", "csv", "mqtt", "assimilation", "store", "sta",
             "auto_warn", "alerts_topic"}  # auto_warn: CAP alerts on alerts_topic become warnings (twin live)
    bad = set(cfg) - known
    if bad:
        raise ValueError(f"{src}: unknown key(s) {sorted(bad)}; known: {sorted(known)}")
    return cfg


# datastream keys of the config; any other key (e.g. a camera's link_id, approach, vehicle_class) is kept
# in the datastream's properties
_DS_KEYS = {"id", "station", "property", "unit", "sensor", "name", "interval_s"}


def config_entities(cfg: dict) -> tuple[list[Station], list[Datastream]]:
    stations, streams = [], []
    for i, s in enumerate(cfg.get("stations") or []):
        try:
            stations.append(Station(station_id=s["id"], name=s.get("name", ""), x=s.get("x"), y=s.get("y"),
                                    lon=s.get("lon"), lat=s.get("lat"), description=s.get("description", ""),
                                    properties={k: v for k, v in s.items() if k not in
                                                {"id", "name", "x", "y", "lon", "lat", "description"}}))
        except KeyError as exc:
            raise ValueError(f"config stations[{i}]: missing key {exc}") from None
    for i, d in enumerate(cfg.get("datastreams") or []):
        try:
            streams.append(Datastream(datastream_id=d["id"], station_id=d.get("station"),
                                      observed_property=d["property"], unit=d.get("unit"),
                                      sensor=d.get("sensor", ""), name=d.get("name", ""),
                                      interval_s=d.get("interval_s"),
                                      properties={k: v for k, v in d.items() if k not in _DS_KEYS}))
        except KeyError as exc:
            raise ValueError(f"config datastreams[{i}]: missing key {exc}") from None
        except ValueError as exc:
            raise ValueError(f"config datastreams[{i}] ({d.get('id')!r}): {exc}") from None
    return stations, streams


# --------------------------------------------------------------------------------- helpers
@functools.lru_cache(maxsize=1024)
def _path_parts(path: str) -> tuple:
    return tuple(re.findall(r"[^.\[\]]+|\[\d+\]", path))


def get_path(obj: Any, path: str):
    """``a.b[2].c`` style JSON field path. Raises KeyError naming the missing part."""
    cur = obj
    for part in _path_parts(path):
        if part.startswith("["):
            idx = int(part[1:-1])
            if not isinstance(cur, list) or idx >= len(cur):
                raise KeyError(f"{path} (index {idx})")
            cur = cur[idx]
        else:
            if not isinstance(cur, dict) or part not in cur:
                raise KeyError(f"{path} ({part!r} missing)")
            cur = cur[part]
    return cur


def parse_time(value, *, fmt: str = "iso", tz: str = "UTC") -> np.datetime64:
    """One timestamp -> datetime64[us] UTC. ISO with offset/Z is respected; naive ISO is ``tz``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError("time is empty")
    if fmt in ("epoch_s", "epoch_ms"):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"time {short(value)} is not a number")
        try:
            v = float(value)
        except (ValueError, OverflowError):
            raise ValueError(f"time {short(value)} is not a number") from None
        us = v * (1e6 if fmt == "epoch_s" else 1e3)
        if not abs(us) < 9.2e18:     # also NaN and infinities
            raise ValueError(f"time {short(value)} ({fmt}) is out of range")
        return np.datetime64(int(round(us)), "us")
    if fmt != "iso":
        raise ValueError(f"unknown time_format {fmt!r} (iso, epoch_s, epoch_ms)")
    if not isinstance(value, str):
        raise ValueError(f"time {short(value)} is not an ISO 8601 string")
    s = value.strip()
    if "/" in s:  # STA interval "start/end": the observation is for the end
        s = s.split("/")[-1]
    if s.endswith("Z") and len(s) >= 17 and s[10] == "T":   # fast path: ISO 8601 in UTC
        try:
            return np.datetime64(s[:-1], "us")
        except ValueError:
            pass
    try:
        ts = pd.Timestamp(s)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"time {short(value)} is not ISO 8601 ({short(str(exc))})") from None
    if ts is pd.NaT:
        raise ValueError(f"time {short(value)} is not a time")
    if ts.tzinfo is None:
        ts = ts.tz_localize(tz)
    return np.datetime64(ts.tz_convert("UTC").tz_localize(None).to_datetime64(), "us")


def parse_result(value) -> float:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"result {short(value)} is not a number")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"result {short(value)} is not a number") from None
    if not isinstance(value, (int, float)):
        raise ValueError(f"result {short(value)} is not a number")
    try:
        v = float(value)
    except OverflowError:
        raise ValueError(f"result {short(value)} is not finite") from None
    if not np.isfinite(v):
        raise ValueError(f"result {short(value)} is not finite")
    return v


# --------------------------------------------------------------------------------- decoding
@dataclass
class Decoded:
    ids: list = field(default_factory=list)
    times: list = field(default_factory=list)
    results: list = field(default_factory=list)
    payloads: list = field(default_factory=list)
    topics: list = field(default_factory=list)
    rejects: list = field(default_factory=list)   # (payload, topic, reason, received_time)


@dataclass
class VendorMapping:
    topic: str
    datastream: str
    value: str
    time: str | None = None
    time_format: str = "iso"
    tz: str = "UTC"
    pattern: str | None = None
    unit: str | None = None
    unit_path: str | None = None
    items: str | None = None
    property: str | None = None

    def __post_init__(self):
        pat = self.pattern or self.topic
        # a pattern like ioc/tamky/{station}/rain ; + and # in the filter become anonymous groups
        rx = ""
        for lvl_i, lvl in enumerate(pat.split("/")):
            rx += "/" if lvl_i else ""
            if lvl == "+":
                rx += r"[^/]+"
            elif lvl == "#":
                rx += r".*"
            else:
                rx += re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(lvl))
        self._rx = re.compile("^" + rx + "$")
        if self.unit is not None:
            normalise_unit(self.unit)

    def match(self, topic: str):
        m = self._rx.match(topic)
        return None if m is None else m.groupdict()


class Decoder:
    """Turns MQTT messages (SensorThings or vendor JSON) into observation rows and rejects.

    ``datastreams``: ``{id: Datastream}`` (source units and properties for conversion).
    :meth:`decode` never raises: whatever a message holds, it becomes observation rows (finite, in
    canonical units) or one reject with its reason. Payloads over ``max_payload_bytes`` are
    rejected unread, JSON nested deeper than ``max_json_depth`` unparsed."""

    def __init__(self, datastreams: dict[str, Datastream] | None = None, vendor: Iterable[dict] = (), *,
                 max_payload_bytes: int = MAX_PAYLOAD_BYTES, max_json_depth: int = MAX_JSON_DEPTH):
        self.max_payload_bytes = int(max_payload_bytes)
        self.max_json_depth = int(max_json_depth)
        if self.max_payload_bytes < 1 or self.max_json_depth < 1:
            raise ValueError(f"mqtt.max_payload_bytes ({max_payload_bytes!r}) and mqtt.max_json_depth "
                             f"({max_json_depth!r}) must be >= 1")
        self.datastreams = dict(datastreams or {})
        self._factors: dict = {}
        self._sta_ids: dict[str, str | None] = {}    # topic -> datastream id (None: not a SensorThings topic)
        self.vendor = [v if isinstance(v, VendorMapping) else VendorMapping(**v) for v in vendor]

    def sta_datastream(self, topic: str) -> str | None:
        """The datastream id of a SensorThings topic ``[v1.1/]Datastreams(<id>)/Observations`` (``'id'``
        quoted or bare), or None; cached per topic (a city has a few thousand datastreams)."""
        ds_id = self._sta_ids.get(topic, _MISS)
        if ds_id is _MISS:
            m = STA_TOPIC_RE.match(topic)
            ds_id = None if m is None else (m.group(1) if m.group(1) is not None else m.group(2))
            if len(self._sta_ids) < 100_000 and len(topic) <= _CACHE_KEY_MAX:
                self._sta_ids[topic] = ds_id
        return ds_id

    def _convert(self, ds_id: str, value: float, unit: str | None) -> float:
        key = (ds_id, unit)
        f = self._factors.get(key)
        if f is None:
            ds = self.datastreams.get(ds_id)
            if ds is None:
                if unit is not None:
                    normalise_unit(unit)
                f = 1.0   # unregistered: stored as sent
            else:
                u = unit if unit is not None else ds.unit
                f = float(convert(1.0, u, ds.prop, interval_s=ds.interval_s))
            if len(self._factors) < 100000 and len(ds_id) <= _CACHE_KEY_MAX:
                self._factors[key] = f
        v = value * f
        if not math.isfinite(v):      # e.g. 1e308 mm per 600 s -> mm/h overflows
            ds = self.datastreams.get(ds_id)
            to = f" to {ds.prop.unit}" if ds is not None else ""
            raise ValueError(f"result {short(value)} is out of range: {v} after unit conversion{to}")
        return v

    def decode(self, topic: str, payload: bytes | str, received_time, out: Decoded) -> None:
        """Append the message's observations to ``out``, or one reject ``(payload, topic, reason,
        received_time)``. Never raises: any failure is this message's reject."""
        n = len(out.ids)
        try:
            if isinstance(payload, PayloadDigest) or len(payload) > self.max_payload_bytes:
                raise ValueError(f"payload of {len(payload):,} bytes exceeds the limit of "
                                 f"{self.max_payload_bytes:,} bytes (mqtt.max_payload_bytes)")
            ds_id = self.sta_datastream(topic)
            if ds_id and self._sta_fast(ds_id, payload, out, topic):
                return
            if ds_id is not None:
                self._sta(ds_id, payload, out, topic)
                return
            for vm in self.vendor:
                vars_ = vm.match(topic)
                if vars_ is not None:
                    self._vendor(vm, vars_, payload, out, topic)
                    return
            raise ValueError(f"topic {short(topic)} matches no SensorThings or vendor mapping")
        except Exception as exc:     # noqa: BLE001 - contained to this message: it becomes its reject
            for lst in (out.ids, out.times, out.results, out.payloads, out.topics):
                del lst[n:]
            if isinstance(payload, (bytes, bytearray, memoryview)) and len(payload) > self.max_payload_bytes:
                payload = PayloadDigest.of(payload)
            out.rejects.append((payload, topic, reject_reason(exc), received_time))

    def _json(self, payload):
        if isinstance(payload, (bytes, bytearray, memoryview)):
            payload = bytes(payload)
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError("payload is not UTF-8") from None
        else:
            text = str(payload)
            payload = text.encode("utf-8", errors="surrogatepass")
        if json_depth_exceeds(payload, self.max_json_depth):
            raise ValueError(f"payload nests JSON arrays/objects deeper than {self.max_json_depth} "
                             "(mqtt.max_json_depth)")
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"payload is not JSON: {exc}") from None
        except RecursionError:
            raise ValueError("payload nests too deeply to decode") from None

    def _sta_fast(self, ds_id, payload, out, topic) -> bool:
        """The exact shape SensorThings devices publish, ``{"phenomenonTime": "YYYY-MM-DDTHH:MM:SSZ",
        "result": <finite number>}``, decoded with the least work; False (nothing appended) for
        anything else, which then takes the general path (:meth:`_sta`), so every accepted value is
        the same and every reject gets its reason there."""
        tp = type(payload)
        if tp is not bytes and tp is not str:               # bytearray/memoryview: the general path
            return False
        try:
            obj = json.loads(payload.decode("utf-8") if tp is bytes else payload)
        except (ValueError, RecursionError):                 # not UTF-8 / not JSON / too deep: the general path says why
            return False
        if type(obj) is not dict or len(obj) != 2:
            return False
        t = obj.get("phenomenonTime")
        r = obj.get("result")
        if type(t) is not str or len(t) != 20 or t[19] != "Z" or t[10] != "T":
            return False
        tr = type(r)
        if tr is int:
            try:
                r = float(r)
            except OverflowError:
                return False
        elif tr is not float or r - r != 0.0:                # NaN and infinities take the general path
            return False
        try:
            tt = np.datetime64(t[:19], "us")
        except ValueError:
            return False
        f = self._factors.get((ds_id, None))
        if f is None:
            if not ds_id.strip():
                return False
            try:
                f = self._convert(ds_id, 1.0, None)
            except (ValueError, KeyError, TypeError):
                return False
        r = r * f
        if r - r != 0.0:                                     # overflowed in the unit conversion: the general path says so
            return False
        out.ids.append(ds_id)
        out.times.append(tt)
        out.results.append(r)
        out.payloads.append(payload)
        out.topics.append(topic)
        return True

    def _sta(self, ds_id, payload, out, topic):
        if not ds_id.strip():
            raise ValueError(f"topic {topic!r}: empty datastream id")
        obj = self._json(payload)
        if not isinstance(obj, dict):
            raise ValueError("SensorThings observation must be a JSON object")
        if "phenomenonTime" not in obj:
            raise ValueError("SensorThings observation: missing field 'phenomenonTime'")
        if "result" not in obj:
            raise ValueError("SensorThings observation: missing field 'result'")
        t = parse_time(obj["phenomenonTime"])
        r = parse_result(obj["result"])
        unit = None
        params = obj.get("parameters")
        if isinstance(params, dict) and params.get("unit") is not None:
            unit = params["unit"]
        r = self._convert(ds_id, r, unit)
        out.ids.append(ds_id)
        out.times.append(t)
        out.results.append(r)
        out.payloads.append(payload)
        out.topics.append(topic)

    def _vendor(self, vm: VendorMapping, vars_, payload, out, topic):
        obj = self._json(payload)
        items = get_path(obj, vm.items) if vm.items else [obj]
        if not isinstance(items, list):
            raise ValueError(f"vendor payload: {vm.items!r} is not a list")
        if not items:
            raise ValueError(f"vendor payload: {vm.items!r} is an empty list (no observation)")
        rows = []
        for it in items:
            try:
                ds_id = vm.datastream.format(**vars_, **({} if not isinstance(it, dict) else
                                                         {k: v for k, v in it.items() if isinstance(v, (str, int))}))
            except KeyError as exc:
                raise ValueError(f"vendor datastream template {vm.datastream!r}: no value for {exc}") from None
            t = parse_time(get_path(it, vm.time), fmt=vm.time_format, tz=vm.tz) if vm.time else \
                parse_time(get_path(obj, "time"))
            r = parse_result(get_path(it, vm.value))
            unit = get_path(it, vm.unit_path) if vm.unit_path else vm.unit
            rows.append((ds_id, t, self._convert(ds_id, r, unit)))
        for ds_id, t, r in rows:   # all or nothing per message
            out.ids.append(ds_id)
            out.times.append(t)
            out.results.append(r)
            out.payloads.append(payload)
            out.topics.append(topic)


# --------------------------------------------------------------------------------- CSV
_TIME_COLS = ("phenomenon_time", "time", "timestamp", "datetime", "date_time", "date", "thoi_gian")
_ID_COLS = ("datastream_id", "datastream", "stream", "sensor_id", "station_id", "station", "id")
_VALUE_COLS = ("result", "value", "reading", "measurement")
_HEADER_UNIT = re.compile(r"^\s*(.*?)\s*[\[(]\s*([^\])]+?)\s*[\])]\s*$")


def read_csv(path, datastreams: dict[str, Datastream] | None = None, *, tz: str = LOCAL_TZ,
             layout: str = "auto", time_column: str | None = None):
    """Read a CSV of observations. Returns ``(rows DataFrame[datastream_id, phenomenon_time, result],
    rejects list)``.

    *long* layout: a time column, a datastream column, a value column, optionally ``unit``;
    *wide* layout: a time column and one column per datastream, the header optionally carrying the
    unit (``RG01-rain [mm]`` or ``RG01-rain (mm/h)``). Naive times are local ``tz`` (default
    Asia/Ho_Chi_Minh), times with an offset or ``Z`` are respected. Units are converted to the
    canonical unit of the datastream's property; rain depths (mm per interval) become mm/h with the
    datastream's ``interval_s`` or, if absent, the spacing to that stream's previous row.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"CSV file {str(path)!r} does not exist")
    datastreams = dict(datastreams or {})
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, comment="#", skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"CSV file {str(path)!r} cannot be parsed: {exc}") from None
    cols = {c.strip().lower(): c for c in df.columns}
    tcol = time_column or next((cols[c] for c in _TIME_COLS if c in cols), None)
    if tcol is None or tcol not in df.columns:
        raise ValueError(f"CSV file {str(path)!r}: no time column (looked for {list(_TIME_COLS)}), "
                         f"columns are {list(df.columns)}")
    idcol = next((cols[c] for c in _ID_COLS if c in cols), None)
    vcol = next((cols[c] for c in _VALUE_COLS if c in cols), None)
    if layout == "auto":
        layout = "long" if (idcol and vcol) else "wide"
    src = str(path)
    rejects = []
    lines = np.arange(len(df)) + 2  # header is line 1 (comments aside)
    if layout == "long":
        if not (idcol and vcol):
            raise ValueError(f"CSV file {src!r}: long layout needs a datastream column {list(_ID_COLS)} and a "
                             f"value column {list(_VALUE_COLS)}")
        ucol = cols.get("unit")
        long = pd.DataFrame({"ds": df[idcol].str.strip(), "t": df[tcol], "v": df[vcol],
                             "u": df[ucol] if ucol else "", "line": lines})
    elif layout == "wide":
        parts = []
        for c in df.columns:
            if c == tcol:
                continue
            m = _HEADER_UNIT.match(c)
            ds, unit = (m.group(1), m.group(2)) if m else (c.strip(), "")
            parts.append(pd.DataFrame({"ds": ds, "t": df[tcol], "v": df[c], "u": unit, "line": lines}))
        if not parts:
            raise ValueError(f"CSV file {src!r}: wide layout has no value columns")
        long = pd.concat(parts, ignore_index=True)
        long = long[long["v"].str.strip() != ""]  # an empty cell in a wide file = no reading
    else:
        raise ValueError(f"CSV layout must be 'auto', 'long' or 'wide', got {layout!r}")
    # raw row text for rejects
    raw = df.astype(str).agg(",".join, axis=1).to_numpy()

    def reject(line, reason):
        rejects.append((raw[line - 2], f"file:{src}:{line}", reason))

    ids, times, vals, units, rlines = [], [], [], [], []
    for ds, t, v, u, line in long.itertuples(index=False):
        try:
            if not ds:
                raise ValueError("datastream id is empty")
            tt = parse_time(t, tz=tz)
        except ValueError as exc:
            reject(line, f"{src} line {line}: field {tcol!r}: {exc}")
            continue
        try:
            vv = parse_result(v.strip() if isinstance(v, str) else v)
        except ValueError as exc:
            reject(line, f"{src} line {line}: datastream {ds!r}: field value: {exc}")
            continue
        ids.append(ds)
        times.append(tt)
        vals.append(vv)
        units.append(u.strip() if isinstance(u, str) else "")
        rlines.append(line)
    rows = pd.DataFrame({"datastream_id": ids, "phenomenon_time": np.array(times, dtype="datetime64[us]"),
                         "raw": np.array(vals, dtype=np.float64), "unit": units, "line": rlines})
    # unit conversion per (datastream, unit)
    rows["result"] = np.nan
    keep = np.ones(len(rows), dtype=bool)
    for (ds, unit), grp in rows.groupby(["datastream_id", "unit"], sort=False):
        meta = datastreams.get(ds)
        u = unit or (meta.unit if meta else None)
        if meta is None:
            try:
                normalise_unit(u)
            except ValueError as exc:
                for line in grp["line"]:
                    reject(line, f"{src} line {line}: datastream {ds!r}: {exc}")
                keep[grp.index] = False
                continue
            rows.loc[grp.index, "result"] = grp["raw"]
            continue
        interval = meta.interval_s
        if interval is None and meta.prop.unit == "mm/h" and u and normalise_unit(u) in ("mm", "cm", "m", "in"):
            # spacing to the previous reading of this stream (the first takes the median spacing)
            order = grp.sort_values("phenomenon_time")
            dt = order["phenomenon_time"].diff().dt.total_seconds()
            med = float(dt.median()) if dt.notna().any() else np.nan
            interval = dt.fillna(med).reindex(grp.index).to_numpy()
            if not np.all(interval > 0):
                for line in grp["line"]:
                    reject(line, f"{src} line {line}: datastream {ds!r}: rain depth in {u!r} needs interval_s")
                keep[grp.index] = False
                continue
        try:
            with np.errstate(over="ignore"):     # overflows become rejects below
                rows.loc[grp.index, "result"] = convert(grp["raw"].to_numpy(), u, meta.prop, interval_s=interval)
        except ValueError as exc:
            for line in grp["line"]:
                reject(line, f"{src} line {line}: datastream {ds!r}: {exc}")
            keep[grp.index] = False
    overflow = keep & ~np.isfinite(rows["result"].to_numpy(dtype=np.float64))
    for ds, line, v in rows.loc[overflow, ["datastream_id", "line", "raw"]].itertuples(index=False):
        reject(line, f"{src} line {line}: datastream {ds!r}: value {v!r} is out of range after unit conversion")
    rows = rows[keep & ~overflow].reset_index(drop=True)
    return rows[["datastream_id", "phenomenon_time", "result", "line"]], rejects


def load_csv(store, path, config=None, *, tz: str | None = None, layout: str = "auto"):
    """Read a CSV into ``store`` (registering the config's stations/datastreams first).
    Returns ``(InsertResult, n_rejects)``."""
    cfg = load_config(config)
    stations, streams = config_entities(cfg)
    store.register(stations, streams)
    meta = _store_datastreams(store)
    meta.update({d.datastream_id: d for d in streams})
    tz = tz or (cfg.get("csv") or {}).get("tz", LOCAL_TZ)
    rows, rejects = read_csv(path, meta, tz=tz, layout=layout)
    res = store.insert(rows["datastream_id"].to_numpy(), rows["phenomenon_time"].to_numpy(),
                       rows["result"].to_numpy(), source=f"csv:{Path(path).name}",
                       topics=[f"file:{path}:{line}" for line in rows["line"]])
    store.add_rejects(rejects)
    return res, len(rejects)


def _store_datastreams(store) -> dict[str, Datastream]:
    out = {}
    for r in store.datastreams().to_dict("records"):
        if r.get("observed_property") in PROPERTIES:
            out[r["datastream_id"]] = Datastream(r["datastream_id"], r["station_id"], r["observed_property"],
                                                 unit=r.get("source_unit") or None,
                                                 interval_s=None if pd.isna(r.get("interval_s")) else r["interval_s"],
                                                 registered=bool(r.get("registered")))
    return out


# --------------------------------------------------------------------------------- SensorThings JSON
def _default_fetch(url: str, base: Path | None):
    if url.startswith(("http://", "https://")):
        import urllib.request

        with urllib.request.urlopen(url, timeout=30) as resp:  # the user's own STA server
            return json.loads(resp.read().decode("utf-8"))
    p = Path(url[7:] if url.startswith("file://") else url)
    if not p.is_absolute() and base is not None:
        p = base / p
    if not p.exists():
        raise ValueError(f"SensorThings page {url!r} not found ({p})")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"SensorThings page {str(p)!r} is not JSON: {exc}") from None


_STA_URL_DS = re.compile(r"Datastreams\((?:'([^']*)'|([^)]*))\)")


def iter_sta_pages(url: str, fetch: Callable[[str], dict] | None = None, max_pages: int = 100000):
    """Yield ``(page_url, page_dict)`` following ``@iot.nextLink`` (local files relative to the
    first page's folder, ``file://`` or ``http(s)://``)."""
    if not url.startswith(("http://", "https://")):
        url = str(Path(url[7:] if url.startswith("file://") else url).resolve())
    base = None if url.startswith(("http://", "https://")) else Path(url).parent
    fetch = fetch or (lambda u: _default_fetch(u, base))
    seen = set()
    for _ in range(max_pages):
        if url in seen:
            raise ValueError(f"SensorThings paging loops back to {url!r}")
        seen.add(url)
        page = fetch(url)
        if not isinstance(page, dict) or "value" not in page:
            raise ValueError(f"SensorThings page {url!r} has no 'value' array")
        yield url, page
        nxt = page.get("@iot.nextLink")
        if not nxt:
            return
        url = nxt
    raise ValueError(f"SensorThings paging exceeded {max_pages} pages")


def read_sta(url: str, datastreams: dict[str, Datastream] | None = None, *, datastream_id: str | None = None,
             fetch=None) -> tuple[Decoded, int]:
    """All observations behind a SensorThings ``.../Datastreams(id)/Observations`` URL (or file),
    following ``@iot.nextLink``. Each observation's datastream comes from ``Datastream/@iot.id`` in
    the observation, else from the URL, else ``datastream_id``."""
    dec = Decoder(datastreams)
    out = Decoded()
    pages = 0
    now = np.datetime64("now", "us")
    url_ds = datastream_id
    for page_url, page in iter_sta_pages(url, fetch):
        pages += 1
        m = _STA_URL_DS.search(page_url)
        if m:   # a nextLink without the Datastreams(id) path keeps the first page's datastream
            url_ds = m.group(1) if m.group(1) is not None else m.group(2)
        for i, obs in enumerate(page["value"]):
            payload = json.dumps(obs)
            ds = url_ds
            if isinstance(obs, dict) and isinstance(obs.get("Datastream"), dict) and "@iot.id" in obs["Datastream"]:
                ds = str(obs["Datastream"]["@iot.id"])
            topic = f"sta:{page_url}#{i}"
            if ds is None:
                out.rejects.append((payload, topic, "SensorThings observation: no datastream (URL or Datastream/@iot.id)", now))
                continue
            try:
                dec._sta(str(ds), payload, out, topic)
            except (ValueError, KeyError, TypeError) as exc:
                out.rejects.append((payload, topic, str(exc), now))
    return out, pages


def load_sta(store, url: str, config=None, *, datastream_id=None, fetch=None):
    cfg = load_config(config)
    stations, streams = config_entities(cfg)
    store.register(stations, streams)
    meta = _store_datastreams(store)
    dec, pages = read_sta(url, meta, datastream_id=datastream_id, fetch=fetch)
    res = store.insert(np.array(dec.ids, dtype=object), np.array(dec.times, dtype="datetime64[us]"),
                       np.array(dec.results), source="sta", payloads=dec.payloads, topics=dec.topics)
    store.add_rejects(dec.rejects)
    return res, len(dec.rejects), pages


def get_property_name(name):
    return get_property(name).name
