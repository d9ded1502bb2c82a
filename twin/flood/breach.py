"""Breaches: a dam or levee section whose crest lowers over time (both flood solvers).

A breach lowers the bed elevation of the cells along a polyline (and within ``thickness_m`` of it,
so that a dam body several cells thick is cut through) from ``crest_start_m`` to
``crest_end_m``. The opening is a trapezoid centred on the polyline point ``center_m`` metres
along it: bottom ``width(t)`` wide with side slopes ``side_slope`` (horizontal : vertical); a cell
at along-line distance ``d`` from the centre gets

    z = min(z_original, z_bottom(t) + side_slope · max(0, |d| - width(t)/2))

Progress ``f(t) = clip((t - t_start_s) / duration_s, 0, 1)`` is linear in time (the HEC-RAS
"linear" breach progression): ``z_bottom = crest_start - f · (crest_start - crest_end)``.

``method="linear"``: the bottom width is ``width_m`` from the start (default: the whole polyline,
i.e. the section lowers uniformly) and ``duration_s`` is given.

``method="froehlich2008"``: the final average width and the formation time follow Froehlich
(2008), *Embankment dam breach parameters and their uncertainties*, J. Hydraul. Eng. 134(12),
1708–1721, from the reservoir volume above the breach bottom ``V_w`` [m³] and the breach height
``h_b = crest_start - crest_end`` [m]:

    B_avg = 0.27 k_o V_w^0.32 h_b^0.04     (k_o = 1.3 overtopping, 1.0 piping)
    t_f   = 63.2 sqrt(V_w / (g h_b²))       [s]
    side slope 1.0 (overtopping) or 0.7 (piping), bottom width B_avg - side_slope · h_b

and the bottom width grows with ``f`` (the breach deepens and widens together). Unless given,
``duration_s = t_f`` and ``width_m`` = that bottom width.

Water standing on a lowered cell keeps its depth: the volume is conserved.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.constants import GRAVITY as G

METHODS = ("linear", "froehlich2008")
FAILURE_MODES = ("overtopping", "piping")


def froehlich_2008(volume_m3: float, height_m: float, mode: str = "overtopping") -> dict:
    """Froehlich (2008) breach parameters: average width, bottom width, side slope, formation time."""
    if not (np.isfinite(volume_m3) and volume_m3 > 0):
        raise ValueError(f"reservoir_volume_m3: must be finite and > 0, got {volume_m3!r}")
    if not (np.isfinite(height_m) and height_m > 0):
        raise ValueError(f"breach height (crest_start_m - crest_end_m): must be > 0, got {height_m!r}")
    if mode not in FAILURE_MODES:
        raise ValueError(f"failure_mode: must be one of {FAILURE_MODES}, got {mode!r}")
    k_o = 1.3 if mode == "overtopping" else 1.0
    side = 1.0 if mode == "overtopping" else 0.7
    b_avg = 0.27 * k_o * volume_m3**0.32 * height_m**0.04
    t_f = 63.2 * np.sqrt(volume_m3 / (G * height_m**2))
    return {"width_avg_m": float(b_avg), "bottom_width_m": float(max(b_avg - side * height_m, 0.0)),
            "side_slope": side, "time_s": float(t_f)}


def polyline_cells(xy_polyline, transform, shape, thickness_m=None, point_radius_m=0.0):
    """Cells whose square meets the polyline (buffered by ``thickness_m``/2), with the along-line
    distance of each cell centre's projection. Returns (rows, cols, along_m, line_length_m).
    A single point stands for a point breach: the cells within max(thickness/2, point_radius_m,
    dx/2) of it,
    ``along_m`` their distance to the point (a linear breach then needs ``width_m``)."""
    import shapely
    from shapely.geometry import LineString

    pts = np.atleast_2d(np.asarray(xy_polyline, float))
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 1 or not np.all(np.isfinite(pts)):
        raise ValueError(f"xy_polyline: expected finite (x, y) points, got {xy_polyline!r}")
    dx = abs(transform.a)
    dy = abs(transform.e)
    if len(pts) == 1:  # a point breach: distances are measured from the point
        line = shapely.Point(pts[0])
        geom = line.buffer(max(0.5 * (thickness_m or 0.0), point_radius_m, 0.5 * dx))
    else:
        line = LineString(pts)
        geom = line.buffer(0.5 * thickness_m) if thickness_m else line
    xmin, ymin, xmax, ymax = geom.bounds
    ny, nx = shape
    x0, y0 = transform.c, transform.f
    c0 = max(int(np.floor((xmin - x0) / dx)) - 1, 0)
    c1 = min(int(np.ceil((xmax - x0) / dx)) + 1, nx)
    r0 = max(int(np.floor((y0 - ymax) / dy)) - 1, 0)
    r1 = min(int(np.ceil((y0 - ymin) / dy)) + 1, ny)
    if c0 >= c1 or r0 >= r1:
        raise ValueError("xy_polyline: lies outside the model grid")
    rr, cc = np.mgrid[r0:r1, c0:c1]
    rr, cc = rr.ravel(), cc.ravel()
    left = x0 + cc * dx
    top = y0 - rr * dy
    boxes = shapely.box(left, top - dy, left + dx, top)
    hit = shapely.intersects(boxes, geom)
    if not hit.any():
        raise ValueError("xy_polyline: touches no cell of the model grid")
    rr, cc = rr[hit], cc[hit]
    centres = shapely.points(x0 + (cc + 0.5) * dx, y0 - (rr + 0.5) * dy)
    if len(pts) == 1:
        return rr, cc, np.asarray(shapely.distance(line, centres), float), 0.0
    along = shapely.line_locate_point(line, centres)
    return rr, cc, np.asarray(along, float), float(line.length)


@dataclass
class Breach:
    """One breach: its cells, the original elevations and the opening's progression in time."""

    rows: np.ndarray
    cols: np.ndarray
    along_m: np.ndarray
    z_original: np.ndarray
    crest_start_m: float
    crest_end_m: float
    t_start_s: float
    duration_s: float
    width_m: float
    side_slope: float
    center_m: float
    grows: bool  # bottom width grows with progress (Froehlich) or is full from the start (linear)
    method: str = "linear"
    parameters: dict | None = None

    def progress(self, t_s: float) -> float:
        if self.duration_s <= 0:
            return 1.0 if t_s >= self.t_start_s else 0.0
        return float(np.clip((t_s - self.t_start_s) / self.duration_s, 0.0, 1.0))

    def crest_at(self, t_s: float) -> float:
        """Breach bottom elevation [m] at time t_s."""
        return self.crest_start_m - self.progress(t_s) * (self.crest_start_m - self.crest_end_m)

    def profile_at(self, t_s: float) -> np.ndarray:
        """The opening's crest at the breach cells at time t_s (not clipped by the terrain)."""
        f = self.progress(t_s)
        zb = self.crest_start_m - f * (self.crest_start_m - self.crest_end_m)
        half = 0.5 * self.width_m * (f if self.grows else 1.0)
        d = np.abs(self.along_m - self.center_m)
        out = np.maximum(0.0, d - half)
        if self.side_slope > 0:
            return zb + self.side_slope * out
        return np.where(out > 0, np.inf, zb)  # vertical sides: nothing lowers outside the width

    def elevation_at(self, t_s: float) -> np.ndarray:
        """Elevation of the breach cells at time t_s (never above the original)."""
        return np.minimum(self.z_original, self.profile_at(t_s))

    def apply(self, z: np.ndarray, t_s: float) -> bool:
        """Write the breach elevations at t_s into ``z``; True when a value changed."""
        new = self.elevation_at(t_s)
        old = z[self.rows, self.cols]
        if np.array_equal(old, new):
            return False
        z[self.rows, self.cols] = new
        return True


