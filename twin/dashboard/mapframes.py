"""Every frame of the Map page's time-varying layers, rendered once per run state and sent to the
browser in one piece (docs/design/dashmap-web-map.md).

A frame is a set of PNG data URLs on the model grid: flood depth above the normal water surface in
the fixed classes of :data:`basemap.DEPTH_EDGES_M`, hazard classes (FD2321, the scenario's
thresholds), closed roads, vehicles, people, and open incidents with the emergency units. The page
switches them in the browser (a clientside callback), so a slider step costs no server round trip.
Times are shown as local clock time (Asia/Ho_Chi_Minh) from the run's start.
"""
from __future__ import annotations

import base64
import io
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import basemap, tables
from .layers import Layers
from .runs import Run, RunError

TZ = "Asia/Ho_Chi_Minh"
#: water above the normal surface that counts as flooded in the summaries (the first class edge)
FLOOD_MIN_M = basemap.DEPTH_EDGES_M[0]
#: the time-varying layers, in the order of the store's lists
DYNAMIC = ("depth", "hazard", "closed", "vehicles", "people", "incidents")
#: palette of the overlay images (index 0 transparent): colour and opacity of each symbol
PALETTE = {1: ((106, 61, 154), 190), 2: ((20, 20, 20), 230), 3: ((178, 24, 43), 255), 4: ((0, 0, 0), 255),
           5: ((227, 26, 28), 255)}
PEOPLE_COLOUR, VEHICLE_COLOUR, CLOSED_COLOUR, INCIDENT_COLOUR, UNIT_COLOUR = 1, 2, 3, 4, 5


# ---------------------------------------------------------------------------------------------
# clock time
# ---------------------------------------------------------------------------------------------
def parse_start(text: Any) -> pd.Timestamp | None:
    """A start datetime as local time (Asia/Ho_Chi_Minh): a naive value is local (the scenario's
    convention), an aware one is converted. None when absent or unreadable."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError):
        return None
    if ts is pd.NaT:
        return None
    return ts.tz_localize(TZ) if ts.tzinfo is None else ts.tz_convert(TZ)


def run_start(run: Run, fields_start: str | None = None) -> pd.Timestamp | None:
    """The run's start in local time: ``start_local`` of the manifest or kpis.json, else the
    ``seconds since`` start of fields.nc, else ``start`` of scenario.yaml."""
    candidates: list[Any] = []
    for src in (run.manifest, run.kpis):
        try:
            d = src()
        except RunError:
            d = {}
        candidates.append(d.get("start_local") if isinstance(d, dict) else None)
    candidates.append(fields_start)
    try:
        candidates.append(run.scenario().get("start"))
    except RunError:
        pass
    for c in candidates:
        ts = parse_start(c)
        if ts is not None:
            return ts
    return None


def clock(start: pd.Timestamp | None, t_s: float, long: bool = False) -> str:
    """Local clock time of model time ``t_s``: ``14:30 28/10`` (``long``: with the year and zone);
    without a start: ``t + 2 h 30 min``."""
    if start is None:
        t = int(round(float(t_s)))
        return f"t + {t // 3600:d} h {t % 3600 // 60:02d} min"
    ts = start + pd.Timedelta(seconds=float(t_s))
    return ts.strftime("%H:%M %d/%m/%Y (UTC+7)") if long else ts.strftime("%H:%M %d/%m")


def clock_marks(start: pd.Timestamp | None, t_s: np.ndarray, n: int = 6) -> dict:
    """Slider marks in local clock time (about ``n`` of them)."""
    if len(t_s) == 0:
        return {}
    idx = np.unique(np.linspace(0, len(t_s) - 1, min(n, len(t_s))).round().astype(int))
    return {int(i): clock(start, float(t_s[i])) for i in idx}


# ---------------------------------------------------------------------------------------------
# frames
# ---------------------------------------------------------------------------------------------
@dataclass
class MapFrames:
    t_s: np.ndarray
    start: pd.Timestamp | None
    bounds: list[list[float]]                        # leaflet bounds of every frame image
    images: dict[str, list[str]]                     # layer -> PNG data URL per frame
    summaries: list[str]                             # text summary of the map per frame
    normal_water: str                                # what "normal water surface" is for this run
    thresholds: tuple[float, float, float]
    hazard_note: str
    notes: list[str] = field(default_factory=list)

    def labels(self, long: bool = True) -> list[str]:
        return [clock(self.start, float(t), long) for t in self.t_s]

    def store(self) -> dict:
        """The browser's copy: everything the clientside callback needs, JSON-ready."""
        return {"n": len(self.t_s), "labels": self.labels(True), "short": self.labels(False),
                "summaries": self.summaries, "images": self.images, "bounds": self.bounds}


