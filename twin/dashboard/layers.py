"""Static map layers (hillshade, water, roads, places), built once per city or run and cached.

The base map is an offline image: a hillshade of the terrain with water bodies tinted, encoded once
as a PNG data URI and drawn by the web map (``basemap.py``) in UTM metres (EPSG:32649). No tile
server. Roads (by class), wards, places and the normal water (initial water depth) come from the city
bundle (``twin.load_city``) when the run names one; a run that records ``elevation`` in ``fields.nc``
gets a hillshade even without the city bundle.
"""
from __future__ import annotations

import base64
import io
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .runs import Run, RunError, hillshade

MAX_IMAGE_PX = 1200


@dataclass
class Layers:
    image_uri: str | None = None                 # PNG data URI of hillshade + water
    extent: tuple[float, float, float, float] | None = None   # west, east, south, north (m)
    road_x: list = field(default_factory=list)   # all links, None-separated
    road_y: list = field(default_factory=list)
    link_xy: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    link_mid: dict[int, tuple[float, float]] = field(default_factory=dict)
    link_len: dict[int, float] = field(default_factory=dict)      # m, along the geometry
    places: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["place_id", "name", "kind", "x", "y"]))
    source: str = ""                             # what the layers came from, shown in the page
    notes: list[str] = field(default_factory=list)
    elevation: np.ndarray | None = None          # model grid elevation when known (for stage)
    grid_x: np.ndarray | None = None
    grid_y: np.ndarray | None = None
    road_classes: dict[str, list] = field(default_factory=dict)   # class -> [[[x, y], ...], ...] (undirected)
    wards_geojson: dict | None = None            # FeatureCollection: name, label_xy; EPSG:32649
    water_depth0: np.ndarray | None = None       # normal (initial) water depth on the city grid (m)
    land_use: Any = None                         # FD2321 land use per cell (twin.hazard.land_use)
    sea: np.ndarray | None = None                # sea cells of the city grid (not painted as flood)


