"""The offline web map: dash-leaflet pieces in UTM metres (docs/design/dashmap-web-map.md).

The map uses Leaflet's ``Simple`` CRS with the city's own coordinates: a Leaflet ``[lat, lng]`` is
``[northing, easting]`` in EPSG:32649 metres, so rasters on the model grid are drawn as exact
axis-aligned image overlays (no grid-convergence error) and a position that comes back from the
map (a click, a drawn line) is already in model coordinates. No tile server, no CDN: the basemap
is rendered from the city bundle (hillshade, water, wards, roads by class, places).

Public API (used by the Map page, and meant for the compare and builder pages):

* :data:`CRS`, :func:`leaflet_bounds`, :func:`map_options`, :func:`to_latlng` / :func:`from_latlng`:
  the coordinate convention;
* :func:`basemap_layers`: the basemap as ``dl.BaseLayer`` / ``dl.Overlay`` children of a
  ``dl.LayersControl`` (or as plain layers with ``control=False``);
* :func:`place_markers`: labelled, keyboard-focusable places above every other layer;
* :func:`grid_png` / :func:`grid_overlay`: a grid (depth, difference, hazard class) as a PNG image
  overlay with a FIXED class scale (:data:`DEPTH_EDGES_M`, :data:`DIFF_EDGES_M`, ...), and
  :func:`legend` for the same classes.
"""
from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

import dash_leaflet as dl
import numpy as np
from dash import html

from .runs import block_reduce_max

#: Leaflet CRS of every map: UTM metres as they are (``[lat, lng]`` = ``[northing, easting]``)
CRS = "Simple"

#: flood depth above the normal water surface: class edges (m), identical in every run
DEPTH_EDGES_M: tuple[float, ...] = (0.05, 0.15, 0.3, 0.5, 1.0, 2.0)
#: one colour per class; ``None`` below the first edge (not drawn). YlGnBu: light = shallow, reads in greyscale
DEPTH_COLOURS: tuple[str | None, ...] = (None, "#c7e9b4", "#7fcdbb", "#41b6c4", "#1d91c0", "#225ea8", "#0c2c84")

#: hazard class index 0..3 (twin.hazard.HAZARD_CLASSES) drawn with these colours
HAZARD_COLOURS: tuple[str, ...] = ("#fed976", "#fd8d3c", "#e31a1c", "#67000d")

#: difference of two runs (B − A, m): |Δ| < 5 cm hidden, the scale capped at ±0.5 m
DIFF_EDGES_M: tuple[float, ...] = (-0.5, -0.3, -0.15, -0.05, 0.05, 0.15, 0.3, 0.5)
DIFF_COLOURS: tuple[str | None, ...] = ("#2166ac", "#4393c3", "#92c5de", "#d1e5f0", None,
                                        "#fddbc7", "#f4a582", "#d6604d", "#b2182b")

#: images are at most this many pixels on a side (block maximum of the grid beyond that)
MAX_IMAGE_PX = 1200

#: stacking order of the panes (Leaflet: tiles 200, overlays 400, markers 600, tooltips 650)
PANE_Z = {"terrain": 200, "flood": 350, "roads": 380, "wards": 390, "dynamic": 420, "labels": 640}

#: road classes drawn, in order, with their OSM ``highway`` values and style
ROAD_CLASSES: tuple[tuple[str, tuple[str, ...], dict], ...] = (
    ("minor", ("residential", "unclassified", "service", "living_street", "track", "road", "path"),
     {"color": "#8c8c8c", "weight": 1, "opacity": 0.8}),
    ("secondary", ("secondary", "secondary_link", "tertiary", "tertiary_link"),
     {"color": "#595959", "weight": 2, "opacity": 0.9}),
    ("major", ("motorway", "motorway_link", "trunk", "trunk_link", "primary", "primary_link"),
     {"color": "#b35806", "weight": 3.5, "opacity": 0.95}),
)
ROAD_CLASS_LABELS = {"major": "national and provincial roads", "secondary": "secondary and tertiary roads",
                     "minor": "streets"}

