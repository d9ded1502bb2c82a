"""Couplings: plain functions from one component's state to another's inputs.

- :class:`LinkDepthSampler` — flood depth (cells) → water depth on each road link, sampled every
  ``spacing_m`` along the link's geometry (the deepest sample counts: a link is as passable as its
  worst section).
- :class:`RoadWaterLevel` — flood depth → the water a road user meets: on bridges and bank roads in
  permanent-water cells (rivers, lagoon), only the water above the deck, not the channel depth.

The rules applied to the sampled depths live in one place each: depth → road speed and closures in
``twin.traffic.flood``, flood hazard to people in ``twin.hazard``.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "LinkDepthSampler",
    "RoadWaterLevel",
    "DEPTH_CLASSES",
    "depth_class_areas",
]

# depth classes for flooded-area KPIs [m]
DEPTH_CLASSES = [("0.1-0.3m", 0.1, 0.3), ("0.3-0.5m", 0.3, 0.5), ("0.5-1m", 0.5, 1.0),
                 ("1-2m", 1.0, 2.0), (">2m", 2.0, np.inf)]


class RoadWaterLevel:
    """The water a road user meets, from the flood depth.

    A road in a permanent-water cell (river, lagoon: ``water`` mask) is a bridge or a road on the bank:
    it stands on the banks, not on the channel bed. Its deck is taken at the level of the nearest
    banks, the highest land cell within the first ring of cells (1, 2, … ``radius_cells``) that holds
    any land, and never below the cell's normal water surface ``z + h0``. People and vehicles there meet
    ``max(0, z + h - deck)``: nothing while the river stays within its banks, the overtopping depth once
    it leaves them. Where no land lies within the radius (open lagoon), the deck is the normal surface,
    so they meet the rise above normal. On land cells the flood depth is met as it is.

    Bridges in the road data have no deck heights, so this bank rule stands in for them; a bridge
    deck is usually at least at bank level (approach embankments), so it errs on the side of letting
    traffic cross until the banks overtop.
    """

    def __init__(self, elevation: np.ndarray, water: np.ndarray, valid: np.ndarray | None = None,
                 normal_depth: np.ndarray | None = None, radius_cells: int = 3):
        from scipy import ndimage

        z = np.asarray(elevation, dtype=float)
        water = np.asarray(water, dtype=bool)
        if water.shape != z.shape:
            raise ValueError(f"RoadWaterLevel: water mask shape {water.shape} != elevation shape {z.shape}")
        valid = np.ones(z.shape, bool) if valid is None else np.asarray(valid, dtype=bool)
        h0 = np.zeros(z.shape) if normal_depth is None else np.nan_to_num(np.asarray(normal_depth, float))
        land = valid & ~water & np.isfinite(z)
        land_z = np.where(land, z, -np.inf)
        bank = np.full(z.shape, -np.inf)
        todo = water & valid
        for r in range(1, max(1, int(radius_cells)) + 1):
            if not todo.any():
                break
            m = ndimage.maximum_filter(land_z, size=2 * r + 1, mode="constant", cval=-np.inf)
            take = todo & np.isfinite(m)
            bank[take] = m[take]
            todo &= ~take
        surface0 = np.where(valid, np.nan_to_num(z) + h0, -np.inf)
        self.water = water & valid
        self.deck = np.where(self.water, np.maximum(bank, surface0), np.nan)
        self._z = np.nan_to_num(z)
        # the permanent-water cells (flat) and their bed and deck: met_depth changes only these
        self._wcells = np.flatnonzero(self.water)
        self._wz = self._z.ravel()[self._wcells]
        self._wdeck = np.nan_to_num(self.deck.ravel()[self._wcells], nan=np.inf)

    def met_depth_at(self, depth_values: np.ndarray, flat_cells: np.ndarray) -> np.ndarray:
        """:meth:`met_depth` at some cells only: ``depth_values`` are the flood depths at the flat
        cell indices ``flat_cells`` (cheaper than the whole grid when few cells are read)."""
        cells = np.asarray(flat_cells, dtype=np.int64)
        return self._met(depth_values, self.water.ravel()[cells], self._z.ravel()[cells], self.deck.ravel()[cells])

    def met_depth(self, depth: np.ndarray) -> np.ndarray:
        """Depth met on roads (same shape as ``depth``; NaN counts as dry).

        The flood depth everywhere but on the permanent-water cells, which are recomputed from their
        precomputed bed and deck: the same numbers as :meth:`met_depth_full` (one pass over the grid
        and a few per water cell instead of five over the whole grid). Whether every value is finite is
        read from their sum (one pass, no mask: a NaN or an infinity makes it non-finite; a sum that
        overflows takes the careful path, which gives the same numbers)."""
        d = np.asarray(depth, dtype=float)
        if d.shape != self.water.shape:
            raise ValueError(f"RoadWaterLevel.met_depth: depth shape {d.shape} != grid shape {self.water.shape}")
        with np.errstate(over="ignore", invalid="ignore"):
            clean = bool(np.isfinite(np.add.reduce(d, axis=None)))
        out = np.ascontiguousarray(d.copy() if clean else np.nan_to_num(d, nan=0.0))
        if self._wcells.size:
            flat = out.reshape(-1)
            flat[self._wcells] = np.maximum(self._wz + flat[self._wcells] - self._wdeck, 0.0)
        return out

    def met_depth_full(self, depth: np.ndarray) -> np.ndarray:
        """:meth:`met_depth` computed on the whole grid (the reference it is tested against)."""
        return self._met(depth, self.water, self._z, self.deck)

    @staticmethod
    def _met(depth, water, z, deck) -> np.ndarray:
        d = np.nan_to_num(np.asarray(depth, dtype=float), nan=0.0)
        if not water.any():
            return d
        above = np.maximum(z + d - np.nan_to_num(deck, nan=np.inf), 0.0)
        return np.where(water, above, d)


def depth_class_areas(depth: np.ndarray, cell_area_m2: float, valid: np.ndarray | None = None) -> dict[str, float]:
    """Flooded area [m²] per depth class."""
    d = np.asarray(depth)
    if valid is not None:
        d = d[valid]
    d = d[np.isfinite(d)]
    return {name: float(np.count_nonzero((d >= lo) & (d < hi)) * cell_area_m2) for name, lo, hi in DEPTH_CLASSES}


class LinkDepthSampler:
    """Samples a cell field along road link geometries.

    ``links`` is a DataFrame with a ``geometry`` column of shapely LineStrings in the grid's CRS (one
    per link, link index 0..L-1). Points are taken every ``spacing_m`` along each line (at least the
    two ends and the middle); points outside the grid or on invalid cells are ignored (a link with no
    valid sample reads 0).
    """

    def __init__(self, links, transform, shape: tuple[int, int], spacing_m: float = 15.0,
                 valid: np.ndarray | None = None):
        import shapely

        ny, nx = shape
        self.n_links = len(links)
        self.shape = shape
        geoms = np.asarray(links["geometry"], dtype=object)
        ok_g = np.array([g is not None and not g.is_empty for g in geoms], dtype=bool)
        lengths = np.zeros(len(geoms))
        lengths[ok_g] = shapely.length(geoms[ok_g])
        n_pts = np.where(ok_g, np.maximum(3, np.ceil(lengths / spacing_m).astype(int) + 1), 0)
        link_of = np.repeat(np.arange(len(geoms)), n_pts)
        # fraction along each line: 0 .. 1 in n_pts steps
        start = np.repeat(np.cumsum(n_pts) - n_pts, n_pts)
        k = np.arange(len(link_of)) - start
        frac = k / np.maximum(np.repeat(n_pts, n_pts) - 1, 1)
        pts = shapely.line_interpolate_point(geoms[link_of], frac, normalized=True)
        xy = shapely.get_coordinates(pts)
        cols = np.floor((xy[:, 0] - transform.c) / transform.a).astype(np.int64)  # north-up rasters
        rows = np.floor((xy[:, 1] - transform.f) / transform.e).astype(np.int64)
        ok = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
        flat = rows * nx + cols
        if valid is not None:
            ok &= np.where(ok, valid.ravel()[np.where(ok, flat, 0)], False)
        pairs = np.unique(np.stack([link_of[ok], flat[ok]], axis=1), axis=0) if ok.any() else np.zeros((0, 2), int)
        self.link_of = pairs[:, 0].astype(np.int64)  # sorted (np.unique over (link, cell) rows)
        self.cells = pairs[:, 1].astype(np.int64)
        self.n_samples = np.bincount(self.link_of, minlength=self.n_links)
        self._sampled = np.flatnonzero(self.n_samples)  # links with samples, and where theirs start
        self._starts = (np.cumsum(self.n_samples) - self.n_samples)[self._sampled]

    def max(self, field: np.ndarray) -> np.ndarray:
        """Largest value of ``field`` (ny, nx) along each link (0 where no sample)."""
        return self.max_of_samples(np.asarray(field, dtype=float).ravel()[self.cells])

    def max_of_samples(self, vals: np.ndarray) -> np.ndarray:
        """Largest of per-sample values (one per entry of ``self.cells``) along each link."""
        vals = np.nan_to_num(np.asarray(vals, dtype=float), nan=0.0)
        out = np.zeros(self.n_links)
        if vals.size:
            out[self._sampled] = np.maximum(np.maximum.reduceat(vals, self._starts), 0.0)
        return out

    def mean(self, field: np.ndarray) -> np.ndarray:
        vals = np.nan_to_num(np.asarray(field, dtype=float).ravel()[self.cells], nan=0.0)
        s = np.bincount(self.link_of, weights=vals, minlength=self.n_links)
        return np.divide(s, self.n_samples, out=np.zeros(self.n_links), where=self.n_samples > 0)
