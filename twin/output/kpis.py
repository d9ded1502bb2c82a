"""Key performance indicators of a run, computed from the recorded tables and series.

Every KPI here can be recomputed from the run folder's files (``fields.nc``, ``*.parquet``,
``max_depth.tif``); ``tests/sim`` does so independently. Definitions:

- ``flooded_area_m2``: time series, area of valid cells per depth class (0.1–0.3, 0.3–0.5, 0.5–1, 1–2, >2 m).
- ``max_depth_at_places``: the running maximum of the water a person at each place meets (hospitals,
  shelters…): depth above the normal water surface at the place's land cell, the nearest land cell when
  the place falls in a river or the sea at the run's resolution (``twin.output.tables.place_cells``);
  ``places_in_water`` lists those places.
- ``people_exposure_person_hours``: Σ over people records of persons × record interval / 3600 by
  hazard class of the water at the person's position (FD2321 HR; only depth ≥ 0.1 m counts).
- ``evacuation_clearance_s``: for people who reached a safe state (``SAFE_STATES``), the time by
  which 50/90/95 % of them had (first record in a safe state); ``null`` if fewer than that share
  ever did — the share is of everyone who ever started evacuating or was safe.
- ``evacuated_before_water``: persons who reached a safe state with no earlier people record in water
  of ``EXPOSURE_MIN_DEPTH_M`` or more (``persons``), those who met such water first
  (``after_water_persons``) and those who met it and never reached safety
  (``met_water_never_safe_persons``); at the resolution of the people records (``tables_every``).
- ``ambulance_response_s``: median and p90 of ``response_time_s`` over reached incidents;
  ``unreached_incidents``: incidents without a response by the end.
- ``road_links_closed_share``: time series of the share of links closed by water.
- ``travel_time_index``: Σ travel time / Σ free-flow travel time over completed trips (1 = no delay).
- ``direct_damage``: JRC Asia depth–damage functions on the max depth (``twin.output.damage``).
- ``economy_exposure``: industrial zones, tourism sites and hotels (places of those kinds): per place the
  max depth there, workers / guests exposed (its capacity, or a hotel's tourists, when the water at the
  place reached ``ECONOMY_EXPOSED_DEPTH_M``), the JRC damage fraction (industrial curve for industry,
  commercial for tourism) and the days of disruption from ``DISRUPTION_DAYS`` (an assumption, stated
  there); totals: workers_exposed, guests_exposed, disruption_days (summed over places).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

SAFE_STATES = ("sheltered", "evacuated", "safe", "arrived_shelter", "at_shelter")
MOVING_STATES = ("evacuating", "moving", "travelling", "traveling", "walking", "driving")
EXPOSURE_MIN_DEPTH_M = 0.1


def exposure_person_hours(people: pd.DataFrame, interval_s: float) -> dict[str, float]:
    """Σ persons × interval / 3600 over people records in water (hazard rating > 0), by class."""
    from twin.hazard import HAZARD_CLASSES

    out = {name: 0.0 for name in HAZARD_CLASSES}
    if people is None or len(people) == 0 or "hazard_class" not in people:
        return out
    w = people["persons"] if "persons" in people else pd.Series(1.0, index=people.index)
    wet = people["hazard_class"].astype(str) != "none"
    sums = (w[wet] * interval_s / 3600.0).groupby(people.loc[wet, "hazard_class"].astype(str)).sum()
    for k, v in sums.items():
        if k in out:
            out[k] = float(v)
    return out


def clearance_times(people: pd.DataFrame, quantiles=(0.5, 0.9, 0.95)) -> dict[str, float | None]:
    res: dict[str, float | None] = {f"p{int(q * 100)}": None for q in quantiles}
    if people is None or len(people) == 0 or "state" not in people:
        return res
    st = people["state"].astype(str)
    involved = people.loc[st.isin(SAFE_STATES + MOVING_STATES), "agent_id"].unique()
    if len(involved) == 0:
        return res
    safe = people.loc[st.isin(SAFE_STATES)].groupby("agent_id")["t_s"].min()
    w_all = people.drop_duplicates("agent_id").set_index("agent_id")
    weights = w_all["persons"] if "persons" in w_all else pd.Series(1.0, index=w_all.index)
    total = float(weights.reindex(involved).fillna(1.0).sum())
    if len(safe) == 0 or total <= 0:
        return res
    safe = safe.sort_values(kind="stable")
    cum = np.cumsum(weights.reindex(safe.index).fillna(1.0).to_numpy()) / total
    for q in quantiles:
        i = np.searchsorted(cum, q - 1e-12)
        res[f"p{int(q * 100)}"] = float(safe.iloc[i]) if i < len(safe) else None
    return res


def evacuated_before_water(people: pd.DataFrame, min_depth_m: float = EXPOSURE_MIN_DEPTH_M) -> dict[str, float]:
    """Persons who reached safety before meeting water ≥ ``min_depth_m`` (see the module docstring).

    Per agent (people.parquet rows): ``t_safe`` the first record in a ``SAFE_STATES`` state, ``t_wet``
    the first record with ``depth_m >= min_depth_m``; weighted by the agent's persons at its first record."""
    out = {"persons": 0.0, "after_water_persons": 0.0, "met_water_never_safe_persons": 0.0}
    if people is None or len(people) == 0:
        return out
    t = people["t_s"].to_numpy(dtype=float)
    aid = people["agent_id"].to_numpy()
    safe = people["state"].astype(str).isin(SAFE_STATES).to_numpy()
    wet = np.nan_to_num(people["depth_m"].to_numpy(dtype=float), nan=0.0) >= min_depth_m
    frame = pd.DataFrame({"a": aid, "t_safe": np.where(safe, t, np.inf), "t_wet": np.where(wet, t, np.inf)})
    first = frame.groupby("a").min()
    order = np.argsort(t, kind="stable")
    w = pd.Series(people["persons"].to_numpy(dtype=float)[order], index=aid[order])
    w = w[~w.index.duplicated(keep="first")].reindex(first.index).fillna(0.0)
    ts, tw = first["t_safe"].to_numpy(), first["t_wet"].to_numpy()
    reached = np.isfinite(ts)
    out["persons"] = float(w[reached & (tw >= ts)].sum())
    out["after_water_persons"] = float(w[reached & (tw < ts)].sum())
    out["met_water_never_safe_persons"] = float(w[~reached & np.isfinite(tw)].sum())
    return out


