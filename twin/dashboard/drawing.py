"""Drawn what-ifs: a feature drawn or clicked on the web map (WGS84, as Leaflet gives it) becomes a
decision in the city's coordinates, with exactly the keys a scenario's ``interventions:`` entry uses.

:func:`decision_from_drawing` is the one conversion. The scenario builder appends what it returns
to the scenario it runs; an exercise or live page issues the same dict as a decision::

    d = decision_from_drawing(feature, "levee", {"crest_m": 8.0}, city)
    sim.submit(d, at=sim.time_s, source="dashboard", issuer="planner")   # or POST it to the decisions API

- ``feature``: a GeoJSON Feature in lon/lat (what dash-leaflet's ``EditControl`` or a click on a
  ``GeoJSON`` layer gives), or None for the kinds without geometry (``warning`` to the whole city,
  ``extra_units``, ``reservoir_release``, ``dispatch`` to an incident). A clicked place carries
  ``properties.place_id``, a clicked road link ``properties.link_id`` (the id in the twin's road
  network: the largest strongly connected part, as ``twin.build`` uses it).
- ``kind``: one of :data:`twin.decisions.DECISION_TYPES` (all 13 are reachable, see :data:`KINDS`).
- ``params``: the decision's other fields by their own names (``crest_m``, ``capacity_m3_per_s``,
  ``at`` in seconds or ``"2h"``, ``until``, ``radius_m``, ``label``...); keys the kind does not have
  are left out, None values too.
- ``city``: a :class:`DrawingCity` (or a ``twin.city.City``, converted once): the CRS, the map's
  bounds, places, road links and wards.

The result is checked by the decisions' own schema (``twin.decisions.parse_decision``) and against
the map's bounds; anything wrong raises :class:`DrawingError` naming the field and the value.
Checks that need the built twin (a unit id that exists, the people model enabled) stay with
``Decision.validate`` when the run builds or the decision is submitted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["KINDS", "DrawingCity", "DrawingError", "decision_from_drawing", "to_lonlat", "SNAP_M", "LINK_SNAP_M"]

#: a click (marker) for a place-kind decision snaps to the nearest place within this distance [m]
SNAP_M = 250.0
#: a click for a road kind picks the nearest link within this distance [m]
LINK_SNAP_M = 60.0

#: every decision kind: label, what to draw or click ("line", "point", "area", "place", "link",
#: "none"), and the parameters the builder asks for: (field, label, unit, default)
KINDS: dict[str, dict[str, Any]] = {
    "levee": {"label": "Levee / sandbag wall", "draw": ["line"],
              "params": [("crest_m", "Crest elevation", "m above MSL", 8.0)]},
    "breach": {"label": "Levee breach", "draw": ["line", "point", "place"],
               "params": [("crest_start_m", "Crest before", "m", 8.0), ("crest_end_m", "Crest after", "m", 2.0),
                          ("width_m", "Width", "m", 50.0)]},
    "pump": {"label": "Mobile pump", "draw": ["point", "place"],
             "params": [("capacity_m3_per_s", "Capacity", "m³/s", 2.0)]},
    "road_closure": {"label": "Road closure", "draw": ["link", "area", "point"],
                     "params": [("radius_m", "Radius around a point", "m", 100.0), ("until_h", "Reopen at", "h after the start", None)]},
    "contraflow": {"label": "Contraflow (outbound)", "draw": ["link", "area", "point"],
                   "params": [("radius_m", "Radius around a point", "m", 100.0)]},
    "road_reopen": {"label": "Reopen roads", "draw": ["link", "area", "point"],
                    "params": [("radius_m", "Radius around a point", "m", 100.0)]},
    "shelter_open": {"label": "Open a shelter", "draw": ["place", "point"],
                     "params": [("capacity", "Capacity (0: the place's own)", "persons", 0)]},
    "shelter_close": {"label": "Close a shelter", "draw": ["place", "point"], "params": []},
    "evacuation_order": {"label": "Evacuation order", "draw": ["area", "none"],
                         "params": [("channel", "Channel", "", "loudspeaker")]},
    "warning": {"label": "Warning", "draw": ["area", "none"], "params": [("channel", "Channel", "", "cell_broadcast")]},
    "extra_units": {"label": "Extra units", "draw": ["none", "place"],
                    "params": [("unit", "Unit", "", "ambulance"), ("count", "How many", "", 2)]},
    "dispatch": {"label": "Dispatch a unit", "draw": ["place", "point", "none"],
                 "params": [("unit_id", "Unit id", "", 0), ("incident_id", "Incident id (no geometry)", "", None)]},
    "reservoir_release": {"label": "Reservoir release", "draw": ["none"],
                          "params": [("discharge_m3_per_s", "Peak release", "m³/s", 800.0),
                                     ("release_hours", "Release from-to", "h", "1-4")]},
    "reservoir_gate": {"label": "Reservoir gates", "draw": ["none"],
                       "params": [("spillway", "Gated spillway (2, 3 or all)", "", "3"),
                                  ("opening_m", "Gate opening", "m", 2.0)]},
    "hospital_closure": {"label": "Close a hospital", "draw": ["place", "point"],
                         "params": [("reason", "Reason", "", "loss of power")]},
}


class DrawingError(ValueError):
    """A drawing that cannot be a decision; the message names the field and the value."""


@dataclass
class DrawingCity:
    """What drawing needs of a city: its CRS, bounds (west, south, east, north in that CRS), places
    (``place_id, name, kind, x, y[, capacity]``), road links (id -> shapely geometry) and wards
    (name -> shapely polygon)."""

    name: str
    crs: str
    bounds: tuple[float, float, float, float]
    places: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["place_id", "name", "kind", "x", "y"]))
    links: dict[int, Any] = field(default_factory=dict)
    wards: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_city(cls, city: Any, largest_component_only: bool = True) -> DrawingCity:
        """From a ``twin.city.City`` (duck-typed): link ids as the built twin numbers them."""
        ter = city.terrain
        b = ter.bounds
        w, s_, e, n = (b.left, b.bottom, b.right, b.top) if hasattr(b, "left") else tuple(b)
        bounds = (float(w), float(s_), float(e), float(n))
        places = getattr(city, "places", None)
        if places is None:
            places = pd.DataFrame(columns=["place_id", "name", "kind", "x", "y"])
        places = places.copy()
        if "place_id" not in places.columns:
            places["place_id"] = places.index.astype(str)
        places["place_id"] = places["place_id"].astype(str)
        links: dict[int, Any] = {}
        roads = getattr(city, "roads", None)
        if roads is not None:
            net = roads
            if largest_component_only and hasattr(roads, "largest_strongly_connected"):
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    net = roads.largest_strongly_connected()
            geoms = _link_geometries(net)
            links = {j: g for j, g in enumerate(geoms) if g is not None}
        wards: dict[str, Any] = {}
        w = getattr(city, "wards", None)
        if w is not None and len(w) and "geometry" in getattr(w, "columns", []):
            col = "ward_name" if "ward_name" in w.columns else ("name" if "name" in w.columns else None)
            for nm, g in zip(w[col] if col else w.index, w["geometry"]):
                if g is not None:
                    wards[str(nm)] = g
        return cls(str(getattr(city, "name", "")), str(getattr(ter, "crs", "EPSG:32649")), bounds, places, links, wards)


def _link_geometries(net: Any) -> list:
    from shapely.geometry import LineString

    lk = net.links
    if "geometry" in lk.columns:
        return list(lk["geometry"])
    nodes = net.nodes
    xy = dict(zip(nodes["id"], zip(nodes["x"], nodes["y"])))
    return [LineString([xy[a], xy[b]]) if a in xy and b in xy else None for a, b in zip(lk["from"], lk["to"])]


def _city(city: Any) -> DrawingCity:
    return city if isinstance(city, DrawingCity) else DrawingCity.from_city(city)


def to_lonlat(xy: Any, crs: str) -> np.ndarray:
    """Points in ``crs`` as an ``(n, 2)`` array of lon, lat (for the web map)."""
    from pyproj import Transformer

    arr = np.atleast_2d(np.asarray(xy, dtype=float))
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(arr[:, 0], arr[:, 1])
    return np.column_stack([lon, lat])


def _to_city(coords: Any, city: DrawingCity, what: str, crs: str = "EPSG:4326") -> np.ndarray:
    from twin.geo import to_utm

    try:
        arr = np.atleast_2d(np.asarray(coords, dtype=float))
    except (TypeError, ValueError):
        raise DrawingError(f"{what}: expected (x, y) pairs (value {coords!r})") from None
    if arr.ndim != 2 or arr.shape[1] != 2 or not np.isfinite(arr).all():
        raise DrawingError(f"{what}: expected finite (x, y) pairs (value {coords!r})")
    if crs == "EPSG:4326" and ((np.abs(arr[:, 0]) > 180).any() or (np.abs(arr[:, 1]) > 90).any()):
        raise DrawingError(f"{what}: a point lies outside lon -180..180, lat -90..90 (value {arr.tolist()!r}); "
                           "a map in the city's metres passes feature_crs=city.crs")
    try:
        return np.round(to_utm(arr, crs, city.crs), 1)
    except ValueError as exc:
        raise DrawingError(f"{what}: {exc}") from None


def _inside(city: DrawingCity, pts: np.ndarray, what: str, every: bool = True) -> None:
    x0, y0, x1, y1 = city.bounds
    ok = (pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)
    if every and not ok.all() or not ok.any():
        if not every and len(pts) > 1:
            from shapely.geometry import LineString, box

            if LineString(pts).intersects(box(x0, y0, x1, y1)):
                return
        raise DrawingError(f"{what}: outside the map of {city.name or 'the city'} "
                           f"(x {x0:.0f}..{x1:.0f}, y {y0:.0f}..{y1:.0f} in {city.crs})")


def _geometry(feature: Any) -> tuple[str | None, Any, dict]:
    if feature is None:
        return None, None, {}
    if not isinstance(feature, dict):
        raise DrawingError(f"feature: expected a GeoJSON Feature, got {type(feature).__name__}")
    props = feature.get("properties") or {}
    geom = feature.get("geometry") or {}
    return geom.get("type"), geom.get("coordinates"), props if isinstance(props, dict) else {}


def _place_of(city: DrawingCity, props: dict, gtype: str | None, coords: Any, what: str,
              crs: str = "EPSG:4326") -> str | None:
    """A clicked place's id, or the nearest place within SNAP_M of a marker; None if neither."""
    pid = props.get("place_id")
    if pid is not None:
        pid = str(pid)
        if pid not in set(city.places["place_id"].astype(str)):
            raise DrawingError(f"{what}: no place with id {pid!r} in {city.name or 'the city'}")
        return pid
    if gtype == "Point" and len(city.places):
        (x, y), = _to_city(coords, city, what, crs)
        d = np.hypot(city.places["x"].to_numpy(float) - x, city.places["y"].to_numpy(float) - y)
        k = int(np.argmin(d))
        if d[k] <= SNAP_M:
            return str(city.places["place_id"].iloc[k])
        raise DrawingError(f"{what}: no place within {SNAP_M:g} m of the click (nearest: "
                           f"{city.places['name'].iloc[k] if 'name' in city.places else '?'} at {d[k]:.0f} m); "
                           "click a place on the map")
    return None


