"""What each KPI of ``kpis.json`` means for a decision: label, display unit, direction, group, headline.

``kpis.json`` (declared in :mod:`twin.output.schema`, computed in :mod:`twin.output.recorders` with the
definitions of :mod:`twin.output.kpis`) stores SI values in nested sections. This module is the one
place that says how each value is shown and judged:

- :data:`HEADLINE`: the ~10 KPIs a decision is taken on, in order, each with its unit and direction
  ("lower is better"); some are derived from several values (people-hours at significant or extreme
  hazard, hospitals reached by water).
- :data:`PATTERNS`: every other scalar of ``kpis.json`` by its path (``section/key``, ``*`` one key),
  with its unit (the unit of the value's own key, never of its section: ``ambulance_response_s/
  n_incidents`` is a count, not seconds), direction and group: ``decision`` (a consequence that an
  option changes), ``context`` (how big the event or the system was) or ``diagnostic`` (numerics and
  bookkeeping: volume balance, sample fraction, model time).

:func:`catalog_values` turns a ``kpis.json`` dict into ``[(KpiMeta, value)]`` (headline first), and
:func:`compare_rows` two of them into rows with the difference and a verdict (better / worse / same).
"""
from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["KpiMeta", "HEADLINE", "PATTERNS", "GROUPS", "FLOODED_PLACE_DEPTH_M", "SHELTER_PLACE_KINDS",
           "leaves", "meta_for", "catalog_values", "compare_rows", "verdict", "unit_from_leaf"]

GROUPS = ("decision", "context", "diagnostic")
#: a hospital or shelter counts as reached by water from this maximum depth [m] (the flooded-area threshold)
FLOODED_PLACE_DEPTH_M = 0.1
#: place kinds the people model uses as shelters by default (twin.agents.params shelter_kinds)
SHELTER_PLACE_KINDS = ("shelter", "school", "public_building")


@dataclass(frozen=True)
class KpiMeta:
    id: str                      # stable identifier (the kpis.json path for a direct value)
    label: str                   # what it is, in words
    unit: str                    # display unit ("" for a pure number)
    better: str                  # "lower", "higher", or "" (no better side: context, diagnostics)
    group: str                   # one of GROUPS
    scale: float = 1.0           # display value = kpis.json value × scale
    headline: int = 0            # 1, 2, …: order among the headline KPIs; 0: not a headline
    definition: str = ""
    path: str = ""               # kpis.json path of the value ("" for a derived KPI)
    derive: Callable[[dict], float | None] | None = None

    def __post_init__(self):
        if self.better not in ("lower", "higher", ""):
            raise ValueError(f"KPI {self.id}: better must be 'lower', 'higher' or '', got {self.better!r}")
        if self.group not in GROUPS:
            raise ValueError(f"KPI {self.id}: group must be one of {GROUPS}, got {self.group!r}")

    @property
    def direction(self) -> str:
        return {"lower": "lower is better", "higher": "higher is better"}.get(self.better, "no better side")

    def value(self, kp: dict) -> float | None:
        """The display value from a ``kpis.json`` dict (None: not in this run)."""
        v = self.derive(kp) if self.derive is not None else get_path(kp, self.path)
        return None if v is None else float(v) * self.scale


def get_path(kp: dict, path: str) -> float | None:
    cur: Any = kp
    for part in path.split("/"):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    if isinstance(cur, dict) and "value" in cur:
        cur = cur["value"]
    if isinstance(cur, bool) or not isinstance(cur, (int, float)) or not math.isfinite(cur):
        return None
    return float(cur)


def _sum(*paths: str) -> Callable[[dict], float | None]:
    def f(kp: dict) -> float | None:
        vals = [get_path(kp, p) for p in paths]
        return None if all(v is None for v in vals) else float(sum(v for v in vals if v is not None))
    return f


def _places_reached(kinds: tuple[str, ...]) -> Callable[[dict], float | None]:
    def f(kp: dict) -> float | None:
        places = kp.get("max_depth_at_places")
        if not isinstance(places, list):
            return None
        sel = [p for p in places if isinstance(p, dict) and p.get("kind") in kinds]
        if not sel:
            return None
        return float(sum(1 for p in sel if isinstance(p.get("max_depth_m"), (int, float))
                         and p["max_depth_m"] >= FLOODED_PLACE_DEPTH_M))
    return f


