"""Read-only access to the DuckDB sensor store (tables ``observations`` and, when present,
``datastreams``/``stations`` metadata) for the Sensors page.

The store is opened read-only; if a live ingester holds the write lock, a snapshot copy is read
instead (DuckDB allows one writing process). Times are stored in UTC and shown in local time
(Asia/Ho_Chi_Minh, UTC+7), the same clock as the scenario's start datetime.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

LOCAL_TZ = "Asia/Ho_Chi_Minh"


class StoreError(ValueError):
    pass


def connect(path: str | Path):
    import duckdb

    path = Path(path)
    if not path.exists():
        raise StoreError(f"sensor store {path} does not exist")
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as exc:
        if "lock" not in str(exc).lower():
            raise StoreError(f"sensor store {path} cannot be opened: {exc}") from None
    except duckdb.Error as exc:
        raise StoreError(f"sensor store {path} cannot be opened: {exc}") from None
    tmp = Path(tempfile.mkdtemp(prefix="twin-store-"))
    snap = tmp / path.name
    shutil.copy2(path, snap)
    wal = path.with_name(path.name + ".wal")
    if wal.exists():
        shutil.copy2(wal, snap.with_name(snap.name + ".wal"))
    try:
        return duckdb.connect(str(snap), read_only=False)
    except duckdb.Error as exc:
        raise StoreError(f"sensor store {path} is locked by a running ingester and a snapshot could not be read: {exc}") from None


def _tables(con) -> dict[str, list[str]]:
    rows = con.execute("select table_name, column_name from information_schema.columns").fetchall()
    out: dict[str, list[str]] = {}
    for t, c in rows:
        out.setdefault(t.lower(), []).append(c.lower())
    return out


def _pick(cols: list[str], *names: str) -> str | None:
    for n in names:
        if n in cols:
            return n
    return None


def datastreams(path: str | Path) -> pd.DataFrame:
    """One row per datastream: id, name, unit, property, station, x, y, latest value/time/flag, count."""
    con = connect(path)
    try:
        tabs = _tables(con)
        if "observations" not in tabs:
            raise StoreError(f"sensor store {path} has no 'observations' table (tables: {', '.join(sorted(tabs)) or 'none'})")
        latest = con.execute("""
            select datastream_id::varchar as datastream_id, count(*) as n_obs,
                   max(phenomenon_time) as latest_time,
                   arg_max(result, phenomenon_time) as latest_value,
                   arg_max(quality_flag::varchar, phenomenon_time) as latest_flag
            from observations group by datastream_id order by datastream_id""").df()
        meta = None
        for tname in ("datastreams", "datastream"):
            if tname in tabs:
                cols = tabs[tname]
                idc = _pick(cols, "datastream_id", "id")
                if idc is None:
                    continue
                sel = [f"{idc}::varchar as datastream_id"]
                for out_name, names in (("name", ("name", "description")), ("unit", ("unit", "unit_of_measurement", "units")),
                                        ("property", ("observed_property", "property", "phenomenon")),
                                        ("station", ("station_id", "thing_id", "station", "thing")),
                                        ("place_id", ("place_id",)), ("x", ("x", "x_m")), ("y", ("y", "y_m")),
                                        ("lon", ("lon", "longitude")), ("lat", ("lat", "latitude"))):
                    c = _pick(cols, *names)
                    if c:
                        sel.append(f"{c} as {out_name}")
                meta = con.execute(f"select {', '.join(sel)} from {tname}").df()
                break
        stations = None
        for tname in ("stations", "things", "station"):
            if tname in tabs and meta is not None and "station" in meta.columns:
                cols = tabs[tname]
                idc = _pick(cols, "station_id", "thing_id", "id")
                sel = [f"{idc}::varchar as station"]
                for out_name, names in (("station_name", ("name",)), ("sx", ("x", "x_m")), ("sy", ("y", "y_m")),
                                        ("slon", ("lon", "longitude")), ("slat", ("lat", "latitude")),
                                        ("splace", ("place_id",))):
                    c = _pick(cols, *names)
                    if c:
                        sel.append(f"{c} as {out_name}")
                stations = con.execute(f"select {', '.join(sel)} from {tname}").df()
                break
    finally:
        con.close()
    df = latest
    if meta is not None:
        df = df.merge(meta, on="datastream_id", how="left")
        if stations is not None:
            meta_station = df["station"].astype(str)
            stations["station"] = stations["station"].astype(str)
            df = df.assign(station=meta_station).merge(stations, on="station", how="left")
            for a, b in (("x", "sx"), ("y", "sy"), ("lon", "slon"), ("lat", "slat"), ("place_id", "splace")):
                if b in df.columns:
                    df[a] = df[a].fillna(df[b]) if a in df.columns else df[b]
            if "station_name" in df.columns:
                df["name"] = df["name"].fillna(df["station_name"]) if "name" in df.columns else df["station_name"]
    for c in ("name", "unit", "property", "station", "place_id"):
        if c not in df.columns:
            df[c] = None
    if ("x" not in df.columns or df["x"].isna().all()) and "lon" in df.columns and df["lon"].notna().any():
        from pyproj import Transformer

        tr = Transformer.from_crs(4326, 32649, always_xy=True)
        x, y = tr.transform(df["lon"].to_numpy(float), df["lat"].to_numpy(float))
        df["x"], df["y"] = x, y
    for c in ("x", "y"):
        if c not in df.columns:
            df[c] = np.nan
    df["name"] = df["name"].fillna(df["datastream_id"])
    df["latest_time"] = _to_local(df["latest_time"])
    return df


def _to_local(s: pd.Series) -> pd.Series:
    t = pd.to_datetime(s, utc=True, errors="coerce")
    return t.dt.tz_convert(LOCAL_TZ)


def observations(path: str | Path, datastream_id: str, limit: int = 20_000) -> pd.DataFrame:
    """(time local, result, quality_flag) of one datastream, oldest first (the last ``limit``)."""
    con = connect(path)
    try:
        df = con.execute("""
            select phenomenon_time as time, result, quality_flag::varchar as quality_flag from (
                select * from observations where datastream_id::varchar = ? order by phenomenon_time desc limit ?
            ) order by phenomenon_time""", [str(datastream_id), int(limit)]).df()
    finally:
        con.close()
    df["time"] = _to_local(df["time"])
    df["quality_flag"] = df["quality_flag"].fillna("good")
    return df


def _norm(s: str) -> str:
    import unicodedata

    s = unicodedata.normalize("NFKD", str(s).replace("đ", "d").replace("Đ", "D"))
    return " ".join("".join(c for c in s if not unicodedata.combining(c)).lower().split())


def observed_for_place(store: str | Path, place_id: str, start: str | None, place_name: str | None = None):
    """(t_s since the run start, values, label) of the datastream linked to a gauge place, or None."""
    ds = datastreams(store)
    m = ds[(ds["place_id"].astype(str) == str(place_id)) | (ds["station"].astype(str) == str(place_id))]
    if m.empty and place_name:
        key = _norm(place_name)
        names = ds.get("station_name", ds["name"]).astype(str).map(_norm)
        m = ds[(names == key) | (ds["name"].astype(str).map(_norm) == key)]
    if m.empty or not start:
        return None
    row = m.iloc[0]
    obs = observations(store, row["datastream_id"])
    t0 = pd.Timestamp(start)
    t0 = t0.tz_localize(LOCAL_TZ) if t0.tzinfo is None else t0
    t = (obs["time"] - t0).dt.total_seconds().to_numpy()
    return t, obs["result"].to_numpy(float), f"observed {row['name']} ({row['unit'] or ''})"
