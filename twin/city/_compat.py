"""Use the team's ``Terrain`` and ``RoadNetwork`` when they exist; a minimal stand-in otherwise.

``twin/terrain.py`` (flood room) and ``twin/roads.py`` (traffic room) own these classes.  Until their
branches are merged into a checkout, the city bundle still loads with the small stand-ins below, which
implement only the documented contract subset the bundle needs (docs/architecture.md).
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def terrain_class():
    try:
        from twin.terrain import Terrain
        return Terrain
    except ImportError:
        return _Terrain


def road_network_class():
    try:
        from twin.roads import RoadNetwork
        return RoadNetwork
    except ImportError:
        return _RoadNetwork


class _Terrain:
    """Stand-in for twin.terrain.Terrain (contract subset)."""

    def __init__(self, elevation, transform, crs):
        from affine import Affine
        self.elevation = np.asarray(elevation, dtype=np.float64)
        self.valid = np.isfinite(self.elevation)
        self.transform = Affine(*tuple(transform)[:6])
        self.crs = crs
        self.cell_size = float(self.transform.a)
        self.shape = self.elevation.shape

    @classmethod
    def from_array(cls, elevation, cell_size, origin=(0.0, 0.0), crs=None, nodata=None):
        from affine import Affine
        from pyproj import CRS
        z = np.array(elevation, dtype=np.float64)
        if nodata is not None:
            z[z == nodata] = np.nan
        return cls(z, Affine(cell_size, 0, origin[0], 0, -cell_size, origin[1]),
                   CRS.from_user_input(crs) if crs is not None else None)

    @property
    def bounds(self):
        ny, nx = self.shape
        x0, y1 = self.transform.c, self.transform.f
        return (x0, y1 - ny * self.cell_size, x0 + nx * self.cell_size, y1)

    def cell_centers(self):
        ny, nx = self.shape
        x = self.transform.c + (np.arange(nx) + 0.5) * self.cell_size
        y = self.transform.f - (np.arange(ny) + 0.5) * self.cell_size
        return x, y

    def rowcol(self, x, y):
        c = np.floor((np.asarray(x) - self.transform.c) / self.cell_size).astype(int)
        r = np.floor((self.transform.f - np.asarray(y)) / self.cell_size).astype(int)
        return r, c

    def xy(self, rows, cols):
        return (self.transform.c + (np.asarray(cols) + 0.5) * self.cell_size,
                self.transform.f - (np.asarray(rows) + 0.5) * self.cell_size)


class _RoadNetwork:
    """Stand-in for twin.roads.RoadNetwork (contract subset)."""

    def __init__(self, nodes: pd.DataFrame, links: pd.DataFrame):
        self.nodes = nodes.reset_index(drop=True)
        self.links = links.reset_index(drop=True)

    @classmethod
    def from_frames(cls, nodes, links):
        from shapely.geometry import LineString
        nodes = nodes.copy()
        links = links.copy()
        xy = nodes.set_index("id")[["x", "y"]]
        if "geometry" not in links:
            links["geometry"] = [LineString([xy.loc[f].to_numpy(), xy.loc[t].to_numpy()])
                                 for f, t in zip(links["from"], links["to"])]
        if "source" not in links:
            links["source"] = "real"
        if "capacity_vph_per_lane" not in links:
            links["capacity_vph_per_lane"] = 1800.0
        if "jam_density_vpm_per_lane" not in links:
            links["jam_density_vpm_per_lane"] = 0.15
        return cls(nodes, links)

    @property
    def n_nodes(self):
        return len(self.nodes)

    @property
    def n_links(self):
        return len(self.links)

    def nearest_node(self, x, y):
        d = np.hypot(self.nodes["x"].to_numpy() - x, self.nodes["y"].to_numpy() - y)
        return int(self.nodes["id"].to_numpy()[np.argmin(d)])
