"""Run folders as the dashboard sees them: discovery, safe loading, and per-run caches.

A run folder (docs/architecture.md) holds ``manifest.json``, ``scenario.yaml``, ``kpis.json``,
``fields.nc`` (dims ``(time, y, x)``, ``depth`` [m], optional ``speed``/``hazard``, coordinates in
EPSG:32649 metres, ``time`` in seconds since start), ``max_depth.tif`` and one Parquet per table
(``trips``, ``people``, ``incidents``, ``links``, ...) whose columns ``twin.output.schema`` declares (tables
are read through it). Every file is optional here: a page shows what a
run has and says, in words, what it lacks or what is broken (never a traceback).

Everything expensive (reading the grids, downsampling them to display frames, the hillshade) is done
once per run folder *state* and cached: the cache key includes the size and modification time of the
files, so a live twin that keeps appending is re-read when it changes and never otherwise.
"""
from __future__ import annotations

import json
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

RUN_FILES = (
    "manifest.json",
    "scenario.yaml",
    "kpis.json",
    "fields.nc",
    "max_depth.tif",
    "trips.parquet",
    "people.parquet",
    "incidents.parquet",
    "links.parquet",
)
TABLES = ("trips", "people", "incidents", "links", "units")

#: display frames are at most this many cells on a side (block maximum of the model grid)
MAX_DISPLAY_CELLS = 320
#: depth below this is drawn as dry (m)
DRY_DEPTH_M = 0.01


class RunError(ValueError):
    """A run folder (or one of its files) cannot be used; the message says which and why."""


# ---------------------------------------------------------------------------------------------
# discovery
# ---------------------------------------------------------------------------------------------
def is_run_folder(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in RUN_FILES[:5])


#: the one answer to a run id that is not a run folder inside the runs folder; it says nothing about
#: whether the path the client sent exists (docs/design/dashsec-confined-server.md)
UNKNOWN_RUN = "Unknown run: choose a run from the list."


def _inside(path: Path, root: Path) -> bool:
    """``path`` resolves (symlinks followed) to ``root`` itself or below it."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return False
    return real == root or real.is_relative_to(root)


def _confined(folder: Path, root: Path) -> bool:
    """A run folder whose real path, and the real path of every entry in it, lies inside ``root``
    (the resolved runs folder): a symlink to elsewhere makes the whole run unusable."""
    if not _inside(folder, root) or folder.resolve() == root:
        return False
    try:
        return all(_inside(f, root) for f in folder.iterdir() if f.is_symlink())
    except OSError:
        return False


def _listed(root: Path) -> tuple[Path, list[str]] | None:
    try:
        return root.resolve(strict=True), sorted(os.listdir(root))
    except OSError:
        return None


def _usable(root: Path, real_root: Path, name: str) -> bool:
    return not name.startswith(".") and _confined(root / name, real_root) and is_run_folder(root / name)


def run_ids(runs_dir: str | Path) -> list[str]:
    """Names of the run folders in ``runs_dir`` that the dashboard may open (the server-side list
    every run id from a client is checked against): not hidden, confined to the runs folder."""
    root = Path(runs_dir)
    listed = _listed(root)
    return [n for n in listed[1] if _usable(root, listed[0], n)] if listed else []


def resolve_run(runs_dir: str | Path, run_id: Any) -> Path:
    """The real path of run ``run_id`` (a folder name from :func:`run_ids`); anything else, such as a
    path, a name with a separator, a symlink out of the runs folder or a name that is not there,
    raises :class:`RunError` with :data:`UNKNOWN_RUN` and nothing more."""
    if not isinstance(run_id, str) or not run_id or len(run_id) > 255 or any(c in run_id for c in "/\\\0"):
        raise RunError(UNKNOWN_RUN)
    root = Path(runs_dir)
    listed = _listed(root)
    if not listed or run_id not in listed[1] or not _usable(root, listed[0], run_id):  # the list, one entry
        raise RunError(UNKNOWN_RUN)
    return (root / run_id).resolve()


def list_runs(runs_dir: str | Path) -> list[dict[str, Any]]:
    """One dict per run folder under ``runs_dir`` (newest first): id, path, label, status, error.

    Only the folders of :func:`run_ids`: a symlink out of the runs folder is not listed (its
    manifest would otherwise be read for the label)."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    out = []
    for name in run_ids(root):
        p = root / name
        info: dict[str, Any] = {"id": p.name, "path": str(p), "error": None}
        try:
            mtime = max((p / n).stat().st_mtime for n in RUN_FILES if (p / n).exists())
        except OSError:
            mtime = 0.0
        info["mtime"] = mtime
        name = p.name
        status = "complete" if (p / "kpis.json").exists() else "incomplete"
        try:
            man = read_json(p / "manifest.json") if (p / "manifest.json").exists() else {}
            scen = man.get("scenario") if isinstance(man.get("scenario"), dict) else {}
            name = str(man.get("name") or scen.get("name") or man.get("scenario_name")
                       or (man.get("scenario") if isinstance(man.get("scenario"), str) else None) or p.name)
            st = man.get("status")
            if isinstance(st, str) and st:
                status = "complete" if st in ("complete", "completed", "done", "finished") else st
        except RunError as exc:
            info["error"] = str(exc)
            status = "corrupt"
        desc = _description(p)
        if desc and status != "corrupt" and desc != name:
            name = f"{name}: {desc}"
        info["name"] = name
        info["status"] = status
        label = p.name if name == p.name else f"{p.name} — {name}"
        info["label"] = f"{label} ({status})" if status != "complete" else label
        out.append(info)
    out.sort(key=lambda d: (-d["mtime"], d["id"]))
    return out