def response_times(incidents: pd.DataFrame) -> dict:
    """Ambulance response (medical incidents): median/p90 of ``response_time_s``; unreached =
    incidents of any kind without a response by the end (also by kind)."""
    out: dict[str, Any] = {"n_incidents": 0, "n_medical": 0, "median_s": None, "p90_s": None, "unreached": 0,
                           "unreached_by_kind": {}}
    if incidents is None or len(incidents) == 0:
        return out
    out["n_incidents"] = int(len(incidents))
    rt = pd.to_numeric(incidents["response_time_s"], errors="coerce")
    unreached = ~np.isfinite(rt)
    out["unreached"] = int(unreached.sum())
    if "kind" in incidents:
        out["unreached_by_kind"] = {str(k): int(v) for k, v in unreached.groupby(incidents["kind"].astype(str)).sum().items()}
        med = incidents["kind"].astype(str) == "medical"
    else:
        med = pd.Series(True, index=incidents.index)
    out["n_medical"] = int(med.sum())
    ok = rt[med & ~unreached]
    if len(ok):
        out["median_s"] = float(np.median(ok))
        out["p90_s"] = float(np.percentile(ok, 90))
    return out


def travel_time_index(trips: pd.DataFrame) -> dict:
    out: dict[str, Any] = {"completed_trips": 0, "index": None}
    if trips is None or len(trips) == 0 or "free_flow_time_s" not in trips or "travel_time_s" not in trips:
        return out
    tt = pd.to_numeric(trips["travel_time_s"], errors="coerce")
    ff = pd.to_numeric(trips["free_flow_time_s"], errors="coerce")
    ok = np.isfinite(tt) & np.isfinite(ff) & (ff > 0)
    out["completed_trips"] = int(ok.sum())
    if ok.any():
        out["index"] = float(tt[ok].sum() / ff[ok].sum())
    return out


def links_closed_share(links: pd.DataFrame) -> list[dict]:
    if links is None or len(links) == 0:
        return []
    g = links.groupby("t_s")["closed"].mean()
    return [{"t_s": float(t), "share": float(v)} for t, v in g.items()]


#: water at a workplace or tourism site from which its people count as exposed and work stops [m] (the
#: lowest FD2321 hazard class starts at 0.1 m; 0.15 m is a kerb and a doorstep)
ECONOMY_EXPOSED_DEPTH_M = 0.15
#: days of disruption by max depth at the place: (lower bound of the depth band [m], days). An
#: ASSUMPTION of this project (clean-up of a few days below 0.5 m; weeks to months for wetted machinery
#: and ground-floor fittings), order of magnitude only; not calibrated on Tam Kỳ.
DISRUPTION_DAYS = ((0.15, 3.0), (0.5, 14.0), (1.0, 45.0), (2.0, 90.0))
ECONOMY_KINDS = {"industrial_zone": ("workers", "industrial"), "tourism": ("guests", "commercial"),
                 "hotel": ("guests", "commercial")}


def disruption_days(depth_m: float) -> float:
    days = 0.0
    for lo, d in DISRUPTION_DAYS:
        if depth_m >= lo:
            days = d
    return days


