"""A memory estimate made before a twin is built, and the refusal of a run that cannot fit.

``build_twin`` calls :func:`check_memory` first: from the city bundle's extent (its manifest, no
raster read) and ``resolution_m`` it counts the grid cells, and multiplies them by the bytes each
cell costs (the city layers loaded in float64, the flood solver's arrays in its dtype, the output
buffers), then adds the road links, agents and trips. When the estimate exceeds
:data:`USABLE_SHARE` of the memory the machine has available (``/proc/meminfo`` ``MemAvailable``,
or psutil), :class:`MemoryEstimateError` (a ``ValueError``) refuses it with both numbers, before
anything is allocated: ``resolution_m=1`` on Tam Kỳ is 673 million cells, about 180 GiB.

Override, for those who mean it: ``TWIN_ALLOW_LARGE=1`` in the environment (the CLI's
``--allow-large`` on ``twin run``/``fork``/``replay`` sets it for the command).

:func:`retain_freed_memory` keeps the memory of freed large arrays in the process for the next
allocation (glibc ``mallopt``): the ``twin`` command calls it; a script that runs long simulations can.
A coupled step allocates several arrays on the terrain's grid (54 MB each on the 10 m city); by default
glibc maps each one fresh from the kernel and unmaps it when freed, so every one costs page faults
(measured 6-336 ms each on a 2-core VM whose freed pages go back to the host: 11 % of an hour of the
coupled 48-h run at its peak, docs/performance.md).

The bytes per cell are counted from the arrays the code allocates (twin/flood/model.py,
twin/flood/solvers/, twin/output/recorders.py, twin/city/); they are an estimate of the state, not of
the interpreter and libraries (a few hundred MB), which the margin of :data:`USABLE_SHARE` leaves for.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["MemoryEstimate", "MemoryEstimateError", "estimate_memory", "available_memory", "check_memory",
           "ALLOW_LARGE_ENV", "USABLE_SHARE", "MALLOC_ENV", "retain_freed_memory"]

ALLOW_LARGE_ENV = "TWIN_ALLOW_LARGE"
MALLOC_ENV = "TWIN_MALLOC"  # "system": leave the C allocator as it is (see retain_freed_memory)
USABLE_SHARE = 0.8  # of MemAvailable: the rest is for the interpreter, libraries and the OS

GiB = 1024**3
# per grid cell
_CITY_BYTES = 6 * 8 + 4 * 1 + 8   # elevation, manning, building fraction, initial water, landcover, wards
                                  # (float64/int) + valid/sea/urban masks + the resampling temporary
_FLOOD_MODEL_ARRAYS = 5           # z, max depth, max speed², arrival time, manning (FloodModel)
_SOLVER_ARRAYS = {"inertial": 6,  # h, qx, qy, double-buffered
                  "fv": 11}       # z, h, hu, hv, their copies, manning, face crests (x, y)
_DERIVED_BYTES = 4 * 8            # speed, hazard and place/road lookups computed per record (float64)
# per object, measured on Đà Nẵng at 300 m (peak RSS): building traffic on its 16,228 links 319 MB;
# 315,217 trips (30 M per day for 10 min at noon) 2.0 GB more; 167,000 more agents 157 MB more
_LINK_BYTES = 20 * 1024           # network, engine state and history buffers, link tables
_AGENT_BYTES = 2048               # a Mesa agent with its attributes and table rows
_TRIP_BYTES = 8 * 1024            # a trip: its route, its vehicle in the engine, its table rows


class MemoryEstimateError(ValueError):
    """A scenario whose estimated memory exceeds what the machine has available."""


@dataclass
class MemoryEstimate:
    cells: int
    shape: tuple[int, int]
    parts: dict[str, float] = field(default_factory=dict)  # bytes by part

    @property
    def total(self) -> float:
        return float(sum(self.parts.values()))

    def describe(self) -> str:
        top = sorted(self.parts.items(), key=lambda kv: -kv[1])
        return ", ".join(f"{k} {_fmt(v)}" for k, v in top if v >= 0.01 * self.total)


def _fmt(n: float) -> str:
    return f"{n / GiB:,.1f} GiB" if n >= 0.1 * GiB else f"{n / 1024**2:,.0f} MiB"


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation: ``MemAvailable`` of ``/proc/meminfo`` (Linux),
    else psutil's ``virtual_memory().available``; None when neither is known."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # psutil missing or unsupported platform
        return None


def _grid_shape(scenario, city) -> tuple[int, int] | None:
    """(ny, nx) of the grid the twin will build, without loading any raster."""
    if city is not None:
        t = getattr(city, "terrain", None)
        shape = getattr(t, "shape", None)
        return (int(shape[0]), int(shape[1])) if shape is not None and len(shape) == 2 else None
    from twin.city import find_bundle

    try:
        folder = find_bundle(scenario.city)
        man = json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8"))
        x0, y0, x1, y1 = (float(v) for v in man["bounds"])
    except Exception:  # an unknown city or damaged manifest: load_city reports it, naming the bundle
        return None
    r = float(scenario.resolution_m)
    return max(1, math.floor((y1 - y0) / r + 1e-9)), max(1, math.floor((x1 - x0) / r + 1e-9))


def _bundle_counts(scenario, city) -> tuple[int, float]:
    """(road links, households) of the city, from the bundle's files (metadata only) or ``city``."""
    links, households = 0, 0.0
    if city is not None:
        roads = getattr(city, "roads", None)
        links = int(getattr(roads, "n_links", 0) or 0)
        pop = getattr(city, "population", None)
        if pop is not None and "households" in getattr(pop, "columns", ()):
            households = float(pop["households"].sum())
        return links, households
    try:
        from twin.city import find_bundle

        folder = Path(find_bundle(scenario.city))
        man = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        layers = man.get("layers") or {}
        f = (layers.get("roads") or {}).get("file")
        if f and (folder / f).is_file():
            import pyarrow.parquet as pq

            links = int(pq.ParquetFile(folder / f).metadata.num_rows)
        f = (layers.get("population") or {}).get("file")
        if f and (folder / f).is_file() and (folder / f).stat().st_size < 50 * 1024**2:
            import pandas as pd

            pop = pd.read_csv(folder / f)
            if "households" in pop.columns:
                households = float(pd.to_numeric(pop["households"], errors="coerce").fillna(0).sum())
    except Exception:  # counts are a refinement; the grid dominates any estimate that matters
        pass
    return links, households