def _description(path: Path) -> str | None:
    """First line of the scenario's description (scenario.yaml), shortened, for the run list."""
    f = path / "scenario.yaml"
    try:
        if not f.exists() or f.stat().st_size > 1_000_000:
            return None
        import yaml

        d = yaml.safe_load(f.read_text(encoding="utf-8"))
    except Exception:
        return None
    desc = d.get("description") if isinstance(d, dict) else None
    if not isinstance(desc, str) or not desc.strip():
        return None
    line = desc.strip().splitlines()[0].strip()
    return line if len(line) <= 60 else line[:57] + "…"


def run_options(runs_dir: str | Path) -> list[dict[str, str]]:
    return [{"label": r["label"], "value": r["path"]} for r in list_runs(runs_dir)]


def read_json(path: Path) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RunError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None


def _signature(path: Path) -> tuple:
    sig = []
    for name in RUN_FILES + ("units.parquet",):
        f = path / name
        try:
            st = f.stat()
            sig.append((name, st.st_size, st.st_mtime_ns))
        except OSError:
            pass
    return tuple(sig)


# ---------------------------------------------------------------------------------------------
# hillshade
# ---------------------------------------------------------------------------------------------
def hillshade(elevation: np.ndarray, cell_size: float, azimuth_deg: float = 315.0,
              altitude_deg: float = 45.0, z_factor: float = 2.0) -> np.ndarray:
    """Lambertian hillshade in [0, 1] of a ``(ny, nx)`` grid with row 0 at the north edge.

    Horn-like central differences; NaN cells come out NaN. ``z_factor`` exaggerates the relief of a
    coastal plain so that dunes and river banks read.
    """
    z = np.asarray(elevation, dtype=np.float64)
    filled = np.where(np.isfinite(z), z, np.nanmean(z) if np.isfinite(z).any() else 0.0)
    # gradient: axis 0 runs north->south, so dz/dy(northward) = -d/drow
    dz_drow, dz_dcol = np.gradient(filled * z_factor, cell_size)
    dzdx = dz_dcol
    dzdy = -dz_drow
    slope = np.arctan(np.hypot(dzdx, dzdy))
    aspect = np.arctan2(-dzdx, -dzdy)  # direction the slope faces, clockwise from north
    az = math.radians(azimuth_deg)
    alt = math.radians(altitude_deg)
    shade = np.sin(alt) * np.cos(slope) + np.cos(alt) * np.sin(slope) * np.cos(az - aspect)
    shade = np.clip(shade, 0.0, 1.0)
    shade[~np.isfinite(z)] = np.nan
    return shade