def _links_in(city: DrawingCity, poly: Any) -> list[int]:
    return sorted(j for j, g in city.links.items() if g.intersects(poly))


def _links_at(city: DrawingCity, xy: np.ndarray, kind: str) -> list[int]:
    """The road link nearest a click (within LINK_SNAP_M) and any other link along the same street
    there (the other direction of a two-way road): a click closes the street both ways."""
    from shapely.geometry import Point

    if not city.links:
        raise DrawingError(f"{kind}.links: the city has no road network to click on")
    pt = Point(float(xy[0]), float(xy[1]))
    ids = list(city.links)
    d = np.array([city.links[j].distance(pt) for j in ids])
    k = int(np.argmin(d))
    if d[k] > LINK_SNAP_M:
        raise DrawingError(f"{kind}.links: no road within {LINK_SNAP_M:g} m of the click (nearest {d[k]:.0f} m)")
    near = city.links[ids[k]]
    return sorted(j for j, dj in zip(ids, d) if dj <= d[k] + 1.0 and city.links[j].hausdorff_distance(near) < 1.0)


def _wards_in(city: DrawingCity, poly: Any) -> list[str]:
    return sorted(nm for nm, g in city.wards.items() if g.intersects(poly))


def _hours_to_s(v: Any) -> Any:
    """Times in the builder's fields are hours (numbers); a string (``"2h"``, a datetime) passes."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v) * 3600.0
    return v


def decision_from_drawing(feature: dict | None, kind: str, params: dict | None, city: Any, *,
                          feature_crs: str = "EPSG:4326") -> dict:
    """The decision (a scenario ``interventions:`` entry, city CRS coordinates) that ``feature``
    (GeoJSON in lon/lat, or None) means for ``kind`` with ``params``. See the module docstring.

    ``params`` times: ``at`` and ``until`` in seconds since the start (numbers) or durations /
    local datetimes (strings) as the scenario schema reads them; ``at_h``/``until_h`` in hours.
    ``feature_crs``: the CRS of the feature's coordinates: GeoJSON's lon/lat by default; a map drawn
    in the city's own metres (the dashboard's Leaflet ``Simple`` CRS, ``basemap.py``) passes the
    city's CRS. Raises :class:`DrawingError` naming what is wrong."""
    from twin.decisions import DECISION_TYPES, DecisionError, parse_decision

    if kind not in DECISION_TYPES:
        raise DrawingError(f"kind: unknown decision kind {kind!r} (kinds: {', '.join(sorted(DECISION_TYPES))})")
    c = _city(city)
    p = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
    for hk, k in (("at_h", "at"), ("until_h", "until")):
        if hk in p:
            p[k] = _hours_to_s(p.pop(hk))
    gtype, coords, props = _geometry(feature)
    where = f"{kind} ({gtype or 'no geometry'})"
    out: dict[str, Any] = {"type": kind}
    crs_key = c.crs

    if kind in ("levee", "breach") and gtype == "LineString":
        pts = _to_city(coords, c, f"{kind}.polyline", feature_crs)
        if len(pts) < 2:
            raise DrawingError(f"{kind}.polyline: draw at least two points")
        _inside(c, pts, f"{kind}.polyline", every=False)
        out["polyline"] = pts.tolist()
    elif kind in ("pump", "breach", "dispatch") and gtype is not None:
        pid = props.get("place_id")
        if pid is not None:
            out["place"] = _place_of(c, props, gtype, coords, f"{kind}.place", feature_crs)
        elif gtype == "Point":
            pts = _to_city(coords, c, f"{kind}.xy", feature_crs)
            _inside(c, pts, f"{kind}.xy")
            out["xy"] = pts[0].tolist()
        else:
            raise DrawingError(f"{where}: draw a point (marker) or click a place")
    elif kind in ("road_closure", "contraflow", "road_reopen"):
        if props.get("link_id") is not None:
            lid = int(props["link_id"])
            if c.links and lid not in c.links:
                raise DrawingError(f"{kind}.links: no road link {lid} in the network")
            out["links"] = [lid]
        elif gtype == "Point" and props.get("pick") == "link":
            out["links"] = _links_at(c, _to_city(coords, c, f"{kind}.links", feature_crs)[0], kind)
        elif gtype == "Polygon":
            from shapely.geometry import Polygon

            ring = _to_city(coords[0], c, f"{kind}.area", feature_crs)
            ids = _links_in(c, Polygon(ring))
            if not ids:
                raise DrawingError(f"{kind}.links: no road link inside the drawn area")
            out["links"] = ids
        elif gtype == "Point":
            pts = _to_city(coords, c, f"{kind}.near", feature_crs)
            _inside(c, pts, f"{kind}.near")
            out["near"] = pts[0].tolist()
            if props.get("_mRadius"):
                p.setdefault("radius_m", round(float(props["_mRadius"]), 1))
        else:
            raise DrawingError(f"{where}: click a road, draw an area around roads, or place a marker")
    elif kind == "hospital_closure":
        pid = _place_of(c, props, gtype, coords, f"{kind}.place", feature_crs)
        if pid is None:
            raise DrawingError(f"{kind}.place: click a hospital on the map")
        out["place"] = pid
    elif kind == "reservoir_gate":
        if gtype is not None:
            raise DrawingError(f"{where}: this kind takes no geometry (the gates are at the dam)")
        if "spillway" in p:
            p["spillway"] = str(p["spillway"])
    elif kind in ("shelter_open", "shelter_close"):
        pid = _place_of(c, props, gtype, coords, f"{kind}.place", feature_crs)
        if pid is None:
            raise DrawingError(f"{kind}.place: click a place on the map")
        out["place"] = pid
        if kind == "shelter_open" and not p.get("capacity"):
            row = c.places[c.places["place_id"].astype(str) == pid]
            cap = float(row["capacity"].iloc[0]) if "capacity" in row and len(row) else float("nan")
            if not (math.isfinite(cap) and cap > 0):
                raise DrawingError(f"shelter_open.capacity: place {pid} has no capacity in the city bundle: give one")
            p["capacity"] = int(cap)
    elif kind in ("warning", "evacuation_order"):
        key = "area" if kind == "warning" else "wards"
        if gtype == "Polygon":
            from shapely.geometry import Polygon

            if not c.wards:
                raise DrawingError(f"{kind}.{key}: the city bundle has no ward polygons; leave the area empty "
                                   "for the whole city")
            names = _wards_in(c, Polygon(_to_city(coords[0], c, f"{kind}.{key}", feature_crs)))
            if not names:
                raise DrawingError(f"{kind}.{key}: the drawn area touches no ward")
            out[key] = names
        elif gtype is not None:
            raise DrawingError(f"{where}: draw an area (polygon or rectangle), or nothing for the whole city")
    elif kind == "extra_units" and gtype is not None:
        pid = _place_of(c, props, gtype, coords, "extra_units.base", feature_crs)
        if pid is not None:
            out["base"] = pid
    elif kind == "reservoir_release":
        if gtype is not None:
            raise DrawingError(f"{where}: this kind takes no geometry (the release is at the reservoir's outlet)")
        q = p.pop("discharge_m3_per_s", None)
        span = p.pop("release_hours", None)
        if "times" not in p and q is not None:
            try:
                h0, h1 = (float(v) for v in str(span or "1-4").replace("–", "-").split("-"))
            except ValueError:
                raise DrawingError(f"reservoir_release.release_hours: give 'from-to' in hours, e.g. 1-4 (value {span!r})") from None
            if not 0 <= h0 < h1:
                raise DrawingError(f"reservoir_release.release_hours: need 0 <= from < to (value {span!r})")
            ramp = min(0.5, (h1 - h0) / 4)
            p["times"] = [f"{h0:g}h", f"{h0 + ramp:g}h", f"{h1 - ramp:g}h", f"{h1:g}h"]
            p["discharge_m3_per_s"] = [0.0, float(q), float(q), 0.0]
        elif q is not None:
            p["discharge_m3_per_s"] = q
    elif gtype is not None:
        raise DrawingError(f"{where}: this kind takes no geometry")

    if kind in ("levee", "breach", "pump", "dispatch", "road_closure", "contraflow", "road_reopen") and \
            any(k in out for k in ("polyline", "xy", "near")) and crs_key != "EPSG:32649":
        out["crs"] = crs_key
    cls = DECISION_TYPES[kind]
    fields = set(cls.model_fields) - {"type"}
    for k, v in p.items():
        if k in fields and k not in out:
            out[k] = v
    try:
        parse_decision(out)
    except DecisionError as exc:
        raise DrawingError(str(exc)) from None
    return out
