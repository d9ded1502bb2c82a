"""Replay a historical series to an MQTT broker as if it were live (rehearsals and tests).

Each observation is published as a SensorThings Observation on
``v1.1/Datastreams(<id>)/Observations`` (QoS 1), paced by its phenomenon time divided by
``speed`` (``speed=60``: one hour of data per minute; ``speed=0``: as fast as the broker takes
it). ``shift_to`` moves the whole series so that its first time becomes that instant (e.g. now).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from twin.sensors.ingest import parse_broker


def read_series(path, config=None, *, tz: str | None = None) -> pd.DataFrame:
    """A replayable table (datastream_id, phenomenon_time UTC, result) from a CSV (long/wide, as
    ``twin sensors load`` reads it) or a Parquet/CSV written by ``twin sensors export``."""
    from twin.sensors.adapters import LOCAL_TZ, config_entities, load_config, read_csv

    path = Path(path)
    if path.suffix.lower() == ".parquet":
        df = pd.read_parquet(path)
        missing = {"datastream_id", "phenomenon_time", "result"} - set(df.columns)
        if missing:
            raise ValueError(f"{str(path)!r}: missing column(s) {sorted(missing)}")
        t = pd.to_datetime(df["phenomenon_time"], utc=True).dt.tz_localize(None)
        return pd.DataFrame({"datastream_id": df["datastream_id"].astype(str), "phenomenon_time": t,
                             "result": df["result"].astype(float)})
    cfg = load_config(config)
    _, streams = config_entities(cfg)
    meta = {d.datastream_id: d for d in streams}
    rows, rejects = read_csv(path, meta, tz=tz or (cfg.get("csv") or {}).get("tz", LOCAL_TZ))
    if rejects:
        raise ValueError(f"{str(path)!r}: {len(rejects)} unreadable row(s), first: {rejects[0][2]}")
    out = rows[["datastream_id", "phenomenon_time", "result"]].copy()
    # read_csv converted known datastreams to their canonical unit: say so in the payloads
    out["unit"] = [meta[d].prop.unit if d in meta else None for d in out["datastream_id"]]
    return out


def sta_payload(t: np.datetime64, result: float, unit: str | None = None) -> bytes:
    """A SensorThings Observation; ``unit`` (when known) travels as ``parameters.unit`` so that the
    ingester does not read a canonical value in the datastream's source unit."""
    obj = {"phenomenonTime": str(np.datetime64(t, "ms")) + "Z", "result": float(result)}
    if unit:
        obj["parameters"] = {"unit": unit}
    return json.dumps(obj).encode()


def replay(series: pd.DataFrame, broker: str, *, speed: float = 60.0, shift_to=None, qos: int = 1,
           client_id: str = "twin-sensors-replay", prefix: str = "v1.1", progress=None) -> int:
    """Publish ``series`` in time order; returns the number of messages acknowledged by the broker."""
    import paho.mqtt.client as mqtt

    if speed < 0:
        raise ValueError(f"--speed must be >= 0, got {speed!r}")
    df = series.sort_values("phenomenon_time", kind="stable").reset_index(drop=True)
    t = df["phenomenon_time"].to_numpy(dtype="datetime64[us]")
    if shift_to is not None and len(t):
        target = pd.Timestamp(shift_to)
        target = (target.tz_convert("UTC").tz_localize(None) if target.tzinfo else target).to_datetime64()
        t = t + (np.datetime64(target, "us") - t[0])
    host, port = parse_broker(broker)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(20)   # paho publishes fastest with a small window
    c.max_queued_messages_set(0)
    c.connect(host, port, keepalive=30)
    c.loop_start()
    try:
        t0_wall = time.monotonic()
        rel = (t - t[0]) / np.timedelta64(1, "s") if len(t) else np.zeros(0)
        infos = []
        ids = df["datastream_id"].astype(str).to_numpy()
        res = df["result"].to_numpy(np.float64)
        units = df["unit"].to_numpy(dtype=object) if "unit" in df.columns else np.full(len(df), None, dtype=object)
        for i in range(len(df)):
            if speed > 0:
                wait = rel[i] / speed - (time.monotonic() - t0_wall)
                if wait > 0:
                    time.sleep(wait)
            infos.append(c.publish(f"{prefix}/Datastreams({ids[i]})/Observations", sta_payload(t[i], res[i], units[i]), qos=qos))
            if progress is not None and (i + 1) % 1000 == 0:
                progress(i + 1)
        for info in infos:
            info.wait_for_publish(timeout=60)
        return sum(1 for info in infos if info.is_published())
    finally:
        c.disconnect()
        c.loop_stop()