def _blocks(a: np.ndarray, factor: int) -> np.ndarray:
    """(ny/f, f, nx/f, f) view of ``a`` with the edges padded by NaN to whole blocks."""
    ny, nx = a.shape
    py, px = (-ny) % factor, (-nx) % factor
    if py or px:
        a = np.pad(a, ((0, py), (0, px)), constant_values=np.nan)
    return a.reshape(a.shape[0] // factor, factor, a.shape[1] // factor, factor)


def block_reduce_max(a: np.ndarray, factor: int) -> np.ndarray:
    """Block maximum of a 2-D array (NaN-aware; all-NaN blocks stay NaN), edges padded."""
    if factor <= 1:
        return a
    b = _blocks(a, factor)
    with np.errstate(invalid="ignore"):
        allnan = np.isnan(b).all(axis=(1, 3))
        out = np.nanmax(np.where(np.isnan(b), -np.inf, b), axis=(1, 3))
    out[allnan] = np.nan
    return out


def block_reduce_mean(a: np.ndarray, factor: int) -> np.ndarray:
    if factor <= 1:
        return a
    b = _blocks(a, factor)
    cnt = np.isfinite(b).sum(axis=(1, 3))
    s = np.where(np.isfinite(b), b, 0.0).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = s / cnt
    out[cnt == 0] = np.nan
    return out


def _block_coords(coord: np.ndarray, factor: int) -> np.ndarray:
    if factor <= 1:
        return coord
    n = len(coord)
    step = coord[1] - coord[0] if n > 1 else 1.0
    pad = (-n) % factor
    full = np.concatenate([coord, coord[-1] + step * np.arange(1, pad + 1)])
    return full.reshape(-1, factor).mean(axis=1)


# ---------------------------------------------------------------------------------------------
# a loaded run
# ---------------------------------------------------------------------------------------------
@dataclass
class Frames:
    """Display frames of the depth field, prepared once per run state."""

    t_s: np.ndarray                      # (nt,) seconds since start
    x: np.ndarray                        # (nx',) display cell centres, EPSG:32649 m
    y: np.ndarray                        # (ny',) display cell centres (descending: north first)
    depth_cm: np.ndarray                 # (nt, ny', nx') uint16 centimetres, 65535 = dry/nodata
    factor: int                          # model cells per display cell
    max_depth_m: float                   # over all frames
    scale_max_m: float                   # top of the colour scale: 99th pct. of cells flooded after t0
    full_x: np.ndarray                   # model grid centres
    full_y: np.ndarray
    dx: float
    variables: list[str] = field(default_factory=list)
    start: str | None = None             # CF units "seconds since ..." start datetime
    place_series: dict[str, np.ndarray] = field(default_factory=dict)

    NODATA = np.uint16(65535)

    def depth_m(self, i: int) -> np.ndarray:
        f = self.depth_cm[i].astype(np.float32) / 100.0
        f[self.depth_cm[i] == self.NODATA] = np.nan
        return f

    def frame_z(self, i: int) -> list:
        """JSON-ready z for the plotly heatmap (None = transparent), rounded to cm."""
        d = self.depth_m(int(np.clip(i, 0, len(self.t_s) - 1)))
        obj = np.round(d.astype(np.float64), 2).astype(object)
        obj[~np.isfinite(d)] = None
        return obj.tolist()

    def cell_of(self, x: float, y: float) -> tuple[int, int] | None:
        """Model-grid (row, col) of a point, or None outside."""
        if len(self.full_x) == 0 or len(self.full_y) == 0:
            return None
        c = int(np.argmin(np.abs(self.full_x - x)))
        r = int(np.argmin(np.abs(self.full_y - y)))
        if abs(self.full_x[c] - x) > self.dx or abs(self.full_y[r] - y) > self.dx:
            return None
        return r, c


class Run:
    """A run folder opened for display. Methods raise :class:`RunError` with a readable message."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise RunError(f"{self.path}: no such run folder")
        if not is_run_folder(self.path):
            raise RunError(f"{self.path}: not a run folder (none of {', '.join(RUN_FILES[:5])} found)")
        self.signature = _signature(self.path)
        self._lock = threading.RLock()
        self._cache: dict[str, Any] = {}

    # -- small files -------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.path.name

    def manifest(self) -> dict:
        return self._memo("manifest", lambda: self._json_or_empty("manifest.json"))

    def kpis(self) -> dict:
        return self._memo("kpis", lambda: self._json_or_empty("kpis.json"))

    def scenario_text(self) -> str | None:
        f = self.path / "scenario.yaml"
        return f.read_text(encoding="utf-8", errors="replace") if f.exists() else None

    def scenario(self) -> dict:
        def load():
            import yaml

            txt = self.scenario_text()
            if txt is None:
                man = self.manifest()
                return man.get("scenario") if isinstance(man.get("scenario"), dict) else {}
            try:
                data = yaml.safe_load(txt)
            except yaml.YAMLError as exc:
                raise RunError(f"{self.path / 'scenario.yaml'}: not valid YAML ({exc})") from None
            return data if isinstance(data, dict) else {}

        return self._memo("scenario", load)

    def display_name(self) -> str:
        man = self.manifest()
        scen = man.get("scenario") if isinstance(man.get("scenario"), dict) else {}
        return str(man.get("name") or scen.get("name") or man.get("scenario_name") or self.scenario().get("name")
                   or self.id)

    def _json_or_empty(self, name: str) -> dict:
        f = self.path / name
        if not f.exists():
            return {}
        data = read_json(f)
        if not isinstance(data, dict):
            raise RunError(f"{f}: expected a JSON object, found {type(data).__name__}")
        return data

    def _memo(self, key: str, fn):
        with self._lock:
            if key not in self._cache:
                self._cache[key] = fn()
            return self._cache[key]

    # -- tables ------------------------------------------------------------------------------
    def table(self, name: str) -> pd.DataFrame:
        """A Parquet table of the run read through the run-folder schema (``twin.output.schema``):
        the schema's columns and dtypes, or a typed empty frame when the run has no such table
        (yet). A corrupt file, or one that does not match the schema -> RunError naming file and column."""
        def load():
            from twin.output.schema import RunSchemaError, read_table

            try:
                return read_table(self.path, name)
            except RunSchemaError as exc:
                raise RunError(str(exc)) from None

        return self._memo(f"table:{name}", load)

    # -- grids -------------------------------------------------------------------------------
    def has_fields(self) -> bool:
        return (self.path / "fields.nc").exists()

    def frames(self, places: pd.DataFrame | None = None) -> Frames:
        """Depth display frames (cached). ``places`` (place_id, x, y) get full-resolution series."""
        return self._memo("frames", lambda: self._load_frames(places))

    def _open_fields(self):
        import xarray as xr

        f = self.path / "fields.nc"
        if not f.exists():
            raise RunError(f"{self.path}: this run has no fields.nc (no flood grids recorded)")
        try:
            ds = xr.open_dataset(f, decode_times=False)
        except Exception as exc:
            raise RunError(f"{f}: cannot be opened as NetCDF ({type(exc).__name__}: {exc})") from None
        if "depth" not in ds.variables:
            ds.close()
            raise RunError(f"{f}: has no variable 'depth' (found: {', '.join(map(str, ds.data_vars))})")
        dims = ds["depth"].dims
        if tuple(dims[-2:]) != ("y", "x") or len(dims) != 3:
            ds.close()
            raise RunError(f"{f}: variable 'depth' has dims {dims}, expected (time, y, x)")
        return ds

    def _load_frames(self, places: pd.DataFrame | None) -> Frames:
        ds = self._open_fields()
        try:
            x = np.asarray(ds["x"].values, dtype=np.float64)
            y = np.asarray(ds["y"].values, dtype=np.float64)
            tname = ds["depth"].dims[0]
            t = np.asarray(ds[tname].values, dtype=np.float64) if tname in ds.variables else np.arange(ds.sizes[tname], dtype=float)
            units = str(ds[tname].attrs.get("units", "")) if tname in ds.variables else ""
            start = units.split("since", 1)[1].strip() if "since" in units else None
            if units.startswith(("minute",)):
                t = t * 60.0
            elif units.startswith(("hour",)):
                t = t * 3600.0
            nt, ny, nx = ds["depth"].shape
            if nt == 0:
                raise RunError(f"{self.path / 'fields.nc'}: 'depth' has no time steps yet")
            factor = max(1, math.ceil(max(ny, nx) / MAX_DISPLAY_CELLS))
            dx = float(abs(x[1] - x[0])) if nx > 1 else 1.0
            gx = _block_coords(x, factor)
            gy = _block_coords(y, factor)
            out = np.empty((nt, len(gy), len(gx)), dtype=np.uint16)
            pl_cells = {}
            if places is not None and len(places):
                for pid, px, py in zip(places["place_id"], places["x"], places["y"]):
                    c = int(np.argmin(np.abs(x - px)))
                    r = int(np.argmin(np.abs(y - py)))
                    if abs(x[c] - px) <= dx and abs(y[r] - py) <= dx:
                        pl_cells[str(pid)] = (r, c)
                # a finished run says which land cell each place reads (a place in a river cell at
                # this resolution: twin.output.tables.place_cells)
                try:
                    kp = self.kpis()
                except (RunError, ValueError, OSError):  # a broken kpis.json: the places' own cells
                    kp = {}
                rows = kp.get("max_depth_at_places") if isinstance(kp, dict) else None
                for q in rows if isinstance(rows, list) else []:
                    if not isinstance(q, dict):
                        continue
                    k, rc = str(q.get("place_id")), (q.get("row"), q.get("col"))
                    if k in pl_cells and all(isinstance(v, int) and 0 <= v < n for v, n in zip(rc, (ny, nx))):
                        pl_cells[k] = rc
            series = {k: np.empty(nt, dtype=np.float32) for k in pl_cells}
            dmax = 0.0
            var = ds["depth"]
            for i in range(nt):  # one slice at a time: never the whole cube in memory
                d = np.asarray(var[i].values, dtype=np.float32)
                for k, (r, c) in pl_cells.items():
                    series[k][i] = d[r, c]
                d = np.where(d >= DRY_DEPTH_M, d, np.nan)
                red = block_reduce_max(d, factor)
                if np.isfinite(red).any():
                    dmax = max(dmax, float(np.nanmax(red)))
                cm = np.where(np.isfinite(red), np.clip(np.round(red * 100.0), 0, 65534), 65535)
                out[i] = cm.astype(np.uint16)
            # colour scale from the water that came with the event: cells dry in the first frame
            # (a reservoir or the sea, wet from the start, would otherwise wash the scale out)
            flooded = (out != 65535) & (out[0] == 65535)[None]
            wet = out[flooded] if flooded.any() else out[out != 65535]
            if wet.size > 200_000:
                wet = wet[:: wet.size // 200_000]
            p99 = float(np.percentile(wet, 99)) / 100.0 if wet.size else 0.0
            return Frames(t_s=t, x=gx, y=gy, depth_cm=out, factor=factor, max_depth_m=dmax, scale_max_m=p99,
                          full_x=x, full_y=y, dx=dx, variables=[str(v) for v in ds.data_vars],
                          start=start, place_series=series)
        except RunError:
            raise
        except Exception as exc:
            raise RunError(f"{self.path / 'fields.nc'}: cannot be read ({type(exc).__name__}: {exc})") from None
        finally:
            ds.close()

    def point_series(self, x: float, y: float, variable: str = "depth") -> tuple[np.ndarray, np.ndarray] | None:
        """Full-resolution time series of a field at a point (reads one column from the file)."""
        fr = self.frames()
        cell = fr.cell_of(x, y)
        if cell is None:
            return None
        key = f"series:{variable}:{cell}"

        def load():
            ds = self._open_fields()
            try:
                if variable not in ds.variables:
                    return None
                v = np.asarray(ds[variable][:, cell[0], cell[1]].values, dtype=np.float64)
                return fr.t_s, v
            finally:
                ds.close()

        return self._memo(key, load)

    def elevation(self) -> np.ndarray | None:
        """Terrain elevation on the run grid if the run recorded it (fields.nc) else None."""
        def load():
            if not self.has_fields():
                return None
            ds = self._open_fields()
            try:
                for name in ("elevation", "topographic__elevation", "z", "dem"):
                    if name in ds.variables and ds[name].dims[-2:] == ("y", "x"):
                        a = np.asarray(ds[name].values, dtype=np.float64)
                        return a if a.ndim == 2 else a[0]
                return None
            finally:
                ds.close()

        return self._memo("elevation", load)

    def max_depth(self) -> tuple[np.ndarray, Any] | None:
        """(array, rasterio transform) from max_depth.tif, or None."""
        def load():
            f = self.path / "max_depth.tif"
            if not f.exists():
                return None
            import rasterio

            try:
                with rasterio.open(f) as src:
                    a = src.read(1, masked=True).astype(np.float64).filled(np.nan)
                    return a, src.transform
            except Exception as exc:
                raise RunError(f"{f}: cannot be read as GeoTIFF ({type(exc).__name__}: {exc})") from None

        return self._memo("max_depth", load)


class RunCache:
    """Keeps the last few opened runs; a run is re-opened when its files change."""

    def __init__(self, size: int = 4):
        self.size = size
        self._d: OrderedDict[str, Run] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str | Path) -> Run:
        key = str(Path(path).resolve())
        with self._lock:
            run = self._d.get(key)
            if run is not None and run.signature == _signature(Path(key)):
                self._d.move_to_end(key)
                return run
        run = Run(key)
        with self._lock:
            self._d[key] = run
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return run

