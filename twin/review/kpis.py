"""The numbers a review compares: scalar KPIs of a run folder and its KPI curves over model time.

Each scalar KPI has a direction (``lower`` or ``higher`` is better) so a delta says whether a
decision helped. Definitions (``docs/user-guide/review.md`` explains them for users):

- ``people_hours_significant``: person-hours at significant or extreme hazard (FD2321), from
  ``people.parquet`` (Σ persons × ``tables_every`` over those records).
- ``people_hours_in_water``: person-hours at any hazard class but ``none``.
- ``evacuated_before_water``: persons whose homes saw ``water_depth_m`` during the run and had left
  before it (``twin.exercise.objectives.evacuated_before_water``); ``evacuated_before_water_share``
  the share of those persons.
- ``ambulance_response_p50_s`` / ``_p90_s``: from ``kpis.json`` (reached medical calls);
  ``rescue_response_p90_s``: p90 of the response to rescue calls reached; ``unreached_incidents``.
- ``closed_road_vehicle_hours``: vehicles on closed links (by water or a decision), Σ density ×
  link length × ``tables_every``; ``road_link_hours_closed``: Σ closed links × ``tables_every``.
- ``direct_damage_usd``: ``kpis.json`` direct damage (JRC Asia depth-damage, assumed unit costs).
- ``flooded_area_max_m2``: land flooded > 0.1 m at any time.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from twin.exercise.objectives import RunData, evacuated_before_water, significant_person_hours

__all__ = ["KPI_SPECS", "run_kpis", "kpi_curves", "kpi_deltas"]

#: name -> (units, better: "lower" | "higher", label)
KPI_SPECS: dict[str, tuple[str, str, str]] = {
    "people_hours_significant": ("h", "lower", "person-hours at significant hazard or worse"),
    "people_hours_in_water": ("h", "lower", "person-hours in water (any hazard)"),
    "evacuated_before_water": ("1", "higher", "persons evacuated before the water reached their homes"),
    "evacuated_before_water_share": ("1", "higher", "share of flooded homes' persons evacuated before the water"),
    "ambulance_response_p50_s": ("s", "lower", "median ambulance response"),
    "ambulance_response_p90_s": ("s", "lower", "p90 ambulance response"),
    "rescue_response_p90_s": ("s", "lower", "p90 rescue response"),
    "unreached_incidents": ("1", "lower", "calls never reached"),
    "closed_road_vehicle_hours": ("h", "lower", "vehicle-hours on closed roads"),
    "road_link_hours_closed": ("h", "lower", "road link-hours closed"),
    "direct_damage_usd": ("USD", "lower", "direct damage"),
    "flooded_area_max_m2": ("m2", "lower", "largest land area flooded > 0.1 m"),
}


def _f(v) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _link_lengths(data: RunData) -> np.ndarray | None:
    """Link lengths in the order of ``links.parquet``'s ``link_id`` (the network the run used)."""
    sc = data.scenario_dict()
    if sc.get("traffic") is None:
        return None
    net = data.city().roads
    if net is None:
        return None
    if (sc.get("traffic") or {}).get("largest_component_only", False):
        net = net.largest_strongly_connected()
    return net.links["length_m"].to_numpy(float)