_M = KpiMeta
HEADLINE: tuple[KpiMeta, ...] = (
    _M("people_hours_significant_plus", "people-hours at significant or extreme hazard", "person·h", "lower",
       "decision", headline=1, derive=_sum("people_exposure_person_hours/significant",
                                           "people_exposure_person_hours/extreme"),
       definition="Σ persons × hours spent in water of FD2321 hazard class significant or extreme"),
    _M("evacuated_before_water", "persons who reached safety before meeting water", "persons", "higher",
       "decision", headline=2, path="evacuated_before_water/persons",
       definition="persons who reached a safe state (shelter, relatives, outside the area) with no earlier "
                  "record in water ≥ 0.1 m (people.parquet)"),
    _M("ambulance_response_s/p90_s", "ambulance response time, 90th percentile", "min", "lower", "decision",
       scale=1 / 60, headline=3, path="ambulance_response_s/p90_s",
       definition="call to arrival on scene, medical incidents reached"),
    _M("ambulance_response_s/unreached", "incidents not reached by the end", "incidents", "lower", "decision",
       headline=4, path="ambulance_response_s/unreached"),
    _M("road_links_closed_share_max", "road links closed, largest share", "%", "lower", "decision", scale=100.0,
       headline=5, path="road_links_closed_share_max"),
    _M("direct_damage/total_usd", "direct damage (JRC Asia, assumed unit costs)", "M USD", "lower", "decision",
       scale=1e-6, headline=6, path="direct_damage/total_usd"),
    _M("hospitals_flooded", f"hospitals reached by water ≥ {FLOODED_PLACE_DEPTH_M:g} m", "hospitals", "lower",
       "decision", headline=7, derive=_places_reached(("hospital",))),
    _M("shelters_flooded", f"shelter places reached by water ≥ {FLOODED_PLACE_DEPTH_M:g} m", "places", "lower",
       "decision", headline=8, derive=_places_reached(SHELTER_PLACE_KINDS),
       definition="shelters, schools and public buildings (the people model's shelter kinds)"),
    _M("evacuation_clearance_s/p90", "time until 90 % of evacuees were safe", "min", "lower", "decision",
       scale=1 / 60, headline=9, path="evacuation_clearance_s/p90"),
    _M("flooded_area_max_m2", "land flooded ≥ 0.1 m, largest extent", "km²", "lower", "decision", scale=1e-6,
       headline=10, path="flooded_area_max_m2"),
)

