"""Traffic cameras: vehicle counts per approach, as SensorThings datastreams tied to road links.

A camera is a station (STA *Thing* at its location); each approach it watches is one road link of the
city's network, and each vehicle class it reports on that approach is one datastream of observed
property ``traffic_count`` (vehicles per reporting interval, canonical unit ``veh``). The datastream's
properties say what it counts::

    datastreams:
      - {id: cam01-N-motorbike, station: CAM01, property: traffic_count, unit: veh, interval_s: 900,
         link_id: 412, approach: N, vehicle_class: motorbike}      # motorbike | car | bus_truck | all

Counts are stored like every observation (DuckDB, QC flags; a flagged count is not used).
:func:`camera_counts` reads them back with their link, :func:`hourly_link_counts` turns them into
vehicles per hour of the local day per link (what :func:`twin.traffic.calibration.calibrate_background_demand`
fits), :func:`counted_class_share` the observed vehicle mix.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from twin.sensors.model import BAD_MASK

__all__ = ["CAMERA_CLASSES", "camera_datastreams", "camera_counts", "hourly_link_counts", "counted_class_share"]

#: vehicle classes a camera may report (``all``: every vehicle, no class split); bus_truck counts buses
#: and trucks together (what camera classifiers usually separate from cars)
CAMERA_CLASSES = ("motorbike", "car", "bus_truck", "all")
LOCAL_TZ = "Asia/Ho_Chi_Minh"


def _props(text) -> dict:
    if isinstance(text, dict):
        return text
    if text is None or (isinstance(text, float) and np.isnan(text)) or text == "":
        return {}
    return json.loads(text)


def camera_datastreams(store) -> pd.DataFrame:
    """The store's camera datastreams: ``datastream_id, station_id, link_id, approach, vehicle_class,
    interval_s``. A ``traffic_count`` datastream without a ``link_id``, or with an unknown class, is refused
    with a message naming it."""
    m = store.datastreams()
    m = m[m["observed_property"] == "traffic_count"]
    rows = []
    for r in m.itertuples(index=False):
        p = _props(r.properties)
        if "link_id" not in p:
            raise ValueError(f"traffic_count datastream {r.datastream_id!r}: no link_id in its properties "
                             "(a camera count must be tied to a road link)")
        cls = str(p.get("vehicle_class", "all"))
        if cls not in CAMERA_CLASSES:
            raise ValueError(f"traffic_count datastream {r.datastream_id!r}: vehicle_class {cls!r} is not one of "
                             f"{list(CAMERA_CLASSES)}")
        try:
            link = int(p["link_id"])
        except (TypeError, ValueError):
            raise ValueError(f"traffic_count datastream {r.datastream_id!r}: link_id {p['link_id']!r} "
                             "is not an integer link id") from None
        rows.append({"datastream_id": r.datastream_id, "station_id": r.station_id, "link_id": link,
                     "approach": str(p.get("approach", "")), "vehicle_class": cls,
                     "interval_s": None if pd.isna(r.interval_s) else float(r.interval_s)})
    return pd.DataFrame(rows, columns=["datastream_id", "station_id", "link_id", "approach", "vehicle_class",
                                       "interval_s"])


def camera_counts(store, start=None, end=None) -> pd.DataFrame:
    """Usable camera counts (no flag in ``BAD_MASK``) with their link: ``datastream_id, link_id, approach,
    vehicle_class, interval_s, phenomenon_time`` (UTC) ``, count``."""
    meta = camera_datastreams(store)
    if meta.empty:
        return pd.DataFrame(columns=[*meta.columns, "phenomenon_time", "count"])
    obs = store.observations(meta["datastream_id"].tolist(), start, end, exclude_mask=BAD_MASK)
    obs = obs.rename(columns={"result": "count"})[["datastream_id", "phenomenon_time", "count"]]
    return meta.merge(obs, on="datastream_id")


def hourly_link_counts(counts: pd.DataFrame, *, tz: str = LOCAL_TZ) -> pd.DataFrame:
    """Vehicles per hour per link and local hour of the day (rows: link_id, columns: hours 0..23 that have
    counts), averaged over the days counted. An interval's count is placed in the hour holding its middle
    (the phenomenon time is the interval's end); an hour with missing intervals is scaled up by its
    coverage (counts x 3600 / (intervals x interval_s)). Per link, the class streams are added; a link
    with only an ``all`` stream uses it (never both: that would count vehicles twice)."""
    if counts.empty:
        return pd.DataFrame()
    c = counts.copy()
    # never count a vehicle twice: per link, class streams if there are any, else the 'all' stream
    has_cls = c[c["vehicle_class"] != "all"].groupby("link_id").size()
    c = c[(c["vehicle_class"] != "all") | ~c["link_id"].isin(has_cls.index)]
    iv = c["interval_s"].astype(float)
    if iv.isna().any():
        bad = c.loc[iv.isna(), "datastream_id"].iloc[0]
        raise ValueError(f"camera datastream {bad!r}: interval_s is missing (needed to turn counts per interval "
                         "into vehicles per hour)")
    mid = pd.to_datetime(c["phenomenon_time"]) - pd.to_timedelta(iv / 2.0, unit="s")
    local = mid.dt.tz_localize("UTC").dt.tz_convert(tz)
    c["hour"] = local.dt.hour.to_numpy()
    c["day"] = local.dt.date.to_numpy()
    # per stream, day and hour: vehicles per hour from the intervals present
    g = c.groupby(["link_id", "datastream_id", "day", "hour"]).agg(n=("count", "size"), s=("count", "sum"),
                                                                   iv=("interval_s", "first"))
    g["vph"] = g["s"] * 3600.0 / (g["n"] * g["iv"])
    per_link_day = g.groupby(["link_id", "day", "hour"])["vph"].sum()
    out = per_link_day.groupby(["link_id", "hour"]).mean().unstack("hour")
    out.columns = [int(h) for h in out.columns]
    return out.sort_index()


def counted_class_share(counts: pd.DataFrame) -> dict[str, float]:
    """Share of each class among the class-resolved counts (motorbike, car, bus_truck); {} when none."""
    c = counts[counts["vehicle_class"] != "all"]
    if c.empty:
        return {}
    tot = c.groupby("vehicle_class")["count"].sum()
    s = float(tot.sum())
    return {k: float(tot.get(k, 0.0)) / s for k in CAMERA_CLASSES[:3]} if s > 0 else {}