def hazard_thresholds(run: Run) -> tuple[float, float, float]:
    """The scenario's ``people.params.hazard_thresholds`` (twin.hazard defaults without one);
    invalid ones raise RunError naming the field and value."""
    from twin.hazard import DEFAULT_THRESHOLDS, check_thresholds

    scen = run.scenario()
    people = scen.get("people") if isinstance(scen, dict) else None
    params = people.get("params") if isinstance(people, dict) else None
    thr = params.get("hazard_thresholds") if isinstance(params, dict) else None
    if thr is None:
        return DEFAULT_THRESHOLDS
    try:
        return check_thresholds(thr, f"{run.path / 'scenario.yaml'}: people.params.hazard_thresholds")
    except (ValueError, TypeError) as exc:
        raise RunError(str(exc)) from None


class _Canvas:
    """A palette drawing (PIL, :data:`PALETTE`) in UTM metres over the frame extent: at most
    basemap.MAX_IMAGE_PX a side and 8 px per model cell."""

    def __init__(self, extent: tuple[float, float, float, float], cell_m: float):
        from PIL import Image, ImageDraw

        w, e, s, n = extent
        self.w, self.n = w, n
        span = max(e - w, n - s)
        self.scale = min(basemap.MAX_IMAGE_PX / span, 8.0 / max(cell_m, 1e-9))   # px per metre
        self.size = (max(1, int(round((e - w) * self.scale))), max(1, int(round((n - s) * self.scale))))
        self.img = Image.new("P", self.size, 0)
        pal = [0, 0, 0] * 256
        for k, (rgb, _) in PALETTE.items():
            pal[3 * k:3 * k + 3] = list(rgb)
        self.img.putpalette(pal)
        self.draw = ImageDraw.Draw(self.img)
        self.empty = True

    def px(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        return (np.asarray(x, float) - self.w) * self.scale, (self.n - np.asarray(y, float)) * self.scale

    def line(self, xs: np.ndarray, ys: np.ndarray, colour: int, width: int) -> None:
        px, py = self.px(xs, ys)
        self.draw.line(list(zip(px.tolist(), py.tolist())), fill=colour, width=width)
        self.empty = False

    def dots(self, x: Any, y: Any, r: Any, colour: int | None, outline: int | None = None) -> None:
        px, py = self.px(x, y)
        rr = np.broadcast_to(np.asarray(r, float), px.shape)
        for a, b, c in zip(px.tolist(), py.tolist(), rr.tolist()):
            self.draw.ellipse([a - c, b - c, a + c, b + c], fill=colour, outline=outline)
        self.empty = self.empty and len(px) == 0

    def points(self, x: Any, y: Any, colour: int) -> None:
        """Small round dots (a 3-pixel plus) for many points at once (people), drawn with numpy."""
        px, py = self.px(x, y)
        ok = np.isfinite(px) & np.isfinite(py)
        c = np.round(px[ok]).astype(np.int64)
        r = np.round(py[ok]).astype(np.int64)
        if not len(c):
            return
        a = np.asarray(self.img).copy()
        h, w = a.shape
        for dr, dc in ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)):
            rr, cc = r + dr, c + dc
            m = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
            a[rr[m], cc[m]] = colour
        from PIL import Image, ImageDraw

        pal = self.img.getpalette()
        self.img = Image.fromarray(a, mode="P")
        self.img.putpalette(pal or [])
        self.draw = ImageDraw.Draw(self.img)
        self.empty = False

    def marks(self, x: Any, y: Any, kind: str, colour: int, r: float = 5.0) -> None:
        px, py = self.px(x, y)
        for a, b in zip(px.tolist(), py.tolist()):
            if kind == "x":
                self.draw.line([a - r, b - r, a + r, b + r], fill=colour, width=3)
                self.draw.line([a - r, b + r, a + r, b - r], fill=colour, width=3)
            else:  # triangle
                self.draw.polygon([(a, b - r - 1), (a - r, b + r), (a + r, b + r)], fill=colour, outline=INCIDENT_COLOUR)
        self.empty = self.empty and len(px) == 0

    def url(self) -> str:
        if self.empty:
            return basemap.TRANSPARENT_PNG
        buf = io.BytesIO()
        alpha = bytes([0] + [PALETTE[k][1] for k in sorted(PALETTE)])
        self.img.save(buf, format="PNG", transparency=alpha, compress_level=4)
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _normal_water(layers: Layers, first: np.ndarray, land: np.ndarray | None) -> tuple[np.ndarray, str]:
    w0 = layers.water_depth0
    if w0 is not None and w0.shape == first.shape:
        return np.nan_to_num(w0, nan=0.0), "the initial water of the city bundle (rivers, reservoir, sea)"
    if land is not None and land.shape == first.shape:
        return np.where(land == 0, np.nan_to_num(first, nan=0.0), 0.0), \
            "the first frame's water on permanent-water cells (fields.nc 'land' = 0)"
    return np.nan_to_num(first, nan=0.0), "the water of the first frame (no city bundle for this grid)"