def economy_exposure(max_depth_at_places: list[dict], places: pd.DataFrame | None) -> dict:
    """Exposure of industry and tourism (see the module docstring); ``places`` gives capacity and tourists."""
    from twin.output.damage import damage_fraction
    if places is None or not len(places) or not max_depth_at_places:
        return {"places": [], "workers_exposed": 0, "guests_exposed": 0, "disruption_days": 0.0}
    info = places.set_index("place_id")
    rows, workers, guests, days = [], 0, 0, 0.0
    for p in max_depth_at_places:
        kind = p.get("kind")
        if kind not in ECONOMY_KINDS:
            continue
        who, curve = ECONOMY_KINDS[kind]
        row = info.loc[p["place_id"]] if p["place_id"] in info.index else None
        cap = 0 if row is None else int(row.get("capacity", 0) or 0)
        n = int(row.get("tourists", 0) or 0) if (kind == "hotel" and row is not None) else cap
        depth = float(p["max_depth_m"])
        exposed = depth >= ECONOMY_EXPOSED_DEPTH_M
        d = disruption_days(depth)
        rows.append({"place_id": int(p["place_id"]), "name": p["name"], "kind": kind, "max_depth_m": depth,
                     f"{who}": n, f"{who}_exposed": n if exposed else 0,
                     "damage_fraction": float(damage_fraction(np.array([depth]), curve)[0]),
                     "disruption_days": d})
        if exposed:
            workers += n if who == "workers" else 0
            guests += n if who == "guests" else 0
        days += d
    return {"places": rows, "workers_exposed": workers, "guests_exposed": guests, "disruption_days": days,
            "exposed_depth_m": ECONOMY_EXPOSED_DEPTH_M}


def format_table(kpis: dict) -> str:
    """A plain-text KPI table for the terminal."""
    rows: list[tuple[str, str]] = []

    def fmt(v, unit=""):
        if v is None:
            return "n/a"
        if isinstance(v, float):
            return f"{v:,.2f}{unit}"
        return f"{v}{unit}"

    fa = kpis.get("flooded_area_final_m2", {})
    for k, v in fa.items():
        rows.append((f"flooded area {k} (end)", f"{v / 1e6:,.3f} km²"))
    mx = kpis.get("flooded_area_max_m2")
    if mx is not None:
        rows.append(("flooded area ≥0.1 m (max over time)", f"{mx / 1e6:,.3f} km²"))
    vb = kpis.get("volume_balance") or {}
    if vb:
        rows.append(("volume balance relative error", f"{vb.get('relative_error', float('nan')):.2e}"))
        rows.append(("rain volume", f"{vb.get('rain_m3', 0) / 1e6:,.3f} Mm³"))
    for k, v in (kpis.get("people_exposure_person_hours") or {}).items():
        rows.append((f"people exposed, hazard {k}", fmt(v, " person-h")))
    for k, v in (kpis.get("evacuation_clearance_s") or {}).items():
        rows.append((f"evacuation clearance {k}", "n/a" if v is None else f"{v / 60:,.0f} min"))
    amb = kpis.get("ambulance_response_s") or {}
    if amb:
        rows.append(("incidents", fmt(amb.get("n_incidents"))))
        rows.append(("ambulance response median", "n/a" if amb.get("median_s") is None else f"{amb['median_s'] / 60:,.1f} min"))
        rows.append(("ambulance response p90", "n/a" if amb.get("p90_s") is None else f"{amb['p90_s'] / 60:,.1f} min"))
        rows.append(("unreached incidents", fmt(amb.get("unreached"))))
    if kpis.get("road_links_closed_share_max") is not None:
        rows.append(("road links closed (max share)", f"{100 * kpis['road_links_closed_share_max']:.1f} %"))
    tti = kpis.get("travel_time_index") or {}
    if tti.get("index") is not None:
        rows.append(("travel-time index", f"{tti['index']:.3f}"))
    dmg = kpis.get("direct_damage") or {}
    if dmg.get("by_class"):
        rows.append(("direct damage (JRC Asia)", f"{dmg['total_usd'] / 1e6:,.2f} M USD (assumed unit costs)"))
    eco = kpis.get("economy_exposure") or {}
    if eco.get("places"):
        rows.append(("workers exposed (industrial zones)", fmt(eco.get("workers_exposed"))))
        rows.append(("guests exposed (hotels, tourism sites)", fmt(eco.get("guests_exposed"))))
        rows.append(("business disruption (sum over places)", f"{eco.get('disruption_days', 0.0):,.0f} days"))
    for p in (kpis.get("max_depth_at_places") or [])[:12]:
        rows.append((f"max depth at {p['kind']} {p['name']}", f"{p['max_depth_m']:.2f} m"))
    w = max((len(r[0]) for r in rows), default=10)
    return "\n".join(f"{a:<{w}}  {b}" for a, b in rows)
