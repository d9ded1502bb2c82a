"""Quality control of one datastream's series (plain functions over arrays).

Tests (bit names in :data:`twin.sensors.model.FLAG_BITS`), after the IOOS QARTOD manuals
(U.S. IOOS 2020, *Manual for Real-Time Quality Control of In-situ Surface Wave / Water Level Data*):

``range``          value outside the observed property's physically possible range.
``rate_of_change`` |x_i - x_{i-1}| / (t_i - t_{i-1}) above the property's ``max_rate_per_h``
                   (the later point is flagged).
``spike``          QARTOD spike test on interior points:
                   |x_i - (x_{i-1} + x_{i+1})/2| - |x_{i+1} - x_{i-1}|/2 > ``spike`` threshold.
``flat_line``      the value unchanged (|Δ| <= ``flat_eps``) for longer than ``flat_s``; runs of
                   zeros are allowed where the property has ``zero_flat_ok`` (no rain, no traffic).
``gap``            the time since the previous value exceeds ``gap_factor`` x the nominal interval
                   (the datastream's ``interval_s`` or the series' median spacing); the value after
                   the gap is flagged and the report lists the gaps.
``unit_mistake``   the value is far from the stream's running median (window ``unit_window``) while
                   the value divided (or multiplied) by 10, 100 or 1000 sits on it: cm or mm sent as
                   m, m sent as mm.
``duplicate``, ``out_of_order``, ``clock_skew``, ``unregistered`` are set on arrival by the store.
Flags are stored, never used to drop a value: the assimilation skips
:data:`twin.sensors.model.BAD_MASK`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from twin.sensors.model import FLAG_BITS, PROPERTIES, flag_text


def qc_series(t, x, observed_property: str | None, *, interval_s: float | None = None,
              gap_factor: float = 3.0, flat_eps: float = 1e-9, unit_window: int = 25,
              unit_tolerance: float = 0.25):
    """Flags for a time-ordered series. Returns ``(mask int32 (n,), info dict)``."""
    t = np.asarray(t, dtype="datetime64[us]")
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    mask = np.zeros(n, dtype=np.int32)
    info: dict = {"gaps": [], "nominal_interval_s": None}
    if n == 0:
        return mask, info
    if np.any(np.diff(t) < np.timedelta64(0, "us")):
        raise ValueError("qc_series: times must be sorted (store order is by phenomenon_time)")
    prop = PROPERTIES.get(observed_property or "")
    ts = (t - t[0]) / np.timedelta64(1, "s")
    dt = np.diff(ts)
    # --- range
    if prop is not None:
        lo, hi = prop.valid_range
        mask[(x < lo) | (x > hi)] |= FLAG_BITS["range"]
    # --- gap
    if n >= 2:
        nominal = float(interval_s) if interval_s else float(np.median(dt[dt > 0])) if np.any(dt > 0) else None
        info["nominal_interval_s"] = nominal
        if nominal:
            g = np.flatnonzero(dt > gap_factor * nominal)
            mask[g + 1] |= FLAG_BITS["gap"]
            info["gaps"] = [(str(t[i]) + "Z", str(t[i + 1]) + "Z", float(dt[i])) for i in g]
    if prop is None:
        return mask, info
    # --- unit mistake (first, so that the other tests can be read knowing it)
    if n >= 5:
        ref = pd.Series(x).rolling(unit_window, center=True, min_periods=3).median().to_numpy()
        scale = np.maximum(np.abs(ref), prop.spike * 0.2)
        off = np.abs(x - ref) > 5.0 * scale
        for f in (10.0, 100.0, 1000.0, 0.1, 0.01, 0.001):
            fits = np.abs(x / f - ref) <= unit_tolerance * scale
            mask[off & fits & (np.abs(x) > 0)] |= FLAG_BITS["unit_mistake"]
    # --- spike (QARTOD)
    if n >= 3:
        a, b, c = x[:-2], x[1:-1], x[2:]
        s = np.abs(b - (a + c) / 2.0) - np.abs(c - a) / 2.0
        mask[1:-1][s > prop.spike] |= FLAG_BITS["spike"]
    # --- rate of change, against the previous value that is not itself an outlier
    if n >= 2:
        outlier = (mask & (FLAG_BITS["range"] | FLAG_BITS["unit_mistake"] | FLAG_BITS["spike"])) != 0
        idx = np.where(~outlier, np.arange(n), -1)
        prev = np.maximum.accumulate(idx)          # last clean index at or before i
        j = np.concatenate([[-1], prev[:-1]])       # last clean index before i
        ok = j >= 0
        i_ = np.flatnonzero(ok)
        jj = j[ok]
        with np.errstate(divide="ignore", invalid="ignore"):
            dth = (ts[i_] - ts[jj]) / 3600.0
            rate = np.abs(x[i_] - x[jj]) / np.where(dth > 0, dth, np.nan)
        mask[i_[rate > prop.max_rate_per_h]] |= FLAG_BITS["rate_of_change"]
    # --- flat line
    if n >= 2:
        same = np.abs(np.diff(x)) <= flat_eps
        start = 0
        for i in range(1, n + 1):
            if i == n or not same[i - 1]:
                if i - 1 > start and not (prop.zero_flat_ok and x[start] == 0.0):
                    dur = ts[start:i] - ts[start]
                    mask[start:i][dur > prop.flat_s] |= FLAG_BITS["flat_line"]
                start = i
    return mask, info


def report_row(datastream_id: str, meta: dict, df: pd.DataFrame, mask: np.ndarray, info: dict | None) -> dict:
    """One line of the QC report: counts per flag, completeness, gaps."""
    n = int(len(df))
    row = {"datastream_id": datastream_id, "observed_property": meta.get("observed_property"),
           "unit": meta.get("unit"), "registered": bool(meta.get("registered")), "n": n}
    if n:
        t = df["phenomenon_time"].to_numpy(dtype="datetime64[us]")
        row["first"] = str(t[0]) + "Z"
        row["last"] = str(t[-1]) + "Z"
        nominal = (info or {}).get("nominal_interval_s")
        row["nominal_interval_s"] = nominal
        span = (t[-1] - t[0]) / np.timedelta64(1, "s")
        row["completeness"] = float(min(1.0, n / (span / nominal + 1))) if nominal and span > 0 else 1.0
    for name, bit in FLAG_BITS.items():
        row[f"n_{name}"] = int(np.count_nonzero(mask & bit))
    row["n_good"] = int(np.count_nonzero(mask == 0))
    gaps = (info or {}).get("gaps", [])
    row["n_gaps"] = len(gaps)
    row["longest_gap_s"] = max((g[2] for g in gaps), default=0.0)
    row["flags"] = flag_text(int(np.bitwise_or.reduce(mask))) if n else "good"
    return row