def compute_frames(run: Run, layers: Layers) -> MapFrames:
    """Render every frame of the run (RunError when fields.nc is missing or unreadable)."""
    from twin.hazard import hazard_class, hazard_rating

    thr = hazard_thresholds(run)
    ds = run._open_fields()
    try:
        x = np.asarray(ds["x"].values, dtype=np.float64)
        y = np.asarray(ds["y"].values, dtype=np.float64)
        tname = ds["depth"].dims[0]
        t = np.asarray(ds[tname].values, dtype=np.float64) if tname in ds.variables else np.arange(ds.sizes[tname], dtype=float)
        units = str(ds[tname].attrs.get("units", "")) if tname in ds.variables else ""
        if units.startswith("minute"):
            t = t * 60.0
        elif units.startswith("hour"):
            t = t * 3600.0
        fstart = units.split("since", 1)[1].strip() if "since" in units else None
        nt = len(t)
        if nt == 0:
            raise RunError(f"{run.path / 'fields.nc'}: 'depth' has no time steps yet")
        land = np.asarray(ds["land"].values) if "land" in ds.variables else None
        dx = abs(float(x[1] - x[0])) if len(x) > 1 else 1.0
        dy = abs(float(y[1] - y[0])) if len(y) > 1 else dx
        cell_km2 = dx * dy / 1e6
        first = np.asarray(ds["depth"][0].values, dtype=np.float64)
        d0, normal = _normal_water(layers, first, land)
        land_use: Any = layers.land_use if (layers.land_use is not None and np.shape(layers.land_use) == first.shape) else "urban"
        if "hazard" in ds.variables:
            hazard_note = "hazard rating recorded by the run (fields.nc 'hazard')"
        elif "speed" in ds.variables:
            hazard_note = "hazard rating from the recorded depth and speed (twin.hazard)"
        else:
            hazard_note = "hazard rating from depth alone: this run recorded no water speed (speed taken as 0)"
        extent = basemap.grid_extent(x, y)
        images: dict[str, list[str]] = {k: [] for k in DYNAMIC}
        summaries: list[str] = []
        bounds: list[list[float]] | None = None
        start = run_start(run, fstart)
        onland = (land == 1) if land is not None and land.shape == first.shape else np.ones(first.shape, bool)
        sea = layers.sea if (layers.sea is not None and layers.sea.shape == first.shape) else None
        for i in range(nt):
            d = np.asarray(ds["depth"][i].values, dtype=np.float64)
            excess = np.where(np.isfinite(d), np.clip(d - d0, 0.0, None), np.nan)
            if sea is not None:          # the tide is not a flood: the sea is left to the basemap
                excess[sea] = np.nan
            url, bounds = basemap.grid_png(excess, x, y, basemap.DEPTH_EDGES_M, basemap.DEPTH_COLOURS)
            images["depth"].append(url)
            if "hazard" in ds.variables:
                hr = np.asarray(ds["hazard"][i].values, dtype=np.float64)
            else:
                v = np.asarray(ds["speed"][i].values, dtype=np.float64) if "speed" in ds.variables else 0.0
                hr = hazard_rating(d, v, land_use)
            cls = hazard_class(hr, thr).astype(np.float64)
            cls[~(excess >= FLOOD_MIN_M)] = np.nan          # only where the water is above normal
            hz, _ = basemap.reduce_grid(cls)
            idx = np.where(np.isfinite(hz), hz, 255).astype(np.uint8)
            images["hazard"].append(basemap.classes_png(idx, basemap.HAZARD_COLOURS))
            summaries.append(_summary(start, float(t[i]), excess, onland, cell_km2, cls))
        images.update(_overlays(run, layers, t, extent, dx))
        notes: list[str] = []
        if start is None:
            notes.append("the run names no start time: times are shown since the start")
        return MapFrames(t_s=t, start=start, bounds=bounds or basemap.leaflet_bounds(extent), images=images,
                         summaries=summaries, normal_water=normal, thresholds=thr, hazard_note=hazard_note, notes=notes)
    except RunError:
        raise
    except Exception as exc:
        raise RunError(f"{run.path / 'fields.nc'}: cannot be drawn ({type(exc).__name__}: {exc})") from None
    finally:
        ds.close()