def _png_data_uri(rgba: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def base_image(elevation: np.ndarray, cell_size: float, water: np.ndarray | None = None) -> str:
    """Hillshade (grey) with water tinted blue-grey; nodata transparent; ≤ MAX_IMAGE_PX a side."""
    step = max(1, int(np.ceil(max(elevation.shape) / MAX_IMAGE_PX)))
    z = elevation[::step, ::step]
    hs = hillshade(z, cell_size * step)
    grey = np.where(np.isfinite(hs), 0.35 + 0.6 * hs, 0.0)
    rgba = np.zeros(z.shape + (4,), dtype=np.uint8)
    for k in range(3):
        rgba[..., k] = (grey * 255).astype(np.uint8)
    rgba[..., 3] = np.where(np.isfinite(hs), 255, 0).astype(np.uint8)
    if water is not None:
        w = np.asarray(water, dtype=bool)[::step, ::step]
        tint = np.array([120, 160, 200], dtype=np.float64)
        for k in range(3):
            rgba[..., k] = np.where(w, (0.35 * rgba[..., k] + 0.65 * tint[k]).astype(np.uint8), rgba[..., k])
        rgba[..., 3] = np.where(w, 255, rgba[..., 3])
    return _png_data_uri(rgba)


def _road_geometry(links: pd.DataFrame, nodes: pd.DataFrame | None) -> tuple[list, list, dict, dict]:
    rx: list = []
    ry: list = []
    link_xy: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    mids: dict[int, tuple[float, float]] = {}
    geom = links["geometry"] if "geometry" in links.columns else None
    node_xy = None
    if nodes is not None and {"x", "y"} <= set(nodes.columns):
        idx = nodes["id"] if "id" in nodes.columns else nodes.index
        node_xy = dict(zip(idx, zip(nodes["x"], nodes["y"])))
    frm = links["from"].tolist() if "from" in links.columns else [None] * len(links)
    to = links["to"].tolist() if "to" in links.columns else [None] * len(links)
    for k, lid in enumerate(links.index):
        xs: np.ndarray | None = None
        ys: np.ndarray | None = None
        g = geom.iloc[k] if geom is not None else None
        if g is not None and hasattr(g, "coords"):
            c = np.asarray(g.coords, dtype=float)
            xs, ys = c[:, 0], c[:, 1]
        elif node_xy is not None:
            a, b = node_xy.get(frm[k]), node_xy.get(to[k])
            if a is not None and b is not None:
                xs, ys = np.array([a[0], b[0]]), np.array([a[1], b[1]])
        if xs is None or ys is None:
            continue
        link_xy[int(lid)] = (xs, ys)
        mids[int(lid)] = (float(xs[len(xs) // 2] if len(xs) > 2 else xs.mean()),
                          float(ys[len(ys) // 2] if len(ys) > 2 else ys.mean()))
        rx.extend(np.round(xs, 1).tolist() + [None])
        ry.extend(np.round(ys, 1).tolist() + [None])
    return rx, ry, link_xy, mids


def _road_class(highway: Any) -> str:
    from .basemap import ROAD_CLASSES

    h = str(highway or "").lower()
    for cls, values, _ in ROAD_CLASSES:
        if h in values:
            return cls
    return "minor"


def road_classes(links: pd.DataFrame, link_xy: dict[int, tuple[np.ndarray, np.ndarray]]) -> dict[str, list]:
    """Link geometries by road class (``highway``; "minor" without it), one per undirected link,
    as GeoJSON coordinate lists rounded to 1 m."""
    out: dict[str, list] = {}
    seen: set = set()
    hw = links["highway"].tolist() if "highway" in links.columns else [None] * len(links)
    frm = links["from"].tolist() if "from" in links.columns else list(range(len(links)))
    to = links["to"].tolist() if "to" in links.columns else list(range(len(links)))
    for k, lid in enumerate(links.index):
        g = link_xy.get(int(lid))
        if g is None:
            continue
        key = (min(frm[k], to[k]), max(frm[k], to[k]), len(g[0]))
        if key in seen:
            continue
        seen.add(key)
        coords = np.round(np.column_stack(g)).tolist()
        out.setdefault(_road_class(hw[k]), []).append(coords)
    return out


def wards_geojson(wards: Any, tolerance_m: float = 15.0) -> dict | None:
    """Ward outlines (simplified) with their names and a label point, as a GeoJSON FeatureCollection
    in the city's metres; None when the city has no ward polygons."""
    if wards is None or not len(wards) or "geometry" not in getattr(wards, "columns", []):
        return None
    from shapely.geometry import mapping

    feats = []
    names = wards["ward_name"] if "ward_name" in wards.columns else wards.index.astype(str)
    for name, geom in zip(names, wards["geometry"]):
        if geom is None or geom.is_empty:
            continue
        simple = geom.simplify(tolerance_m, preserve_topology=True)
        gj = mapping(simple)
        gj = {"type": gj["type"], "coordinates": _round_coords(gj["coordinates"])}
        rp = geom.representative_point()
        feats.append({"type": "Feature", "geometry": gj,
                      "properties": {"name": str(name), "label_xy": [round(rp.x, 1), round(rp.y, 1)]}})
    return {"type": "FeatureCollection", "features": feats} if feats else None


def _round_coords(c: Any) -> Any:
    if isinstance(c, (list, tuple)) and c and isinstance(c[0], (int, float)):
        return [round(float(v), 1) for v in c]
    return [_round_coords(v) for v in c]


def layers_from_city(city: Any) -> Layers:
    """Layers from a ``twin.city.City`` (duck-typed: terrain, landcover, roads, places)."""
    lay = Layers(source=f"city bundle '{getattr(city, 'name', '?')}'")
    terrain = city.terrain
    z = np.asarray(terrain.elevation, dtype=np.float64)
    water = None
    lc = getattr(city, "landcover", None)
    classes = getattr(city, "landcover_classes", None) or {}
    if lc is not None and classes:
        wcodes = [int(k) for k, v in classes.items() if any(w in str(v).lower() for w in ("water", "sea", "river", "lagoon", "lake"))]
        if wcodes:
            water = np.isin(np.asarray(lc), wcodes)
    w0 = getattr(city, "water_depth0", None)
    if water is None and w0 is not None:
        water = np.asarray(w0) > 0
    lay.image_uri = base_image(z, float(terrain.cell_size), water)
    west, south, east, north = _bounds(terrain)
    lay.extent = (west, east, south, north)
    lay.elevation = z
    xs, ys = terrain.cell_centers()
    lay.grid_x, lay.grid_y = np.asarray(xs), np.asarray(ys)
    roads = getattr(city, "roads", None)
    if roads is not None:
        lay.road_x, lay.road_y, lay.link_xy, lay.link_mid = _road_geometry(roads.links, getattr(roads, "nodes", None))
        lay.link_len = {k: float(np.hypot(np.diff(v[0]), np.diff(v[1])).sum()) for k, v in lay.link_xy.items()}
        lay.road_classes = road_classes(roads.links, lay.link_xy)
    lay.wards_geojson = wards_geojson(getattr(city, "wards", None))
    if w0 is not None and np.shape(w0) == z.shape:
        lay.water_depth0 = np.asarray(w0, dtype=np.float64)
    sea = getattr(city, "sea_cells", None)
    if sea is not None and np.shape(sea) == z.shape:
        lay.sea = np.asarray(sea, dtype=bool)
    if lc is not None and classes:
        from twin.hazard import land_use

        lay.land_use = land_use(np.asarray(lc), classes)
    places = getattr(city, "places", None)
    if places is not None and len(places):
        p = places.copy()
        if "place_id" not in p.columns:
            p["place_id"] = p.index.astype(str)
        p["place_id"] = p["place_id"].astype(str)
        for c in ("name", "kind"):
            if c not in p.columns:
                p[c] = ""
        lay.places = p.reset_index(drop=True)
    return lay


def _bounds(terrain: Any) -> tuple[float, float, float, float]:
    b = terrain.bounds
    if hasattr(b, "left"):
        return float(b.left), float(b.bottom), float(b.right), float(b.top)
    west, south, east, north = (float(v) for v in b)
    return west, south, east, north


def layers_from_run(run: Run) -> Layers:
    """Fallback: the run's own grid (elevation from fields.nc if recorded)."""
    lay = Layers(source=f"run {run.id} (no city bundle)")
    fr = run.frames()
    half = fr.dx / 2
    lay.extent = (float(fr.full_x.min() - half), float(fr.full_x.max() + half),
                  float(fr.full_y.min() - half), float(fr.full_y.max() + half))
    z = run.elevation()
    if z is not None:
        lay.image_uri = base_image(z, fr.dx, None)
        lay.elevation = z
        lay.grid_x, lay.grid_y = fr.full_x, fr.full_y
    else:
        lay.notes.append("no terrain in this run and no city bundle: map drawn without hillshade")
    return lay


def city_name_of(run: Run) -> tuple[str | None, float | None]:
    """(city, resolution_m) that the run's scenario or manifest names, if any."""
    scen = run.scenario()
    man = run.manifest()
    name = None
    res = None
    for src in (scen, man, man.get("scenario") if isinstance(man.get("scenario"), dict) else {}):
        if not isinstance(src, dict):
            continue
        c = src.get("city")
        if isinstance(c, str):
            name = name or c
        elif isinstance(c, dict):
            name = name or c.get("name") or c.get("bundle")
            res = res or c.get("resolution_m") or c.get("resolution")
        res = res or src.get("resolution_m") or src.get("resolution")
    try:
        res = float(res) if res is not None else None
    except (TypeError, ValueError):
        res = None
    return name, res


class LayerCache:
    """City layers cached by (city, resolution); run-grid layers by run state."""

    def __init__(self, city_loader=None):
        self._city_loader = city_loader
        self._d: dict[Any, Layers] = {}
        self._lock = threading.Lock()

    def load_city(self, name: str, resolution_m: float | None):
        if self._city_loader is not None:
            return self._city_loader(name, resolution_m)
        from twin import load_city  # public API

        return load_city(name, resolution_m=resolution_m) if resolution_m else load_city(name)

    def for_run(self, run: Run) -> Layers:
        name, res = city_name_of(run)
        if name:
            key: tuple[Any, ...] = ("city", name, res)
            with self._lock:
                if key in self._d:
                    return self._d[key]
            try:
                lay = layers_from_city(self.load_city(name, res))
            except Exception as exc:  # city bundle missing or broken: fall back to the run grid
                lay = layers_from_run(run)
                lay.notes.append(f"city bundle '{name}' could not be loaded ({type(exc).__name__}: {exc})")
                return lay
            with self._lock:
                self._d[key] = lay
            return lay
        key = ("run", str(run.path), run.signature)
        with self._lock:
            if key in self._d:
                return self._d[key]
        lay = layers_from_run(run)
        with self._lock:
            self._d[key] = lay
        return lay


__all__ = ["Layers", "LayerCache", "layers_from_city", "layers_from_run", "base_image", "RunError"]