def run_kpis(run_dir: str | Path | RunData, water_depth_m: float = 0.1) -> dict[str, float | None]:
    """The scalar KPIs of :data:`KPI_SPECS` for a finished run folder (None: not measured)."""
    data = run_dir if isinstance(run_dir, RunData) else RunData(run_dir)
    kf = data.run_dir / "kpis.json"
    try:
        k = json.loads(kf.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{kf}: cannot be read ({exc})") from None
    comps = data.components()
    out: dict[str, float | None] = {name: None for name in KPI_SPECS}
    dt_h = data.tables_every() / 3600.0
    if "people" in comps:
        p = data.table("people")
        out["people_hours_significant"] = significant_person_hours(data)[0]
        wet = p["hazard_class"].astype(str) != "none"
        out["people_hours_in_water"] = float((p.loc[wet, "persons"] * dt_h).sum())
        ev = evacuated_before_water(data, water_depth_m)
        out["evacuated_before_water"] = ev["persons_left_before"]
        out["evacuated_before_water_share"] = ev["share"]
    if "services" in comps:
        amb = k.get("ambulance_response_s") or {}
        out["ambulance_response_p50_s"] = _f(amb.get("median_s"))
        out["ambulance_response_p90_s"] = _f(amb.get("p90_s"))
        out["unreached_incidents"] = _f(amb.get("unreached"))
        inc = data.table("incidents")
        rt = inc.loc[inc["kind"].astype(str) == "rescue", "response_time_s"].to_numpy(float)
        rt = rt[np.isfinite(rt)]
        out["rescue_response_p90_s"] = float(np.percentile(rt, 90)) if len(rt) else None
    if "traffic" in comps:
        links = data.table("links")
        closed = links[links["closed"].to_numpy(bool)]
        out["road_link_hours_closed"] = float(len(closed) * dt_h)
        lengths = _link_lengths(data)
        if lengths is not None and len(links) and int(links["link_id"].max()) < len(lengths):
            veh = closed["density_veh_per_m"].to_numpy(float) * lengths[closed["link_id"].to_numpy(int)]
            out["closed_road_vehicle_hours"] = float(veh.sum() * dt_h)
    if "flood" in comps:
        out["direct_damage_usd"] = _f((k.get("direct_damage") or {}).get("total_usd"))
        out["flooded_area_max_m2"] = _f(k.get("flooded_area_max_m2"))
    return out


def kpi_deltas(run: dict, without: dict) -> dict[str, dict]:
    """Per KPI: the run's value, the value without (the decision, or all trainee decisions),
    ``delta = run - without`` and whether that is better (``helped``: True, False, or None when
    equal or not measured)."""
    out = {}
    for name, (units, better, label) in KPI_SPECS.items():
        a, b = run.get(name), without.get(name)
        d = None if a is None or b is None else float(a) - float(b)
        helped = None
        if d is not None and abs(d) > 1e-9 * max(1.0, abs(a or 0.0), abs(b or 0.0)):
            helped = (d < 0) if better == "lower" else (d > 0)
        out[name] = {"run": a, "without": b, "delta": d, "units": units, "better": better, "label": label,
                     "helped": helped}
    return out


def kpi_curves(run_dir: str | Path | RunData) -> dict[str, dict]:
    """Curves over model time for the timeline: ``{name: {"t_s": [...], "values": [...], "units", "label"}}``."""
    data = run_dir if isinstance(run_dir, RunData) else RunData(run_dir)
    comps = data.components()
    out: dict[str, dict] = {}

    def put(name: str, s: pd.Series, units: str, label: str) -> None:
        out[name] = {"t_s": [float(t) for t in s.index], "values": [float(v) for v in s.to_numpy(float)],
                     "units": units, "label": label}

    if "people" in comps:
        from twin.output.kpis import SAFE_STATES

        p = data.table("people")
        ts = pd.Index(np.sort(p["t_s"].unique()))
        wet = p["hazard_class"].astype(str) != "none"
        put("persons_in_water", p.loc[wet].groupby("t_s")["persons"].sum().reindex(ts, fill_value=0.0),
            "1", "persons in water")
        sig = p["hazard_class"].astype(str).isin(("significant", "extreme"))
        put("persons_significant_hazard", p.loc[sig].groupby("t_s")["persons"].sum().reindex(ts, fill_value=0.0),
            "1", "persons at significant hazard or worse")
        safe = p["state"].astype(str).isin(SAFE_STATES)
        put("persons_safe", p.loc[safe].groupby("t_s")["persons"].sum().reindex(ts, fill_value=0.0),
            "1", "persons sheltered or evacuated")
    if "traffic" in comps:
        links = data.table("links")
        if len(links):
            put("links_closed_share", links.groupby("t_s")["closed"].mean(), "1", "share of road links closed")
    if "services" in comps:
        inc = data.table("incidents")
        if len(inc):
            call = inc["call_s"].to_numpy(float)
            reach = inc["arrive_scene_s"].to_numpy(float)
            grid = np.unique(np.concatenate([[0.0, data.end_s()], call, reach[np.isfinite(reach)]]))
            open_ = [(float(((call <= t) & ~(reach <= t)).sum())) for t in grid]
            put("calls_waiting", pd.Series(open_, index=grid), "1", "calls waiting for a unit")
    k = json.loads((data.run_dir / "kpis.json").read_text(encoding="utf-8"))
    ts_k = k.get("series_t_s") or []
    fa = k.get("flooded_area_m2") or []
    if ts_k and len(fa) == len(ts_k):
        put("flooded_area_m2", pd.Series([float(sum((v or 0.0) for v in d.values())) for d in fa], index=ts_k),
            "m2", "land flooded > 0.1 m")
    return out