#: place kinds: (symbol, label class) of the marker
PLACE_STYLE: dict[str, tuple[str, str]] = {
    "hospital": ("✚", "hospital"), "dispatch": ("★", "dispatch"), "shelter": ("■", "shelter"),
    "school": ("□", "school"), "public_building": ("□", "public"), "hotel": ("◇", "hotel"),
    "fire_station": ("▲", "fire"), "police": ("▼", "police"), "pumping_station": ("⬡", "pump"),
    "gauge_stage": ("●", "gauge"), "gauge_tide": ("◉", "gauge"), "gauge_rain": ("○", "gauge"),
}
#: kinds whose label is shown at every zoom (others from zoom LABEL_ZOOM on)
MAJOR_PLACE_KINDS = ("hospital", "dispatch", "shelter")

TRANSPARENT_PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAAC0lEQVR42mNk"
                   "YAAAAAYAAjCB0C8AAAAASUVORK5CYII=")


# ---------------------------------------------------------------------------------------------
# coordinates
# ---------------------------------------------------------------------------------------------
def to_latlng(x: float, y: float) -> list[float]:
    """UTM ``(x, y)`` → the map's ``[lat, lng]`` (``[northing, easting]``)."""
    return [float(y), float(x)]


def from_latlng(latlng: Sequence[float] | dict) -> tuple[float, float]:
    """The map's ``[lat, lng]`` or ``{"lat":, "lng":}`` (a click) → UTM ``(x, y)`` in metres."""
    if isinstance(latlng, dict):
        return float(latlng["lng"]), float(latlng["lat"])
    return float(latlng[1]), float(latlng[0])


def leaflet_bounds(extent: Sequence[float]) -> list[list[float]]:
    """``(west, east, south, north)`` (the Layers.extent order) → ``[[south, west], [north, east]]``."""
    w, e, s, n = (float(v) for v in extent)
    return [[s, w], [n, e]]


def map_options(extent: Sequence[float] | None, width_px: int = 900) -> dict:
    """Keyword arguments of ``dl.Map`` for an extent in metres: CRS, initial bounds, zoom limits."""
    opts: dict[str, Any] = {"crs": CRS, "zoomSnap": 0.25, "zoomDelta": 0.5, "attributionControl": False,
                            "preferCanvas": True, "minZoom": -9, "maxZoom": 3}
    if extent is None:
        opts.update(center=[0.0, 0.0], zoom=0)
        return opts
    w, e, s, n = (float(v) for v in extent)
    span = max(e - w, n - s, 1.0)
    fit = math.log2(width_px / span)              # Simple CRS: 2**zoom pixels per metre
    pad = 0.25 * span
    opts.update(bounds=leaflet_bounds(extent), minZoom=math.floor(fit) - 2, maxZoom=3,
                maxBounds=[[s - pad, w - pad], [n + pad, e + pad]])
    return opts