def _summary(start: pd.Timestamp | None, t: float, excess: np.ndarray, onland: np.ndarray, cell_km2: float,
             cls: np.ndarray) -> str:
    e = np.where(onland, np.nan_to_num(excess, nan=0.0), 0.0)
    a5 = float((e >= FLOOD_MIN_M).sum() * cell_km2)
    a50 = float((e >= 0.5).sum() * cell_km2)
    deep = float(e.max()) if e.size else 0.0
    sig = float(((np.nan_to_num(cls, nan=-1) >= 2) & onland).sum() * cell_km2)
    if a5 == 0 and sig == 0:
        return f"{clock(start, t, True)}: no land under {FLOOD_MIN_M * 100:.0f} cm or more of water above normal."
    return (f"{clock(start, t, True)}: {a5:.2f} km² of land under ≥ {FLOOD_MIN_M * 100:.0f} cm of water above normal, "
            f"{a50:.2f} km² under ≥ 0.5 m; deepest {deep:.2f} m above normal on land; {sig:.2f} km² of land at "
            f"significant or extreme hazard.")


class _Snapshots:
    """A snapshot table (links, people, units) as column arrays, sliced per time without pandas."""

    def __init__(self, run: Run, name: str, cols: tuple[str, ...]):
        df = run.table(name)
        self.ok = len(df) > 0 and all(c in df.columns for c in cols)
        if self.ok:
            self.times, self.order, self.starts, self.ends = tables._snapshot_index(run, name)
            self.cols = {c: df[c].to_numpy() for c in cols}

    def at(self, t: float) -> dict[str, np.ndarray] | None:
        """Columns of the last snapshot at or before ``t`` (None: no table, or nothing yet)."""
        if not self.ok:
            return None
        k = int(np.searchsorted(self.times, t + 1e-9, side="right")) - 1
        if k < 0:
            return None
        idx = self.order[self.starts[k]:self.ends[k]]
        return {c: v[idx] for c, v in self.cols.items()}