# (path pattern, label with {0} for the key a "*" stands for, unit, scale, better, group); first match wins
_P: tuple[tuple[str, str, str, float, str, str], ...] = (
    ("flooded_area_final_m2/*", "land flooded {0} at the end", "km²", 1e-6, "lower", "decision"),
    ("land_area_m2", "land area of the grid", "km²", 1e-6, "", "context"),
    ("flooded_area_km2", "flooded area", "km²", 1.0, "lower", "decision"),
    ("end_time_s", "model time at the end", "h", 1 / 3600, "", "diagnostic"),
    ("volume_balance/relative_error", "volume balance, relative error", "", 1.0, "", "diagnostic"),
    ("volume_balance/*", "volume balance: {0}", "Mm³", 1e-6, "", "diagnostic"),
    ("direct_damage/by_class/*/damage_usd", "direct damage, {0}", "M USD", 1e-6, "lower", "decision"),
    ("direct_damage/by_class/*/flooded_area_m2", "{0} land flooded ≥ 0.1 m", "km²", 1e-6, "lower", "decision"),
    ("direct_damage/by_class/*/damage_equivalent_area_m2", "damage-equivalent area, {0}", "km²", 1e-6, "lower",
     "context"),
    ("direct_damage/max_damage_usd_per_m2_assumed/*", "assumed maximum damage, {0}", "USD/m²", 1.0, "", "diagnostic"),
    ("direct_damage/min_depth_m", "damage counted from depth", "m", 1.0, "", "diagnostic"),
    ("people_exposure_person_hours/*", "people-hours at {0} hazard", "person·h", 1.0, "lower", "decision"),
    ("evacuation_clearance_s/*", "evacuation clearance time {0}", "min", 1 / 60, "lower", "decision"),
    ("evacuated_before_water/after_water_persons", "persons who met water ≥ 0.1 m before reaching safety",
     "persons", 1.0, "lower", "decision"),
    ("evacuated_before_water/met_water_never_safe_persons", "persons who met water ≥ 0.1 m and never reached "
     "safety", "persons", 1.0, "lower", "decision"),
    ("evacuated_before_water/*", "evacuation timing: {0}", "persons", 1.0, "", "context"),
    ("ambulance_response_s/n_incidents", "emergency incidents", "incidents", 1.0, "", "context"),
    ("ambulance_response_s/n_medical", "medical incidents", "incidents", 1.0, "", "context"),
    ("ambulance_response_s/median_s", "ambulance response time, median", "min", 1 / 60, "lower", "decision"),
    ("ambulance_response_s/unreached_by_kind/*", "{0} incidents not reached by the end", "incidents", 1.0,
     "lower", "decision"),
    ("travel_time_index/index", "travel-time index (travel ÷ free-flow time)", "", 1.0, "lower", "decision"),
    ("travel_time_index/completed_trips", "completed vehicle trips", "trips", 1.0, "", "context"),
    ("people_model/persons_warned", "persons warned", "persons", 1.0, "higher", "decision"),
    ("people_model/rescue_calls", "rescue calls", "calls", 1.0, "lower", "decision"),
    ("people_model/shelter_redirections", "turned away by a full shelter", "households", 1.0, "lower", "decision"),
    ("people_model/persons_max_hazard_class/significant", "persons who met significant hazard at worst",
     "persons", 1.0, "lower", "decision"),
    ("people_model/persons_max_hazard_class/extreme", "persons who met extreme hazard at worst", "persons", 1.0,
     "lower", "decision"),
    ("people_model/persons_max_hazard_class/*", "persons who met {0} hazard at worst", "persons", 1.0, "",
     "context"),
    ("people_model/persons_by_state/*", "persons {0} at the end", "persons", 1.0, "", "context"),
    ("people_model/persons", "population simulated", "persons", 1.0, "", "context"),
    ("people_model/households", "households", "households", 1.0, "", "context"),
    ("people_model/tourist_parties", "tourist parties", "parties", 1.0, "", "context"),
    ("people_model/person_hours_by_hazard_class/*", "people model: person-hours at {0} hazard (dry included)",
     "person·h", 1.0, "", "diagnostic"),
    ("people_model/sample_fraction", "people model: sample fraction", "", 1.0, "", "diagnostic"),
    ("people_model/t_s", "people model: time reached", "h", 1 / 3600, "", "diagnostic"),
    ("services_model/waiting", "incidents still waiting at the end", "incidents", 1.0, "lower", "decision"),
    ("services_model/hospitals_closed", "hospitals closed (flooded or full)", "hospitals", 1.0, "lower", "decision"),
    ("services_model/*_p50_s", "services: {0}", "min", 1 / 60, "lower", "context"),
    ("services_model/*_p90_s", "services: {0}", "min", 1 / 60, "lower", "context"),
    ("services_model/*incidents", "services: {0}", "incidents", 1.0, "", "context"),
    ("services_model/t_s", "services model: time reached", "h", 1 / 3600, "", "diagnostic"),
)
PATTERNS: tuple[KpiMeta, ...] = tuple(
    KpiMeta(pat, label, unit, better, group, scale=scale, path=pat) for pat, label, unit, scale, better, group in _P)
_HEADLINE_PATHS = {m.path for m in HEADLINE if m.path}

_SUFFIX_UNITS = (("_m3", "m³"), ("_km2", "km²"), ("_m2", "m²"), ("_ha", "ha"), ("_m", "m"), ("_s", "s"),
                 ("_min", "min"), ("_h", "h"), ("_vnd", "VND"), ("_usd", "USD"), ("_share", ""),
                 ("_fraction", ""), ("_pct", "%"), ("_percent", "%"), ("_person_hours", "person·h"),
                 ("_mps", "m/s"))


def unit_from_leaf(path: str) -> str:
    """The unit a key's own suffix states (``median_s`` → s); a section's suffix is not inherited."""
    leaf = path.split("/")[-1]
    for suffix, unit in _SUFFIX_UNITS:
        if leaf.endswith(suffix):
            return unit
    return ""


