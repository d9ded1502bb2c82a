"""A reservoir's water on the flood grid (dam-break studies): footprint, volume and its checks.

The level–volume relation of a reservoir is read on the finest terrain at hand (the city bundle's
native grid, :func:`level_volume`): the cells 4-connected to a point inside the reservoir whose bed
lies below the level, and the water above them. On a coarser model grid the bed is block-averaged
and rivers are burned through the rims (``twin.city.load_city``): a flood fill on that grid can leak
through the dam into the river and over the plain (Tam Kỳ at 120 m: 18,000 Mm³ instead of 434 Mm³).
:func:`fill_reservoir` therefore takes the footprint from the reference grid (a coarse cell is
reservoir when at least half of it is), fills it to the level, and raises the bed of the cells
around the footprint that the coarsening lowered below the level to their reference barrier
height (the dam and the rim as sub-grid walls, which a breach lowers like any bed). A fill whose
volume is off the relation by more than ``tolerance``, or whose water would not stay in the
footprint, raises :class:`ValueError` naming the numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ReservoirFill", "level_volume", "fill_reservoir", "VOLUME_TOLERANCE"]

# relative volume error the coarse fill may have against the reference relation. The error comes
# from the shoreline cells only (partly covered cells are wholly in or out, their bed is a block
# mean): measured on Tam Kỳ at 35.4 m: 0.12 % at most on 30-150 m grids, 2.7 % at 200 m (not a
# multiple of 30 m). 10 % leaves room for other shorelines and still refuses a fill that leaks (the
# leak at 120 m was 40 times the volume).
VOLUME_TOLERANCE = 0.10


@dataclass
class ReservoirFill:
    depth: np.ndarray            # (ny, nx) water depth on the model grid [m]
    footprint: np.ndarray        # (ny, nx) bool: the reservoir's cells on the model grid
    elevation: np.ndarray        # (ny, nx) the model bed with the raised barrier cells
    raised: np.ndarray           # (ny, nx) bool: barrier cells whose bed was raised
    volume_m3: float             # water on the model grid
    reference_volume_m3: float   # the level–volume relation on the reference grid
    reference_cell_m: float

    @property
    def relative_error(self) -> float:
        return abs(self.volume_m3 - self.reference_volume_m3) / max(self.reference_volume_m3, 1e-300)


def _cell_of(terrain, x: float, y: float, what: str) -> tuple[int, int]:
    r, c = terrain.rowcol(float(x), float(y))
    ny, nx = terrain.shape
    if not (0 <= r < ny and 0 <= c < nx):
        raise ValueError(f"reservoir xy: ({x:.1f}, {y:.1f}) lies outside the {what} grid {tuple(terrain.bounds)}")
    return r, c


def _overlap(reference, rows, cols, terrain) -> tuple[np.ndarray, np.ndarray]:
    """Flat model-cell indices (n, 4) and area fractions (n, 4) of the reference cells (rows, cols)
    over the model grid (a reference cell, no larger than a model cell, meets at most 2 x 2 of them);
    index 0 with weight 0 where a part falls outside the model grid."""
    ny, nx = terrain.shape
    D, d = float(terrain.cell_size), float(reference.cell_size)
    X0, Y0 = terrain.origin
    x0, y0 = reference.origin
    xl = x0 + np.asarray(cols, float) * d - X0          # west edge, from the model's west edge
    yt = Y0 - (y0 - np.asarray(rows, float) * d)        # north edge, from the model's north edge
    c0 = np.floor(xl / D).astype(np.int64)
    r0 = np.floor(yt / D).astype(np.int64)
    wx0 = np.clip(np.minimum(xl + d, (c0 + 1) * D) - xl, 0.0, d) / d
    wy0 = np.clip(np.minimum(yt + d, (r0 + 1) * D) - yt, 0.0, d) / d
    idx, w = [], []
    for dr, wy in ((0, wy0), (1, 1.0 - wy0)):
        for dc, wx in ((0, wx0), (1, 1.0 - wx0)):
            r, c = r0 + dr, c0 + dc
            inside = (r >= 0) & (r < ny) & (c >= 0) & (c < nx)
            idx.append(np.where(inside, r * nx + c, 0))
            w.append(np.where(inside, wx * wy, 0.0))
    return np.stack(idx, axis=1), np.stack(w, axis=1)


def level_volume(terrain, x: float, y: float, level_m: float) -> tuple[np.ndarray, float]:
    """(mask, volume m³) of the water at ``level_m`` in the cells 4-connected to the cell at (x, y)
    whose bed lies below the level: the reservoir on ``terrain``'s grid."""
    from scipy import ndimage

    if not np.isfinite(level_m):
        raise ValueError(f"reservoir initial_level_m: must be finite, got {level_m!r}")
    r, c = _cell_of(terrain, x, y, "terrain")
    z = np.asarray(terrain.elevation, float)
    below = np.asarray(terrain.valid, bool) & np.isfinite(z) & (z < level_m)
    if not below[r, c]:
        raise ValueError(f"reservoir xy: the bed at ({x:.1f}, {y:.1f}) is {z[r, c]:.2f} m, not below the "
                         f"level {level_m:.2f} m")
    lab, _ = ndimage.label(below)
    inside = lab == lab[r, c]
    vol = float(np.sum(level_m - z[inside])) * float(terrain.cell_size) ** 2
    return inside, vol


