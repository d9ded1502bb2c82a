"""Demand: trips from OD matrices and a background daily traffic profile for Tam Kỳ.

All randomness comes from the ``numpy.random.Generator`` passed in.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["trips_from_od", "daily_profile", "background_trips", "TAMKY_HOURLY_SHARE", "TAMKY_CLASS_SHARE"]

# Share of daily vehicle trips starting in each local hour (0..23). The shape follows the two-peak
# profile of motorbike-dominated Vietnamese cities (morning school/work peak 6-8 h, a midday return
# home 11-13 h, the evening peak 16-18 h), as in the traffic counts of the JICA HAIDEP (Hanoi, 2007)
# and HCMC HOUTRANS (2004) household surveys. It is an assumption for Tam Kỳ, not a measurement: no
# count data for the city was available offline. Sums to 1.
_RAW = np.array([0.4, 0.3, 0.2, 0.2, 0.4, 1.5, 5.0, 8.5, 7.0, 5.0, 4.6, 5.6,
                 6.0, 4.6, 4.5, 5.2, 7.2, 8.8, 6.8, 4.6, 3.5, 2.6, 1.6, 0.8])
TAMKY_HOURLY_SHARE = _RAW / _RAW.sum()

# Vehicle mix of trips (by vehicle, not PCU): motorbikes dominate Vietnamese provincial cities
# (about 80-90 % of vehicles in counts; Quảng Nam had ~0.95 motorbikes per household, cars rising).
TAMKY_CLASS_SHARE = {"motorbike": 0.82, "car": 0.13, "bus": 0.01, "truck": 0.04}


def daily_profile(hours=None) -> np.ndarray:
    """Share of daily trips starting in each local hour (24 values summing to 1), or the share per
    hour at the given local hours (fractional hours allowed)."""
    if hours is None:
        return TAMKY_HOURLY_SHARE.copy()
    h = np.asarray(hours, dtype=float) % 24.0
    return TAMKY_HOURLY_SHARE[np.floor(h).astype(int)]


def _sample_classes(n, class_share, rng) -> np.ndarray:
    names = list(class_share)
    p = np.array([class_share[k] for k in names], dtype=float)
    if (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"class_share: shares must be >= 0 and not all 0, got {class_share}")
    return np.asarray(names, dtype=object)[rng.choice(len(names), size=n, p=p / p.sum())]


def trips_from_od(od, zones, start_s: float, end_s: float, rng: np.random.Generator,
                  vehicle_class="car", *, poisson: bool = False) -> pd.DataFrame:
    """Trips from an origin-destination matrix.

    ``od[i, j]``: trips from ``zones[i]`` to ``zones[j]`` (node ids) between ``start_s`` and
    ``end_s`` (a DataFrame with zone labels works too). Fractional counts are rounded
    stochastically (or drawn from a Poisson law with ``poisson=True``); departure times are uniform
    in ``[start_s, end_s)``. ``vehicle_class`` is a class name or a dict of shares by class.
    """
    if isinstance(od, pd.DataFrame):
        if zones is None:
            zones = list(od.index)
        od = od.to_numpy(dtype=float)
    od = np.asarray(od, dtype=float)
    zones = np.asarray(zones)
    if od.ndim != 2 or od.shape != (len(zones), len(zones)):
        raise ValueError(f"trips_from_od: od must be square with one row per zone ({len(zones)}), got {od.shape}")
    if not np.isfinite(od).all() or (od < 0).any():
        i, j = np.argwhere(~np.isfinite(od) | (od < 0))[0]
        raise ValueError(f"trips_from_od: od[{i}, {j}] = {od[i, j]!r} must be finite and >= 0")
    if not end_s > start_s:
        raise ValueError(f"trips_from_od: end_s ({end_s}) must be after start_s ({start_s})")
    if poisson:
        counts = rng.poisson(od)
    else:
        base = np.floor(od)
        counts = (base + (rng.random(od.shape) < od - base)).astype(np.int64)
    i, j = np.nonzero(counts)
    reps = counts[i, j]
    o = np.repeat(zones[i], reps)
    d = np.repeat(zones[j], reps)
    dep = rng.uniform(start_s, end_s, size=len(o))
    order = np.argsort(dep, kind="stable")
    df = pd.DataFrame({"origin": o[order], "destination": d[order], "depart_s": dep[order]})
    if isinstance(vehicle_class, dict):
        df["vehicle_class"] = _sample_classes(len(df), vehicle_class, rng)
    else:
        df["vehicle_class"] = vehicle_class
    return df


def background_trips(network, trips_per_day: float, start_s: float, duration_s: float,
                     rng: np.random.Generator, *, start_hour: float = 0.0, class_share: dict | None = None,
                     origins=None, destinations=None) -> pd.DataFrame:
    """Everyday traffic: trips between random nodes (or the given origin/destination node ids),
    departing over ``[start_s, start_s + duration_s)`` with the Tam Kỳ daily profile; local time at
    ``start_s`` is ``start_hour``. The number of trips is Poisson with the profile's mean."""
    if duration_s <= 0:
        raise ValueError(f"background_trips: duration_s must be > 0, got {duration_s}")
    if trips_per_day < 0:
        raise ValueError(f"background_trips: trips_per_day must be >= 0, got {trips_per_day}")
    origins = network.node_ids if origins is None else np.asarray(origins)
    destinations = network.node_ids if destinations is None else np.asarray(destinations)
    # expected trips per hour-bin inside the window
    edges = np.arange(0.0, duration_s, 3600.0)
    dep_parts: list[np.ndarray] = []
    for t0 in edges:
        t1 = min(t0 + 3600.0, duration_s)
        hour = (start_hour + t0 / 3600.0) % 24.0
        lam = trips_per_day * daily_profile(hour) * (t1 - t0) / 3600.0
        k = rng.poisson(lam)
        dep_parts.append(start_s + rng.uniform(t0, t1, size=k))
    dep = np.sort(np.concatenate(dep_parts)) if dep_parts else np.array([])
    n = len(dep)
    o = origins[rng.integers(0, len(origins), size=n)]
    d = destinations[rng.integers(0, len(destinations), size=n)]
    same = o == d
    while same.any():  # no empty trips
        d[same] = destinations[rng.integers(0, len(destinations), size=int(same.sum()))]
        same = (o == d) & (len(destinations) > 1)
    df = pd.DataFrame({"origin": o, "destination": d, "depart_s": dep})
    df["vehicle_class"] = _sample_classes(n, class_share or TAMKY_CLASS_SHARE, rng)
    return df