def leaves(kp: dict, prefix: str = "") -> dict[str, float]:
    """Every scalar number of a ``kpis.json`` dict by path (``a/b/c``); lists (series, places) and text
    are left out; ``{"value": x, "units": u}`` counts as one scalar; null as NaN."""
    out: dict[str, float] = {}
    for k, v in kp.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict):
            if "value" in v and (v["value"] is None or isinstance(v["value"], (int, float))):
                out[path] = math.nan if v["value"] is None else float(v["value"])
            else:
                out.update(leaves(v, path + "/"))
        elif isinstance(v, bool):
            continue
        elif isinstance(v, (int, float)):
            out[path] = float(v)
        elif v is None:
            out[path] = math.nan
    return out


def _match(pattern: str, path: str) -> list[str] | None:
    ps, xs = pattern.split("/"), path.split("/")
    if len(ps) != len(xs):
        return None
    caught = []
    for p, x in zip(ps, xs):
        if not fnmatch.fnmatchcase(x, p):
            return None
        if "*" in p:
            caught.append(x)
    return caught


def meta_for(path: str, kp: dict | None = None) -> KpiMeta:
    """The catalog entry of a ``kpis.json`` path; an unknown path is a diagnostic with its own key's unit
    (or the ``units`` the file gives)."""
    for m in HEADLINE:
        if m.path == path:
            return m
    for m in PATTERNS:
        caught = _match(m.path, path)
        if caught is not None:
            label = m.label.format(*[c.replace("_", " ") for c in caught]) if caught else m.label
            return KpiMeta(path, label, m.unit, m.better, m.group, scale=m.scale, path=path)
    unit = unit_from_leaf(path)
    if kp is not None:
        node: Any = kp
        for part in path.split("/"):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and (node.get("units") or node.get("unit")):
            unit = str(node.get("units") or node.get("unit"))
    return KpiMeta(path, path.replace("/", " › ").replace("_", " "), unit, "", "diagnostic", path=path)


def catalog_values(kp: dict) -> list[tuple[KpiMeta, float | None]]:
    """``[(meta, display value)]`` of a ``kpis.json`` dict: every headline KPI in order (None where the
    run does not have it), then every other scalar by group (decision, context, diagnostic)."""
    out: list[tuple[KpiMeta, float | None]] = [(m, m.value(kp)) for m in HEADLINE]
    rest = []
    for path, v in leaves(kp).items():
        if path in _HEADLINE_PATHS:
            continue
        m = meta_for(path, kp)
        rest.append((m, None if not math.isfinite(v) else v * m.scale))
    rest.sort(key=lambda mv: GROUPS.index(mv[0].group))   # stable: the file's order within a group
    return out + rest


def verdict(meta: KpiMeta, a: float | None, b: float | None) -> str:
    """``better`` / ``worse`` (B against A, by the KPI's direction), ``same``, ``changed`` (no better
    side) or ``n/a`` (missing in a run)."""
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return "n/a"
    if abs(b - a) <= 1e-9 * max(abs(a), abs(b), 1e-12):
        return "same"
    if not meta.better:
        return "changed"
    return "better" if (b < a) == (meta.better == "lower") else "worse"


def compare_rows(kp_a: dict, kp_b: dict) -> list[dict]:
    """Rows (id, label, unit, direction, better, group, headline, a, b, diff, rel_pct, verdict) for two
    ``kpis.json`` dicts: the headline KPIs first, in order, then every other KPI either run has."""
    va = {m.id: (m, v) for m, v in catalog_values(kp_a)}
    vb = {m.id: (m, v) for m, v in catalog_values(kp_b)}
    order = list(dict.fromkeys(list(va) + list(vb)))
    order.sort(key=lambda i: (0, (va.get(i) or vb[i])[0].headline) if (va.get(i) or vb[i])[0].headline
               else (1 + GROUPS.index((va.get(i) or vb[i])[0].group), 0))
    rows = []
    for i in order:
        m = (va.get(i) or vb[i])[0]
        a = va[i][1] if i in va else None
        b = vb[i][1] if i in vb else None
        diff = (b - a) if a is not None and b is not None else None
        rel = diff / abs(a) * 100.0 if diff is not None and a not in (0.0, None) else None
        rows.append({"id": m.id, "label": m.label, "unit": m.unit, "direction": m.direction, "better": m.better,
                     "group": m.group, "headline": m.headline, "a": a, "b": b, "diff": diff, "rel_pct": rel,
                     "verdict": verdict(m, a, b)})
    return rows
