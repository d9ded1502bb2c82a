"""Subgrid topography for the local-inertial flood solver: tables built from a fine DEM.

``FloodModel(fine_terrain, subgrid=3)`` solves on a grid ``factor`` times coarser than the terrain
it is given, but every coarse cell and face carries tables built from the fine pixels it covers, so
storage, wet area and face conveyance are those of the fine terrain (Casulli 2009; Volp et al. 2013;
SFINCS subgrid, van Ormondt et al. 2025, GMD 18:843). The formulation (see
docs/user-guide/flood.md, "Subgrid topography", and docs/design/subgrid-tables.md):

- **Cells.** The prognostic variable is the mean depth ``h = V / A`` (volume over the coarse cell
  area), updated by the same flux-form continuity as the regular kernel, so volume is conserved to
  round-off. The water level follows from the cell's volume-level table: the levels ``z_k`` are the
  cell's sorted pixel elevations (``n_levels`` evenly spaced ranks, lowest and highest included),
  ``h_k = sum_p max(0, z_k - z_p) a_p / A``, linear between levels (monotone), and above the highest
  pixel ``h = h_top + f_valid (eta - z_max)``. The volume of a DEM is piecewise linear between its pixel
  elevations, so with ``n_levels >= factor**2`` (the default for factors up to 4) the table is exact
  everywhere and the downscaled fine depths hold exactly the coarse cell's volume. The wet fraction
  table is the share of pixels below each level.
- **Faces.** A coarse face is crossed by ``factor`` fine strips; strip ``j`` has the bed of the
  fine face it crosses, ``z_j = max(z_left, z_right)`` of the two fine pixels touching the coarse
  face (the fine model's own face bed, LISFLOOD-FP's ``max(z)``), each pixel taken at the level at which
  its cell's water reaches it: the lowest elevation over which a path inside the cell leads from the cell's
  lowest pixels to it (a ridge inside the cell holds the water back; docs/design/subgrid-face-reach.md).
  At a face level ``eta_f`` the table
  holds, per unit face width ``W``, the wetted cross-section ``hbar = sum_j w_j d_j / W`` and the
  conveyance depth ``h_eff`` with ``h_eff^(7/3) = (sum_j w_j d_j^(5/3) / W)^2 / hbar`` (``d_j =
  max(0, eta_f - z_j)``), so that in steady uniform flow the face carries the summed Manning
  discharge of its strips. The momentum update of the local-inertial scheme (Bates et al. 2010,
  de Almeida et al. 2012 theta weighting) on the face is
  ``q+ = (theta q + (1 - theta)/2 (q_l + q_r) - g hbar dt d(eta)/dx) / (1 + g n^2 dt |q| / h_eff^(7/3))``
  with ``eta_f = max(eta_L, eta_R)``; the face is dry when ``eta_f - min_j z_j <= 1 mm``.

Tables are cached on disk (``$TWIN_CACHE_DIR`` or ``~/.cache/tamky-twin``, folder ``subgrid``) under
the SHA-256 of the DEM bytes, shape, factor, number of levels and :data:`TABLE_VERSION`.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SubgridTables", "TABLE_VERSION", "subgrid_cache_dir"]

#: bumped whenever the tables' definition changes (part of the cache key)
TABLE_VERSION = 5
#: the least bed slope of a sheet-flow film (:meth:`SubgridTables.downscale_sheet`): flat pixels carry the
#: film of a 0.001 slope (the free boundary's least slope too)
SHEET_MIN_SLOPE = 1e-3
#: elevation of a wall (nodata) in the tables, as the kernel's FLOOD_WALL_Z
_WALL = 1.0e29
#: rows of coarse cells processed at a time (bounds the temporaries of the table build)
_CHUNK_ROWS = 32


def subgrid_cache_dir() -> Path:
    """Where tables are cached: ``$TWIN_CACHE_DIR/subgrid`` (default ``~/.cache/tamky-twin/subgrid``)."""
    return Path(os.environ.get("TWIN_CACHE_DIR", Path.home() / ".cache" / "tamky-twin")) / "subgrid"


def _cell_tables(zf: np.ndarray, factor: int, nlev: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell rows ``[z_min, f_valid, z_0..z_{N-1}, h_0..h_{N-1}]`` and wet fractions ``(ny, nx, N)`` of a
    padded fine block. The levels ``z_k`` are the cell's sorted pixel elevations (evenly spaced ranks,
    lowest and highest included): the volume is piecewise linear between consecutive pixel elevations,
    so with ``N >= factor**2`` levels the table is exact at every level in between as well."""
    f = factor
    ny, nx = zf.shape[0] // f, zf.shape[1] // f
    pix = np.sort(zf.reshape(ny, f, nx, f).transpose(0, 2, 1, 3).reshape(ny, nx, f * f), axis=2)  # NaN last
    ok = np.isfinite(pix)
    nvalid = ok.sum(axis=2)
    valid_cell = nvalid > 0
    rank = np.rint(np.arange(nlev)[None, None, :] * (np.maximum(nvalid, 1) - 1)[..., None] / (nlev - 1)).astype(np.int64)
    lev = np.take_along_axis(pix, rank, axis=2)
    lev = np.where(valid_cell[..., None], lev, _WALL)
    out = np.zeros((ny, nx, 2 * nlev + 2))
    out[..., 0] = lev[..., 0]
    out[..., 1] = nvalid / (f * f)
    out[..., 2:2 + nlev] = lev
    wet = np.zeros((ny, nx, nlev))
    zp = np.where(ok, pix, np.inf)
    for k in range(nlev):
        lk = lev[..., k:k + 1]
        out[..., 2 + nlev + k] = np.maximum(lk - zp, 0.0).sum(axis=2) / (f * f)
        wet[..., k] = (zp < lk).sum(axis=2) / (f * f)
    out[~valid_cell, 2 + nlev:] = 0.0
    wet[~valid_cell] = 0.0
    return out, wet


