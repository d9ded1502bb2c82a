"""Writers: chunked NetCDF (CF-1.8 + CRS), Parquet parts, GeoTIFF, PNG, JSON.

Writers own files; recorders (``twin.output.recorders``) own buffers and schedules. Both are
restart-safe: a writer knows how many records it has written (``n_written``), and on resume it
discards anything written after the checkpoint it resumes from, so a resumed run produces the same
files as an uninterrupted one.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["NetCDFGridWriter", "ParquetPartsWriter", "write_geotiff", "write_json", "cf_time_units"]

# CF attributes of the grid variables we know
FIELD_ATTRS: dict[str, dict[str, str]] = {
    "depth": {
        "standard_name": "sea_floor_depth_below_sea_surface",  # closest CF name for water depth
        "long_name": "surface water depth",
        "units": "m",
        "twin_name": "surface_water__depth",
    },
    "speed": {"long_name": "depth-averaged water speed", "units": "m s-1", "twin_name": "surface_water__speed"},
    "hazard": {
        "long_name": "flood hazard rating HR = d (v + 0.5) + DF (Defra/EA FD2321)",
        "units": "1",
        "twin_name": "surface_water__hazard_rating",
    },
}


def cf_time_units(start: _dt.datetime) -> str:
    """``seconds since 2020-10-28 06:00:00+07:00`` (local start with its UTC offset)."""
    off = start.utcoffset() or _dt.timedelta(0)
    sign = "+" if off >= _dt.timedelta(0) else "-"
    off = abs(off)
    hh, mm = divmod(int(off.total_seconds()) // 60, 60)
    return f"seconds since {start.strftime('%Y-%m-%d %H:%M:%S')}{sign}{hh:02d}:{mm:02d}"


class NetCDFGridWriter:
    """Appends ``(time, y, x)`` records to one NetCDF-4 file with CF metadata and a CRS.

    Coordinates: ``x``, ``y`` cell centres in the grid CRS (projected metres), ``time`` in seconds
    since the local start datetime; a ``spatial_ref`` grid-mapping variable carries the CRS WKT
    (``crs_wkt`` and ``spatial_ref`` attributes, read by xarray/rioxarray/GDAL).
    """

    def __init__(self, path: Path, *, x: np.ndarray, y: np.ndarray, crs, start: _dt.datetime,
                 variables: list[str], dtype: str = "float32", title: str = "", history: str = "",
                 nodata_mask: np.ndarray | None = None, static: dict | None = None):
        self.path = Path(path)
        self.x, self.y = np.asarray(x, float), np.asarray(y, float)
        self.crs = crs
        self.start = start
        self.variables = list(variables)
        self.dtype = np.dtype(dtype)
        self.title, self.history = title, history
        self.mask = nodata_mask
        self.static = static or {}
        self.n_written = 0

    # -- file -------------------------------------------------------------------------------
    def _create(self):
        import netCDF4

        ds = netCDF4.Dataset(self.path, "w", format="NETCDF4")
        ds.Conventions = "CF-1.8"
        ds.title = self.title or "Tam Kỳ Twin gridded output"
        ds.institution = "Tam Kỳ Twin (open source)"
        ds.source = "twin.output.writers.NetCDFGridWriter"
        ds.history = self.history
        ds.createDimension("time", None)
        ds.createDimension("y", len(self.y))
        ds.createDimension("x", len(self.x))
        t = ds.createVariable("time", "f8", ("time",))
        t.standard_name = "time"
        t.long_name = "time since scenario start"
        t.units = cf_time_units(self.start)
        t.calendar = "standard"
        t.axis = "T"
        xv = ds.createVariable("x", "f8", ("x",))
        xv[:] = self.x
        yv = ds.createVariable("y", "f8", ("y",))
        yv[:] = self.y
        for v, name, axis in ((xv, "projection_x_coordinate", "X"), (yv, "projection_y_coordinate", "Y")):
            v.standard_name = name
            v.units = "m"
            v.axis = axis
        xv.long_name = "x coordinate of cell centre (easting)"
        yv.long_name = "y coordinate of cell centre (northing)"
        sr = ds.createVariable("spatial_ref", "i4")
        if self.crs is not None:
            from pyproj import CRS

            crs = CRS.from_user_input(self.crs)
            for k, val in crs.to_cf().items():
                if val is None:
                    continue
                if isinstance(val, (list, tuple)):
                    val = np.asarray(val, dtype=float)
                setattr(sr, k, val)
            sr.spatial_ref = crs.to_wkt()
            sr.crs_wkt = crs.to_wkt()
            if crs.to_epsg():
                sr.epsg_code = f"EPSG:{crs.to_epsg()}"
        dx = float(self.x[1] - self.x[0]) if len(self.x) > 1 else 1.0
        dy = float(self.y[1] - self.y[0]) if len(self.y) > 1 else -1.0
        sr.GeoTransform = f"{self.x[0] - dx / 2} {dx} 0 {self.y[0] - dy / 2} 0 {dy}"
        fill = np.float32(np.nan) if self.dtype == np.float32 else np.nan
        for name, (arr, attrs) in self.static.items():
            a = np.asarray(arr)
            v = ds.createVariable(name, a.dtype, ("y", "x"), zlib=True, complevel=1)
            v[:] = a
            for k, val in attrs.items():
                setattr(v, k, val)
            v.grid_mapping = "spatial_ref"
        for name in self.variables:
            var = ds.createVariable(
                name, self.dtype, ("time", "y", "x"), zlib=True, complevel=1, shuffle=True,
                chunksizes=(1, len(self.y), len(self.x)), fill_value=fill,
            )
            for k, val in FIELD_ATTRS.get(name, {"long_name": name}).items():
                setattr(var, k, val)
            var.grid_mapping = "spatial_ref"
        ds.close()

    def open_for_resume(self, n_written: int) -> None:
        """Continue after a checkpoint that had written ``n_written`` records."""
        self.n_written = n_written
        if n_written == 0:
            if self.path.exists():
                self.path.unlink()
            return
        import netCDF4

        with netCDF4.Dataset(self.path, "r") as ds:
            n_file = len(ds.dimensions["time"])
        if n_file < n_written:
            raise ValueError(f"{self.path}: has {n_file} records, checkpoint expects {n_written}")
        if n_file > n_written:  # written after the checkpoint: rewrite the first n_written records
            with netCDF4.Dataset(self.path, "r") as src:
                times = src["time"][:n_written]
                data = {v: src[v][:n_written] for v in self.variables}
            self.path.unlink()
            self.n_written = 0
            self.write(np.asarray(times), {v: np.asarray(data[v]) for v in self.variables})

    def write(self, times: np.ndarray, data: dict[str, np.ndarray]) -> None:
        """Append records: ``times`` (n,), each variable (n, ny, nx)."""
        import netCDF4

        if len(times) == 0:
            return
        if self.n_written == 0:
            self._create()
        with netCDF4.Dataset(self.path, "a") as ds:
            i0 = self.n_written
            ds["time"][i0:i0 + len(times)] = np.asarray(times, float)
            for name in self.variables:
                arr = np.asarray(data[name], dtype=self.dtype)
                if self.mask is not None:
                    arr = np.where(self.mask[None], arr, np.nan).astype(self.dtype)
                ds[name][i0:i0 + len(times)] = arr
        self.n_written += len(times)


class ParquetPartsWriter:
    """A table written in parts (``<name>.parts/part-00000.parquet`` ...), merged at ``finish()``.

    Parts make appends cheap and restarts exact (parts after the checkpoint are deleted).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.parts_dir = self.path.with_name(self.path.stem + ".parts")
        self.n_written = 0  # parts

    def write(self, df) -> None:
        if df is None or len(df) == 0:
            return
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        df.to_parquet(self.parts_dir / f"part-{self.n_written:05d}.parquet", index=False)
        self.n_written += 1

    def open_for_resume(self, n_written: int) -> None:
        self.n_written = n_written
        if self.parts_dir.exists():
            for p in self.parts_dir.glob("part-*.parquet"):
                if int(p.stem.split("-")[1]) >= n_written:
                    p.unlink()
        if self.path.exists():
            self.path.unlink()

    def finish(self, final_df=None, empty_columns: dict[str, str] | None = None) -> None:
        """Merge the parts (or write ``final_df`` if given) into ``path``; always writes a file."""
        import pandas as pd

        if final_df is None:
            parts = sorted(self.parts_dir.glob("part-*.parquet")) if self.parts_dir.exists() else []
            frames = [pd.read_parquet(p) for p in parts]
            if frames:
                final_df = pd.concat(frames, ignore_index=True)
            else:
                final_df = pd.DataFrame({k: pd.Series(dtype=v) for k, v in (empty_columns or {}).items()})
        final_df.to_parquet(self.path, index=False)
        if self.parts_dir.exists():
            shutil.rmtree(self.parts_dir)


def write_geotiff(path: Path, array: np.ndarray, transform, crs, nodata: float = -9999.0) -> None:
    import rasterio

    arr = np.asarray(array, dtype="float32")
    arr = np.where(np.isfinite(arr), arr, nodata).astype("float32")
    with rasterio.open(
        path, "w", driver="GTiff", height=arr.shape[0], width=arr.shape[1], count=1, dtype="float32",
        crs=crs, transform=transform, nodata=nodata, compress="deflate", tiled=arr.shape[0] >= 256 and arr.shape[1] >= 256,
    ) as dst:
        dst.write(arr, 1)
        dst.update_tags(units="m", long_name="maximum water depth")


def _json_default(o: Any):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if not math.isfinite(float(o)) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (_dt.datetime, _dt.date)):
        return o.isoformat()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _clean(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def write_json(path: Path, obj: Any) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(_clean(obj), indent=2, default=_json_default, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