def _expected_trips(scenario) -> float:
    """Background trips the run generates: trips per day x the daily profile over the run's hours."""
    tr = scenario.traffic
    if tr.background_trips_per_day <= 0:
        return 0.0
    try:
        import numpy as np

        from twin.traffic.demand import daily_profile

        n = int(min(max(1, math.ceil(scenario.duration / 600)), 100_000))  # 10-min bins
        edges = np.linspace(0.0, scenario.duration, n + 1)
        start_h = scenario.start.hour + scenario.start.minute / 60
        share = daily_profile(start_h + 0.5 * (edges[:-1] + edges[1:]) / 3600) * np.diff(edges) / 3600
        return float(tr.background_trips_per_day * share.sum())
    except Exception:  # the profile unavailable: twice the mean rate
        return 2.0 * tr.background_trips_per_day * scenario.duration / 86400


def estimate_memory(scenario, city=None) -> MemoryEstimate | None:
    """The memory a twin of ``scenario`` needs (on ``city``, or the bundle the scenario names);
    None when the grid cannot be known before loading (an unknown city: loading reports it)."""
    shape = _grid_shape(scenario, city)
    if shape is None:
        return None
    cells = shape[0] * shape[1]
    fl = scenario.flood
    d = 4 if str(fl.dtype) == "float32" else 8
    out = scenario.outputs
    fbytes = 4 if out.fields_dtype == "float32" else 8
    parts = {
        "city layers": cells * _CITY_BYTES,
        f"flood ({fl.solver}, {fl.dtype})": cells * d * (_FLOOD_MODEL_ARRAYS + _SOLVER_ARRAYS.get(fl.solver, 11)),
        "field output buffers": cells * fbytes * max(1, len(out.fields)) * out.chunk_records,
        "derived fields": cells * _DERIVED_BYTES,
    }
    links, households = _bundle_counts(scenario, city)
    tr = scenario.traffic
    if tr is not None and tr.enabled:
        parts["roads and traffic"] = links * _LINK_BYTES + _expected_trips(scenario) * _TRIP_BYTES
    pe = scenario.people
    if pe is not None and pe.enabled:
        parts["people"] = households * pe.sample_fraction * pe.agents_per_household * _AGENT_BYTES
    return MemoryEstimate(cells=cells, shape=shape, parts=parts)


def allow_large() -> bool:
    return os.environ.get(ALLOW_LARGE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def check_memory(scenario, city=None, available: int | None = None) -> MemoryEstimate | None:
    """Refuse (MemoryEstimateError) a scenario whose estimate exceeds USABLE_SHARE of the available
    memory, naming both, unless ``TWIN_ALLOW_LARGE=1``. Returns the estimate (None if unknown)."""
    est = estimate_memory(scenario, city)
    if est is None or allow_large():
        return est
    avail = available_memory() if available is None else available
    if avail is None or est.total <= USABLE_SHARE * avail:
        return est
    ny, nx = est.shape
    raise MemoryEstimateError(
        f"scenario {scenario.name}: resolution_m={scenario.resolution_m:g} gives {ny:,} x {nx:,} = {est.cells:,} cells; "
        f"the run needs about {_fmt(est.total)} ({est.describe()}) but this machine has {_fmt(avail)} available "
        f"(MemAvailable; at most {USABLE_SHARE:.0%} of it is used). Choose a coarser resolution_m, or set "
        f"{ALLOW_LARGE_ENV}=1 (twin run/fork/replay --allow-large) to run anyway")


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def retain_freed_memory() -> bool:
    """Serve large allocations from the process heap and keep freed memory there (glibc only).

    glibc maps every allocation above its mmap threshold (at most 32 MB) from the kernel and returns it
    when freed, so an array on the 10 m city's grid (54 MB) allocated every coupling step costs fresh
    page faults each time. With ``mallopt(M_MMAP_MAX, 0)`` and a trim threshold of 2 GiB they come from
    the heap and a freed one is reused by the next: the peak memory is about the same (the heap holds
    what was live at the peak), but it is not given back to the system until the process exits, so
    this is for processes that run simulations (the ``twin`` command calls it), not for a long
    interactive session that does other work afterwards. Threads' arenas still map memory when they
    must (glibc falls back to mmap there), so no allocation fails for it.

    Returns True when applied; False on other C libraries, or when ``TWIN_MALLOC=system`` is set."""
    if os.environ.get(MALLOC_ENV, "").strip().lower() == "system":
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # glibc only: musl and macOS have no such mallopt parameters
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # (the trim threshold is a C int: at most 2 GiB of free memory at the heap's top is kept)
    ok = mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and ok
    return ok
