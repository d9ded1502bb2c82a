"""Writers: chunked NetCDF (CF-1.8 + CRS), Parquet parts, GeoTIFF, PNG, JSON.

Writers own files; recorders (``twin.output.recorders``) own buffers and schedules. What a file of
the run folder holds is declared once, in :mod:`twin.output.schema`: the NetCDF attributes and the
GeoTIFF band metadata come from it, and a Parquet table whose file name the schema declares is
checked against it on every write (a missing, extra or mistyped column raises
:class:`~twin.output.schema.RunSchemaError` naming the file and column). Both are
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

from twin.output import schema as S

__all__ = ["NetCDFGridWriter", "ParquetPartsWriter", "write_geotiff", "write_json", "cf_time_units",
           "netcdf_lock"]

_NETCDF_LOCK: Any = None


def netcdf_lock() -> Any:
    """The lock around every call into the netCDF/HDF5 libraries, which are not thread-safe: xarray's
    own (so a reader through xarray in one thread waits for a write in another; the run folder's
    fields are written on the output thread of :mod:`twin.output.recorders`)."""
    global _NETCDF_LOCK
    if _NETCDF_LOCK is None:
        try:
            from xarray.backends.locks import HDF5_LOCK, NETCDFC_LOCK, combine_locks

            _NETCDF_LOCK = combine_locks([NETCDFC_LOCK, HDF5_LOCK])
        except (ImportError, AttributeError):   # (another xarray: our own writes still one at a time)
            import threading

            _NETCDF_LOCK = threading.Lock()
    return _NETCDF_LOCK


def cf_time_units(start: _dt.datetime) -> str:
    """``seconds since 2020-10-28 06:00:00+07:00`` (local start with its UTC offset)."""
    off = start.utcoffset() or _dt.timedelta(0)
    sign = "+" if off >= _dt.timedelta(0) else "-"
    off = abs(off)
    hh, mm = divmod(int(off.total_seconds()) // 60, 60)
    return f"seconds since {start.strftime('%Y-%m-%d %H:%M:%S')}{sign}{hh:02d}:{mm:02d}"


class NetCDFGridWriter:
    """Appends ``(time, y, x)`` records to one NetCDF-4 file with CF metadata and a CRS.

    ``static``: ``{name: (ny, nx) array}`` written once; every variable's CF attributes are those of
    :data:`twin.output.schema.FIELDS_NC` (an undeclared variable is refused).

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
        t.setncatts({**S.nc_attrs("time"), "units": cf_time_units(self.start)})
        xv = ds.createVariable("x", "f8", ("x",))
        xv[:] = self.x
        xv.setncatts(S.nc_attrs("x"))
        yv = ds.createVariable("y", "f8", ("y",))
        yv[:] = self.y
        yv.setncatts(S.nc_attrs("y"))
        sr = ds.createVariable("spatial_ref", "i4")
        sr.setncatts(S.nc_attrs("spatial_ref"))
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
        for name, arr in self.static.items():
            a = np.asarray(arr)
            v = ds.createVariable(name, a.dtype, ("y", "x"), zlib=True, complevel=1)
            v[:] = a
            v.setncatts(S.nc_attrs(name))
            v.grid_mapping = "spatial_ref"
        for name in self.variables:
            var = ds.createVariable(
                name, self.dtype, ("time", "y", "x"), zlib=True, complevel=1, shuffle=True,
                chunksizes=(1, len(self.y), len(self.x)), fill_value=fill,
            )
            var.setncatts(S.nc_attrs(name))
            var.grid_mapping = "spatial_ref"
        ds.close()

    def open_for_resume(self, n_written: int) -> None:
        """Continue after a checkpoint that had written ``n_written`` records."""
        with netcdf_lock():
            self._open_for_resume(n_written)

    def _open_for_resume(self, n_written: int) -> None:
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
            self._write(np.asarray(times), {v: np.asarray(data[v]) for v in self.variables})

    def write(self, times: np.ndarray, data: dict[str, np.ndarray]) -> None:
        """Append records: ``times`` (n,), each variable (n, ny, nx)."""
        with netcdf_lock():
            self._write(times, data)

    def _write(self, times: np.ndarray, data: dict[str, np.ndarray]) -> None:
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

    Parts make appends cheap and restarts exact (parts after the checkpoint are deleted). A file
    whose name :data:`twin.output.schema.TABLES` declares is validated on every write and at
    ``finish()``; any other name is refused unless ``validate=False`` says it is not a run-folder table.
    """

    def __init__(self, path: Path, *, validate: bool = True):
        self.path = Path(path)
        self.parts_dir = self.path.with_name(self.path.stem + ".parts")
        self.n_written = 0  # parts
        self.table = self.path.name if validate else None
        if self.table is not None and self.table not in S.TABLES:
            raise S.RunSchemaError(f"{self.table}: not a table of the run-folder schema (known: "
                                   f"{', '.join(S.TABLES)}); declare it in twin/output/schema.py")

    def _check(self, df) -> None:
        if self.table is not None:
            S.validate_frame(self.table, df)

    def write(self, df) -> None:
        if df is None or len(df) == 0:
            return
        self._check(df)
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
        """Merge the parts (or write ``final_df`` if given) into ``path``; always writes a file.

        With no parts and no ``final_df`` the file is the schema's typed empty table (or, for a file
        outside the schema, ``empty_columns``: ``{name: dtype}``)."""
        import pandas as pd

        if final_df is None:
            parts = sorted(self.parts_dir.glob("part-*.parquet")) if self.parts_dir.exists() else []
            frames = [pd.read_parquet(p) for p in parts]
            if frames:
                final_df = pd.concat(frames, ignore_index=True)
            elif self.table is not None:
                final_df = S.empty_frame(self.table)
            else:
                final_df = pd.DataFrame({k: pd.Series(dtype=v) for k, v in (empty_columns or {}).items()})
        elif (self.table is not None and len(final_df) == 0
              and sorted(map(str, final_df.columns)) == sorted(S.TABLES[self.table].names)):
            final_df = S.empty_frame(self.table)  # no rows: builders' object dtypes carry nothing; type them
        self._check(final_df)
        final_df.to_parquet(self.path, index=False)
        if self.parts_dir.exists():
            shutil.rmtree(self.parts_dir)


def write_geotiff(path: Path, array: np.ndarray, transform, crs, nodata: float | None = None) -> None:
    """One-band float32 GeoTIFF; units and band description from :data:`twin.output.schema.RASTERS`
    (by file name: ``max_depth.tif``, ``compare_<run>.tif``)."""
    import rasterio

    spec = S.raster_for(Path(path).name)
    nodata = spec.nodata if nodata is None else nodata
    arr = np.asarray(array, dtype="float32")
    arr = np.where(np.isfinite(arr), arr, nodata).astype("float32")
    with rasterio.open(
        path, "w", driver="GTiff", height=arr.shape[0], width=arr.shape[1], count=1, dtype="float32",
        crs=crs, transform=transform, nodata=nodata, compress="deflate", tiled=arr.shape[0] >= 256 and arr.shape[1] >= 256,
    ) as dst:
        dst.write(arr, 1)
        dst.set_band_unit(1, spec.units)
        dst.set_band_description(1, spec.description)
        dst.update_tags(1, units=spec.units, long_name=spec.description)


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