def _safe_snapshots(run: Run, name: str, cols: tuple[str, ...]) -> _Snapshots | None:
    try:
        return _Snapshots(run, name, cols)
    except RunError:
        return None


def _overlays(run: Run, layers: Layers, t_s: np.ndarray, extent: tuple[float, float, float, float],
              cell_m: float) -> dict[str, list[str]]:
    """Closed roads, vehicles, people, incidents and units per frame as transparent palette PNGs."""
    out: dict[str, list[str]] = {"closed": [], "vehicles": [], "people": [], "incidents": []}
    links = _safe_snapshots(run, "links", ("link_id", "closed", "density_veh_per_m"))
    people = _safe_snapshots(run, "people", ("x", "y"))
    units = _safe_snapshots(run, "units", ("x", "y"))
    n_ids = max(layers.link_mid, default=-1) + 1
    mid = np.full((max(n_ids, 0), 2), np.nan)
    length = np.zeros(max(n_ids, 0))
    for k, (mx, my) in layers.link_mid.items():
        mid[k] = (mx, my)
        length[k] = layers.link_len.get(k, 0.0)
    for t in t_s.tolist():
        closed, veh, ppl, inc = (_Canvas(extent, cell_m) for _ in range(4))
        ls = links.at(t) if links is not None else None
        if ls is not None:
            lid = ls["link_id"].astype(np.int64)
            for k in lid[ls["closed"].astype(bool)].tolist():
                g = layers.link_xy.get(int(k))
                if g is not None:
                    closed.line(g[0], g[1], CLOSED_COLOUR, 4)
            if n_ids > 0:
                known = (lid >= 0) & (lid < n_ids)
                lid = lid[known]
                n = ls["density_veh_per_m"][known].astype(float) * length[lid]
                m = (n >= 0.5) & np.isfinite(mid[lid, 0])
                # a fixed scale: the radius grows with the square root of the vehicles on the link
                veh.dots(mid[lid[m], 0], mid[lid[m], 1], np.clip(1.5 + 0.6 * np.sqrt(n[m]), 1.5, 9.0), None,
                         VEHICLE_COLOUR)
        pp = people.at(t) if people is not None else None
        if pp is not None:
            ppl.points(pp["x"], pp["y"], PEOPLE_COLOUR)
        try:
            oi = tables.open_incidents_at(run, t)
        except RunError:
            oi = None
        if oi is not None and len(oi):
            inc.marks(oi["x"], oi["y"], "x", INCIDENT_COLOUR)
        un = units.at(t) if units is not None and units.ok else None
        if un is None and (units is None or not units.ok):
            try:
                u = tables.units_at(run, t)           # older runs: units on scene from incidents
            except RunError:
                u = None
            un = {"x": u["x"].to_numpy(), "y": u["y"].to_numpy()} if u is not None and len(u) else None
        if un is not None and len(un["x"]):
            inc.marks(un["x"], un["y"], "triangle", UNIT_COLOUR)
        out["closed"].append(closed.url())
        out["vehicles"].append(veh.url())
        out["people"].append(ppl.url())
        out["incidents"].append(inc.url())
    return out


class FrameCache:
    """Rendered frames per run state (the run's signature), the last few runs only."""

    def __init__(self, size: int = 3):
        self.size = size
        self._d: OrderedDict[tuple, MapFrames] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, run: Run, layers: Layers) -> MapFrames:
        key = (str(run.path), run.signature, id(layers))
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        fr = compute_frames(run, layers)
        with self._lock:
            self._d[key] = fr
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return fr


__all__ = ["MapFrames", "FrameCache", "compute_frames", "run_start", "parse_start", "clock", "clock_marks",
           "hazard_thresholds", "TZ", "DYNAMIC"]