# ---------------------------------------------------------------------------------------------
# rasters with fixed class scales
# ---------------------------------------------------------------------------------------------
def _rgb(colour: str) -> tuple[int, int, int]:
    c = colour.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def classify(grid: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Class index of each cell: 0 below ``edges[0]``, k for ``edges[k-1] <= v < edges[k]``,
    ``len(edges)`` at or above the last edge; NaN → 255 (no data)."""
    g = np.asarray(grid, dtype=np.float64)
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or len(e) == 0 or np.any(np.diff(e) <= 0) or not np.isfinite(e).all():
        raise ValueError(f"class edges must be finite and increasing, got {list(edges)}")
    idx = np.searchsorted(e, np.nan_to_num(g, nan=-np.inf), side="right").astype(np.uint8)
    idx[~np.isfinite(g)] = 255
    return idx


def classes_png(idx: np.ndarray, colours: Sequence[str | None], opacity: float = 1.0) -> str:
    """PNG data URL of a class-index grid (row 0 north): class k drawn in ``colours[k]``; a
    ``None`` colour and index 255 are transparent. A palette PNG (a few kB for a city)."""
    from PIL import Image

    n = len(colours)
    if n > 250:
        raise ValueError("at most 250 classes")
    pal = np.zeros((256, 3), dtype=np.uint8)
    alpha = np.zeros(256, dtype=np.uint8)
    a = int(round(255 * min(max(opacity, 0.0), 1.0)))
    for k, c in enumerate(colours):
        if c is not None:
            pal[k + 1] = _rgb(c)
            alpha[k + 1] = a
    img_idx = np.where(np.asarray(idx) == 255, 0, np.asarray(idx, dtype=np.int64) + 1)
    img_idx = np.where(img_idx > n, 0, img_idx).astype(np.uint8)
    im = Image.fromarray(img_idx, mode="P")
    im.putpalette(pal.ravel().tolist())
    buf = io.BytesIO()
    last = int(img_idx.max()) + 1 if img_idx.size else 1
    im.save(buf, format="PNG", transparency=bytes(alpha[:max(last, 1)].tolist()), compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def reduce_grid(grid: np.ndarray, max_px: int = MAX_IMAGE_PX, how: str = "max") -> tuple[np.ndarray, int]:
    """``(grid, factor)``: the grid block-reduced so that no side exceeds ``max_px`` (``how``:
    ``"max"``, or ``"absmax"`` keeping the sign of the largest change); edges padded."""
    g = np.asarray(grid, dtype=np.float64)
    factor = max(1, int(math.ceil(max(g.shape) / max_px)))
    if factor == 1:
        return g, 1
    if how == "absmax":
        hi = block_reduce_max(g, factor)
        lo = -block_reduce_max(-g, factor)
        return np.where(np.abs(np.nan_to_num(lo)) > np.abs(np.nan_to_num(hi)), lo, hi), factor
    if how != "max":
        raise ValueError(f"how must be 'max' or 'absmax', got {how!r}")
    return block_reduce_max(g, factor), factor


def grid_extent(x: np.ndarray, y: np.ndarray, shape: tuple[int, int] | None = None, factor: int = 1) -> tuple[float, float, float, float]:
    """``(west, east, south, north)`` of a grid with cell centres ``x`` (west → east) and ``y``
    (north → south); with ``shape``/``factor``: of its block-reduced image (padding included)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    dx = abs(float(x[1] - x[0])) if len(x) > 1 else 1.0
    dy = abs(float(y[1] - y[0])) if len(y) > 1 else dx
    if len(y) > 1 and y[1] > y[0]:
        raise ValueError("y must run north to south (row 0 at the north edge)")
    w, n = float(x[0]) - dx / 2, float(y[0]) + dy / 2
    ny, nx = shape if shape is not None else (len(y), len(x))
    return w, w + nx * factor * dx, n - ny * factor * dy, n


def grid_png(grid: np.ndarray, x: np.ndarray, y: np.ndarray, edges: Sequence[float],
             colours: Sequence[str | None], *, max_px: int = MAX_IMAGE_PX, how: str = "max",
             opacity: float = 1.0) -> tuple[str, list[list[float]]]:
    """``(png data URL, leaflet bounds)`` of a grid drawn with a fixed class scale: ``edges`` (n
    increasing values) and ``colours`` (n + 1: below the first edge, …, at or above the last;
    ``None`` = not drawn). The compare page's difference map: ``grid_png(b - a, x, y,
    DIFF_EDGES_M, DIFF_COLOURS, how="absmax")``."""
    if len(colours) != len(edges) + 1:
        raise ValueError(f"{len(edges)} class edges need {len(edges) + 1} colours, got {len(colours)}")
    g, factor = reduce_grid(grid, max_px, how)
    url = classes_png(classify(g, edges), colours, opacity)
    return url, leaflet_bounds(grid_extent(x, y, g.shape, factor))


def grid_overlay(grid: np.ndarray, x: np.ndarray, y: np.ndarray, edges: Sequence[float],
                 colours: Sequence[str | None], *, id: str | dict | None = None, opacity: float = 0.85,
                 how: str = "max", max_px: int = MAX_IMAGE_PX) -> dl.ImageOverlay:
    """:func:`grid_png` as a non-interactive ``dl.ImageOverlay`` (it never takes a click)."""
    url, bounds = grid_png(grid, x, y, edges, colours, max_px=max_px, how=how)
    kw: dict[str, Any] = {"id": id} if id is not None else {}
    return dl.ImageOverlay(url=url, bounds=bounds, opacity=opacity, interactive=False,
                           className="twin-raster", **kw)


def class_labels(edges: Sequence[float], unit: str = "m") -> list[str]:
    """Text of each class: ``["< 0.05 m", "0.05–0.15 m", …, "≥ 2 m"]``."""
    e = [f"{v:g}" for v in edges]
    out = [f"< {e[0]} {unit}"]
    out += [f"{a}–{b} {unit}" for a, b in zip(e[:-1], e[1:])]
    out.append(f"≥ {e[-1]} {unit}")
    return out


def legend(title: str, edges: Sequence[float], colours: Sequence[str | None], unit: str = "m",
           note: str | None = None, id: str | None = None, labels: Sequence[str] | None = None) -> html.Div:
    """The class scale as a list of swatches (text, not only colour); classes without a colour are left out."""
    texts = list(labels) if labels is not None else class_labels(edges, unit)
    items = [html.Li([html.Span(className="swatch", style={"background": c}), html.Span(t)])
             for c, t in zip(colours, texts) if c is not None]
    kw: dict[str, Any] = {"id": id} if id is not None else {}
    return html.Div([html.Div(title, className="legend-title"), html.Ul(items, className="legend-list"),
                     html.Div(note, className="legend-note") if note else None], className="legend", **kw)


# ---------------------------------------------------------------------------------------------
# basemap
# ---------------------------------------------------------------------------------------------
def _pane(name: str, kind: str, children: list, pointer: bool = False) -> dl.Pane:
    style: dict[str, Any] = {"zIndex": PANE_Z[kind]}
    if not pointer:
        style["pointerEvents"] = "none"
    return dl.Pane(children=children, name=name, style=style)


def _road_geojson(layers: Any) -> dict[str, dict]:
    """FeatureCollection per road class (a MultiLineString each), one geometry per undirected link."""
    out: dict[str, dict] = {}
    for cls, lines in getattr(layers, "road_classes", {}).items():
        if lines:
            out[cls] = {"type": "FeatureCollection", "features": [
                {"type": "Feature", "properties": {"class": cls},
                 "geometry": {"type": "MultiLineString", "coordinates": lines}}]}
    return out


def basemap_layers(layers: Any, *, prefix: str = "bm", control: bool = True, places: bool = True,
                   place_id_type: str | None = None) -> list:
    """The basemap of a :class:`twin.dashboard.layers.Layers` as dash-leaflet layers.

    ``control=True``: ``dl.BaseLayer`` "terrain and water" / "plain" and ``dl.Overlay`` "wards",
    "roads", "places" for a ``dl.LayersControl``; ``control=False``: the same layers without the
    control. Every layer sits in its own pane (:data:`PANE_Z`); only places take clicks, and their
    markers are above every overlay. ``place_id_type``: the places get ids
    ``{"type": place_id_type, "id": place_id}`` (pattern-matching callbacks on ``n_clicks``).
    """
    out: list = []
    bounds = leaflet_bounds(layers.extent) if getattr(layers, "extent", None) is not None else None
    terrain: list = []
    if layers.image_uri and bounds is not None:
        terrain = [_pane(f"{prefix}-terrain", "terrain", [
            dl.ImageOverlay(url=layers.image_uri, bounds=bounds, interactive=False, className="twin-basemap")])]
    if control:
        out.append(dl.BaseLayer(dl.LayerGroup(terrain), name="terrain and water", checked=True))
        out.append(dl.BaseLayer(dl.LayerGroup([]), name="plain background", checked=False))
    else:
        out.extend(terrain)
    wards = getattr(layers, "wards_geojson", None)
    if wards and wards.get("features"):
        ward_layers = [dl.GeoJSON(data=wards, interactive=False,
                                  style={"color": "#6a3d9a", "weight": 1.5, "dashArray": "6 4", "fill": False})]
        labels = [dl.DivMarker(position=to_latlng(*f["properties"]["label_xy"]), interactive=False, keyboard=False,
                               iconOptions={"html": f["properties"]["name"], "className": "ward-label",
                                            "iconSize": [120, 16], "iconAnchor": [60, 8], "popupAnchor": [0, 0]})
                  for f in wards["features"] if f["properties"].get("label_xy")]
        pane = _pane(f"{prefix}-wards", "wards", ward_layers + labels)
        out.append(dl.Overlay(dl.LayerGroup([pane]), name="wards", checked=True) if control else pane)
    roads = _road_geojson(layers)
    if roads:
        style = {cls: st for cls, _, st in ROAD_CLASSES}
        road_layers = [dl.GeoJSON(data=fc, interactive=False, style={**style.get(cls, style["minor"]), "fill": False})
                       for cls, fc in roads.items()]
        pane = _pane(f"{prefix}-roads", "roads", road_layers)
        out.append(dl.Overlay(dl.LayerGroup([pane]), name="roads (by class)", checked=True) if control else pane)
    if places:
        markers = place_markers(layers.places, id_type=place_id_type)
        if markers:
            out.append(dl.Overlay(dl.LayerGroup(markers), name="places", checked=True) if control
                       else dl.LayerGroup(markers))
    return out


def place_markers(places: Any, *, id_type: str | None = None) -> list:
    """A labelled ``dl.DivMarker`` per place (``place_id, name, kind, x, y``): keyboard-focusable
    (Tab, then Enter or Space clicks it: ``twinMap.placeKey`` in assets/map.js), drawn in Leaflet's marker pane above every overlay and raised
    further (``zIndexOffset``) so that nothing else takes their clicks."""
    if places is None or not len(places):
        return []
    out = []
    for pid, name, kind, x, y in zip(places["place_id"].astype(str), places["name"].astype(str),
                                     places["kind"].astype(str), places["x"], places["y"]):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        symbol, cls = PLACE_STYLE.get(kind, ("●", "other"))
        major = " major" if kind in MAJOR_PLACE_KINDS else ""
        kw: dict[str, Any] = {"id": {"type": id_type, "id": pid}} if id_type else {}
        out.append(dl.DivMarker(
            position=to_latlng(x, y), keyboard=True, title=f"{name} ({kind.replace('_', ' ')})",
            alt=name, zIndexOffset=1000, riseOnHover=True, eventHandlers={"keydown": {"variable": "twinMap.placeKey"}},
            iconOptions={"html": f'<span class="place-symbol" aria-hidden="true">{symbol}</span>'
                                 f'<span class="place-label{major}">{_escape(name)}</span>',
                         "className": f"place-marker place-{cls}", "iconSize": [18, 18], "iconAnchor": [9, 9],
                         "popupAnchor": [0, -9]},
            **kw))
    return out


def _escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;"))


__all__ = ["CRS", "DEPTH_EDGES_M", "DEPTH_COLOURS", "HAZARD_COLOURS", "DIFF_EDGES_M", "DIFF_COLOURS",
           "MAX_IMAGE_PX", "PANE_Z", "TRANSPARENT_PNG", "to_latlng", "from_latlng", "leaflet_bounds", "map_options",
           "classify", "classes_png", "reduce_grid", "grid_extent", "grid_png", "grid_overlay", "class_labels",
           "legend", "basemap_layers", "place_markers"]
