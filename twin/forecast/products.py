"""The forecast folder's products, aggregated member by member (no member's fields are kept once
counted): ``exceedance.nc``, ``impacts.parquet``, ``gauges.parquet``, the CAP alerts and the
``forecast.json`` document (declared in :mod:`twin.output.forecast_schema`)."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twin.output.forecast_schema import (
    EXCEEDANCE_THRESHOLDS,
    exceedance_var,
    validate_forecast_frame,
    validate_forecast_json,
)

__all__ = ["Aggregator", "write_all", "previous_alerts", "write_json", "evaluate_rules"]

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
LOCAL_TZ = _dt.timezone(_dt.timedelta(hours=7))
_SEV_VI = {"Extreme": "cực kỳ nguy hiểm", "Severe": "nguy hiểm", "Moderate": "trung bình", "Minor": "nhẹ",
           "Unknown": "không rõ"}


def write_json(path: Path, doc: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False, default=_json_default), encoding="utf-8")
    tmp.replace(path)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


class Aggregator:
    """Counts and keeps what the products need from each member as it arrives."""

    def __init__(self, members: int, city, scenario, t0_s: float, share_thresholds: list[float],
                 place_threshold_m: float):
        self.k = int(members)
        self.city = city
        self.scenario = scenario
        self.t0 = float(t0_s)
        self.share_thresholds = list(share_thresholds)
        self.place_threshold_m = float(place_threshold_m)
        self.n = 0
        self.times: np.ndarray | None = None
        self.counts: np.ndarray | None = None     # (n_thr, n_out, ny, nx) int16
        self.valid: np.ndarray | None = None
        self.maxd: list[np.ndarray] = []
        self.summaries: list[dict] = []
        self.gauge_frames: list[pd.DataFrame] = []
        self.place_depth: dict[int, np.ndarray] = {}
        self.place_ids: list[str] = []
        self.closed_car: np.ndarray | None = None
        self.closed_amb: np.ndarray | None = None
        self.link_ids: list[str] = []
        self.link_names: list[str] = []
        self.ward_names: list[str] = []
        self.ward_sig: dict[int, np.ndarray] = {}
        self.home_share: dict[int, np.ndarray] = {}
        self.response: list[np.ndarray] = []
        self.warnings: list[str] = []

    def add(self, r: dict) -> None:
        m = int(r["member"])
        self.warnings += [w for w in r.get("warnings", []) if w not in self.warnings]
        depth = r["depth"]
        if self.times is None:
            self.times = np.asarray(r["times_s"], float)
            self.counts = np.zeros((len(EXCEEDANCE_THRESHOLDS),) + depth.shape, np.int16)
            # land cells only: not sea, not permanent water (rivers, lagoon: twin.build.Twin.land), as the
            # run folder's flooded area and maps
            self.valid = np.asarray(r["land"], bool) & np.isfinite(depth[0])
            self.place_ids = list(r["place_ids"])
            self.closed_car = np.zeros(r["closed_car"].shape, np.int32)
            self.closed_amb = np.zeros(r["closed_amb"].shape, np.int32)
            self.link_ids = list(r.get("link_ids", []))
            self.link_names = list(r.get("link_names", []))
            self.ward_names = list(r["ward_names"])
        assert self.counts is not None and self.closed_car is not None and self.closed_amb is not None
        dz = np.nan_to_num(depth, nan=0.0)
        for i, t in enumerate(EXCEEDANCE_THRESHOLDS):
            self.counts[i] += dz > t
        self.maxd.append(np.asarray(r["running_max"][-1], np.float32))
        self.closed_car += r["closed_car"]
        self.closed_amb += r["closed_amb"]
        self.place_depth[m] = np.asarray(r["place_depth"], float)
        self.ward_sig[m] = np.asarray(r["ward_significant_persons"], float)
        self.home_share[m] = np.asarray(r["home_share"], float)
        if len(r["response_s"]):
            self.response.append(np.asarray(r["response_s"], float))
        gid = r["gauge_ids"]
        if gid:
            nt = len(self.times)
            self.gauge_frames.append(pd.DataFrame({
                "member": np.full(nt * len(gid), m, np.int64),
                "gauge_id": np.repeat(np.asarray(gid, dtype=object)[None, :], nt, axis=0).ravel(),
                "t_s": np.repeat(self.times, len(gid)),
                "stage_m": np.asarray(r["gauge_stage"], float).ravel(),
                "depth_m": np.asarray(r["gauge_depth"], float).ravel()}))
        wet = (np.nan_to_num(r["running_max"][-1]) > 0.1) & np.asarray(r["land"], bool)  # land, as the run KPIs
        cell_area = float(self.city.terrain.cell_size) ** 2
        self.summaries.append({"member": m, "perturbation": r["perturbation"], "track": r["track"],
                               "wall_s": r["wall_s"], "build_s": r["build_s"], "run_s": r["run_s"],
                               "max_depth_m": r["flood_max_depth_m"],
                               "area_max_depth_gt_0.1m_m2": float(wet.sum()) * cell_area})
        self.n += 1


# ------------------------------------------------------------------------------------------ files
def _exceedance(path: Path, agg: Aggregator) -> None:
    import xarray as xr
    from pyproj import CRS

    assert agg.counts is not None and agg.times is not None and agg.valid is not None
    t = agg.city.terrain
    ny, nx = agg.valid.shape
    tr = t.transform
    x = tr.c + (np.arange(nx) + 0.5) * tr.a
    y = tr.f + (np.arange(ny) + 0.5) * tr.e
    md = np.stack(agg.maxd)
    q = np.full((3, ny, nx), np.nan)
    if agg.valid.any():
        q[:, agg.valid] = np.quantile(np.nan_to_num(md[:, agg.valid]), [0.05, 0.5, 0.95], axis=0)
    start = agg.scenario.start_utc
    data: dict[str, Any] = {}
    for i, thr in enumerate(EXCEEDANCE_THRESHOLDS):
        p = (agg.counts[i] / float(agg.n)).astype(np.float32)
        p[:, ~agg.valid] = np.nan
        data[exceedance_var(thr)] = (("time", "y", "x"), p, {
            "long_name": f"probability that the water depth exceeds {thr:g} m", "units": "1",
            "grid_mapping": "spatial_ref",
            "comment": f"share of {agg.n} members; NaN outside the model, at sea and on permanent water"})
    for name, k, what in (("max_depth_p05_m", 0, "5 % quantile"), ("max_depth_median_m", 1, "ensemble median"),
                          ("max_depth_p95_m", 2, "95 % quantile")):
        data[name] = (("y", "x"), q[k].astype(np.float32), {
            "long_name": f"{what} of the members' maximum depth over the horizon", "units": "m",
            "grid_mapping": "spatial_ref"})
    ds = xr.Dataset(data, coords={
        "time": ("time", agg.times, {"standard_name": "time", "long_name": "output time",
                                     "units": f"seconds since {start:%Y-%m-%d %H:%M:%S}", "calendar": "standard"}),
        "lead_time_s": ("time", agg.times - agg.t0, {"long_name": "time after the issue time", "units": "s"}),
        "x": ("x", x, {"standard_name": "projection_x_coordinate", "units": "m", "axis": "X"}),
        "y": ("y", y, {"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y"})},
        attrs={"Conventions": "CF-1.8", "title": "Tam Kỳ Twin ensemble flood forecast: exceedance probabilities",
               "institution": "Tam Kỳ Twin", "source": f"twin forecast, {agg.n} members",
               "history": f"{_dt.datetime.now(_dt.UTC):%Y-%m-%dT%H:%M:%SZ} twin forecast"})
    c = CRS.from_user_input(t.crs.to_wkt() if hasattr(t.crs, "to_wkt") else (t.crs or "EPSG:32649"))
    ds["spatial_ref"] = xr.DataArray(np.int32(0), attrs={**c.to_cf(), "spatial_ref": c.to_wkt()})
    enc: dict[str, dict[str, Any]] = {v: {"zlib": True, "complevel": 4} for v in data}
    enc["time"] = {"dtype": "float64"}
    ds.to_netcdf(path, encoding=enc)


def _place_kind(kind: str) -> str | None:
    from twin.forecast.members import PLACE_KINDS

    return PLACE_KINDS.get(kind)


def _impacts(agg: Aggregator) -> pd.DataFrame:
    assert agg.times is not None and agg.closed_car is not None and agg.closed_amb is not None
    rows: dict[str, list] = {k: [] for k in ("target_kind", "target_id", "name", "impact", "t_s", "probability",
                                             "quantile", "value")}

    def add(kind, tid, name, impact, t_s, p=math.nan, q=math.nan, v=math.nan):
        rows["target_kind"].append(kind)
        rows["target_id"].append(str(tid))
        rows["name"].append(str(name))
        rows["impact"].append(impact)
        rows["t_s"].append(float(t_s))
        rows["probability"].append(float(p))
        rows["quantile"].append(float(q))
        rows["value"].append(float(v))

    times = agg.times
    pl = agg.city.places
    if agg.place_ids and pl is not None:
        info = {str(r.place_id): (str(r.name), str(r.kind)) for r in pl.itertuples(index=False)}
        pd_stack = np.stack([agg.place_depth[m] for m in sorted(agg.place_depth)])  # (K, n_out, n_places)
        prob = (pd_stack > agg.place_threshold_m).mean(axis=0)
        for j, pid in enumerate(agg.place_ids):
            name, kind = info.get(pid, (pid, ""))
            tk = _place_kind(kind)
            if tk is None:
                continue
            for k, t in enumerate(times):
                add(tk, pid, name, "flooded_above_threshold", t, p=prob[k, j])
    if agg.link_ids:
        for arr, impact in ((agg.closed_car, "closed_to_cars"), (agg.closed_amb, "closed_to_ambulances")):
            p = arr / float(agg.n)
            for jj in np.flatnonzero(p.max(axis=0) > 0):  # links never closed in any member are left out
                j = int(jj)
                for k, t in enumerate(times):
                    add("road_link", agg.link_ids[j], agg.link_names[j] if agg.link_names else "", impact, t, p=p[k, j])
    if agg.ward_names:
        ws = np.stack([agg.ward_sig[m] for m in sorted(agg.ward_sig)])  # (K, n_out, n_w)
        for i, w in enumerate(agg.ward_names):
            for k, t in enumerate(times):
                add("ward", w, w, "population_at_significant_hazard", t, p=(ws[:, k, i] > 0).mean())
                for qq in (0.05, 0.5, 0.95):
                    add("ward", w, w, "population_at_significant_hazard", t, q=qq, v=np.quantile(ws[:, k, i], qq))
    if agg.response:
        rt = np.concatenate(agg.response)
        rt = rt[np.isfinite(rt)]
        if len(rt):
            for qq in QUANTILES:
                add("services", "ambulance", "ambulance response (medical incidents, all members)",
                    "ambulance_response_s", times[-1], q=qq, v=np.quantile(rt, qq))
    df = pd.DataFrame(rows)
    for c in ("target_kind", "target_id", "name", "impact"):
        df[c] = df[c].astype(object)
    return validate_forecast_frame("impacts.parquet", df)


def _gauges(agg: Aggregator) -> pd.DataFrame:
    cols = ["member", "gauge_id", "name", "kind", "t_s", "stage_m", "depth_m"]
    if not agg.gauge_frames:
        df = pd.DataFrame({c: pd.Series(dtype=("int64" if c == "member" else "float64" if c in ("t_s", "stage_m", "depth_m")
                                               else object)) for c in cols})
        return validate_forecast_frame("gauges.parquet", df)
    df = pd.concat(agg.gauge_frames, ignore_index=True)
    pl = agg.city.places
    info = {str(r.place_id): (str(r.name), str(r.kind)) for r in pl.itertuples(index=False)}
    df["gauge_id"] = df["gauge_id"].astype(str).astype(object)
    df["name"] = df["gauge_id"].map(lambda g: info.get(g, (g, ""))[0]).astype(object)
    df["kind"] = df["gauge_id"].map(lambda g: info.get(g, ("", ""))[1]).astype(object)
    df = df.sort_values(["gauge_id", "member", "t_s"], kind="stable").reset_index(drop=True)[cols]
    return validate_forecast_frame("gauges.parquet", df)


def _spread(agg: Aggregator) -> dict:
    md = np.array([s["max_depth_m"] for s in agg.summaries])
    area = np.array([s["area_max_depth_gt_0.1m_m2"] for s in agg.summaries])
    stack = np.stack(agg.maxd)
    wet = agg.valid & (np.nan_to_num(stack).max(axis=0) > 0.1) if agg.valid is not None else None
    sd = float(np.nanmean(np.nanstd(stack[:, wet], axis=0))) if wet is not None and wet.any() else 0.0
    return {"max_depth_m": {"min": float(md.min()), "median": float(np.median(md)), "max": float(md.max())},
            "area_max_depth_gt_0.1m_m2": {"min": float(area.min()), "median": float(np.median(area)),
                                          "max": float(area.max())},
            "mean_std_of_max_depth_over_wet_cells_m": sd,
            "members_differ": bool(np.ptp(md) > 0 or np.ptp(area) > 0)}


# ------------------------------------------------------------------------------------------ alerts
def previous_alerts(fdir) -> dict[str, dict]:
    """The alerts of an earlier forecast folder that are still in force, by rule key."""
    from twin.forecast.errors import ForecastError

    p = Path(fdir) / "forecast.json"
    if not p.is_file():
        raise ForecastError(f"--previous {fdir}: not a forecast folder (no forecast.json)")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ForecastError(f"--previous {p}: not JSON ({exc})") from None
    out = {}
    for a in doc.get("alerts") or []:
        if a.get("msgType") != "Cancel":
            out[str(a["rule"])] = a
    return out


def evaluate_rules(agg: Aggregator, rules) -> list[dict]:
    """For each rule: its probability, whether it fired, and the onset (first output time at which
    the probability of the area having been flooded reaches the rule's probability)."""
    from twin.geo import normalise_name as norm

    assert agg.times is not None
    lead = agg.times - agg.t0
    out = []
    keys = sorted(agg.home_share)
    wards = [norm(w) for w in agg.ward_names]
    pl = agg.city.places
    for rule in rules.rules:
        sel = lead <= rule.within + 1e-6
        a = norm(rule.area)
        ti = agg.share_thresholds.index(rule.threshold_m)
        if a == "all" or a in wards:
            col = len(agg.ward_names) if a == "all" else wards.index(a)
            hit = np.stack([agg.home_share[m][:, col, ti] >= rule.min_share_of_homes for m in keys])  # (K, n_out)
            kind = "all" if a == "all" else "ward"
            ward_list = [] if a == "all" else [agg.ward_names[col]]
            man = getattr(agg.city, "manifest", None)
            title = man.get("title") if isinstance(man, dict) else None  # "Tam Kỳ (Đà Nẵng city, ...), Vietnam"
            city_name = str(title).split(" (")[0].split(",")[0] if title else str(getattr(agg.city, "name", "") or agg.scenario.city)
            name = f"{city_name} (toàn thành phố / whole city)" if a == "all" else agg.ward_names[col]
            xy = None
        else:
            row = pl[(pl["name"].map(lambda n: norm(str(n))) == a) | (pl["place_id"].astype(str).map(norm) == a)].iloc[0]
            j = agg.place_ids.index(str(row["place_id"]))
            hit = np.stack([agg.place_depth[m][:, j] > rule.threshold_m for m in keys])
            kind, name, xy = "place", str(row["name"]), (float(row["x"]), float(row["y"]))
            wn = row.get("ward_name") if "ward_name" in row.index else None
            ward_list = [str(wn)] if wn is not None and str(wn) in agg.ward_names else []
        cum = np.maximum.accumulate(hit, axis=1)       # flooded at some output time up to t
        p_t = cum.mean(axis=0)
        p = float(p_t[sel].max()) if sel.any() else 0.0
        fired = p >= rule.probability
        onset_i = int(np.flatnonzero(sel & (p_t >= rule.probability))[0]) if fired else None
        out.append({"rule": rule, "probability": p, "fired": fired, "kind": kind, "name": name, "xy": xy,
                    "wards": ward_list, "onset_s": float(agg.times[onset_i]) if onset_i is not None else None})
    return out


def _ring_wgs84(xs, ys) -> list[tuple[float, float]]:
    from pyproj import Transformer

    lon, lat = Transformer.from_crs("EPSG:32649", "EPSG:4326", always_xy=True).transform(np.asarray(xs), np.asarray(ys))
    ring = [(float(a), float(o)) for a, o in zip(lat, lon)]
    if ring[0] != ring[-1]:
        ring.append(ring[0])
    return ring


def _polygon(agg: Aggregator, ev: dict) -> list[tuple[float, float]]:
    from twin.geo import normalise_name as norm

    if ev["kind"] == "ward" and getattr(agg.city, "wards", None) is not None:
        w = agg.city.wards
        col = "ward_name" if "ward_name" in w.columns else "ward"
        hit = w[w[col].map(lambda n: norm(str(n))) == norm(ev["name"])]
        if len(hit):
            geom = hit.geometry.iloc[0].simplify(50.0)
            if geom.geom_type == "MultiPolygon":
                geom = max(geom.geoms, key=lambda g: g.area)
            xs, ys = geom.exterior.coords.xy
            return _ring_wgs84(xs, ys)
    if ev["kind"] == "place" and ev["xy"] is not None:
        x, y = ev["xy"]
        r = 250.0
        return _ring_wgs84([x - r, x + r, x + r, x - r, x - r], [y - r, y - r, y + r, y + r, y - r])
    # the whole city (or a ward without a polygon): the model's valid cells' bounding box
    t = agg.city.terrain
    v = agg.valid if agg.valid is not None else np.ones(t.shape, bool)
    rows, cols = np.nonzero(v)
    tr = t.transform
    x0, x1 = tr.c + cols.min() * tr.a, tr.c + (cols.max() + 1) * tr.a
    y0, y1 = tr.f + (rows.max() + 1) * tr.e, tr.f + rows.min() * tr.e
    return _ring_wgs84([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0])


def _duration_text(s: float) -> tuple[str, str]:
    """(English, Vietnamese) text of a duration: '6 h' / '6 giờ', '20 min' / '20 phút'."""
    if s >= 3600.0 and abs(s / 3600.0 - round(s / 3600.0, 1)) < 1e-9:
        return f"{s / 3600.0:g} h", f"{s / 3600.0:g} giờ"
    return f"{s / 60.0:.0f} min", f"{s / 60.0:.0f} phút"


def _iso(dt: _dt.datetime) -> str:
    return dt.astimezone(LOCAL_TZ).replace(microsecond=0).isoformat()


def _alerts(folder: Path, agg: Aggregator, rules, prev: dict[str, dict] | None, horizon_s: float) -> list[dict]:
    from twin.forecast.cap import AlertSpec, build_alert

    folder.mkdir()
    sc = agg.scenario
    now = _dt.datetime.now(LOCAL_TZ).replace(microsecond=0)
    sent = _iso(now)
    issue = sc.datetime_at(agg.t0)
    written = []
    for i, ev in enumerate(evaluate_rules(agg, rules)):
        rule = ev["rule"]
        old = (prev or {}).get(rule.key)
        if not ev["fired"] and old is None:
            continue
        msg = "Alert" if old is None else ("Update" if ev["fired"] else "Cancel")
        refs = [] if old is None else list(old.get("references", [])) + [f"{old['sender']},{old['identifier']},{old['sent']}"]
        h = hashlib.sha256(f"{rule.key}|{sent}|{folder.resolve()}|{i}".encode()).hexdigest()[:10]
        ident = f"tamky-twin-{now:%Y%m%dT%H%M%S}-{i:02d}-{h}"
        onset = sc.datetime_at(ev["onset_s"]) if ev["onset_s"] is not None else issue
        expires = sc.datetime_at(agg.t0 + horizon_s)
        lead_h = (ev["onset_s"] - agg.t0) / 3600.0 if ev["onset_s"] is not None else None
        urgency = rule.urgency or ("Immediate" if lead_h is not None and lead_h <= 1.0 else "Expected")
        certainty = rule.certainty or ("Likely" if ev["probability"] > 0.5 else "Possible")
        p, thr = ev["probability"], rule.threshold_m
        w_en, w_vi = _duration_text(rule.within)
        what_en = (f"for at least {rule.min_share_of_homes:.0%} of the homes of" if ev["kind"] != "place" else "at")
        what_vi = (f"tại ít nhất {rule.min_share_of_homes:.0%} số nhà của" if ev["kind"] != "place" else "tại")
        spec = AlertSpec(
            identifier=ident, sender=rules.sender, sent=sent, msg_type=msg, severity=rule.severity,
            urgency=urgency, certainty=certainty, onset=_iso(onset), expires=_iso(expires),
            area_desc=ev["name"], polygon=_polygon(agg, ev), wards=ev["wards"], event_en=rule.event,
            event_vi="Ngập lụt" if rule.event == "Flood" else rule.event,
            headline_en=(f"Flood warning cancelled: {ev['name']}" if msg == "Cancel" else
                         f"{rule.severity} flood warning: {ev['name']}, {p:.0%} chance of water above {thr:g} m "
                         f"within {w_en}"),
            headline_vi=(f"Hủy cảnh báo ngập lụt: {ev['name']}" if msg == "Cancel" else
                         f"Cảnh báo ngập lụt ({_SEV_VI[rule.severity]}): {ev['name']}, khả năng {p:.0%} nước "
                         f"sâu trên {thr:g} m trong {w_vi} tới"),
            description_en=(f"Ensemble forecast of {agg.n} members issued for {issue:%Y-%m-%d %H:%M} (local time): "
                            f"probability {p:.0%} that the water rises above {thr:g} m {what_en} "
                            f"{ev['name']} within {w_en} (rule threshold {rule.probability:.0%})."
                            + (" The forecast no longer reaches the rule's probability." if msg == "Cancel" else "")),
            description_vi=(f"Dự báo tổ hợp {agg.n} thành phần phát hành lúc {issue:%H:%M %d/%m/%Y} (giờ địa phương): "
                            f"khả năng {p:.0%} nước dâng trên {thr:g} m {what_vi} {ev['name']} trong "
                            f"{w_vi} tới (ngưỡng cảnh báo {rule.probability:.0%})."
                            + (" Dự báo mới không còn vượt ngưỡng cảnh báo." if msg == "Cancel" else "")),
            instruction_en=("No further action for this warning; follow the instructions of the local authorities."
                            if msg == "Cancel" else
                            "Move people, vehicles and valuables to higher floors or ground; avoid flooded roads "
                            "and bridges; follow the instructions of the local authorities."),
            instruction_vi=("Không cần hành động thêm cho cảnh báo này; làm theo hướng dẫn của chính quyền địa phương."
                            if msg == "Cancel" else
                            "Di chuyển người, phương tiện và tài sản lên tầng cao hoặc nơi cao; tránh các tuyến đường "
                            "và cầu bị ngập; làm theo hướng dẫn của chính quyền địa phương."),
            references=refs, status=rules.status,
            parameters={"probability": f"{p:.3f}", "threshold_m": f"{thr:g}", "within_s": f"{rule.within:g}",
                        "rule": rule.key})
        xml = build_alert(spec)
        fname = f"{i:02d}-{msg.lower()}-{ident}.xml"
        (folder / fname).write_text(xml, encoding="utf-8")
        written.append({"file": f"alerts/{fname}", "identifier": ident, "sender": rules.sender, "sent": sent,
                        "msgType": msg, "references": refs, "rule": rule.key, "area": rule.area,
                        "probability": p, "severity": rule.severity, "urgency": urgency, "certainty": certainty,
                        "onset": spec.onset, "expires": spec.expires})
    return written


def write_all(folder: Path, agg: Aggregator, meta: dict, rules, prev, sender: str | None = None) -> dict:
    """Write every product into ``folder``; returns the forecast.json document (without wall time)."""
    from twin.forecast.perturb import (
        ERROR_SOURCE,
        JTWC_WP_ERRORS,
        RAIN_SIGMA_LN,
        RELEASE_SIGMA_LN,
        SEA_OFFSET_SIGMA_M,
        SURGE_SIGMA_LN,
    )

    if agg.n < 2:
        raise ValueError(f"forecast: {agg.n} member(s) finished; at least 2 are needed")
    _exceedance(folder / "exceedance.nc", agg)
    _impacts(agg).to_parquet(folder / "impacts.parquet", index=False)
    _gauges(agg).to_parquet(folder / "gauges.parquet", index=False)
    alerts: list[dict] = []
    if rules is not None:
        if sender:
            rules = rules.model_copy(update={"sender": sender})
        alerts = _alerts(folder / "alerts", agg, rules, prev, float(meta["horizon_s"]))
    doc = dict(meta)
    doc.update({
        "n_members": agg.n,
        "members": sorted(agg.summaries, key=lambda s: s["member"]),
        "spread": _spread(agg),
        "perturbations": {
            "typhoon_track_errors": {"lead_h, mean_track_error_nm, mean_abs_vmax_error_kt": [list(r) for r in JTWC_WP_ERRORS],
                                     "source": ERROR_SOURCE,
                                     "model": "error(lead) = z * sigma(lead), z ~ N(0,1) per member and component; "
                                              "sigma = mean error / sqrt(pi/2) (track, per component), "
                                              "mean abs error * sqrt(pi/2) (Vmax)"},
            "rain_factor_sigma_ln": RAIN_SIGMA_LN, "release_factor_sigma_ln": RELEASE_SIGMA_LN,
            "sea_offset_sigma_m": SEA_OFFSET_SIGMA_M, "surge_factor_sigma_ln": SURGE_SIGMA_LN,
            "control_member": 0},
        "thresholds_m": list(EXCEEDANCE_THRESHOLDS),
        "place_flood_threshold_m": agg.place_threshold_m,
        "warnings": agg.warnings,
        "alerts": alerts,
        "files": sorted(["exceedance.nc", "impacts.parquet", "gauges.parquet", "forecast.json"]
                        + [a["file"] for a in alerts]),
        "wall_time_s": None,
    })
    return validate_forecast_json(doc)
