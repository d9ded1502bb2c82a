"""Terrain: a digital elevation model on a square-celled raster with its affine transform and CRS.

Rasters are ``(ny, nx)`` with row 0 at the north edge, as in GeoTIFF (nothing is flipped). The cell
``(r, c)`` has its centre at ``x = x0 + (c + 0.5)·dx``, ``y = y0 − (r + 0.5)·dx`` where ``(x0, y0)``
is the north-west corner. Cells without data (NaN or the file's nodata value) are *invalid*: the
flood model treats them as walls.

>>> import numpy as np
>>> t = Terrain.from_array(np.zeros((3, 4)), cell_size=10.0, origin=(500000.0, 1700000.0), crs="EPSG:32649")
>>> t.xy(0, 0)
(500005.0, 1699995.0)
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

__all__ = ["Terrain"]


def _as_crs(crs: Any):
    if crs is None:
        return None
    from pyproj import CRS

    try:
        return CRS.from_user_input(crs)
    except Exception as exc:  # pyproj raises CRSError with a terse message
        raise ValueError(f"crs: cannot interpret {crs!r} as a coordinate reference system ({exc})") from None


def _utm_for(crs, bounds) -> Any:
    """The WGS84 UTM zone CRS containing the centre of ``bounds`` (given in ``crs``)."""
    from pyproj import CRS, Transformer

    left, bottom, right, top = bounds
    tr = Transformer.from_crs(crs, CRS.from_epsg(4326), always_xy=True)
    lon, lat = tr.transform((left + right) / 2.0, (bottom + top) / 2.0)
    zone = int(math.floor((lon + 180.0) / 6.0)) % 60 + 1
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def _check_metric_crs(crs: Any) -> None:
    """A terrain's cells are square metres: a geographic CRS (degrees) or one in feet would be read
    as metres (cell sizes, slopes, volumes wrong by orders of magnitude). Refuse it."""
    if crs is None:
        return
    c = _as_crs(crs)
    if c.is_geographic:
        raise ValueError(f"crs: {c.to_string()} ({c.name}) is geographic, in degrees; the terrain needs a projected "
                         "CRS in metres: reproject the DEM first (e.g. to its UTM zone, EPSG:32649 for Tam Kỳ and "
                         "Đà Nẵng), or read it with Terrain.from_geotiff, which does")
    units = {a.unit_name.lower() for a in c.axis_info[:2]}
    if units and not units <= {"metre", "meter", "m"}:
        raise ValueError(f"crs: {c.to_string()} ({c.name}) has axes in {', '.join(sorted(units))}, not metres; "
                         "reproject the DEM to a metric CRS (e.g. its UTM zone)")


@dataclass(eq=False)
class Terrain:
    """Elevation [m] on a square grid: ``elevation`` (NaN where invalid), ``valid``, ``transform``, ``crs``."""

    elevation: np.ndarray
    cell_size: float
    transform: Affine
    crs: Any = None
    source: str = "array"
    valid: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        z = np.asarray(self.elevation, dtype=np.float64)
        if z.ndim != 2 or z.shape[0] < 1 or z.shape[1] < 1:
            raise ValueError(f"elevation: expected a 2-D (ny, nx) array, got shape {z.shape}")
        if np.isinf(z).any():
            r, c = np.argwhere(np.isinf(z))[0]
            raise ValueError(f"elevation: infinite value at (row {r}, col {c}); use NaN or nodata for missing cells")
        _check_metric_crs(self.crs)
        self.elevation = np.ascontiguousarray(z)
        self.valid = np.isfinite(self.elevation)
        self.elevation.setflags(write=False)
        self.valid.setflags(write=False)

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_array(
        cls,
        elevation,
        cell_size: float,
        origin: tuple[float, float] = (0.0, 0.0),
        crs: Any = None,
        nodata: float | None = None,
    ) -> Terrain:
        """A terrain from an ``(ny, nx)`` elevation array; ``origin`` is the north-west corner ``(x0, y0)``.

        NaN cells, and cells equal to ``nodata`` when given, are invalid (walls for the flood model).
        """
        try:
            dx = float(cell_size)
        except (TypeError, ValueError):
            raise ValueError(f"cell_size: expected a number, got {cell_size!r}") from None
        if not math.isfinite(dx) or dx <= 0.0:
            raise ValueError(f"cell_size: must be finite and > 0, got {cell_size!r}")
        try:
            x0, y0 = (float(v) for v in origin)
        except (TypeError, ValueError):
            raise ValueError(f"origin: expected (x0, y0) of the north-west corner, got {origin!r}") from None
        if not (math.isfinite(x0) and math.isfinite(y0)):
            raise ValueError(f"origin: must be finite, got {origin!r}")
        z = np.array(elevation, dtype=np.float64, copy=True)
        if nodata is not None:
            z[z == nodata] = np.nan
        return cls(z, dx, Affine(dx, 0.0, x0, 0.0, -dx, y0), _as_crs(crs), "array")

    @classmethod
    def from_geotiff(cls, path, dst_crs: Any = None, resolution: float | None = None) -> Terrain:
        """Read a DEM GeoTIFF (band 1) with rasterio.

        The grid is reprojected (bilinear) when ``dst_crs`` differs from the file's CRS, when the
        file is in geographic degrees (then to the UTM zone of its centre, EPSG:32649 for Đà Nẵng
        and Tam Kỳ), when ``resolution`` [m] is given, or when its pixels are not square. Nodata
        cells become invalid (NaN, walls for the flood model).
        """
        import rasterio
        from rasterio.warp import Resampling, calculate_default_transform, reproject

        path = Path(os.fspath(path))
        if not path.exists():
            raise FileNotFoundError(f"DEM GeoTIFF not found: {path}")
        if resolution is not None and not (math.isfinite(float(resolution)) and float(resolution) > 0.0):
            raise ValueError(f"{path}: resolution must be finite and > 0, got {resolution!r}")
        try:
            src = rasterio.open(path)
        except rasterio.errors.RasterioIOError as exc:
            raise ValueError(f"{path}: not a readable GeoTIFF ({exc})") from None
        with src:
            if src.count < 1:
                raise ValueError(f"{path}: no raster band")
            src_crs = _as_crs(src.crs.to_wkt()) if src.crs else None
            target = _as_crs(dst_crs)
            if target is None and src_crs is not None and src_crs.is_geographic:
                target = _utm_for(src_crs, src.bounds)
            if target is not None and src_crs is None:
                raise ValueError(f"{path}: the file has no CRS, so it cannot be reprojected to {dst_crs!r}")
            data = src.read(1, masked=True).astype(np.float64)
            z = data.filled(np.nan)
            t = src.transform
            if t.b != 0.0 or t.d != 0.0:
                raise ValueError(f"{path}: rotated rasters are not supported (transform {tuple(t)[:6]})")
            square = math.isclose(abs(t.a), abs(t.e), rel_tol=1e-9)
            same_crs = target is None or (src_crs is not None and target == src_crs)
            if same_crs and square and resolution is None and t.a > 0 and t.e < 0:
                return cls(z, abs(t.a), t, src_crs, str(path))
            dst = target if target is not None else src_crs
            if dst is None:
                raise ValueError(f"{path}: non-square or flipped pixels need a CRS to be resampled")
            res = resolution
            if res is None:
                dt, w, h = calculate_default_transform(src.crs, dst.to_wkt(), src.width, src.height, *src.bounds)
                res = float(min(abs(dt.a), abs(dt.e)))
            dt, w, h = calculate_default_transform(
                src.crs, dst.to_wkt(), src.width, src.height, *src.bounds, resolution=(res, res)
            )
            out = np.full((h, w), np.nan, dtype=np.float64)
            reproject(
                source=z,
                destination=out,
                src_transform=t,
                src_crs=src.crs,
                src_nodata=np.nan,
                dst_transform=dt,
                dst_crs=dst.to_wkt(),
                dst_nodata=np.nan,
                resampling=Resampling.bilinear,
            )
            return cls(out, float(res), dt, dst, str(path))

    # ---------------------------------------------------------------- geometry
    @property
    def shape(self) -> tuple[int, int]:
        return self.elevation.shape  # type: ignore[return-value]

    @property
    def origin(self) -> tuple[float, float]:
        """North-west corner ``(x0, y0)``."""
        return (self.transform.c, self.transform.f)

    @property
    def bounds(self):
        """``rasterio.coords.BoundingBox(left, bottom, right, top)``."""
        from rasterio.coords import BoundingBox

        ny, nx = self.shape
        x0, y0 = self.origin
        return BoundingBox(x0, y0 - ny * self.cell_size, x0 + nx * self.cell_size, y0)

    def cell_centers(self) -> tuple[np.ndarray, np.ndarray]:
        """Cell-centre coordinates: ``x`` (nx,) west→east, ``y`` (ny,) north→south."""
        ny, nx = self.shape
        x0, y0 = self.origin
        return x0 + (np.arange(nx) + 0.5) * self.cell_size, y0 - (np.arange(ny) + 0.5) * self.cell_size

    def rowcol(self, x, y):
        """Row and column of the cells containing points ``(x, y)`` (arrays or scalars; may be outside)."""
        x0, y0 = self.origin
        cols = np.floor((np.asarray(x, dtype=np.float64) - x0) / self.cell_size).astype(np.int64)
        rows = np.floor((y0 - np.asarray(y, dtype=np.float64)) / self.cell_size).astype(np.int64)
        if rows.ndim == 0:
            return int(rows), int(cols)
        return rows, cols

    def xy(self, rows, cols):
        """Cell-centre coordinates of cells ``(rows, cols)``."""
        x0, y0 = self.origin
        x = x0 + (np.asarray(cols, dtype=np.float64) + 0.5) * self.cell_size
        y = y0 - (np.asarray(rows, dtype=np.float64) + 0.5) * self.cell_size
        if x.ndim == 0:
            return float(x), float(y)
        return x, y

    def contains(self, rows, cols) -> np.ndarray:
        ny, nx = self.shape
        rows, cols = np.asarray(rows), np.asarray(cols)
        return (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)

    def cells_near(self, x: float, y: float, width_m: float) -> list[tuple[int, int]]:
        """Valid cells ``(row, col)`` of the square ``width_m`` wide centred on the cell containing ``(x, y)``.

        The square spans ``round(width_m / 2 / cell_size)`` cells each side of that cell (0 m: the cell
        alone), clipped to the grid, nodata cells left out; rows then columns ascending. A point outside
        the grid, or one whose square holds no valid cell, raises ValueError.
        """
        x, y, width_m = float(x), float(y), float(width_m)
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"point ({x!r}, {y!r}): coordinates must be finite")
        if not (math.isfinite(width_m) and width_m >= 0):
            raise ValueError(f"width_m: must be finite and >= 0, got {width_m!r}")
        r, c = self.rowcol(x, y)
        ny, nx = self.shape
        if not (0 <= r < ny and 0 <= c < nx):
            raise ValueError(f"point ({x:.1f}, {y:.1f}) lies outside the terrain {self.bounds}")
        k = int(max(0, round(width_m / 2 / self.cell_size)))
        cells = [(rr, cc) for rr in range(max(0, r - k), min(ny, r + k + 1))
                 for cc in range(max(0, c - k), min(nx, c + k + 1)) if self.valid[rr, cc]]
        if not cells:
            raise ValueError(f"point ({x:.1f}, {y:.1f}) lies on an invalid (nodata) cell")
        return cells

    # ---------------------------------------------------------------- output
    def to_geotiff(self, path, array=None, nodata: float | None = -9999.0, dtype=None) -> Path:
        """Write ``array`` (default: the elevation) with this grid's transform and CRS.

        Floating arrays get NaN replaced by ``nodata``; boolean arrays are written as uint8.
        """
        import rasterio

        arr = self.elevation if array is None else np.asarray(array)
        if arr.shape != self.shape:
            raise ValueError(f"array: expected shape {self.shape} (this terrain's grid), got {arr.shape}")
        if arr.dtype == bool:
            arr = arr.astype(np.uint8)
        if dtype is not None:
            arr = arr.astype(dtype)
        path = Path(os.fspath(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        profile = dict(
            driver="GTiff",
            height=self.shape[0],
            width=self.shape[1],
            count=1,
            dtype=arr.dtype.name,
            transform=self.transform,
            compress="deflate",
        )
        if self.crs is not None:
            profile["crs"] = self.crs.to_wkt()
        if np.issubdtype(arr.dtype, np.floating):
            if nodata is not None:
                arr = np.where(np.isnan(arr), nodata, arr).astype(arr.dtype)
                profile["nodata"] = nodata
        elif nodata is not None and np.can_cast(np.min_scalar_type(nodata), arr.dtype):
            profile["nodata"] = nodata
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(arr, 1)
        return path

    def __repr__(self) -> str:
        ny, nx = self.shape
        crs = self.crs.to_string() if self.crs is not None else None
        return (
            f"Terrain({ny}x{nx} cells of {self.cell_size:g} m, origin={self.origin}, crs={crs}, "
            f"valid={int(self.valid.sum())}/{ny * nx}, source={self.source!r})"
        )