def _reach_elevation(zf: np.ndarray, factor: int) -> np.ndarray:
    """The level at which a coarse cell's water reaches each of its pixels: the lowest elevation over which
    a 4-connected path inside the cell leads from the cell's lowest pixels to the pixel (the minimax path,
    a grey-scale reconstruction by erosion confined to the cell). A cell holds one flat level that rises
    from its lowest pixels, so a face pixel behind a ridge inside the cell conveys nothing until the level
    passes the ridge. Equal to the pixel's own elevation where nothing higher is in the way; a pixel that
    nodata cuts off from the lowest pixels keeps its own elevation; nodata stays NaN."""
    f = factor
    ny, nx = zf.shape[0] // f, zf.shape[1] // f
    blk = zf.reshape(ny, f, nx, f).transpose(0, 2, 1, 3)  # (ny, nx, f, f)
    zi = np.where(np.isnan(blk), np.inf, blk)
    lowest = zi.min(axis=(2, 3), keepdims=True)
    reach = np.where(zi == lowest, zi, np.inf)           # every lowest pixel is a source (ties alike)
    pad = np.full((ny, nx, f + 2, f + 2), np.inf)
    for _ in range(f * f):                               # a path in a cell has at most f*f - 1 steps
        pad[..., 1:-1, 1:-1] = reach
        nb = np.minimum(np.minimum(pad[..., :-2, 1:-1], pad[..., 2:, 1:-1]),
                        np.minimum(pad[..., 1:-1, :-2], pad[..., 1:-1, 2:]))
        new = np.minimum(reach, np.maximum(zi, nb))
        if np.array_equal(new, reach):
            break
        reach = new
    reach = np.where(np.isinf(reach), blk, reach)        # cut off by nodata (or all nodata): its own elevation
    return reach.transpose(0, 2, 1, 3).reshape(ny * f, nx * f)