def fill_reservoir(terrain, x: float, y: float, level_m: float, reference=None, *,
                   tolerance: float = VOLUME_TOLERANCE) -> ReservoirFill:
    """The reservoir at ``level_m`` on ``terrain``'s grid, its footprint and volume from ``reference``
    (a finer :class:`twin.terrain.Terrain` of the same area; default ``terrain`` itself)."""
    from scipy import ndimage

    z = np.asarray(terrain.elevation, float)
    valid = np.asarray(terrain.valid, bool)
    ny, nx = terrain.shape
    dx = float(terrain.cell_size)
    if reference is None or float(reference.cell_size) >= dx:
        reference = terrain
    ref_in, _ = level_volume(reference, x, y, level_m)
    zr = np.asarray(reference.elevation, float)
    # reference cells -> model cells by area overlap; the relation counts the water inside the model grid
    rr, cc = np.nonzero(ref_in)
    idx, w = _overlap(reference, rr, cc, terrain)
    ok = valid.ravel()[idx] & (w > 0)
    a_ref = float(reference.cell_size) ** 2
    ref_vol = float(np.sum(((level_m - zr[rr, cc])[:, None] * w)[ok])) * a_ref
    if ref_vol <= 0:
        raise ValueError(f"reservoir: no water below the level {level_m:.2f} m inside the model grid")
    frac = np.bincount(idx[ok], weights=w[ok], minlength=ny * nx).reshape(ny, nx) * (a_ref / dx**2)
    foot = valid & (frac >= 0.5)
    r0, c0 = _cell_of(terrain, x, y, "model")
    foot[r0, c0] |= valid[r0, c0]
    depth = np.where(foot, np.clip(level_m - np.where(valid, z, level_m), 0.0, None), 0.0)
    # the cells around the footprint hold the water: where coarsening lowered one below the level
    # (a dam or a rim narrower than a cell, a river burned through it), its bed becomes the highest
    # reference bed in it outside the reservoir (the barrier it contains), at least the level
    ring = ndimage.binary_dilation(foot) & ~foot & valid
    low = ring & (z < level_m)
    zb = z.copy()
    if low.any():
        orr, occ = np.nonzero(~ref_in & np.isfinite(zr))
        cr, ccol = terrain.rowcol(*reference.xy(orr, occ))  # keep those next to a low cell (fast path)
        near = ndimage.binary_dilation(low)
        keep = (cr >= 0) & (cr < ny) & (ccol >= 0) & (ccol < nx)
        keep[keep] &= near[cr[keep], ccol[keep]]
        orr, occ = orr[keep], occ[keep]
        oidx, ow = _overlap(reference, orr, occ, terrain)
        ok = (ow > 0) & low.ravel()[oidx]
        barrier = np.full(ny * nx, -np.inf)
        np.maximum.at(barrier, oidx[ok], np.broadcast_to(zr[orr, occ][:, None], ow.shape)[ok])
        barrier = barrier.reshape(ny, nx)
        zb[low] = np.maximum(np.maximum(barrier[low], level_m), z[low])
    fill = ReservoirFill(depth, foot, np.where(valid, zb, np.nan), low, float(depth.sum()) * dx * dx, ref_vol,
                         float(reference.cell_size))
    check_fill(fill, terrain, level_m, tolerance)
    return fill


def check_fill(fill: ReservoirFill, terrain, level_m: float, tolerance: float = VOLUME_TOLERANCE) -> None:
    """Refuse a fill that cannot be right: its volume off the level–volume relation by more than
    ``tolerance``, water outside its footprint, or a footprint that does not hold the water at rest
    (a neighbour cell below the level)."""
    from scipy import ndimage

    dx = float(terrain.cell_size)
    wet = fill.depth > 0
    if np.any(wet & ~fill.footprint):
        r, c = np.argwhere(wet & ~fill.footprint)[0]
        raise ValueError(f"reservoir: water outside the reservoir's footprint at cell (row {r}, col {c})")
    ring = ndimage.binary_dilation(fill.footprint) & ~fill.footprint & np.asarray(terrain.valid, bool)
    leak = ring & (fill.elevation < level_m)
    if leak.any():
        r, c = np.argwhere(leak)[0]
        raise ValueError(f"reservoir: the water at {level_m:.2f} m would leave its footprint at t = 0 through cell "
                         f"(row {r}, col {c}), bed {fill.elevation[r, c]:.2f} m")
    if fill.relative_error > tolerance:
        raise ValueError(
            f"reservoir: {fill.volume_m3 / 1e6:,.1f} Mm³ on the {dx:g} m grid at {level_m:.2f} m, but the level–volume "
            f"relation on the {fill.reference_cell_m:g} m grid gives {fill.reference_volume_m3 / 1e6:,.1f} Mm³ "
            f"({100 * fill.relative_error:.0f} % off, more than {100 * tolerance:.0f} %): the grid does not resolve "
            f"the reservoir; use a finer resolution_m")