def make_breach(terrain_elevation, transform, xy_polyline, crest_start_m, crest_end_m, t_start_s,
                duration_s=None, *, method="linear", width_m=None, side_slope=None, thickness_m=None,
                center_m=None, reservoir_volume_m3=None, failure_mode="overtopping") -> Breach:
    """Validate the arguments of ``FloodModel.add_breach`` and build a :class:`Breach`."""
    for name, v in (("crest_start_m", crest_start_m), ("crest_end_m", crest_end_m), ("t_start_s", t_start_s)):
        if v is None or not np.isfinite(v):
            raise ValueError(f"{name}: must be a finite number, got {v!r}")
    if crest_end_m > crest_start_m:
        raise ValueError(f"crest_end_m: {crest_end_m!r} is above crest_start_m {crest_start_m!r}; a breach lowers the crest")
    if method not in METHODS:
        raise ValueError(f"method: must be one of {METHODS}, got {method!r}")
    z = np.asarray(terrain_elevation)
    if thickness_m is not None and not (np.isfinite(thickness_m) and thickness_m >= 0):
        raise ValueError(f"thickness_m: must be finite and >= 0, got {thickness_m!r}")
    params = None
    if method == "froehlich2008":
        if reservoir_volume_m3 is None:
            raise ValueError("reservoir_volume_m3: needed by method='froehlich2008' (volume above the breach bottom)")
        params = froehlich_2008(float(reservoir_volume_m3), float(crest_start_m - crest_end_m), failure_mode)
        if duration_s is None:
            duration_s = params["time_s"]
        if width_m is None:
            width_m = params["bottom_width_m"]
        if side_slope is None:
            side_slope = params["side_slope"]
        grows = True
    else:
        if duration_s is None:
            raise ValueError("duration_s: needed by method='linear'")
        if side_slope is None:
            side_slope = 0.0
        grows = False
    radius = 0.5 * (width_m or 0.0) + (side_slope or 0.0) * float(crest_start_m - crest_end_m)
    rows, cols, along, length = polyline_cells(xy_polyline, transform, z.shape, thickness_m, radius)
    if width_m is None:
        width_m = 2.0 * length + 2.0 * abs(transform.a)  # linear, no width: the whole section
    if not (np.isfinite(duration_s) and duration_s >= 0):
        raise ValueError(f"duration_s: must be finite and >= 0, got {duration_s!r}")
    if not (np.isfinite(width_m) and width_m >= 0):
        raise ValueError(f"width_m: must be finite and >= 0, got {width_m!r}")
    if not (np.isfinite(side_slope) and side_slope >= 0):
        raise ValueError(f"side_slope: must be finite and >= 0, got {side_slope!r}")
    if center_m is None:
        center_m = 0.5 * length  # a point breach: 0, distances are from the point
    zo = np.array(z[rows, cols], dtype=float)
    return Breach(rows, cols, along, zo, float(crest_start_m), float(crest_end_m), float(t_start_s),
                  float(duration_s), float(width_m), float(side_slope), float(center_m), grows, method, params)