def _face_tables(zs: np.ndarray, nlev: int) -> np.ndarray:
    """Face tables from strip beds ``(..., f)``, stored by slot: ``(N+2, ..., 2)`` with the pairs
    ``(z_min, dz)``, ``(width fraction, h_eff slope)``, ``(hbar_0, heff_0)``, ``(hbar_1, heff_1)`` .. of
    every face one after the other (one plane per slot): a sub-step reads the header plane of a row of
    faces contiguously and, for each face, the two pairs of its segment, which the faces beside it at
    the same depth share (a row layout streamed all N pairs of every wet face through the cache)."""
    ok = np.isfinite(zs)
    nok = ok.sum(axis=-1)
    open_ = nok > 0
    f = zs.shape[-1]
    zmin = np.where(open_, np.min(np.where(ok, zs, np.inf), axis=-1), _WALL)
    zmax = np.where(open_, np.max(np.where(ok, zs, -np.inf), axis=-1), _WALL)
    dz = np.where(open_, (zmax - zmin) / (nlev - 1), 0.0)
    frac = nok / f
    out = np.zeros(zs.shape[:-1] + (2 * nlev + 4,))
    out[..., 0] = zmin
    out[..., 1] = dz
    out[..., 2] = frac
    out[..., 3] = frac ** (3.0 / 7.0)
    zp = np.where(ok, zs, np.inf)
    for k in range(nlev):
        lev = (zmin + k * dz)[..., None]
        d = np.maximum(lev - zp, 0.0)
        hbar = d.sum(axis=-1) / f
        conv = (d ** (5.0 / 3.0)).sum(axis=-1) / f
        heff = np.where(hbar > 0, (conv * conv / np.where(hbar > 0, hbar, 1.0)) ** (3.0 / 7.0), 0.0)
        out[..., 4 + 2 * k] = hbar
        out[..., 5 + 2 * k] = heff
    out[~open_, 4:] = 0.0
    slots = out.reshape(out.shape[:-1] + (nlev + 2, 2))
    return np.ascontiguousarray(np.moveaxis(slots, -2, 0))


