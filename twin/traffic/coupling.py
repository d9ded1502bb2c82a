"""Flood grid -> road links: the depth each link sees, for ``TrafficModel.set_link_depth``.

A plain coupling (DESIGN.md): built once from the link geometries and the grid, then applied to every
new depth field. Each link is sampled at points along its LineString (every half cell by default);
its depth is the maximum (default: one flooded dip closes a road) or the mean over those points.
Points outside the grid or on invalid cells see no water.
"""
from __future__ import annotations

import numpy as np
import shapely

__all__ = ["LinkDepthSampler"]


class LinkDepthSampler:
    """``sampler(depth) -> per-link depth``; ``depth`` is a (ny, nx) grid with ``transform``."""

    def __init__(self, network, transform, shape, *, spacing_m: float | None = None, statistic: str = "max"):
        if statistic not in ("max", "mean"):
            raise ValueError(f"statistic: must be 'max' or 'mean', got {statistic!r}")
        ny, nx = int(shape[0]), int(shape[1])
        cell = abs(transform.a)
        spacing = float(spacing_m) if spacing_m is not None else 0.5 * cell
        if not spacing > 0:
            raise ValueError(f"spacing_m: must be > 0, got {spacing_m!r}")
        geoms = np.asarray(network.links["geometry"].to_numpy(), dtype=object)
        lengths = shapely.length(geoms)
        npts = np.maximum(2, np.ceil(lengths / spacing).astype(np.int64) + 1)
        link_of = np.repeat(np.arange(len(geoms)), npts)
        start = np.repeat(np.cumsum(npts) - npts, npts)
        frac = (np.arange(npts.sum()) - start) / np.repeat(npts - 1, npts)
        pts = shapely.line_interpolate_point(geoms[link_of], frac, normalized=True)
        x, y = shapely.get_x(pts), shapely.get_y(pts)
        inv = ~transform
        cols = inv.a * x + inv.b * y + inv.c
        rows = inv.d * x + inv.e * y + inv.f
        rows = np.floor(rows).astype(np.int64)
        cols = np.floor(cols).astype(np.int64)
        inside = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
        self.n_links = len(geoms)
        self.shape = (ny, nx)
        self.statistic = statistic
        self._link = link_of[inside]
        self._cell = rows[inside] * nx + cols[inside]
        self._npts = npts

    @classmethod
    def from_terrain(cls, network, terrain, **kwargs) -> "LinkDepthSampler":
        return cls(network, terrain.transform, terrain.shape, **kwargs)

    def __call__(self, depth) -> np.ndarray:
        h = np.asarray(depth, dtype=np.float64)
        if h.shape != self.shape:
            raise ValueError(f"LinkDepthSampler: depth must have shape {self.shape}, got {h.shape}")
        vals = np.nan_to_num(h.ravel()[self._cell], nan=0.0)
        vals = np.maximum(vals, 0.0)
        out = np.zeros(self.n_links)
        if self.statistic == "max":
            np.maximum.at(out, self._link, vals)
        else:
            np.add.at(out, self._link, vals)
            out /= self._npts
        return out