@dataclass(eq=False)
class SubgridTables:
    """Per coarse cell and face tables of a fine DEM (see the module docstring for the formulation).

    ``cells`` ``(ny, nx, 2N+2)``: ``z_min, valid fraction, z_0..z_{N-1}, h_0..h_{N-1}`` (mean depth [m]
    at level ``z_k``); ``wet_fraction`` ``(ny, nx, N)``; ``faces_x`` ``(N+2, ny, nx+1, 2)`` and ``faces_y``
    ``(N+2, ny+1, nx, 2)``, by slot (one plane per slot, pairs): ``(z_min, dz)``, ``(width fraction, h_eff
    slope above the top)``, ``(hbar_0, h_eff_0)``, ``(hbar_1, h_eff_1)``, .. (``faces_x[2 + k, r, c]`` is the
    pair of level ``k`` of x face ``(r, c)``).
    """

    factor: int
    n_levels: int
    fine_shape: tuple[int, int]
    fine_cell_size: float
    cells: np.ndarray
    wet_fraction: np.ndarray
    faces_x: np.ndarray
    faces_y: np.ndarray
    key: str

    @property
    def shape(self) -> tuple[int, int]:
        """The coarse (solve) grid ``(ny, nx)``."""
        return (int(self.cells.shape[0]), int(self.cells.shape[1]))

    @property
    def cell_size(self) -> float:
        return self.fine_cell_size * self.factor

    @property
    def z_min(self) -> np.ndarray:
        """Lowest fine pixel of each coarse cell [m] (``1e29`` where the cell has no valid pixel)."""
        return self.cells[..., 0]

    def __post_init__(self) -> None:
        for a in (self.cells, self.wet_fraction, self.faces_x, self.faces_y):
            a.flags.writeable = False   # fixed once built (what is derived from them is kept)
        self._valid: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def valid(self) -> np.ndarray:
        """Coarse cells with at least one valid fine pixel (read-only; derived once from ``cells``)."""
        memo = self._valid
        if memo is None or memo[0] is not self.cells:
            v = self.cells[..., 1] > 0
            v.flags.writeable = False
            memo = self._valid = (self.cells, v)
        return memo[1]

    @property
    def valid_fraction(self) -> np.ndarray:
        """Share of each coarse cell's area with valid fine pixels."""
        return self.cells[..., 1]

    # ---------------------------------------------------------------- construction
    @staticmethod
    def cache_key(elevation: np.ndarray, factor: int, n_levels: int) -> str:
        z = np.ascontiguousarray(elevation, dtype=np.float64)
        h = hashlib.sha256()
        h.update(f"subgrid-v{TABLE_VERSION}|{z.shape}|{factor}|{n_levels}|".encode())
        h.update(z.tobytes())
        return h.hexdigest()

    @classmethod
    def from_terrain(cls, fine_terrain: Any, factor: int, n_levels: int | None = None, *, cache: bool | str | Path = True,
                     cell_size: float | None = None) -> SubgridTables:
        """Tables of ``fine_terrain`` (a :class:`~twin.terrain.Terrain`, or an elevation array with
        ``cell_size``) for a grid ``factor`` times coarser. The fine grid is padded with nodata to a
        multiple of ``factor`` (east and south). ``cache``: True for :func:`subgrid_cache_dir`, a folder,
        or False. A cached file is read when its key (DEM bytes, factor, levels, version) matches."""
        if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
            raise ValueError(f"subgrid factor: expected an integer >= 1, got {factor!r}")
        if n_levels is None:  # exact volume tables up to factor 4 (one level per pixel), 16 levels beyond
            n_levels = max(2, min(16, int(factor) ** 2)) if isinstance(factor, (int, np.integer)) else 16
        if isinstance(n_levels, bool) or not isinstance(n_levels, (int, np.integer)) or not 2 <= n_levels <= 256:
            raise ValueError(f"subgrid n_levels: expected an integer in [2, 256], got {n_levels!r}")
        factor, n_levels = int(factor), int(n_levels)
        if hasattr(fine_terrain, "elevation"):
            z = np.asarray(fine_terrain.elevation, dtype=np.float64)
            dx = float(fine_terrain.cell_size)
        else:
            if cell_size is None:
                raise ValueError("SubgridTables.from_terrain: give a twin.Terrain, or an elevation array and cell_size")
            z = np.asarray(fine_terrain, dtype=np.float64)
            dx = float(cell_size)
        if z.ndim != 2 or z.size == 0:
            raise ValueError(f"subgrid: expected a 2-D elevation array, got shape {z.shape}")
        if np.isinf(z).any():
            raise ValueError("subgrid: the elevation holds infinite values (use NaN for nodata)")
        if not (math.isfinite(dx) and dx > 0):
            raise ValueError(f"subgrid: cell_size must be finite and > 0, got {dx!r}")
        key = cls.cache_key(z, factor, n_levels)
        path: Path | None = None
        if cache:
            folder = subgrid_cache_dir() if cache is True else Path(cache)
            path = folder / f"{key}.npz"
            if path.is_file():
                try:
                    return cls._read(path, key, dx)
                except (OSError, ValueError, KeyError):
                    pass  # a damaged cache file is rebuilt below
        tab = cls._build(z, dx, factor, n_levels, key)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
                np.savez(tmp, cells=tab.cells, wet_fraction=tab.wet_fraction, faces_x=tab.faces_x,
                         faces_y=tab.faces_y, meta=np.array([factor, n_levels, z.shape[0], z.shape[1], TABLE_VERSION]))
                os.replace(tmp, path)
            except OSError:
                pass  # a read-only cache is not an error: the tables are rebuilt next time
        return tab

    @classmethod
    def _read(cls, path: Path, key: str, dx: float) -> SubgridTables:
        with np.load(path) as d:
            meta = [int(v) for v in d["meta"]]
            if meta[4] != TABLE_VERSION:
                raise ValueError("stale table version")
            return cls(meta[0], meta[1], (meta[2], meta[3]), dx, d["cells"], d["wet_fraction"], d["faces_x"],
                       d["faces_y"], key)

    @classmethod
    def _build(cls, z: np.ndarray, dx: float, f: int, nlev: int, key: str) -> SubgridTables:
        NY, NX = z.shape
        ny, nx = -(-NY // f), -(-NX // f)
        zp = np.full((ny * f, nx * f), np.nan)
        zp[:NY, :NX] = z
        cells = np.zeros((ny, nx, 2 * nlev + 2))
        wet = np.zeros((ny, nx, nlev))
        # the faces' strips take each pixel at the level the cell's water reaches it (a ridge inside the cell
        # between its lowest pixels and the face holds the water back as the fine terrain does)
        zr = np.empty_like(zp)
        for r0 in range(0, ny, _CHUNK_ROWS):
            r1 = min(ny, r0 + _CHUNK_ROWS)
            cells[r0:r1], wet[r0:r1] = _cell_tables(zp[r0 * f:r1 * f], f, nlev)
            zr[r0 * f:r1 * f] = _reach_elevation(zp[r0 * f:r1 * f], f)
        # x faces: column c of the coarse grid lies between fine columns c f - 1 and c f
        strips_x = np.full((ny, nx + 1, f), np.nan)
        rows = zr.reshape(ny, f, nx * f)  # (ny, f, NXp)
        left = rows[:, :, f - 1::f]    # fine column c f - 1 for c = 1..nx  -> (ny, f, nx)
        right = rows[:, :, 0::f]       # fine column c f for c = 0..nx-1
        strips_x[:, 1:nx] = np.maximum(left[:, :, :nx - 1], right[:, :, 1:]).transpose(0, 2, 1)
        strips_x[:, 0] = right[:, :, 0]          # west edge: the inside pixel
        strips_x[:, nx] = left[:, :, nx - 1]     # east edge
        # y faces: row r of faces lies between fine rows r f - 1 and r f
        strips_y = np.full((ny + 1, nx, f), np.nan)
        up = zr[f - 1::f].reshape(ny, nx, f)     # fine row r f - 1 (last of coarse row r)
        dn = zr[0::f].reshape(ny, nx, f)         # fine row r f (first of coarse row r)
        strips_y[1:ny] = np.maximum(up[:ny - 1], dn[1:])
        strips_y[0] = dn[0]
        strips_y[ny] = up[ny - 1]
        fx = _face_tables(strips_x, nlev)
        fy = _face_tables(strips_y, nlev)
        return cls(f, nlev, (NY, NX), dx, np.ascontiguousarray(cells), np.ascontiguousarray(wet),
                   np.ascontiguousarray(fx), np.ascontiguousarray(fy), key)

    # ---------------------------------------------------------------- lookups (numpy, for setup and outputs)
    def depth_for_level(self, level, rows=None, cols=None, *, table=None) -> np.ndarray:
        """Mean depth [m] (volume / coarse cell area) of each coarse cell at water ``level`` [m]
        (a scalar or a coarse ``(ny, nx)`` array), from the tables (0 below a cell's lowest pixel);
        with ``rows``/``cols``, of those cells only (``level`` a scalar or one value per cell); ``table``:
        their rows ``cells[rows, cols]`` already gathered (then ``rows``/``cols`` are not read)."""
        c = table if table is not None else (self.cells if rows is None else self.cells[rows, cols])
        if c.ndim == 2:  # a list of cells (the model's sparse cells, every sub-step): the same bits in C++
            from twin import _core

            lev1 = np.ascontiguousarray(np.broadcast_to(np.asarray(level, dtype=np.float64), c.shape[:1]))
            return _core.flood_subgrid_depths_of_rows(np.ascontiguousarray(c, dtype=np.float64), lev1)
        return self._depth_for_level_np(level, c)

    def _depth_for_level_np(self, level, c: np.ndarray) -> np.ndarray:
        """:meth:`depth_for_level` of the cells whose table rows are ``c`` (``(..., 2N+2)``), in numpy."""
        n = self.n_levels
        lev = np.broadcast_to(np.asarray(level, dtype=np.float64), c.shape[:-1])
        top = c[..., 1]
        zk, hk = c[..., 2:2 + n], c[..., 2 + n:]
        k = np.clip((zk <= lev[..., None]).sum(axis=-1) - 1, 0, n - 2)
        z0 = np.take_along_axis(zk, k[..., None], axis=-1)[..., 0]
        z1 = np.take_along_axis(zk, (k + 1)[..., None], axis=-1)[..., 0]
        h0 = np.take_along_axis(hk, k[..., None], axis=-1)[..., 0]
        h1 = np.take_along_axis(hk, (k + 1)[..., None], axis=-1)[..., 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(z1 > z0, (lev - z0) / np.where(z1 > z0, z1 - z0, 1.0), 0.0)
        inside = h0 + np.clip(w, 0.0, 1.0) * (h1 - h0)
        above = hk[..., n - 1] + top * (lev - zk[..., n - 1])
        out = np.where(lev <= zk[..., 0], 0.0, np.where(lev >= zk[..., n - 1], above, inside))
        return np.where(top > 0, np.maximum(out, 0.0), 0.0)

    def level_for_depth(self, h, rows=None, cols=None, *, table=None) -> np.ndarray:
        """Water level [m] of each coarse cell holding mean depth ``h`` (the inverse of
        :meth:`depth_for_level`; a dry cell's level is its lowest pixel, NaN on walls); with
        ``rows``/``cols``, of those cells only (``h`` one value per cell); ``table``: their rows
        ``cells[rows, cols]`` already gathered."""
        c = table if table is not None else (self.cells if rows is None else self.cells[rows, cols])
        if c.ndim == 2:  # a list of cells (the model's sparse cells, every sub-step): the same bits in C++
            from twin import _core

            h1 = np.ascontiguousarray(np.broadcast_to(np.asarray(h, dtype=np.float64), c.shape[:1]))
            return _core.flood_subgrid_levels_of_rows(np.ascontiguousarray(c, dtype=np.float64), h1)
        return self._level_for_depth_np(h, c)

    def _level_for_depth_np(self, h, c: np.ndarray) -> np.ndarray:
        """:meth:`level_for_depth` of the cells whose table rows are ``c`` (``(..., 2N+2)``), in numpy."""
        h = np.broadcast_to(np.asarray(h, dtype=np.float64), c.shape[:-1])
        n = self.n_levels
        zmin, top = c[..., 0], c[..., 1]
        zk, hk = c[..., 2:2 + n], c[..., 2 + n:]
        # k: last level with h_k <= h (the levels are non-decreasing and h_0 = 0)
        k = np.clip((hk <= h[..., None]).sum(axis=-1) - 1, 0, n - 2)
        h0 = np.take_along_axis(hk, k[..., None], axis=-1)[..., 0]
        h1 = np.take_along_axis(hk, (k + 1)[..., None], axis=-1)[..., 0]
        z0 = np.take_along_axis(zk, k[..., None], axis=-1)[..., 0]
        z1 = np.take_along_axis(zk, (k + 1)[..., None], axis=-1)[..., 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            inside = z0 + (z1 - z0) * np.where(h1 > h0, (h - h0) / np.where(h1 > h0, h1 - h0, 1.0), 0.0)
            above = zk[..., n - 1] + (h - hk[..., n - 1]) / np.where(top > 0, top, 1.0)
        out = np.where(h >= hk[..., n - 1], above, inside)
        return np.where(top > 0, np.where(h > 0, out, zmin), np.nan)

    def downscale(self, level: np.ndarray, fine_elevation: np.ndarray) -> np.ndarray:
        """Depth on the fine grid: ``max(0, level[cell] - z_fine)`` (0 on nodata pixels)."""
        f = self.factor
        NY, NX = self.fine_shape
        ny, nx = self.shape
        level = np.asarray(level, dtype=np.float64)
        z = np.asarray(fine_elevation, dtype=np.float64)
        if (NY, NX) == (ny * f, nx * f) and level.shape == (ny, nx) and z.shape == (NY, NX):
            # each coarse level broadcast over its f x f block (no repeated copy of the level: 2.5x faster on
            # the 6.7 M-pixel city, the same bits)
            with np.errstate(invalid="ignore"):
                d = np.subtract(level[:, None, :, None], z.reshape(ny, f, nx, f)).reshape(NY, NX)
            np.maximum(d, 0.0, out=d)
            d[~np.isfinite(d)] = 0.0
            return d
        lev = np.repeat(np.repeat(level, f, axis=0), f, axis=1)[:NY, :NX]
        with np.errstate(invalid="ignore"):
            d = lev - z
        return np.where(np.isfinite(d), np.maximum(d, 0.0), 0.0)

    def sheet_film_scale(self, fine_elevation: np.ndarray) -> np.ndarray:
        """Per pixel ``S^(-3/10)``, S the fine bed's slope (central differences, at least 0.001): the film of
        Manning sheet flow with unit discharge q is ``(n q)^(3/5) S^(-3/10)``. NaN on nodata pixels."""
        z = np.asarray(fine_elevation, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            gy, gx = np.gradient(z, self.fine_cell_size)
            slope = np.hypot(gx, gy)
        slope = np.where(np.isfinite(slope), np.maximum(slope, SHEET_MIN_SLOPE), SHEET_MIN_SLOPE)
        return np.where(np.isfinite(z), slope ** -0.3, np.nan)

    def downscale_sheet(self, level: np.ndarray, mean_depth: np.ndarray, unit_discharge: np.ndarray,
                        manning: np.ndarray | float, fine_elevation: np.ndarray, film_scale: np.ndarray, *,
                        max_out: np.ndarray | None = None, threads: int | None = None) -> np.ndarray:
        """Depth on the fine grid holding each coarse cell's volume with a sheet-flow film on every pixel.

        A flat level pools a cell's water in its lowest pixels; where the cell conveys a unit discharge q
        [m²/s] its pixels carry at least the Manning film ``d_k = (n q)^(3/5) S_k^(-3/10)`` (the kinematic-wave
        depth on the pixel's slope; ``film_scale`` = :meth:`sheet_film_scale`). The depths are
        ``max(eta - z_k, d_k)`` with ``eta`` the level at which they hold the cell's volume (exact: a
        piecewise-linear inversion over the cell's pixels sorted by ``z_k + d_k``); where the films alone
        exceed the volume, the films scaled to it. Without flow (q = 0) this is :meth:`downscale` at
        ``level`` (the same bits). Volume per cell is kept to round-off. ``level``, ``mean_depth`` (volume /
        coarse cell area) and ``unit_discharge`` are coarse ``(ny, nx)`` arrays (``level`` NaN on walls);
        ``max_out``, a fine ``float64`` array, is raised to the result. The kernel is
        ``twin._core.flood_subgrid_downscale_sheet`` (docs/design/subgrid-sheet-downscale.md)."""
        from twin import _core

        f = self.factor
        ny, nx = self.shape
        NY, NX = self.fine_shape

        def c64(a, shape=None) -> np.ndarray:
            a = np.ascontiguousarray(a, dtype=np.float64)
            return a if shape is None else np.broadcast_to(a, shape).copy() if a.shape != shape else a

        z, sc = c64(fine_elevation), c64(film_scale)
        lev = c64(level, (ny, nx))
        # rounding negatives of the limiter clipped; NaN passes through (max(NaN, 0) is NaN) and is refused
        h = np.maximum(c64(mean_depth, (ny, nx)), 0.0)
        q = c64(unit_discharge, (ny, nx))
        n = c64(manning)
        n = n.reshape(1) if n.size == 1 else c64(n, (ny, nx))
        exact = (NY, NX) == (ny * f, nx * f)
        if not exact:          # a fine grid that is not a whole number of cells: pad with nodata, crop after
            zp = np.full((ny * f, nx * f), np.nan)
            zp[:NY, :NX] = z
            sp = np.full_like(zp, np.nan)
            sp[:NY, :NX] = sc
            z, sc = zp, sp
        out = np.empty((ny * f, nx * f))
        mx = max_out if exact else None
        _core.flood_subgrid_downscale_sheet(z, sc, h, q, n, lev, out, max_out=mx, factor=f, threads=threads or 0)
        if not exact:
            out = np.ascontiguousarray(out[:NY, :NX])
            if max_out is not None:
                np.maximum(max_out, out, out=max_out)
        return out

    def to_coarse(self, fine: np.ndarray, name: str, valid: np.ndarray | None = None) -> np.ndarray:
        """Block mean of a fine ``(NY, NX)`` field over each coarse cell's area (pixels outside the
        fine grid or on nodata count as 0): a per-area rate keeps its volume."""
        a = np.asarray(fine, dtype=np.float64)
        if a.shape != self.fine_shape:
            raise ValueError(f"{name}: expected shape {self.fine_shape} (the fine terrain), got {a.shape}")
        f = self.factor
        ny, nx = self.shape
        p = np.zeros((ny * f, nx * f))
        src = np.nan_to_num(a) if valid is None else np.where(valid, np.nan_to_num(a), 0.0)
        p[: a.shape[0], : a.shape[1]] = src
        return p.reshape(ny, f, nx, f).sum(axis=(1, 3)) / (f * f)

    def to_coarse_cells(self, rows, cols) -> tuple[np.ndarray, np.ndarray]:
        """Coarse (row, col) of fine cells."""
        return np.asarray(rows) // self.factor, np.asarray(cols) // self.factor
